"""The users file's cohort/cohortid columns: system cohorts by name, created as cohort_add_cohort writes them."""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import Table, select

from tests.support.case_rules import cased
from tests.support.course_factories import add_cohort, add_users
from tests.support.factories import unique
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.parts.cohort_memberships import CohortMemberships
from toolsync_tui.engine.rows import LINE

Site = tuple[Config, MoodleGateway]
NOW = 1_790_000_000
SCHEMA = {LINE: pl.Int64, "userid": pl.Int64, "cohort": pl.String, "cohortid": pl.String}


def requests(*rows: tuple[int | None, str, str]) -> pl.DataFrame:
    """(userid, cohort, cohortid) per request, lines 1, 2, ..."""
    return pl.DataFrame(
        [(n, user, cohort, cohortid) for n, (user, cohort, cohortid) in enumerate(rows, start=1)],
        schema=SCHEMA,
        orient="row",
    )


async def run(gateway: MoodleGateway, batch: pl.DataFrame, *, dry_run: bool = False) -> list[tuple[Any, ...]]:
    memberships = CohortMemberships(gateway)
    async with gateway.transaction() as conn:
        await memberships.prepare(conn)
        outcomes = await memberships.apply(conn, batch, now=NOW, dry_run=dry_run)
    assert outcomes.columns == ["line", "part", "outcome", "action", "key", "message"]
    assert outcomes["part"].to_list() == ["cohort"] * batch.height
    assert outcomes["line"].to_list() == batch[LINE].to_list()
    return [(o, m) for o, m in outcomes.select("outcome", "message").iter_rows()]


async def table_rows(gateway: MoodleGateway, table: Table, column: str, values: list[Any]) -> list[dict[str, Any]]:
    async with gateway.reading() as conn:
        rows = await conn.execute(select(table).where(table.c[column].in_(values)).order_by(table.c.id))
        return [dict(r._mapping) for r in rows]


async def cohorts_named(gateway: MoodleGateway, *names: str) -> list[dict[str, Any]]:
    return await table_rows(gateway, gateway.schema.cohort, "name", list(names))


async def members_of(gateway: MoodleGateway, users: list[int]) -> list[tuple[int, int, int]]:
    rows = await table_rows(gateway, gateway.schema.cohort_members, "userid", users)
    return [(r["cohortid"], r["userid"], r["timeadded"]) for r in rows]


def cohort_row(name: str, idnumber: str | None) -> dict[str, Any]:
    return {
        "contextid": 1,
        "name": name,
        "idnumber": idnumber,
        "description": "",
        "descriptionformat": 1,
        "visible": 1,
        "component": "",
        "timecreated": NOW,
        "timemodified": NOW,
        "theme": "",
    }


async def test_a_missing_cohort_is_created_once_and_a_rerun_is_unchanged(site: Site) -> None:
    _, gateway = site
    ann, bob = await add_users(gateway, 2)
    name, plain, code = unique("Cohort "), unique("Plain "), unique("C-")
    upper = cased(gateway, name.upper(), name)
    batch = requests((ann, name, code), (bob, upper, "ignored"), (ann, plain, ""))

    assert await run(gateway, batch) == [
        ("created", f"added to cohort '{name}' (cohort created)"),
        ("created", f"added to cohort '{upper}'"),
        ("created", f"added to cohort '{plain}' (cohort created)"),
    ]
    cohorts = await cohorts_named(gateway, name, plain)
    assert [{k: v for k, v in c.items() if k != "id"} for c in cohorts] == [
        cohort_row(name, code),  # the first row's cohortid is the idnumber
        cohort_row(plain, None),  # no cohortid: NULL, as cohort_add_cohort() leaves it
    ]
    ids = {c["name"]: c["id"] for c in cohorts}
    assert sorted(await members_of(gateway, [ann, bob])) == sorted(
        [(ids[name], ann, NOW), (ids[name], bob, NOW), (ids[plain], ann, NOW)]
    )

    assert await run(gateway, batch) == [
        ("unchanged", f"already a member of cohort '{name}'"),
        ("unchanged", f"already a member of cohort '{upper}'"),
        ("unchanged", f"already a member of cohort '{plain}'"),
    ]
    assert len(await cohorts_named(gateway, name, plain)) == 2
    assert len(await members_of(gateway, [ann, bob])) == 3


