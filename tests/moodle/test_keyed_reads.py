"""Reads and deletes by lists of keys (pairs.fetch_tuples, gateway.fetch_in, the dirty flags' replacement) on SQLite,
MariaDB and PostgreSQL: the same rows whichever statement a server gets (PostgreSQL's index probes by arrays among
them), duplicates, constants and other types' rows included."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import select

from tests.support.case_rules import cased
from tests.support.factories import unique
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle import pairs
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.groups import find_groups
from toolsync_tui.engine.moodle.staleness import DIRTY_USERS, mark_users_dirty

Site = tuple[Config, MoodleGateway]
RA_SCHEMA: dict[str, type[pl.DataType]] = {"id": pl.Int64, "userid": pl.Int64, "contextid": pl.Int64}


async def test_fetch_tuples_finds_each_stored_row_of_the_tuples_asked_for_and_no_other(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, gateway = site
    monkeypatch.setattr(pairs, "TUPLES", 3)  # several statements
    ra = gateway.schema.role_assignments
    base = 9_000_000 + int(unique("")) * 100  # user ids no other test writes
    stored = [
        (base + 1, 71, ""),
        (base + 1, 71, ""),  # the same key twice: both rows come back
        (base + 2, 72, ""),
        (base + 3, 73, "enrol_self"),  # another component: left out by the constant
        (base + 4, 74, ""),
        (base + 5, 75, ""),  # not asked for
    ]
    async with gateway.transaction() as conn:
        ids = await gateway.insert_many(
            conn,
            ra,
            [
                {"roleid": 5, "contextid": c, "userid": u, "component": comp, "itemid": 0, "timemodified": 0}
                for u, c, comp in stored
            ],
        )
        if ids is None:
            ids = [r for (r,) in await conn.execute(select(ra.c.id).where(ra.c.userid.between(base, base + 99)))]
        asked = pl.DataFrame(
            {
                "userid": [base + 1, base + 2, base + 3, base + 4, base + 4, base + 2, None, base + 9],
                "contextid": [71, 72, 73, 74, 74, 99, 72, 71],
            }
        )
        found = await pairs.fetch_tuples(
            gateway, conn, ra, ["userid", "contextid"], asked, RA_SCHEMA, where=[("component", ""), ("itemid", 0)]
        )
    assert sorted(found.select("userid", "contextid").rows()) == [
        (base + 1, 71),
        (base + 1, 71),
        (base + 2, 72),
        (base + 4, 74),
    ]
    assert set(found["id"].to_list()) <= set(ids)
    assert found.schema == pl.Schema(RA_SCHEMA)


async def test_fetch_in_by_an_indexed_key_applies_conditions_on_columns_it_does_not_return(site: Site) -> None:
    _, gateway = site
    flags = gateway.schema.cache_flags
    mine, other = unique("keyed/"), unique("keyed-other/")
    rows = [
        {"flagtype": kind, "name": name, "value": "1", "expiry": expiry, "timemodified": 0}
        for kind, name, expiry in [(mine, "a", 1), (mine, "b", 2), (other, "a", 3), (mine, "c", 4)]
    ]
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, flags, rows)
        found = await gateway.fetch_in(
            conn, flags, "name", ["a", "b", "a", "zz"], ["name", "expiry"], where=flags.c.flagtype == mine
        )
    assert sorted(found.rows()) == [("a", 1), ("b", 2)]


async def test_dirty_flags_replace_those_of_the_users_and_leave_other_flags(site: Site) -> None:
    _, gateway = site
    flags = gateway.schema.cache_flags
    base = 8_000_000 + int(unique("")) * 10
    other = unique("other/")
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            flags,
            [
                {"flagtype": DIRTY_USERS, "name": str(base + 1), "value": "1", "expiry": 5, "timemodified": 0},
                {"flagtype": DIRTY_USERS, "name": str(base + 3), "value": "1", "expiry": 5, "timemodified": 0},
                {"flagtype": other, "name": str(base + 1), "value": "1", "expiry": 5, "timemodified": 0},
            ],
        )
        await mark_users_dirty(gateway, conn, [base + 1, base + 2], now=1000, session_timeout=60)
        names = [str(base + i) for i in range(1, 4)]
        after = await conn.execute(
            select(flags.c.flagtype, flags.c.name, flags.c.expiry).where(flags.c.name.in_(names))
        )
        result = sorted((kind, name, int(expiry)) for kind, name, expiry in after)
    assert result == sorted(
        [
            (DIRTY_USERS, str(base + 1), 1060),  # replaced: one flag, the new expiry
            (DIRTY_USERS, str(base + 2), 1060),
            (DIRTY_USERS, str(base + 3), 5),  # not asked about: kept
            (other, str(base + 1), 5),  # another flag type of the same name: kept
        ]
    )


async def test_find_groups_gives_each_pair_its_own_courses_group_of_that_name(site: Site) -> None:
    """The (courseid, name) pairs asked for, each with the lowest id of its course's groups of that name (another case
    of it where the site ignores case), or null: never the same-named group of another course asked about."""
    _, gateway = site
    base = 7_000_000 + int(unique("")) * 10  # course ids no other test uses
    red, blue = unique("Red"), unique("Blue")
    stored = [(base + 1, red), (base + 1, red), (base + 2, blue), (base + 2, red), (base + 3, blue)]
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.groups,
            [
                {"courseid": course, "name": name, "idnumber": "", "timecreated": 0, "timemodified": 0}
                for course, name in stored
            ],
        )
        ids = {
            (int(c), n, int(i))
            for i, c, n in await conn.execute(
                select(
                    gateway.schema.groups.c.id, gateway.schema.groups.c.courseid, gateway.schema.groups.c.name
                ).where(gateway.schema.groups.c.courseid.between(base, base + 9))
            )
        }
        asked = pl.DataFrame(
            {
                "courseid": [base + 1, base + 2, base + 1, base + 4],
                "name": [cased(gateway, red.upper(), red), blue, blue, red],
            }
        )
        found = await find_groups(gateway, conn, asked)
    first_red = min(i for c, n, i in ids if (c, n) == (base + 1, red))
    [blue_of_two] = [i for c, n, i in ids if (c, n) == (base + 2, blue)]
    assert found.rows() == [
        (base + 1, cased(gateway, red.upper(), red), first_red),
        (base + 2, blue, blue_of_two),
        (base + 1, blue, None),  # course 1 has no Blue; course 2's and 3's are not its
        (base + 4, red, None),
    ]
