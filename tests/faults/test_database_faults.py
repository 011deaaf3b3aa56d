"""Database faults (issue 20, items 5 and 7): each server error has its effect and its words, and a stalled server
cannot hang a run.

On the real MariaDB loaded with the Moodle 4.5 dump: a trigger's SIGNAL fails its batch and the run goes on; a lock
wait is retried; a missing privilege stops the run once, naming it. A stalled (SIGSTOP) or killed server is a server
of the test's own, never the session's server other modules use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from tests.conftest import mariadb_config
from tests.support.course_factories import add_cohort, add_users
from tests.support.factories import unique
from tests.support.mariadb_server import SHARED_DUMP, ThrowawayMariaDB
from tests.support.operation_files import header, identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.moodle.db_errors import Fault, classify, describe
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.run.exits import EXIT_ROWS_FAILED
from toolsync_tui.engine.run.lock import RunLock
from toolsync_tui.engine.run.pipeline import Progress, RunProblem, RunResult

Site = tuple[Config, MoodleGateway]
NAMES = header("username", "firstname", "lastname", "email")
HANG = 60  # seconds: past this a run counts as hung (a test never waits for ever)
# Lock waits that ran out since the server started (InnoDB's metric, enabled by default).
TIMEOUTS = "SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_timeouts'"


def users_file(names: list[str], first: str = "Ann") -> str:
    return NAMES + "".join(f"{name};{first};Test;{name}@example.com\n" for name in names)


async def usernames(gateway: MoodleGateway, names: list[str]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found.update(str(row["username"]) for row in await rows_of(gateway, gateway.schema.user, username=name))
    return found


# -- refusals, retries, privileges (the session's server) -------------------------------------------------------


async def test_a_trigger_refusal_fails_its_batch_only_and_the_run_goes_on(dump_site: Site) -> None:
    config, gateway = dump_site
    config.set("run.batch_size", 2)
    names = [unique("refused") for _ in range(6)]
    trigger = unique("refuse_")
    async with gateway.transaction() as conn:
        await conn.exec_driver_sql(
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_user FOR EACH ROW IF NEW.username = '{names[3]}' "
            "THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the site policy'; END IF"
        )
    try:
        result = await run_file(config, gateway, "users", users_file(names))
    finally:
        async with gateway.transaction() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
    assert result.counts == {"created": 4, "failed": 2}, report_of(result)
    assert result.exit_code == EXIT_ROWS_FAILED  # rows failed, the run itself did not stop (2)
    report = report_of(result)
    refusal = (
        "failed (write) the database refused the batch: refused by the site policy (error 1644); "
        "nothing of this batch was written"
    )
    assert f"line 4: {refusal}" in report
    assert f"line 5: {refusal}" in report
    assert await usernames(gateway, names) == {names[0], names[1], names[4], names[5]}


async def test_a_lock_wait_timeout_retries_the_batch_which_is_then_written(dump_site: Site, dump_db_url: str) -> None:
    config, holder = dump_site
    config.set("run.batch_size", 2)
    names = [unique("locked") for _ in range(4)]
    created = await run_file(config, holder, "users", users_file(names))
    assert created.counts == {"created": 4}, report_of(created)
    gateway = impatient(dump_db_url)
    try:
        async with held(holder, "SELECT id FROM mdl_user WHERE username = %s FOR UPDATE", (names[0],)):
            result = await asyncio.wait_for(run_file(config, gateway, "users", users_file(names, first="Bea")), HANG)
    finally:
        await gateway.close()
    assert result.counts == {"updated": 4}, report_of(result)
    assert result.exit_code == 0
    assert retried_notes(result) == ["lines 2-3"]
    rows = [row for name in names for row in await rows_of(holder, holder.schema.user, username=name)]
    assert {row["firstname"] for row in rows} == {"Bea"}


async def test_an_overlapped_write_that_waits_too_long_is_retried_and_written(
    dump_site: Site, dump_db_url: str
) -> None:
    """The cohorts file overlaps its writes: the batch whose write met the lock wait is written again on its own,
    and the batch planned meanwhile is planned again after it."""
    config, holder = dump_site
    config.set("run.batch_size", 2)
    identifiers_by_id(config, "cohorts", "user_identifier")
    users = await add_users(holder, 6)
    code = unique("C")
    cohort = await add_cohort(holder, "Waiting", idnumber=code)
    content = "cidnumber;userid\n" + "".join(f"{code};{user}\n" for user in users)
    gateway = impatient(dump_db_url)
    # Another transaction adds users[2] first and keeps it uncommitted: toolsync's insert of it waits for its fate.
    added = "INSERT INTO mdl_cohort_members (cohortid, userid, timeadded) VALUES (%s, %s, 1)"
    try:
        async with held(holder, added, (cohort, users[2])):
            result = await asyncio.wait_for(run_file(config, gateway, "cohorts", content), HANG)
    finally:
        await gateway.close()
    assert result.counts == {"created": 6}, report_of(result)
    assert retried_notes(result) == ["lines 4-5"]
    async with holder.reading() as conn:
        found = await conn.exec_driver_sql("SELECT userid FROM mdl_cohort_members WHERE cohortid = %s", (cohort,))
        assert {int(row[0]) for row in found} == set(users)


def impatient(url: str) -> MoodleGateway:
    """A gateway whose connections give up a lock wait after 1 s (MariaDB's default: 50 s)."""
    gateway = MoodleGateway.for_url(url, "mdl_")
    event.listen(gateway.engine.sync_engine, "connect", _session_lock_wait)
    return gateway


def _session_lock_wait(dbapi_connection: Any, record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
    cursor.close()


@contextlib.asynccontextmanager
async def held(holder: MoodleGateway, statement: str, params: tuple[Any, ...]) -> AsyncIterator[None]:
    """What `statement` locks, held by another connection's open transaction until a wait for it has run out (the
    server counts it): then it is let go (rolled back)."""
    async with holder.reading() as conn:
        before = (await conn.exec_driver_sql(TIMEOUTS)).scalar_one()
    lock = await holder.engine.connect()
    await lock.begin()
    await lock.exec_driver_sql(statement, params)

    async def release() -> None:
        try:
            deadline = time.monotonic() + HANG
            while time.monotonic() < deadline:
                async with holder.reading() as conn:
                    if (await conn.exec_driver_sql(TIMEOUTS)).scalar_one() > before:
                        break
                await asyncio.sleep(0.05)
        finally:
            await lock.rollback()
            await lock.close()

    releasing = asyncio.create_task(release())
    try:
        yield
    finally:
        if not releasing.done():
            releasing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await releasing


def retried_notes(result: RunResult) -> list[str]:
    """The batches the run's notes (and report) say were tried again after a lock wait timeout, as their lines."""
    wait = "another connection to the database held a lock this batch needed: Lock wait timeout exceeded"
    found = [note for note in result.notes if " were tried again after " in note]
    assert all(f" were tried again after {wait}" in note for note in found), found
    assert all(note in report_of(result) for note in found)
    return [note.split(" were tried again")[0] for note in found]


async def test_a_deadlock_is_classed_as_retryable_with_its_words(dump_gateway: MoodleGateway) -> None:
    """Two connections each holding a row the other wants: the server kills one transaction with error 1213."""
    first, second = await dump_gateway.engine.connect(), await dump_gateway.engine.connect()
    try:
        for conn in (first, second):
            await conn.begin()
        await first.exec_driver_sql("SELECT id FROM mdl_config WHERE name = 'release' FOR UPDATE")
        await second.exec_driver_sql("SELECT id FROM mdl_config WHERE name = 'version' FOR UPDATE")
        waiting = asyncio.create_task(
            first.exec_driver_sql("SELECT id FROM mdl_config WHERE name = 'version' FOR UPDATE")
        )
        await asyncio.sleep(0.3)
        crossing = asyncio.create_task(
            second.exec_driver_sql("SELECT id FROM mdl_config WHERE name = 'release' FOR UPDATE")
        )
        done = await asyncio.gather(waiting, crossing, return_exceptions=True)
    finally:
        for conn in (first, second):
            with contextlib.suppress(Exception):
                await conn.close()
    [deadlock] = [outcome for outcome in done if isinstance(outcome, BaseException)]
    assert isinstance(deadlock, OperationalError)
    assert classify(deadlock) is Fault.RETRYABLE
    assert describe(deadlock).startswith("a deadlock with another connection to the database: Deadlock found")
    assert describe(deadlock).endswith("(error 1213)")


@pytest.fixture
def no_insert_on_user(mariadb: ThrowawayMariaDB, dump_db_url: str) -> Iterator[str]:
    """The dump's database through an account with every privilege on it but INSERT on mdl_user."""
    database = make_url(dump_db_url).database
    account = unique("limited")
    tables = mariadb.sql(
        f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}' "
        "AND TABLE_NAME <> 'mdl_user'"
    ).split()
    grants = "".join(f"GRANT INSERT ON `{database}`.`{table}` TO '{account}'@'127.0.0.1';" for table in tables)
    mariadb.sql(
        f"CREATE USER '{account}'@'127.0.0.1' IDENTIFIED BY 'secret';"
        f"GRANT SELECT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES ON `{database}`.* "
        f"TO '{account}'@'127.0.0.1';{grants}"
    )
    try:
        yield make_url(dump_db_url).set(username=account, password="secret").render_as_string(hide_password=False)
    finally:
        mariadb.sql(f"DROP USER '{account}'@'127.0.0.1'")


async def test_a_missing_privilege_stops_the_run_once_naming_it_and_its_table(
    dump_site: Site, no_insert_on_user: str
) -> None:
    config, _ = dump_site
    config.set("run.batch_size", 2)
    names = [unique("denied") for _ in range(6)]
    gateway = MoodleGateway.for_url(no_insert_on_user, "mdl_")
    try:
        with pytest.raises(RunProblem) as stopped:
            await run_file(config, gateway, "users", users_file(names))
    finally:
        await gateway.close()
    words = "the database user lacks the INSERT privilege on table mdl_user: INSERT command denied to user"
    assert str(stopped.value).startswith(words)
    assert "(error 1142); the batch in progress was rolled back" in str(stopped.value)
    [report] = (config.data_dir / "reports").glob("*.txt")
    assert report.read_text().count(words) == 1
    assert "the run stopped after 0 rows" in report.read_text()


async def test_the_start_up_check_says_why_the_database_refuses_the_connection(dump_db_url: str) -> None:
    wrong = make_url(dump_db_url).set(password="not-the-password").render_as_string(hide_password=False)
    gateway = MoodleGateway.for_url(wrong, "mdl_")
    try:
        with pytest.raises(DatabaseError) as refused:
            await gateway.site_info()
    finally:
        await gateway.close()
    assert "could not connect to the database: Access denied for user" in str(refused.value)
    assert str(refused.value).endswith("(error 1045)")
    assert "not-the-password" not in str(refused.value)


# -- a server of the test's own, stalled or killed --------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[ThrowawayMariaDB]:
    """A throwaway MariaDB with the dump loaded, for this test alone: it is stalled or killed."""
    if not SHARED_DUMP.exists():
        pytest.skip(f"the real Moodle dump is not present at {SHARED_DUMP}")
    server = ThrowawayMariaDB.start(in_memory=True)
    try:
        server.load_dump("faults")
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.process.pid, signal.SIGCONT)  # a stopped server would not end on SIGTERM
        server.stop()


