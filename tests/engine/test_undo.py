"""Undo of a run (engine/changes/): on the real Moodle 4.5 dump, a users run and an enrolments run undone leave the
database as it was before them, table by table; a record changed since is a conflict, left alone; a dry run of the
undo predicts it exactly; runs that cannot be undone are refused before anything is done."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support import table_compare
from tests.support.course_factories import add_enrolment_courses, add_group, add_users
from tests.support.factories import unique
from tests.support.fault_runs import KillPoint, run_until, toolsync
from tests.support.fault_servers import count_users
from tests.support.headless_runs import users_file
from tests.support.operation_files import header, inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.changes.capture import RunChanges, row_digests
from toolsync_tui.engine.changes.journal import ChangeJournal, journal_path
from toolsync_tui.engine.changes.undo import undo_refusal, undo_run
from toolsync_tui.engine.datadir.ledger import ledger_for_site
from toolsync_tui.engine.datadir.retention import DAY, remove_expired
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.recording import RUN_SESSION, nothing_more_recorded
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN
from toolsync_tui.engine.run.log import RunLog, RunRecord
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult, run_operation

Site = tuple[Config, MoodleGateway]
# Set aside in the comparison, and why: the standard log keeps the run's events (the run happened; checked apart), and
# dirty-user flags are cache markers the undo writes forward (as the families do after their writes).
NOT_COMPARED = {"logstore_standard_log", "cache_flags"}


@pytest.fixture
def dump_site(dump_site: Site, server_kind: str) -> Site:
    """conftest's dump_site with the safety threshold's floor raised: these tests remove a few records of a small
    site on purpose. `server_kind` is named for pytest: it does not see the parameters of the fixture an override
    hides, so a test asking for dump_site alone would not run once per server."""
    dump_site[0].set("run.safety_min_rows", 100)
    return dump_site


async def run(config: Config, gateway: MoodleGateway, name: str, content: str, **options: Any) -> RunResult:
    inbox_file(config, config.operation(name).file, content)
    return await run_operation(config, gateway, name, **options)


def last_id(config: Config) -> str:
    record = RunLog(config.data_dir).recent(1)[0]
    assert record.run is not None
    return record.run


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with table_compare.connect(url) as db, db.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


def differences(before: dict[str, int], url: str) -> dict[str, str]:
    """Tables whose checksum differs from `before`, set-asides apart."""
    after = table_compare.checksums(url)
    return {name: "changed" for name in table_compare.changed_tables(before, after) if name not in NOT_COMPARED}


def log_rows(url: str) -> int:
    return int(sql(url, "SELECT COUNT(*) FROM mdl_logstore_standard_log")[0][0])


async def test_a_users_run_undone_leaves_every_table_as_before(dump_site: Site, dump_db_url: str) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway)
    kept, renamed, suspended = unique("keep"), unique("rename"), unique("susp")
    columns = ("username", "firstname", "lastname", "email")
    setup = header(*columns) + "".join(f"{u};F;L;{u}@example.org\n" for u in (kept, renamed, suspended))
    assert (await run(config, gateway, "users", setup)).counts == {"created": 3}
    before, logged = table_compare.checksums(dump_db_url), log_rows(dump_db_url)

    new = [unique("new") for _ in range(3)]
    content = header("username", "firstname", "lastname", "email", "suspended", "course1", "role1")
    content += "".join(f"{u};N;{u};{u}@example.org;0;{course.shortname};student\n" for u in new)
    content += f"{renamed};Changed;Name;changed-{renamed}@example.org;0;{course.shortname};student\n"
    content += f"{suspended};F;L;{suspended}@example.org;1;;\n"
    result = await run(config, gateway, "users", content)
    assert result.counts == {"created": 3, "updated": 2}, report_of(result)
    assert differences(before, dump_db_url)  # the run changed tables
    ledger = await ledger_for_site(config.data_dir, gateway)
    new_ids = {int(i) for (i,) in sql(dump_db_url, "SELECT id FROM mdl_user WHERE username IN (%s, %s, %s)", *new)}
    assert new_ids <= ledger.owned("user")  # the run's new accounts are toolsync's

    undone = await undo_run(config, gateway, "last")

    assert undone.counts.get("failed", 0) == 0, report_of(undone)
    assert undone.counts["deleted"] > 0
    assert undone.counts["updated"] > 0
    assert differences(before, dump_db_url) == {}, report_of(undone)
    assert log_rows(dump_db_url) > logged  # the run's events stay in the standard log
    record = RunLog(config.data_dir).recent(1)[0]
    assert (record.operation, record.file) == ("undo", f"run {result_id(config, 1)}")
    assert not (ledger.owned("user") & new_ids)  # removed: no longer ours


def result_id(config: Config, back: int) -> str:
    """The id of the run `back` runs before the last one."""
    record = RunLog(config.data_dir).recent(back + 1)[back]
    assert record.run is not None
    return record.run


async def test_an_enrolments_run_undone_leaves_every_table_as_before(dump_site: Site, dump_db_url: str) -> None:
    config, gateway = dump_site
    for name in ("course_identifier", "user_identifier"):
        config.set(f"operations.enrols.{name}", "id")
    [course] = await add_enrolment_courses(gateway)
    ann, bob, carl, dan = await add_users(gateway, 4)
    green = await add_group(gateway, course.id, unique("Green"))
    head = "rolename;cid;uid;cmd;enrol;gcmd;g1\n"
    setup = head + "".join(f"student;{course.id};{u};add;manual;gadd;{green}\n" for u in (ann, bob))
    assert (await run(config, gateway, "enrols", setup)).counts == {"created": 2}
    before, logged = table_compare.checksums(dump_db_url), log_rows(dump_db_url)

    content = (
        head
        + f"student;{course.id};{carl};add;manual;gaddcreate;{unique('Red')}\n"  # enrolment, role, new group, member
        + f"teacher;{course.id};{dan};add;manual;gadd;{green}\n"
        + f";{course.id};{bob};del;manual;;\n"  # unenrolled: enrolment, role and membership removed
        + f"student;{course.id};{ann};add;manual;gdel;{green}\n"  # leaves the group
    )
    shift = f"rolename;cid;uid;cmd\neditingteacher;{course.id};{ann};shift\n"  # a role change
    first = await run(config, gateway, "enrols", content)
    assert first.counts.get("failed", 0) == 0, report_of(first)
    shifted = await run(config, gateway, "enrols", shift)
    assert shifted.counts == {"updated": 1}, report_of(shifted)

    undone_shift = await undo_run(config, gateway, "last")
    undone = await undo_run(config, gateway, result_id(config, 2))

    for result in (undone_shift, undone):
        assert result.counts.get("failed", 0) == 0, report_of(result)
    assert undone.counts["deleted"] > 0
    assert undone.counts["updated"] > 0
    assert differences(before, dump_db_url) == {}, report_of(undone)
    assert log_rows(dump_db_url) > logged
    report = report_of(undone)
    assert "user_enrolments id" in report
    assert "removed by the run: put back" in report


async def test_a_record_changed_since_is_a_conflict_left_alone_and_a_dry_run_predicts_it(
    dump_site: Site, dump_db_url: str
) -> None:
    config, gateway = dump_site
    mine, theirs, old, other = unique("mine"), unique("theirs"), unique("old"), unique("other")
    columns = header("username", "firstname", "lastname", "email")
    await run(config, gateway, "users", columns + "".join(f"{u};F;L;{u}@example.org\n" for u in (old, other)))
    content = columns + "".join(f"{u};F;L;{u}@example.org\n" for u in (mine, theirs))
    content += "".join(f"{u};Renamed;L;{u}@example.org\n" for u in (old, other))
    assert (await run(config, gateway, "users", content)).counts == {"created": 2, "updated": 2}
    # By hand after the run: an account it created, and one it updated.
    sql(dump_db_url, "UPDATE mdl_user SET firstname = 'By hand' WHERE username IN (%s, %s)", theirs, old)
    ids = dict(sql(dump_db_url, "SELECT username, id FROM mdl_user WHERE username IN (%s, %s)", theirs, old))
    unchanged = table_compare.checksums(dump_db_url)

    dry = await undo_run(config, gateway, "last", dry_run=True)

    config.save()
    command = [sys.executable, "-m", "toolsync_tui", "--config", str(config.path), "undo", "last", "--dry-run"]
    ran = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1, ran.stderr  # conflicts: exit code 1, as failed rows
    assert ran.stdout.startswith("undo: ")
    assert "2 failed" in ran.stdout
    assert table_compare.checksums(dump_db_url) == unchanged  # the dry runs wrote nothing
    assert undo_refusal(config.data_dir, "last") is None  # and the run can still be undone
    real = await undo_run(config, gateway, "last")
    assert dry.counts == real.counts
    assert real.counts["failed"] == 2, report_of(real)
    assert real.counts["deleted"] > 0
    assert real.exit_code == 1
    report = report_of(real)
    assert f"user id {ids[theirs]}: conflict: changed since the run; left as it is" in report
    assert f"user id {ids[old]}: conflict: changed since the run (firstname changed); left as it is" in report
    assert "DRY RUN" in report_of(dry)
    found = sql(
        dump_db_url,
        "SELECT username, firstname FROM mdl_user WHERE username IN (%s, %s, %s, %s)",
        mine,
        theirs,
        old,
        other,
    )
    # The changed accounts are left as they are; the rest is undone: the created one gone, the updated one restored.
    assert sorted(found) == sorted([(theirs, "By hand"), (old, "By hand"), (other, "F")])


async def test_runs_that_cannot_be_undone_are_refused_before_anything_is_done(
    dump_site: Site, dump_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, gateway = dump_site
    dry = unique("dry")
    content = header("username", "firstname", "lastname", "email", "suspended") + f"{dry};F;L;{dry}@x.org;1\n"
    assert (await run(config, gateway, "users", content, dry_run=True)).counts == {"created": 1}
    assert not (config.data_dir / "changes").exists()  # a dry run records nothing
    assert undo_refusal(config.data_dir, "last") == "nothing to undo: no run on record has written anything"
    assert "was a dry run: it wrote nothing to undo" in (undo_refusal(config.data_dir, last_id(config)) or "")
    assert undo_refusal(config.data_dir, "0123456789abcdef") == "no run 0123456789abcdef in the run log"
    assert "is not a run" in (undo_refusal(config.data_dir, "12ab") or "")
    victim = unique("gone")
    await run(
        config,
        gateway,
        "users",
        header("username", "firstname", "lastname", "email") + f"{victim};F;L;{victim}@x.org\n",
    )
    deleted = await run(config, gateway, "deleteusers", f"username\n{victim}\n")
    assert deleted.counts == {"deleted": 1}, report_of(deleted)
    before = table_compare.checksums(dump_db_url)

    refusal = undo_refusal(config.data_dir, "last")
    assert refusal is not None
    assert "(deleteusers, userdelete.csv) cannot be undone: it deleted users (Moodle's deletion" in refusal
    with pytest.raises(RunProblem, match="cannot be undone: it deleted users"):
        await undo_run(config, gateway, "last")
    config.save()
    assert await asyncio.to_thread(main, ["--config", str(config.path), "undo", "last"]) == EXIT_CANNOT_RUN
    assert "undo: run " in capsys.readouterr().err  # the command line says why, before anything is done
    assert table_compare.checksums(dump_db_url) == before
    assert [r.operation for r in RunLog(config.data_dir).recent(5)] == ["deleteusers", "users", "users"]  # no undo

    created = result_id(config, 1)
    await undo_run(config, gateway, created)
    assert "was already undone" in (undo_refusal(config.data_dir, created) or "")
    assert "is an undo: an undo cannot be undone" in (undo_refusal(config.data_dir, "last") or "")

    again = unique("again")
    await run(config, gateway, "users", f"username;firstname;lastname;email\n{again};F;L;{again}@x.org\n")
    assert (await run(config, gateway, "users", f"username;firstname;lastname;deleted\n{again};F;L;1\n")).counts == {
        "deleted": 1
    }
    assert "cannot be undone: it deleted users" in (undo_refusal(config.data_dir, "last") or "")


async def test_a_run_killed_after_a_commit_can_still_be_undone(dump_site: Site, dump_db_url: str) -> None:
    config, gateway = dump_site
    config.set("run.batch_size", 100)
    config.save()
    prefix = unique("killed")
    file = users_file(config.path.parent / "userimport.csv", prefix, 600)
    before = table_compare.checksums(dump_db_url)

    point = KillPoint(7, signal.SIGKILL, 0.0, 0.0)
    stopped = run_until(
        point, 150, lambda: count_users(dump_db_url, prefix), toolsync(config.path, "users", file), config.path.parent
    )

    assert stopped.returncode == -signal.SIGKILL, stopped.describe()
    written = count_users(dump_db_url, prefix)
    assert 150 <= written < 600
    journal = ChangeJournal(journal_path(config.data_dir, last_id(config)))
    with sqlite3.connect(journal.path) as db:  # as if each kill came between Moodle's commit and the journal's mark
        db.execute("UPDATE batches SET committed = 0")
    undone = await undo_run(config, gateway, "last")

    assert count_users(dump_db_url, prefix) == 0, report_of(undone)
    assert undone.counts.get("failed", 0) == 0
    assert differences(before, dump_db_url) == {}, report_of(undone)


async def all_rows(gateway: MoodleGateway) -> dict[str, list[tuple[Any, ...]]]:
    """Every declared table's rows, sorted (the standard log and cache markers aside, as above)."""
    found = {}
    async with gateway.reading() as conn:
        for table in gateway.schema.metadata.sorted_tables:
            name = table.name.removeprefix(gateway.schema.prefix)
            if name not in NOT_COMPARED:
                found[name] = sorted((tuple(r) for r in await conn.execute(select(table))), key=repr)
    return found


