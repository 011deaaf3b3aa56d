"""The users file with overlapped writes (run/overlap.py) against the same file run batch after batch
(TOOLSYNC_OVERLAP=0), each on its own copy of one database (MariaDB, PostgreSQL): with batches of 2 rows, rows that name
an e-mail, idnumber, username, oldusername or unique profile value the batch before creates, frees, renames or deletes
come out exactly as in turn: same tables, same log events, same report. And the ids of new accounts and their contexts
come from the INSERTs, never read back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, make_url, select, text

from tests.conftest import Server, database_config
from tests.support.accounts import add_user
from tests.support.course_factories import add_enrolment_courses
from tests.support.database_copies import copy_database
from tests.support.factories import unique
from tests.support.operation_files import header, report_of, report_rows, run_file
from tests.support.overlap_runs import serial_and_overlapped
from tests.support.user_factories import add_fields
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.contexts import ContextLevel, instance_contexts
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run import overlap
from toolsync_tui.engine.run.overlap import OverlappedWrites
from toolsync_tui.engine.users import operation as users_operation

USERNAMES = "SELECT mdl_user.id, mdl_user.username FROM mdl_user WHERE mdl_user.username"
TIMES = {"timecreated", "timemodified", "timestart", "timeend", "timeadded", "expiry"}
LOGGED = "eventname, component, action, target, objecttable, objectid, contextid, relateduserid, other"


def _timeless(row: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in row.items() if k not in TIMES}
    if isinstance(kept.get("username"), str):  # a deleted account's username ends with the time of its deletion
        kept["username"] = re.sub(r"\.\d{9,}$", ".TIME", kept["username"])
    return kept


async def state(gateway: MoodleGateway, first_user: int) -> dict[str, Any]:
    """The rows the run may write (without times), from the first account of the test on."""
    found: dict[str, Any] = {}
    queries = {
        "user": "SELECT * FROM mdl_user WHERE id >= :u ORDER BY id",
        "context": "SELECT * FROM mdl_context WHERE contextlevel = 30 AND instanceid >= :u ORDER BY id",
        "user_info_data": "SELECT * FROM mdl_user_info_data WHERE userid >= :u ORDER BY id",
        "user_preferences": "SELECT userid, name, value FROM mdl_user_preferences WHERE userid >= :u ORDER BY id",
        "cohort_members": "SELECT cohortid, userid FROM mdl_cohort_members WHERE userid >= :u ORDER BY id",
        "user_enrolments": "SELECT enrolid, userid, status FROM mdl_user_enrolments WHERE userid >= :u ORDER BY id",
        "role_assignments": "SELECT roleid, contextid, userid FROM mdl_role_assignments WHERE userid >= :u",
        "cache_flags": "SELECT DISTINCT flagtype, name FROM mdl_cache_flags ORDER BY flagtype, name",
        "log": f"SELECT {LOGGED} FROM mdl_logstore_standard_log WHERE relateduserid >= :u ORDER BY id",
    }
    async with gateway.reading() as conn:
        for name, query in queries.items():
            rows = await conn.execute(text(query), {"u": first_user})
            found[name] = [_timeless(dict(r._mapping)) for r in rows]
        cohorts = await conn.execute(text("SELECT id, name, idnumber FROM mdl_cohort ORDER BY id"))
        found["cohort"] = [tuple(r) for r in cohorts]
    return found


async def test_overlapped_user_batches_give_the_serial_result(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
) -> None:
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    try:
        fields = await add_fields(gateway, {"code": {"datatype": "text", "forceunique": 1}})
        [course] = await add_enrolment_courses(gateway)
        k0, d0 = unique("kay"), unique("dee")
        first = await add_user(gateway, username=k0, idnumber=f"I{k0}", email=f"{k0}@example.edu")
        await add_user(gateway, username=d0, idnumber=f"I{d0}", email=f"{d0}@example.edu")
    finally:
        await gateway.close()
    code, cohort, shortname = fields["code"].column, unique("Cohort "), course.shortname
    a, b, c, k1, e, e2, e3, f, g = (unique(n) for n in ("ann", "bob", "cat", "kim", "eve", "eva", "evy", "fay", "gus"))
    columns = ("username", "firstname", "lastname", "email", "idnumber", "oldusername", "deleted", code, "cohort")
    rows = [
        # batch 1
        f"{a};A;A;{a}@example.edu;I{a};;;CA;{cohort};{shortname}",  # created, in a new cohort and the course
        f"{k1};K;K;{k1}@example.edu;I{k0};{k0};;;;",  # k0 renamed k1, its e-mail changed
        # batch 2: what batch 1 took and freed
        f"{b};B;B;{a}@example.edu;I{b};;;;{cohort};",  # a's e-mail: fails
        f"{k0};K;K;{k0}@example.edu;I{k0}2;;;CB;;{shortname}",  # k0's former username and e-mail: created
        # batch 3: what batch 2 created
        f"{c};C;C;;I{k0}2;;;;;",  # the idnumber of batch 2's new k0: not c
        f"{g};G;G;;I{g};;;CB;;",  # batch 2's unique value: fails
        # batch 4: a deletion
        f"{d0};D;D;;I{d0};;1;;;",
        f"{e};E;E;;I{e};;;;{cohort};{shortname}",
        # batch 5: what batch 4 deleted and created
        f"{f};F;F;{d0}@example.edu;I{f};;;;;",  # the deleted account's e-mail: free again
        f"{e2};E;E;;I{e};{e};;;;",  # batch 4's new account, renamed
        # batch 6: renamed again
        f"{e3};Eve;E;;I{e};{e2};;;;{shortname}",
    ]
    content = header(*columns, "course1") + "".join(f"{row}\n" for row in rows)
    source = make_url(project_db_url).database
    assert source is not None
    results: dict[str, Any] = {}
    for mode in ("0", "1", "blind"):
        monkeypatch.setenv(overlap.OFF_SWITCH, "0" if mode == "0" else "1")
        if mode == "blind":  # overlapped, but every plan claims to have read nothing: never planned again
            monkeypatch.setattr(users_operation, "read_keys", lambda *_: frozenset())
        url = copy_database(db_server, source, unique(f"{source[:30]}_u{mode}_"))
        config = database_config(tmp_path / f"u{mode}", url)
        config.set("run.batch_size", 2)
        config.set("run.safety_min_rows", 100)
        config.set("operations.users.allow_rename", True)
        config.set("operations.users.protect_emails", False)
        gateway = MoodleGateway.for_url(url, "mdl_")
        try:
            result = await run_file(config, gateway, "users", content)
            results[mode] = (report_rows(result), await state(gateway, first), result.counts, report_of(result))
        finally:
            await gateway.close()
    serial, overlapped = results["0"], results["1"]
    assert overlapped[0] == serial[0]
    assert overlapped[1] == serial[1]
    assert overlapped[2] == serial[2]
    said = {(o["line"], o["part"], o["outcome"], o["action"]) for o in serial[0]}
    expected = {
        ("2", "", "created", "create"),
        ("3", "", "updated", "rename"),
        ("4", "", "failed", "check"),
        ("5", "", "created", "create"),
        ("6", "", "failed", "check"),
        ("7", "", "failed", "check"),
        ("8", "", "deleted", "delete"),
        ("9", "", "created", "create"),
        ("10", "", "created", "create"),
        ("11", "", "updated", "rename"),
        ("12", "", "updated", "rename"),
    }
    assert expected <= said, serial[3]
    assert ("2", "cohort", "created", "cohort") in said, serial[3]
    assert ("9", "course1", "created", "enrol") in said, serial[3]
    # The dirty flags of the users enrolled (once per user and run).
    assert {("accesslib/dirtyusers", str(u["id"])) for u in serial[1]["user"] if u["username"] in (a, k0, e3)} <= {
        (flag["flagtype"], flag["name"]) for flag in serial[1]["cache_flags"]
    }
    assert len(replans) == 2, "the overlapped runs overlap their writes"
    # Batches 2, 3, 5 and 6 read what the batch before wrote (batch 3 writes nothing); planned before that write had
    # ended, they come out otherwise.
    assert replans[0].replanned == 4, replans[0].replanned
    assert replans[1].replanned == 0
    blind = results["blind"]
    assert blind[0] != serial[0]
    assert blind[1]["user"] != serial[1]["user"]


async def test_course_columns_of_existing_users_planned_with_their_batch_give_the_serial_result(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
) -> None:
    """A batch that creates no account plans its course columns with its accounts, while the batch before is written:
    one that names a group that write creates is planned again, after it (the group made once)."""
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    try:
        [course] = await add_enrolment_courses(gateway)
        names = [unique(n) for n in ("amy", "ben", "cal", "dot", "eve", "fay")]
        ids = [await add_user(gateway, username=n, idnumber=f"I{n}", email=f"{n}@example.edu") for n in names]
    finally:
        await gateway.close()
    blue = unique("Blue ")
    groups = [blue, "", blue, "", "", ""]  # batch 1 creates the group, batch 2 names it, batch 3 not
    content = header("username", "firstname", "lastname", "course1", "role1", "group1") + "".join(
        f"{name};F;L;{course.shortname};student;{group}\n" for name, group in zip(names, groups, strict=True)
    )

    async def run(config: Config, gateway: MoodleGateway) -> tuple[Any, ...]:
        result = await run_file(config, gateway, "users", content)
        async with gateway.reading() as conn:
            made = await conn.execute(text("SELECT name FROM mdl_groups WHERE courseid = :c"), {"c": course.id})
            found = sorted(name for (name,) in made)
        return report_rows(result), await state(gateway, min(ids)), found, report_of(result)

    results = await serial_and_overlapped(db_server, project_db_url, tmp_path, monkeypatch, run)
    serial, overlapped = results["0"], results["1"]
    assert overlapped[:3] == serial[:3]
    said = {(o["line"], o["part"], o["outcome"]) for o in serial[0]}
    assert {(str(line), "course1", "created") for line in range(2, 8)} <= said, serial[3]
    assert serial[2] == [blue]
    [overlapped_run] = replans
    assert overlapped_run.replanned == 1, overlapped_run.replanned  # batch 2 only


@pytest.mark.parametrize("ids", ["returned", "read back"])
async def test_new_accounts_and_their_contexts_take_the_ids_their_inserts_give(
    project_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ids: str
) -> None:
    """The ids the INSERTs give (MariaDB with innodb_autoinc_lock_mode 1; PostgreSQL's RETURNING): no read-back of
    the new accounts by username, nor of their contexts by instance; the report's ids are the stored rows', every new
    context is its account's, under the system context. Where MariaDB does not guarantee them (id_step() None), read
    back, with the same result; PostgreSQL's RETURNING gives them whatever id_step() says."""
    if ids == "read back":
        monkeypatch.setattr(MoodleGateway, "id_step", _no_step)
    config = database_config(tmp_path, project_db_url)
    config.set("run.batch_size", 3)
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The index a MariaDB read names (mariadb_plans.py) left out: the same lookup on every server.
        statements.append(re.sub(r" FORCE INDEX \(\w+\)", "", " ".join(statement.split())))

    names = [unique("idx") for _ in range(7)]
    content = header("username", "firstname", "lastname", "idnumber") + "".join(f"{n};F;L;I{n}\n" for n in names)
    try:
        event.listen(gateway.engine.sync_engine, "before_cursor_execute", seen)
        try:
            result = await run_file(config, gateway, "users", content)
        finally:
            event.remove(gateway.engine.sync_engine, "before_cursor_execute", seen)
        assert result.counts == {"created": 7}, report_of(result)
        user = gateway.schema.user
        async with gateway.reading() as conn:
            query = select(user.c.username, user.c.id).where(user.c.username.in_(names))
            stored = {r.username: r.id for r in await conn.execute(query)}
            contexts = await instance_contexts(gateway, conn, ContextLevel.USER, list(stored.values()))
    finally:
        await gateway.close()
    reported = {o["key"]: o["message"] for o in report_rows(result) if o["part"] == ""}
    assert reported == {name: f"User account added: id {stored[name]}, '{name}'" for name in names}
    assert sorted(contexts) == sorted(stored.values())
    assert all(context.path == f"/1/{context.id}" for context in contexts.values())
    assert len({context.id for context in contexts.values()}) == len(names)
    # Per batch (3), the finder looks the usernames up once; a read-back of the new accounts would be a second such
    # SELECT, and one of their contexts by instanceid.
    by_username = [s for s in statements if s.startswith(f"{USERNAMES} IN")]
    by_instance = [s for s in statements if s.startswith("SELECT mdl_context.instanceid, mdl_context.id")]
    if ids == "returned" or gateway.kind == "postgresql":
        assert (len(by_username), len(by_instance)) == (3, 0), [*by_username, *by_instance]
    else:
        assert (len(by_username), len(by_instance)) == (6, 3), [*by_username, *by_instance]


async def _no_step(self: MoodleGateway) -> None:
    return None