@pytest.fixture
async def own_site(own_server: ThrowawayMariaDB, tmp_path: Path) -> AsyncIterator[Site]:
    """The own server's site, its configuration giving each statement 2 s."""
    url = own_server.url("faults")
    config = mariadb_config(tmp_path, url)
    config.set("database.statement_timeout", 2)
    config.set("run.batch_size", 5)
    gateway = open_gateway(config)  # as `toolsync run` opens it, with the setting
    try:
        yield config, gateway
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(own_server.process.pid, signal.SIGCONT)
        await gateway.close()


async def test_a_stalled_server_ends_the_run_within_the_timeout_and_frees_the_lock(
    own_server: ThrowawayMariaDB, own_site: Site
) -> None:
    config, gateway = own_site
    names = [unique("stalled") for _ in range(20)]
    stalled_at: list[float] = []

    def stall(progress: Progress) -> None:
        if not stalled_at:  # after the first batch: the second one meets a server that no longer answers
            os.kill(own_server.process.pid, signal.SIGSTOP)
            stalled_at.append(time.monotonic())

    with pytest.raises(RunProblem) as stopped:
        await asyncio.wait_for(run_file(config, gateway, "users", users_file(names), on_progress=stall), HANG)
    waited = time.monotonic() - stalled_at[0]
    assert str(stopped.value).startswith("the database did not answer within 2 s (a statement)")
    assert "the batch in progress was rolled back" in str(stopped.value)
    assert waited < 2 * 2 + 5, f"the run took {waited:.1f} s to stop after the server stalled"
    [report] = (config.data_dir / "reports").glob("*.txt")
    assert "the run stopped after 5 rows: the database did not answer within 2 s" in report.read_text()
    with RunLock(config.data_dir, "users"):  # free: the next cron call runs
        pass
    closing = time.monotonic()
    await asyncio.wait_for(gateway.close(), HANG)  # the command line then ends, the server still stalled
    assert time.monotonic() - closing < 2 + 1

    os.kill(own_server.process.pid, signal.SIGCONT)
    gateway = open_gateway(config)
    try:
        again = await asyncio.wait_for(run_file(config, gateway, "users", users_file(names)), HANG)
        assert again.rows == 20
        assert again.counts.get("failed", 0) == 0, report_of(again)
        assert await usernames(gateway, names) == set(names)
    finally:
        await gateway.close()