async def test_an_existing_system_cohort_is_found_by_name_in_any_case(site: Site) -> None:
    _, gateway = site
    [user] = await add_users(gateway, 1)
    name, in_category = unique("Existing "), unique("Category cohort ")
    existing = await add_cohort(gateway, name)
    await add_cohort(gateway, in_category, contextid=3)  # the category context of a fresh site: not a system cohort

    lowered = cased(gateway, name.lower(), name)
    result = await run(gateway, requests((user, f"  {lowered} ", "new-idnumber"), (user, in_category, "")))

    assert result == [
        ("created", f"added to cohort '{lowered}'"),
        ("created", f"added to cohort '{in_category}' (cohort created)"),
    ]
    assert [c["idnumber"] for c in await cohorts_named(gateway, name)] == [None]  # an existing cohort is not edited
    [category_one, system_one] = await cohorts_named(gateway, in_category)
    assert (category_one["contextid"], system_one["contextid"]) == (3, 1)
    assert sorted(await members_of(gateway, [user])) == sorted([(existing, user, NOW), (system_one["id"], user, NOW)])


async def test_bad_values_fail_one_detail_each(site: Site) -> None:
    _, gateway = site
    [user] = await add_users(gateway, 1)
    holder, taken = unique("Holder "), unique("TAKEN-")
    await add_cohort(gateway, holder, idnumber=taken)
    first, second, shared = unique("First "), unique("Second "), unique("SHARED-")
    other_case = cased(gateway, taken.lower(), taken)
    batch = requests(
        (None, unique("Cohort "), ""),
        (user, "", ""),
        (user, "c" * 255, ""),
        (user, unique("Cohort "), "i" * 101),
        (user, unique("Cohort "), other_case),
        (user, first, shared),
        (user, second, shared),  # the idnumber the batch's first new cohort just took
    )

    result = await run(gateway, batch)

    assert result == [
        ("failed", "the user was not created or found, so no cohort membership was added"),
        ("failed", "empty cohort name"),
        ("failed", f"cohort '{'c' * 60}...': a cohort name has at most 254 characters"),
        ("failed", f"cohortid '{'i' * 60}...': a cohort idnumber has at most 100 characters"),
        (
            "failed",
            f"cohort '{batch['cohort'][4]}' not created: "
            f"cohortid '{other_case}' is already the idnumber of cohort '{holder}'",
        ),
        ("created", f"added to cohort '{first}' (cohort created)"),
        ("failed", f"cohort '{second}' not created: cohortid '{shared}' is already the idnumber of cohort '{first}'"),
    ]
    assert await cohorts_named(gateway, second, batch["cohort"][4]) == []
    assert len(await members_of(gateway, [user])) == 1


async def test_a_dry_run_reports_the_same_and_writes_nothing(site: Site) -> None:
    _, gateway = site
    ann, bob = await add_users(gateway, 2)
    existing, new = unique("Existing "), unique("New ")
    existing_id = await add_cohort(gateway, existing)
    await run(gateway, requests((ann, existing, "")))
    batch = requests((ann, existing, ""), (bob, existing, ""), (ann, new, ""), (bob, new, ""))

    dry = await run(gateway, batch, dry_run=True)

    assert dry == [
        ("unchanged", f"already a member of cohort '{existing}'"),
        ("created", f"added to cohort '{existing}'"),
        ("created", f"added to cohort '{new}' (cohort would be created)"),
        ("created", f"added to cohort '{new}'"),
    ]
    assert await cohorts_named(gateway, new) == []
    assert await members_of(gateway, [ann, bob]) == [(existing_id, ann, NOW)]

    real = await run(gateway, batch)

    assert [o for o, _ in real] == [o for o, _ in dry]
    assert real[2] == ("created", f"added to cohort '{new}' (cohort created)")


# -- the real Moodle schema ----------------------------------------------------------------------------


async def test_on_the_real_moodle_schema(dump_gateway: MoodleGateway) -> None:
    gateway = dump_gateway
    ann, bob = await add_users(gateway, 2)
    name, code = unique("Cohort "), unique("C-")
    batch = requests((ann, name, code), (bob, name, ""))

    assert [o for o, _ in await run(gateway, batch)] == ["created", "created"]
    [cohort] = await cohorts_named(gateway, name)
    assert {k: v for k, v in cohort.items() if k != "id"} == cohort_row(name, code)
    assert await members_of(gateway, [ann, bob]) == [(cohort["id"], ann, NOW), (cohort["id"], bob, NOW)]
    assert [o for o, _ in await run(gateway, batch)] == ["unchanged", "unchanged"]
