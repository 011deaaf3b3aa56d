"""The cohorts file and the users file's cohort column leave in Moodle's standard log the rows Moodle's cohort API
leaves (issue 19).

The expected rows are those a Moodle 4.5 site wrote when the same changes went through its own API from the command
line (traced on a site made from the same dump; the same cohorts files run by toolsync on a twin site gave the same
rows, ids included): cohort_add_cohort() cohort_created, cohort_update_cohort() cohort_updated,
cohort_delete_cohort() cohort_deleted (and no row for the members it deletes), cohort_add_member() cohort_member_added
and cohort_remove_member() cohort_member_removed with relateduserid the user (a `free` removes each member so). All
with objecttable cohort, objectid the cohort, other null, courseid 0, in the cohort's context: the system context (id
1, level 10, instance 0) or its category's (level 40, instance the category).
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pytest

from tests.support.course_factories import add_users
from tests.support.course_log import in_context, unordered
from tests.support.factories import unique
from tests.support.log_rows import log_mark, log_since, set_log_store
from tests.support.operation_files import header, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.course_events import collecting
from toolsync_tui.engine.moodle.event_log import EventLog
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.parts.cohort_memberships import CohortMemberships
from toolsync_tui.engine.rows import LINE

Site = tuple[Config, MoodleGateway]
SYSTEM = (1, 10, 0)
FILE = header("cmd", "cidnumber", "cname", "userid", "ccatcontext")


@pytest.fixture
async def site(dump_site: Site) -> Site:
    config, gateway = dump_site
    config.set("operations.cohorts.user_identifier", "id")
    config.set("run.safety_min_rows", 1000)
    await set_log_store(gateway, enabled=True, jsonformat=True)
    return dump_site


async def cohort_id(gateway: MoodleGateway, idnumber: str) -> int:
    [found] = await rows_of(gateway, gateway.schema.cohort, idnumber=idnumber)
    return int(found["id"])


def event(name: str, cohort: int, context: tuple[int, int, int], crud: str, user: int | None = None) -> dict[str, Any]:
    return in_context(name, "cohort", cohort, crud, context, relateduserid=user)


async def test_cohorts_and_their_members_are_logged(site: Site) -> None:
    config, gateway = site
    first, second, third = await add_users(gateway, 3)
    [category] = await rows_of(gateway, gateway.schema.context, contextlevel=40, instanceid=1)
    in_category = (int(category["id"]), 40, 1)
    one, two = unique("co"), unique("co")
    mark = await log_mark(gateway)

    result = await run_file(
        config,
        gateway,
        "cohorts",
        FILE + f"add;{one};Co One;{first};\nadd;{one};Co One;{second};\nadd;{two};Co Two;{third};1\n",
    )

    assert result.counts == {"created": 3}, report_of(result)
    co1, co2 = await cohort_id(gateway, one), await cohort_id(gateway, two)
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("cohort_created", co1, SYSTEM, "c"),
            event("cohort_member_added", co1, SYSTEM, "c", first),
            event("cohort_member_added", co1, SYSTEM, "c", second),
            event("cohort_created", co2, in_category, "c"),
            event("cohort_member_added", co2, in_category, "c", third),
        ]
    )

    mark = await log_mark(gateway)
    changed = await run_file(
        config,
        gateway,
        "cohorts",
        header("cmd", "cidnumber", "cname", "userid")
        + f"add;{one};Co One renamed;\ndel;{one};;{first}\nfree;{two};;\n",
    )
    assert changed.counts == {"updated": 1, "deleted": 2}, report_of(changed)
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("cohort_updated", co1, SYSTEM, "u"),
            event("cohort_member_removed", co1, SYSTEM, "d", first),
            event("cohort_member_removed", co2, in_category, "d", third),
        ]
    )

    # A deleted cohort's members go with it: one row, as cohort_delete_cohort() logs.
    mark = await log_mark(gateway)
    deleted = await run_file(config, gateway, "cohorts", header("cmd", "cidnumber") + f"delete;{one}\n")
    assert deleted.counts == {"deleted": 1}, report_of(deleted)
    assert await log_since(gateway, mark) == [event("cohort_deleted", co1, SYSTEM, "d")]


async def test_the_users_files_cohort_memberships_give_their_events(site: Site) -> None:
    """The users file's `cohort` column (CohortMemberships): cohort_created and cohort_member_added in the system
    context, gathered for the caller to record with its batch."""
    _config, gateway = site
    first, second = await add_users(gateway, 2)
    name, idnumber = unique("Users cohort "), unique("uco")
    memberships = CohortMemberships(gateway)
    requests = pl.DataFrame(
        {LINE: [1, 2], "userid": [first, second], "cohort": [name, name], "cohortid": [idnumber, ""]},
        schema={LINE: pl.Int64, "userid": pl.Int64, "cohort": pl.String, "cohortid": pl.String},
    )
    log = EventLog(enabled=True, actor_id=2, gateway=gateway)
    mark = await log_mark(gateway)
    async with gateway.transaction() as conn:
        await memberships.prepare(conn)
        events = collecting(log)
        await memberships.apply(conn, requests, now=int(time.time()), dry_run=False, events=events)
        await log.record(conn, events or [], int(time.time()))

    cohort = await cohort_id(gateway, idnumber)
    assert await log_since(gateway, mark) == [
        event("cohort_created", cohort, SYSTEM, "c"),
        event("cohort_member_added", cohort, SYSTEM, "c", first),
        event("cohort_member_added", cohort, SYSTEM, "c", second),
    ]