@pytest.mark.parametrize("interleaved", [False, True], ids=["consecutive-ids", "ids-read-back"])
async def test_created_ids_are_caught_on_sqlite_and_mariadb_and_read_back_when_interleaved(
    site: Site, interleaved: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the ids above the table's highest before the INSERT; MariaDB: lastrowid and the statement's row count
    (innodb_autoinc_lock_mode 1), or read back as under mode 2 (interleaved ids), forced here; PostgreSQL: the ids
    its INSERT ... RETURNING gives (the forced read-back does not apply there)."""
    config, gateway = site
    config.set("run.guard_min_share", 0)
    if interleaved:
        start = RunChanges.start.__func__  # type: ignore[attr-defined]

        async def reading_back(cls: type[RunChanges], *args: Any) -> RunChanges:
            changes: RunChanges = await start(cls, *args)
            changes.consecutive = False
            return changes

        monkeypatch.setattr(RunChanges, "start", classmethod(reading_back))
    [course] = await add_enrolment_courses(gateway)
    before = await all_rows(gateway)
    names = [unique("ids") for _ in range(5)]
    content = header("username", "firstname", "lastname", "email", "course1", "role1")
    content += "".join(f"{u};F;L;{u}@example.org;{course.shortname};student\n" for u in names)
    assert (await run(config, gateway, "users", content)).counts == {"created": 5}

    undone = await undo_run(config, gateway, "last")

    assert undone.counts.get("failed", 0) == 0, report_of(undone)
    after = await all_rows(gateway)
    assert {t for t in before if before[t] != after[t]} == set(), report_of(undone)


def test_the_change_journal_is_removed_with_the_reports_past_retention(tmp_path: Path) -> None:
    store = DataStore(tmp_path / "data")
    store.ensure()
    journal = ChangeJournal(journal_path(store.root, "a" * 32))
    journal.set_meta("run", "a" * 32)
    fresh = ChangeJournal(journal_path(store.root, "b" * 32))
    fresh.set_meta("run", "b" * 32)
    old = time.time() - 31 * DAY
    os.utime(journal.path, (old, old))

    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600  # private, as the ledger and the reports
    assert stat.S_IMODE(journal.path.parent.stat().st_mode) == 0o700

    removed = remove_expired(store, 30)

    assert removed == [journal.path]
    assert fresh.exists()
    assert "has no record of its changes" in (_refusal_for(store.root, "a" * 32) or "")


def _refusal_for(data_dir: Path, run: str) -> str | None:
    RunLog(data_dir).add(RunRecord("users", "userimport.csv", "2026-01-01T00:00:00", run=run))
    return undo_refusal(data_dir, run)


async def test_a_cohorts_run_with_overlapped_writes_undone_leaves_every_table_as_before(
    dump_site: Site, dump_db_url: str
) -> None:
    """Cohorts write a batch while the next is planned (run/overlap.py): those writes are recorded too."""
    config, gateway = dump_site
    config.set("operations.cohorts.cohort_identifier", "idnumber")
    config.set("operations.cohorts.user_identifier", "id")
    config.set("run.batch_size", 2)  # several batches: writes in flight while the next batch is planned
    ann, bob, cid = await add_users(gateway, 3)
    kept = unique("C")
    await run(config, gateway, "cohorts", f"cmd;cidnumber;cname;userid\nadd;{kept};Kept;{ann}\nadd;{kept};;{bob}\n")
    before = table_compare.checksums(dump_db_url)

    content = "cmd;cidnumber;cname;userid\n" + "".join(
        f"add;{code};Made;{user}\n" for code in (unique("C"), unique("C")) for user in (ann, bob, cid)
    )
    content += f"add;{kept};;{cid}\ndel;{kept};;{ann}\n"
    result = await run(config, gateway, "cohorts", content)
    assert result.counts.get("failed", 0) == 0, report_of(result)

    undone = await undo_run(config, gateway, "last")

    assert undone.counts.get("failed", 0) == 0, report_of(undone)
    assert undone.counts["deleted"] >= 8  # two cohorts, their six memberships, cid's in the kept one
    assert undone.counts["updated"] == 1  # ann's membership of the kept cohort, put back
    assert differences(before, dump_db_url) == {}, report_of(undone)


async def test_a_feed_of_memberships_sealed_before_its_log_rows_is_undone_to_the_table(
    dump_site: Site, dump_db_url: str
) -> None:
    """Batches that only add members to existing cohorts are recorded before their log rows are written (the journal
    is written meanwhile, moodle/recording.nothing_more_recorded): undone, every table is as before, log aside."""
    config, gateway = dump_site
    config.set("operations.cohorts.cohort_identifier", "idnumber")
    config.set("operations.cohorts.user_identifier", "id")
    config.set("run.batch_size", 2)
    users = await add_users(gateway, 5)
    codes = [unique("C"), unique("C")]
    await run(config, gateway, "cohorts", "cmd;cidnumber;cname;userid\n" + "".join(f"add;{c};Feed;\n" for c in codes))
    before = table_compare.checksums(dump_db_url)

    content = "cmd;cidnumber;cname;userid\n" + "".join(f"add;{c};;{u}\n" for c in codes for u in users)
    result = await run(config, gateway, "cohorts", content)
    assert result.counts == {"created": 10}, report_of(result)

    undone = await undo_run(config, gateway, "last")

    assert undone.counts == {"deleted": 10}, report_of(undone)
    assert differences(before, dump_db_url) == {}, report_of(undone)


async def test_a_write_recorded_after_its_transaction_said_it_records_nothing_more_rolls_the_batch_back(
    site: tuple[Config, MoodleGateway], tmp_path: Path
) -> None:
    """After nothing_more_recorded(), only what is never recorded (log rows) may follow: a recorded write fails the
    transaction rather than commit a change its journal misses."""
    _, gateway = site
    changes = await RunChanges.start(tmp_path, gateway, "f" * 32, "cohorts")
    members, log = gateway.schema.cohort_members, gateway.schema.logstore_standard_log
    cohort = 9_000_000 + int(time.time()) % 100_000
    logged = {"eventname": unique("e"), "component": "core", "action": "a", "target": "t", "crud": "c", "edulevel": 0,
              "contextid": 1, "contextlevel": 10, "contextinstanceid": 0, "userid": 0, "anonymous": 0,
              "timecreated": 0}  # fmt: skip

    async def batch() -> None:
        async with gateway.transaction() as conn:
            changes.open(conn)
            try:
                await gateway.insert_many(conn, members, [{"cohortid": cohort, "userid": 1, "timeadded": 1}])
                await nothing_more_recorded(conn)
                await gateway.insert_many(conn, log, [logged])  # never recorded: fine
                await gateway.insert_many(conn, members, [{"cohortid": cohort, "userid": 2, "timeadded": 1}])
            finally:
                changes.settle(conn, committed=False)

    with pytest.raises(RuntimeError, match="written after the transaction's record was taken"):
        await batch()
    async with gateway.reading() as conn:
        found = await conn.execute(select(members.c.userid).where(members.c.cohortid == cohort))
        assert found.all() == []


@pytest.mark.parametrize("name", ["Ünïcode", "Plain"])
async def test_digests_read_aside_while_the_log_rows_are_written_are_those_the_batch_commits(
    site: tuple[Config, MoodleGateway], tmp_path: Path, name: str
) -> None:
    """A batch sealed before its log rows (nothing_more_recorded): on MariaDB its new rows' digests are taken while the
    log rows are written on its own connection, read on another, uncommitted (accented text), or computed from the
    values written (plain ASCII text); elsewhere in the transaction at once. Either way the journal gets the digests
    of the rows as the batch commits them, the ones undo compares with."""
    _, gateway = site
    changes = await RunChanges.start(tmp_path, gateway, "a" * 32, "cohorts")
    cohort, log = gateway.schema.cohort, gateway.schema.logstore_standard_log
    stamp = int(time.time() * 1000) % 1_000_000
    rows = [{"contextid": 1, "name": f"{name} {n}", "idnumber": f"aside-{stamp}-{n}", "description": "",
             "descriptionformat": 1, "visible": 1, "component": "", "timecreated": 0,
             "timemodified": 1_700_000_000} for n in range(3)]  # fmt: skip
    logged = {"eventname": unique("e"), "component": "core", "action": "a", "target": "t", "crud": "c", "edulevel": 0,
              "contextid": 1, "contextlevel": 10, "contextinstanceid": 0, "userid": 0, "anonymous": 0,
              "timecreated": 0}  # fmt: skip

    session = RUN_SESSION.set(changes)
    try:
        async with gateway.transaction() as conn:  # the run's: journalled ahead of the commit
            capture, _ = changes.open_batches[id(conn)]
            await gateway.insert_many(conn, cohort, rows)
            await nothing_more_recorded(conn)
            assert capture.digested is (gateway.kind != "mariadb")  # MariaDB: taken meanwhile, not yet
            await gateway.insert_many(conn, log, [logged])  # meanwhile, on the batch's own connection
            [entry] = capture.entries
            ids = [int(r[0]) for r in entry.rows]
            committed = await row_digests(gateway, conn, entry.table, entry.columns, ids)
    finally:
        RUN_SESSION.reset(session)
    assert len(committed) == 3
    [batch] = ChangeJournal(journal_path(tmp_path, "a" * 32)).batches()
    assert batch.committed
    assert {int(i): d for i, d in batch.entries[0].rows} == committed


async def test_rows_stored_as_written_are_digested_from_their_values_as_the_server_digests_them(
    site: tuple[Config, MoodleGateway], tmp_path: Path
) -> None:
    """A new row of integers, plain ASCII text and NULLs is digested from the values written (no read back, MariaDB
    and PostgreSQL): the digest the server computes of it, the one undo compares with. Other text, or a string
    written to an integer column, is read back."""
    _, gateway = site
    changes = await RunChanges.start(tmp_path, gateway, "d" * 32, "cohorts")
    cohort = gateway.schema.cohort
    stamp = int(time.time() * 1000) % 1_000_000

    def row(name: str, visible: object) -> dict[str, object]:
        return {"contextid": 1, "name": name, "idnumber": f"digest-{stamp}-{name}", "description": "",
                "descriptionformat": 1, "visible": visible, "component": "", "timecreated": 0,
                "timemodified": 1_700_000_000}  # fmt: skip

    async with gateway.transaction() as conn:
        changes.open(conn)
        try:
            await gateway.insert_many(conn, cohort, [row("Plain 1 'quoted' %", 1), row("", 0) | {"idnumber": None}])
            await gateway.insert_many(conn, cohort, [row("Ünïcode", 1)])
            await gateway.insert_many(conn, cohort, [row("back\\slash", 1)])
            await gateway.insert_many(conn, cohort, [row("as text", "1")])
            capture, _ = changes.open_batches[id(conn)]
            await capture.seal(conn)
            read = {}
            for entry in capture.entries:
                ids = [int(r[0]) for r in entry.rows]
                read[entry.rows[0][1]] = await row_digests(gateway, conn, entry.table, entry.columns, ids)
        finally:
            changes.settle(conn, committed=False)
    assert [len(entry.rows) for entry in capture.entries] == [2, 1, 1, 1]
    for entry in capture.entries:
        assert {int(i): d for i, d in entry.rows} == read[entry.rows[0][1]]
    as_written = [id(entry) in capture.written for entry in capture.entries]
    assert as_written == ([False] * 4 if gateway.kind == "sqlite" else [True, False, False, False])


async def test_rows_created_then_updated_with_values_stored_as_written_keep_digests_from_their_values(
    site: tuple[Config, MoodleGateway], tmp_path: Path
) -> None:
    """A row the transaction created and then updates (a batch's new groups, touched as members join) with values
    stored as written keeps its digest from the values, as updated: the one the server computes. An update with a
    value read back (text that is not plain ASCII) makes the table's new rows read back at the seal."""
    _, gateway = site
    changes = await RunChanges.start(tmp_path, gateway, "e" * 32, "cohorts")
    cohort = gateway.schema.cohort
    stamp = int(time.time() * 1000) % 1_000_000

    def row(number: int, kept: bool) -> dict[str, object]:
        return {"contextid": 1, "name": f"n{number}", "idnumber": f"rewritten-{stamp}-{number}-{kept}",
                "description": "", "descriptionformat": 1, "visible": 1, "component": "", "timecreated": 0,
                "timemodified": 0}  # fmt: skip

    for later, kept in (("plain", True), ("Ünïcode", False)):
        async with gateway.transaction() as conn:
            changes.open(conn)
            try:
                await gateway.insert_many(conn, cohort, [row(number, kept) for number in range(3)])
                capture, _ = changes.open_batches[id(conn)]
                ids = [int(r[0]) for r in capture.entries[0].rows]
                changed = {"timemodified": 1_700_000_000, "visible": 0}
                await gateway.update_many(conn, cohort, "id", [{"id": i, **changed} for i in ids[:2]])
                await gateway.update_many(conn, cohort, "id", [{"id": ids[0], "name": later}])
                await capture.seal(conn)
                [entry] = capture.entries
                read = await row_digests(gateway, conn, entry.table, entry.columns, ids)
            finally:
                changes.settle(conn, committed=False)
        assert {int(i): d for i, d in entry.rows} == read
        assert (id(entry) in capture.written and not capture.new_columns) == (kept and gateway.kind != "sqlite")


async def test_a_new_record_that_a_later_run_uses_is_a_conflict_and_stays(dump_site: Site, dump_db_url: str) -> None:
    config, gateway = dump_site
    for name in ("course_identifier", "user_identifier"):
        config.set(f"operations.enrols.{name}", "id")
    [course] = await add_enrolment_courses(gateway)
    used, unused = unique("used"), unique("unused")
    columns = header("username", "firstname", "lastname", "email")
    await run(config, gateway, "users", columns + "".join(f"{u};F;L;{u}@example.org\n" for u in (used, unused)))
    users_run = last_id(config)
    [(used_id,)] = sql(dump_db_url, "SELECT id FROM mdl_user WHERE username = %s", used)
    enrolled = await run(
        config, gateway, "enrols", f"rolename;cid;uid;cmd;enrol\nstudent;{course.id};{used_id};add;manual\n"
    )
    assert enrolled.counts == {"created": 1}

    undone = await undo_run(config, gateway, users_run)

    assert f"user id {used_id}: conflict: in use since the run (1 user_enrolments row names it)" in report_of(undone)
    found = sql(dump_db_url, "SELECT username FROM mdl_user WHERE username IN (%s, %s)", used, unused)
    assert found == [(used,)]  # the enrolled account stays, with its enrolment; the other is gone


@pytest.mark.parametrize(
    ("operation", "words"),
    [
        ("deletecourses", "it deleted courses through Moodle's own code"),
        ("resetcourses", "it reset courses through Moodle's own code"),
        ("deleteusers", "it deleted users (Moodle's deletion of a user cannot be reversed)"),
    ],
)
def test_operations_through_moodles_own_code_are_refused_by_name(tmp_path: Path, operation: str, words: str) -> None:
    """Refused from the run log alone, before any record of changes is read (a bridge run writes its own way)."""
    run = "c" * 32
    RunLog(tmp_path).add(RunRecord(operation, "file.csv", "2026-01-01T00:00:00", run=run))
    assert undo_refusal(tmp_path, run[:8]) == f"run cccccccc ({operation}, file.csv) cannot be undone: {words}"


async def test_an_undone_course_update_gets_its_settings_back_and_a_new_cache_revision(dump_site: Site) -> None:
    """Moodle rebuilds a course's cached settings when its cacherev moves: restoring its row must move it too."""
    config, gateway = dump_site
    config.set("operations.courses.forceupdate", True)
    short = unique("UC")
    assert (await run(config, gateway, "courses", f"shortname;fullname\n{short};Before\n")).counts == {"created": 1}
    assert (await run(config, gateway, "courses", f"shortname;fullname\n{short};After\n")).counts == {"updated": 1}
    [updated] = await rows_of(gateway, gateway.schema.course, shortname=short)

    undone = await undo_run(config, gateway, "last")

    assert undone.counts == {"updated": 1}, report_of(undone)
    [restored] = await rows_of(gateway, gateway.schema.course, shortname=short)
    assert restored["fullname"] == "Before"
    assert restored["cacherev"] > updated["cacherev"]