async def test_a_killed_server_stops_the_run_saying_the_connection_was_lost(
    own_server: ThrowawayMariaDB, own_site: Site
) -> None:
    config, gateway = own_site
    names = [unique("killed") for _ in range(20)]

    def kill(progress: Progress) -> None:
        if own_server.process.poll() is None:
            own_server.process.kill()
            own_server.process.wait()

    with pytest.raises(RunProblem) as stopped:
        await asyncio.wait_for(run_file(config, gateway, "users", users_file(names), on_progress=kill), HANG)
    assert str(stopped.value).startswith("the connection to the database was lost: ")
    [report] = (config.data_dir / "reports").glob("*.txt")
    text = report.read_text()
    assert "the run stopped after 5 rows: the connection to the database was lost" in text
    assert all(f"line {line}: created" in text for line in range(2, 7))  # the batch before it, accounted


def test_a_dbapi_error_without_a_number_is_a_refusal_not_a_lost_connection() -> None:
    """SQLite's errors carry no number: a refusal, except a locked database (another writer), which is retried."""
    import sqlite3

    refused = DBAPIError("INSERT", {}, sqlite3.IntegrityError("NOT NULL constraint failed: mdl_x.name"))
    locked = DBAPIError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert classify(refused) is Fault.REFUSED
    assert classify(locked) is Fault.RETRYABLE
