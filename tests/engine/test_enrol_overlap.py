"""The enrolments file with overlapped writes (run/overlap.py) against the same file run batch after batch
(TOOLSYNC_OVERLAP=0), each on its own copy of one database (MariaDB, PostgreSQL): with batches of 2 rows, rows naming a
pair, a group (gaddcreate) or an instance (enable_on_disabled) that the batch before wrote, created or enabled, and
batches applied generation by generation (an unenrolment, a pair twice in a batch), come out exactly as in turn: same
tables, same log events, same report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text

from tests.conftest import Server
from tests.support.course_factories import add_enrolment_courses, add_users
from tests.support.factories import unique
from tests.support.operation_files import report_rows, run_file
from tests.support.overlap_runs import serial_and_overlapped
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.overlap import OverlappedWrites

TIMES = {"timecreated", "timemodified", "timeadded", "timestart"}
LOGGED = "eventname, component, action, target, objecttable, objectid, contextid, courseid, relateduserid, other"


async def state(gateway: MoodleGateway, courses: list[int], users: list[int]) -> dict[str, Any]:
    """The courses' enrol instances and groups, the users' enrolments, roles and memberships (without times), and
    the courses' log events."""
    schema = gateway.schema
    wanted: dict[str, tuple[Table, Any]] = {
        "enrol": (schema.enrol, schema.enrol.c.courseid.in_(courses)),
        "groups": (schema.groups, schema.groups.c.courseid.in_(courses)),
        "user_enrolments": (schema.user_enrolments, schema.user_enrolments.c.userid.in_(users)),
        "role_assignments": (schema.role_assignments, schema.role_assignments.c.userid.in_(users)),
        "groups_members": (schema.groups_members, schema.groups_members.c.userid.in_(users)),
    }
    found: dict[str, Any] = {}
    async with gateway.reading() as conn:
        for name, (table, where) in wanted.items():
            rows = [dict(r._mapping) for r in await conn.execute(select(table).where(where).order_by(table.c.id))]
            found[name] = [{k: v for k, v in row.items() if k not in TIMES} for row in rows]
        ids = ", ".join(str(c) for c in courses)
        logged = await conn.execute(
            text(f"SELECT {LOGGED} FROM mdl_logstore_standard_log WHERE courseid IN ({ids}) ORDER BY id")
        )
        # (the deleted enrolment's times, in its `other`, are the run's: left out)
        found["log"] = [(*r[:-1], re.sub(r'"time\w+":"\d+"', "", str(r[-1]))) for r in logged]
    return found


async def both_ways(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: list[str],
    courses: list[int],
    users: list[int],
    *,
    settings: dict[str, Any] | None = None,
    setup: list[str] | None = None,
) -> dict[str, tuple[list[list[dict[str, str]]], dict[str, Any]]]:
    """The enrolments files run one after the other (after the `setup` statements), by ids, serial ("0") and
    overlapped ("1"): each run's report, then the state()."""

    def configure(config: Config) -> None:
        for name in ("course_identifier", "user_identifier"):
            config.set(f"operations.enrols.{name}", "id")
        for name, value in (settings or {}).items():
            config.set(f"operations.enrols.{name}", value)

    async def run(config: Config, gateway: MoodleGateway) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
        async with gateway.transaction() as conn:
            for statement in setup or []:
                await conn.exec_driver_sql(statement)
        runs = [await run_file(config, gateway, "enrols", content) for content in files]
        return [report_rows(r) for r in runs], await state(gateway, courses, users)

    return await serial_and_overlapped(db_server, project_db_url, tmp_path, monkeypatch, run, configure)


