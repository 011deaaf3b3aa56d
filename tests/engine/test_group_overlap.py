"""The groups and group members files with overlapped writes (run/overlap.py) against the same files run batch after
batch (TOOLSYNC_OVERLAP=0), each on its own copy of one database (MariaDB, PostgreSQL): with batches of 2 rows, rows
that create, rename, assign or fill a group or grouping another batch wrote just before come out exactly as in turn:
same tables, same log events, same report, same protected memberships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text

from tests.conftest import Server
from tests.support.course_factories import TestCourse, add_enrolment_courses, add_users
from tests.support.operation_files import report_rows, run_file
from tests.support.overlap_runs import serial_and_overlapped
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.protected_groups import for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.overlap import OverlappedWrites

TIMES = {"timecreated", "timemodified", "timeadded"}
TABLES = ("groups", "groupings", "groupings_groups", "groups_members")
LOGGED = "eventname, component, action, target, objecttable, objectid, contextid, courseid, relateduserid, other"


async def enrol(gateway: MoodleGateway, course: TestCourse, users: list[int]) -> None:
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.user_enrolments,
            [{"enrolid": course.instance(), "userid": u, "status": 0, "timestart": 0, "timeend": 0} for u in users],
        )


async def state(config: Config, gateway: MoodleGateway, courseid: int) -> dict[str, Any]:
    """The course's groups tables (without times), its log events, and the protected memberships."""
    schema = gateway.schema
    found: dict[str, Any] = {}
    async with gateway.reading() as conn:
        for name in TABLES:
            table: Table = getattr(schema, name)
            rows = [dict(r._mapping) for r in await conn.execute(select(table).order_by(table.c.id))]
            found[name] = [{k: v for k, v in row.items() if k not in TIMES} for row in rows]
        logged = await conn.execute(
            text(f"SELECT {LOGGED} FROM mdl_logstore_standard_log WHERE courseid = :c ORDER BY id"), {"c": courseid}
        )
        found["log"] = [tuple(r) for r in logged]
    entries = (await for_site(config.data_dir, gateway)).entries()
    found["protected"] = entries.select("groupid", "userid", "memberid", "source").rows()
    return found


async def test_overlapped_batches_give_the_serial_result(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
) -> None:
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    try:
        [course] = await add_enrolment_courses(gateway)
        users = await add_users(gateway, 4)
        await enrol(gateway, course, users[:3])
    finally:
        await gateway.close()
    c, (u1, u2, u3, u4) = course.id, users
    groups = (
        "courseid;name;type;idnumber;selfgrouping;grouping\n"
        f"{c};Alpha;;A1;1;\n"  # batch 1: a group, its grouping and their assignment
        f"{c};Beta;grouping;GB;;\n"
        f"{c};Alpha;;A1;1;GB\n"  # batch 2: batch 1's group (and grouping), assigned to batch 1's grouping
        f"{c};Gamma;;A1;;\n"  # batch 1's idnumber: fails
        f"{c};Beta;grouping;;;\n"  # batch 3: batch 1's grouping
        f"{c};Delta;;;1;\n"
        f"{c};Delta;;D1;;\n"  # batch 4: batch 3's group, differing (add-only: skipped)
        f"{c};Alpha;;;;GB\n"  # assigned by batch 2
    )
    renames = (
        "courseid;name;type;idnumber;updateid\n"
        f"{c};Alpha2;;;A1\n"  # batch 1: renamed
        f"{c};Eps;;;\n"
        f"{c};Alpha;;;\n"  # batch 2: the name batch 1 freed: a new group
        f"{c};Alpha2;;E1;A1\n"  # the idnumber changes
        f"{c};Zeta;;A1;\n"  # batch 3: the idnumber batch 2 freed
        f"{c};Eps;;E1;\n"  # batch 2's idnumber: Alpha2's
    )
    members = (
        "groupid;userid;courseid;cmd\n"
        f"Alpha2;{u1};{c};\n"  # batch 1
        f"Alpha2;{u2};{c};\n"
        f"Alpha2;{u1};{c};\n"  # batch 2: added by batch 1
        f"Delta;{u1};{c};shift\n"
        f"Alpha2;{u2};{c};del\n"  # batch 3: added by batch 1
        f"Delta;{u3};{c};\n"
        f"Alpha2;{u1};{c};\n"  # batch 4: left by batch 2's shift
        f"Delta;{u3};{c};del\n"
        f"Delta;{u4};{c};\n"  # batch 5: not enrolled
    )

    def configure(config: Config) -> None:
        for name in ("course_identifier", "group_identifier", "grouping_identifier"):
            config.set(f"operations.groups.{name}", "id")
        config.set("operations.groups.group_identifier", "idnumber")
        for name in ("course_identifier", "user_identifier"):
            config.set(f"operations.groupmembers.{name}", "id")
        config.set("operations.groupmembers.group_identifier", "name")

    async def run(config: Config, gateway: MoodleGateway) -> tuple[Any, ...]:
        runs = [
            await run_file(config, gateway, "groups", groups),
            await run_file(config, gateway, "groups", renames),
            await run_file(config, gateway, "groupmembers", members),
        ]
        # By id, a group the batch before creates: its id is the next one (the copies number alike).
        config.set("operations.groups.group_identifier", "id")
        async with gateway.reading() as conn:
            following = int((await conn.execute(text("SELECT MAX(id) + 1 FROM mdl_groups"))).scalar_one())
        by_id = (
            "courseid;name;type;idnumber;updateid\n"
            f"{c};Theta;;;\n"  # batch 1: a new group
            f"{c};Iota;;;\n"
            f"{c};Theta2;;;{following}\n"  # batch 2: batch 1's group, renamed
            f"{c};Kappa;;;\n"
        )
        runs.append(await run_file(config, gateway, "groups", by_id))
        return [report_rows(r) for r in runs], await state(config, gateway, c)

    results = await serial_and_overlapped(db_server, project_db_url, tmp_path, monkeypatch, run, configure)
    serial, overlapped = results["0"], results["1"]
    assert overlapped[0] == serial[0]
    assert overlapped[1] == serial[1]
    # The files reached the cases that matter: created, failed, skipped, renamed, shifted, removed.
    said = {(o["outcome"], o["action"]) for run in serial[0] for o in run}
    assert {("created", "create"), ("failed", "check"), ("skipped", "none"), ("updated", "update")} <= said
    assert {("updated", "shift"), ("deleted", "remove")} <= said
    assert len(serial[1]["groups_members"]) == 2, serial[1]["groups_members"]
    assert ("updated", "update") in {(o["outcome"], o["action"]) for o in serial[0][3] if o["key"] == "Theta2"}
    assert len(replans) == 4, "each run overlaps its writes"
    assert all(r.replanned > 0 for r in replans), [r.replanned for r in replans]