async def test_overlapped_enrolment_batches_give_the_serial_result(
    db_server: Server,
    server_kind: str,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
) -> None:
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    try:
        [course] = await add_enrolment_courses(gateway)
        [closed] = await add_enrolment_courses(gateway, instances=(("manual", 1),))  # a disabled instance only
        users = await add_users(gateway, 5)
    finally:
        await gateway.close()
    c, d, (u1, u2, u3, u4, u5) = course.id, closed.id, users
    head = "cid;uid;rolename;enrol;gcmd;g1;endtime\n"
    content = head + (
        f"{c};{u1};student;manual;gaddcreate;Alpha;\n"  # batch 1: a group created
        f"{c};{u2};student;manual;gadd;Beta;\n"  # no such group: its part fails
        f"{c};{u1};student;manual;gaddcreate;Alpha;\n"  # batch 2: batch 1's pair and group: unchanged
        f"{c};{u3};;manual;gaddcreate;alpha;\n"  # batch 1's group (its name in another case)
        f"{d};{u1};student;manual;;;\n"  # batch 3: the disabled instance, enabled
        f"{c};{u4};editingteacher;manual;gaddcreate;Gamma;\n"
        f"{d};{u2};student;manual;;;\n"  # batch 4: the instance batch 3 enabled
        f"{c};{u4};student;manual;gaddcreate;Gamma;\n"  # batch 3's pair (a role added) and group
        f"{c};{u1};student;manual;;;1900000000\n"  # batch 5: batch 2's pair: an end date
        f"{c};{u5};student;manual;gaddcreate;Delta;\n"
        f"{c};{u5};student;manual;gaddcreate;Delta;1900000000\n"  # batch 6: batch 5's pair and group
        f"{c};{u2};teacher;manual;gaddcreate;Delta;\n"
        f"{c};{u3};student;manual;;;\n"  # batch 7: the same pair twice (generation by generation)
        f"{c};{u3};student;manual;gaddcreate;Eps;1900000000\n"
        f"{c};{u2};teacher;manual;gaddcreate;Eps;\n"  # batch 8: batch 7's group
        f"{c};{u4};student;manual;gaddcreate;Eps;\n"
        f"{c};{u1};student;manual;gadd;Theta;\n"  # batch 9: a group the batch's next row creates
        f"{c};{u5};student;manual;gaddcreate;Theta;\n"
    )
    unenrol = "cid;uid;rolename;enrol;cmd;gcmd;g1\n" + (
        f"{c};{u1};;manual;del;;\n"  # batch 1: generation by generation (an unenrolment)
        f"{c};{u2};student;manual;add;gaddcreate;Zeta\n"
        f"{c};{u1};student;manual;add;gaddcreate;Zeta\n"  # batch 2: batch 1's pair and group
        f"{c};{u3};student;manual;add;gaddcreate;Zeta\n"
    )
    results = await both_ways(
        db_server,
        project_db_url,
        tmp_path,
        monkeypatch,
        [content, unenrol],
        [c, d],
        users,
        settings={"enable_on_disabled": True},
    )
    serial, overlapped = results["0"], results["1"]
    assert overlapped[0] == serial[0]
    assert overlapped[1] == serial[1]
    # The files reached the cases that matter.
    said = {(o["outcome"], o["action"], o["part"][:1]) for run in serial[0] for o in run}
    assert {("created", "enrol", ""), ("unchanged", "none", ""), ("updated", "enrol", "")} <= said, said
    assert {("created", "gaddcreate", "g"), ("failed", "gadd", "g"), ("deleted", "unenrol", "")} <= said, said
    assert [e["status"] for e in serial[1]["enrol"] if e["courseid"] == d] == [0]
    # 'alpha' is Alpha where the collation ignores case (MariaDB); PostgreSQL compares names exactly, as Moodle there.
    other_case = {"alpha"} if server_kind == "postgresql" else set()
    assert {g["name"] for g in serial[1]["groups"]} == {"Alpha", "Gamma", "Delta", "Eps", "Theta", "Zeta"} | other_case
    assert len(serial[1]["log"]) > 20
    assert len(replans) == 2, "each run overlaps its writes"
    assert all(r.replanned > 0 for r in replans), [r.replanned for r in replans]


@pytest.mark.parametrize("refused", [False, True], ids=["committed", "refused"])
async def test_groups_the_write_in_flight_creates_are_taken_as_created_unless_it_fails(
    db_server: Server,
    server_kind: str,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
    refused: bool,
) -> None:
    """A file that creates its groups as it goes (gaddcreate, each group named again by the next rows, each pair
    once): a batch planned while the one before is written takes the groups that write creates as created, and is
    not planned again. When that write fails (a trigger refuses one of its memberships), the batch is planned again
    and creates the group itself. Either way the result is the serial one."""
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    try:
        [course] = await add_enrolment_courses(gateway)
        users = await add_users(gateway, 6)
    finally:
        await gateway.close()
    c, u = course.id, users
    # Batches of 2 rows: {1, 2} creates both groups, {3, 4} is planned while it is written, {5, 6} while {3, 4} is.
    content = "cid;uid;rolename;enrol;gcmd;g1\n" + (
        f"{c};{u[0]};student;manual;gaddcreate;Alpha\n"
        f"{c};{u[1]};student;manual;gaddcreate;Beta\n"  # refused: its batch writes nothing, its groups included
        f"{c};{u[2]};student;manual;gaddcreate;Beta\n"
        f"{c};{u[3]};student;manual;gaddcreate;Alpha\n"
        f"{c};{u[4]};student;manual;gaddcreate;Beta\n"
        f"{c};{u[5]};student;manual;gadd;Alpha\n"
    )
    trigger = unique("refuse_")
    condition = f"NEW.userid = {u[1]}"
    if server_kind == "postgresql":
        created = [
            f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF {condition} THEN "
            "RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_groups_members FOR EACH ROW EXECUTE FUNCTION {trigger}()",
        ]
    else:
        created = [
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_groups_members FOR EACH ROW IF {condition} THEN "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'; END IF"
        ]
    results = await both_ways(
        db_server, project_db_url, tmp_path, monkeypatch, [content], [c], u, setup=created if refused else None
    )
    serial, overlapped = results["0"], results["1"]
    assert overlapped == serial
    rows = [(o["line"], o["outcome"], o["part"]) for o in serial[0][0]]
    if refused:
        assert rows[:2] == [("2", "failed", ""), ("3", "failed", "")], rows  # the first batch, not written
        assert sorted(m["userid"] for m in serial[1]["groups_members"]) == u[2:]
    else:
        assert sorted(m["userid"] for m in serial[1]["groups_members"]) == u
    assert sorted(g["name"] for g in serial[1]["groups"]) == ["Alpha", "Beta"]
    [run] = replans
    assert run.replanned == (1 if refused else 0)
