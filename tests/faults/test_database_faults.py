"""Database faults (issue 20, items 5 and 7; issue 24 on PostgreSQL): each server error has its effect and its words,
and a stalled server cannot hang a run.

On the real MariaDB and PostgreSQL loaded with the Moodle 4.5 dump, each fault in its server's own form: a trigger's
refusal (MariaDB's SIGNAL, PostgreSQL's RAISE EXCEPTION) fails its batch and the run goes on; a lock wait that runs
out (innodb_lock_wait_timeout, lock_timeout) and a deadlock are retried; a missing privilege (REVOKE INSERT) stops the
run once, naming it; a connection ended from outside (KILL CONNECTION, pg_terminate_backend) stops it saying so. A
stalled (SIGSTOP) or killed (SIGKILL) server is a server of the test's own, never the session's server other modules
use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import Server, database_config
from tests.support import fault_servers
from tests.support.course_factories import add_cohort, add_users
from tests.support.factories import unique
from tests.support.mariadb_server import ThrowawayMariaDB
from tests.support.operation_files import header, identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.moodle.db_errors import Fault, classify, describe
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.moodle.postgres_deadline import GRACE
from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.run.exits import EXIT_ROWS_FAILED
from toolsync_tui.engine.run.lock import RunLock
from toolsync_tui.engine.run.pipeline import Progress, RunProblem, RunResult

Site = tuple[Config, MoodleGateway]
NAMES = header("username", "firstname", "lastname", "email")
HANG = 60  # seconds: past this a run counts as hung (a test never waits for ever)
# Lock waits that ran out since the server started (InnoDB's metric, enabled by default).
TIMEOUTS = "SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_timeouts'"
# PostgreSQL counts no lock timeouts: the connections of the database waiting for a lock, each with its statement's
# start (a wait that ran out is one that is gone).
WAITING = (
    "SELECT pid, query_start FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


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
    refused = f"IF NEW.username = '{names[3]}' THEN"
    if gateway.kind == "postgresql":  # a trigger function's RAISE EXCEPTION (SQLSTATE P0001)
        created = [
            f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {refused} "
            "RAISE EXCEPTION 'refused by the site policy'; END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_user FOR EACH ROW EXECUTE FUNCTION {trigger}()",
        ]
        dropped = [f"DROP TRIGGER {trigger} ON mdl_user", f"DROP FUNCTION {trigger}()"]
        code = "SQLSTATE P0001"
    else:  # SIGNAL (error 1644)
        created = [
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_user FOR EACH ROW {refused} "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the site policy'; END IF"
        ]
        dropped, code = [f"DROP TRIGGER {trigger}"], "error 1644"
    async with gateway.transaction() as conn:
        for statement in created:
            await conn.exec_driver_sql(statement)
    try:
        result = await run_file(config, gateway, "users", users_file(names))
    finally:
        async with gateway.transaction() as conn:
            for statement in dropped:
                await conn.exec_driver_sql(statement)
    assert result.counts == {"created": 4, "failed": 2}, report_of(result)
    assert result.exit_code == EXIT_ROWS_FAILED  # rows failed, the run itself did not stop (2)
    report = report_of(result)
    refusal = (
        f"failed (write) the database refused the batch: refused by the site policy ({code}); "
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
        async with held(holder, "SELECT id FROM mdl_user WHERE username = :name FOR UPDATE", {"name": names[0]}):
            result = await asyncio.wait_for(run_file(config, gateway, "users", users_file(names, first="Bea")), HANG)
    finally:
        await gateway.close()
    assert result.counts == {"updated": 4}, report_of(result)
    assert result.exit_code == 0
    assert retried_notes(result, holder.kind) == ["lines 2-3"]
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
    added = "INSERT INTO mdl_cohort_members (cohortid, userid, timeadded) VALUES (:cohort, :user, 1)"
    try:
        async with held(holder, added, {"cohort": cohort, "user": users[2]}):
            result = await asyncio.wait_for(run_file(config, gateway, "cohorts", content), HANG)
    finally:
        await gateway.close()
    assert result.counts == {"created": 6}, report_of(result)
    assert retried_notes(result, holder.kind) == ["lines 4-5"]
    members = await rows_of(holder, holder.schema.cohort_members, cohortid=cohort)
    assert {int(row["userid"]) for row in members} == set(users)


def impatient(url: str) -> MoodleGateway:
    """A gateway whose connections give up a lock wait after 1 s (MariaDB's innodb_lock_wait_timeout, 50 s by
    default; PostgreSQL's lock_timeout, none by default)."""
    if make_url(url).get_backend_name() == "postgresql":
        settings = {"lock_timeout": "1000"}  # a session setting from the start: no transaction can roll it back
        engine = create_async_engine(url, connect_args={"server_settings": settings})
        return MoodleGateway(engine, MoodleSchema("mdl_"), "postgresql", "impatient")
    gateway = MoodleGateway.for_url(url, "mdl_")
    event.listen(gateway.engine.sync_engine, "connect", _session_lock_wait)
    return gateway


def _session_lock_wait(dbapi_connection: Any, record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
    cursor.close()


class WaitsRunOut:
    """Whether a lock wait in the database has run out since it was made: MariaDB counts them; on PostgreSQL, a
    connection seen waiting (its pid and statement start) that no longer waits."""

    def __init__(self, holder: MoodleGateway) -> None:
        self.holder = holder
        self.before: int | None = None
        self.seen: set[tuple[Any, ...]] = set()

    async def _waiting(self) -> set[tuple[Any, ...]]:
        async with self.holder.reading() as conn:
            return {tuple(row) for row in await conn.execute(text(WAITING))}

    async def start(self) -> None:
        if self.holder.kind != "postgresql":
            async with self.holder.reading() as conn:
                self.before = (await conn.exec_driver_sql(TIMEOUTS)).scalar_one()

    async def happened(self) -> bool:
        if self.holder.kind != "postgresql":
            async with self.holder.reading() as conn:
                return bool((await conn.exec_driver_sql(TIMEOUTS)).scalar_one() > self.before)
        waiting = await self._waiting()
        if self.seen - waiting:
            return True
        self.seen |= waiting
        return False


@contextlib.asynccontextmanager
async def held(holder: MoodleGateway, statement: str, params: dict[str, Any]) -> AsyncIterator[None]:
    """What `statement` locks, held by another connection's open transaction until a wait for it has run out: then it
    is let go (rolled back)."""
    watch = WaitsRunOut(holder)
    await watch.start()
    lock = await holder.engine.connect()
    await lock.begin()
    await lock.execute(text(statement), params)

    async def release() -> None:
        try:
            deadline = time.monotonic() + HANG
            while time.monotonic() < deadline:
                if await watch.happened():
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


def retried_notes(result: RunResult, kind: str) -> list[str]:
    """The batches the run's notes (and report) say were tried again after a lock wait timeout, as their lines."""
    said = "canceling statement due to lock timeout" if kind == "postgresql" else "Lock wait timeout exceeded"
    wait = f"another connection to the database held a lock this batch needed: {said}"
    found = [note for note in result.notes if " were tried again after " in note]
    assert all(f" were tried again after {wait}" in note for note in found), found
    assert all(note in report_of(result) for note in found)
    return [note.split(" were tried again")[0] for note in found]


async def test_a_deadlock_is_classed_as_retryable_with_its_words(dump_gateway: MoodleGateway) -> None:
    """Two connections each holding a row the other wants: the server ends one transaction (MariaDB's error 1213,
    PostgreSQL's SQLSTATE 40P01 once deadlock_timeout, 1 s, has passed)."""
    first, second = await dump_gateway.engine.connect(), await dump_gateway.engine.connect()
    try:
        for conn in (first, second):
            await conn.begin()
        await first.execute(text("SELECT id FROM mdl_config WHERE name = 'release' FOR UPDATE"))
        await second.execute(text("SELECT id FROM mdl_config WHERE name = 'version' FOR UPDATE"))
        waiting = asyncio.create_task(
            first.execute(text("SELECT id FROM mdl_config WHERE name = 'version' FOR UPDATE"))
        )
        await asyncio.sleep(0.3)
        crossing = asyncio.create_task(
            second.execute(text("SELECT id FROM mdl_config WHERE name = 'release' FOR UPDATE"))
        )
        done = await asyncio.gather(waiting, crossing, return_exceptions=True)
    finally:
        for conn in (first, second):
            with contextlib.suppress(Exception):
                await conn.close()
    [deadlock] = [outcome for outcome in done if isinstance(outcome, BaseException)]
    assert isinstance(deadlock, DBAPIError)
    assert classify(deadlock) is Fault.RETRYABLE
    said, code = (
        ("deadlock detected", "SQLSTATE 40P01")
        if dump_gateway.kind == "postgresql"
        else ("Deadlock found", "error 1213")
    )
    assert describe(deadlock).startswith(f"a deadlock with another connection to the database: {said}")
    assert describe(deadlock).endswith(f"({code})")


@pytest.fixture
def no_insert_on_user(db_server: Server, dump_db_url: str) -> Iterator[str]:
    """The dump's database through an account with every privilege on it but INSERT on mdl_user."""
    database = make_url(dump_db_url).database
    account = unique("limited")
    limited = make_url(dump_db_url).set(username=account, password="secret").render_as_string(hide_password=False)
    if not isinstance(db_server, ThrowawayMariaDB):
        db_server.sql(f"CREATE ROLE {account} LOGIN PASSWORD 'secret'")
        db_server.sql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {account};"
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {account};"
            f"REVOKE INSERT ON mdl_user FROM {account}",
            str(database),
        )
        try:
            yield limited
        finally:
            db_server.sql(f"DROP OWNED BY {account}", str(database))  # its privileges: a role that holds any stays
            db_server.sql(f"DROP ROLE {account}")
        return
    mariadb = db_server
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
        yield limited
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
    if gateway.kind == "postgresql":  # PostgreSQL names the table, not the privilege: the statement says what it did
        words = "the database user lacks a privilege on table mdl_user for an INSERT: permission denied for table"
        code = "SQLSTATE 42501"
    else:
        words = "the database user lacks the INSERT privilege on table mdl_user: INSERT command denied to user"
        code = "error 1142"
    assert str(stopped.value).startswith(words)
    assert f"({code}); the batch in progress was rolled back" in str(stopped.value)
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
    if make_url(dump_db_url).get_backend_name() == "postgresql":
        said, code = "password authentication failed for user", "SQLSTATE 28P01"
    else:
        said, code = "Access denied for user", "error 1045"
    assert f"could not connect to the database: {said}" in str(refused.value)
    assert str(refused.value).endswith(f"({code})")
    assert "not-the-password" not in str(refused.value)


async def test_a_statement_past_the_statement_timeout_stops_the_run_its_batch_rolled_back(
    dump_db_url: str, tmp_path: Path
) -> None:
    """A trigger that makes one insert take 4 s, [database] statement_timeout 1: PostgreSQL's server cancels the
    statement (SQLSTATE 57014, its statement_timeout); on MariaDB the setting is the client's deadline alone. Either way
    the run stops once, the batch rolled back, the batches before it kept."""
    config = database_config(tmp_path, dump_db_url)
    config.set("database.statement_timeout", 1)
    config.set("run.batch_size", 2)
    names = [unique("slow") for _ in range(6)]
    trigger = unique("slow_")
    slow = f"IF NEW.username = '{names[3]}' THEN"
    gateway = open_gateway(config)
    if gateway.kind == "postgresql":
        created = [
            f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {slow} PERFORM pg_sleep(4); "
            "END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_user FOR EACH ROW EXECUTE FUNCTION {trigger}()",
        ]
        dropped = [f"DROP TRIGGER {trigger} ON mdl_user", f"DROP FUNCTION {trigger}()"]
        words = "the database stopped a statement that ran past its time limit: canceling statement due to statement "
        words += "timeout (SQLSTATE 57014)"
    else:
        created = [f"CREATE TRIGGER {trigger} BEFORE INSERT ON mdl_user FOR EACH ROW {slow} DO SLEEP(4); END IF"]
        dropped = [f"DROP TRIGGER {trigger}"]
        words = "the database did not answer within 1 s (a statement): the server may be stalled or overloaded, or "
        words += "the network down"
    admin = MoodleGateway.for_url(dump_db_url, "mdl_")  # the default time limit: a DROP waits for the slow insert
    try:
        async with admin.transaction() as conn:
            for statement in created:
                await conn.exec_driver_sql(statement)
        try:
            with pytest.raises(RunProblem) as stopped:
                await asyncio.wait_for(run_file(config, gateway, "users", users_file(names)), HANG)
        finally:
            await gateway.close()
            async with admin.transaction() as conn:
                for statement in dropped:
                    await conn.exec_driver_sql(statement)
        assert str(stopped.value).startswith(f"{words}; the batch in progress was rolled back"), stopped.value
        assert await usernames(admin, names) == {names[0], names[1]}
    finally:
        await admin.close()


# -- a server of the test's own, stalled or killed --------------------------------------------------------------


@pytest.fixture
def own_server(server_kind: str) -> Iterator[Server]:
    """A throwaway server of the module's kind with the dump loaded, for this test alone: it is stalled or killed."""
    server = fault_servers.own_server(server_kind, "faults")
    try:
        yield server
    finally:
        fault_servers.resume(fault_servers.processes(server))  # a stopped server would not end on its signal
        server.stop()


@pytest.fixture
async def own_site(own_server: Server, tmp_path: Path) -> AsyncIterator[Site]:
    """The own server's site, its configuration giving each statement 2 s."""
    url = own_server.url("faults")
    config = database_config(tmp_path, url)
    config.set("database.statement_timeout", 2)
    config.set("run.batch_size", 5)
    gateway = open_gateway(config)  # as `toolsync run` opens it, with the setting
    try:
        yield config, gateway
    finally:
        fault_servers.resume(fault_servers.processes(own_server))
        await gateway.close()


def answer_due(gateway: MoodleGateway, statement_timeout: float) -> float:
    """Seconds toolsync waits for an answer: MariaDB's statement_timeout is the client's deadline alone; PostgreSQL's
    is the server's, the client's a little later (postgres_deadline.GRACE)."""
    return statement_timeout + GRACE if gateway.kind == "postgresql" else statement_timeout


async def test_a_stalled_server_ends_the_run_within_the_timeout_and_frees_the_lock(
    own_server: Server, own_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """Every process of the server stopped (SIGSTOP) after the first batch: it answers nothing, and on PostgreSQL its
    statement_timeout cannot fire either; the client's own deadline ends the run."""
    config, gateway = own_site
    names = [unique("stalled") for _ in range(20)]
    stalled_at: list[float] = []
    stopped_processes: list[Any] = []
    due = answer_due(gateway, 2)

    def stall(progress: Progress) -> None:
        if not stalled_at:  # after the first batch: the second one meets a server that no longer answers
            stopped_processes.extend(fault_servers.stall(own_server))
            stalled_at.append(time.monotonic())

    with pytest.raises(RunProblem) as stopped:
        await asyncio.wait_for(run_file(config, gateway, "users", users_file(names), on_progress=stall), HANG)
    waited = time.monotonic() - stalled_at[0]
    assert str(stopped.value).startswith(f"the database did not answer within {due:g} s (a statement)")
    assert "the batch in progress was rolled back" in str(stopped.value)
    assert waited < 2 * due + 5, f"the run took {waited:.1f} s to stop after the server stalled"
    [report] = (config.data_dir / "reports").glob("*.txt")
    assert f"the run stopped after 5 rows: the database did not answer within {due:g} s" in report.read_text()
    with RunLock(config.data_dir, "users"):  # free: the next cron call runs
        pass
    closing = time.monotonic()
    await asyncio.wait_for(gateway.close(), HANG)  # the command line then ends, the server still stalled
    assert time.monotonic() - closing < due + 1
    assert tracebacks(caplog, gateway) == []  # nothing closed on the stalled server logged a failure

    fault_servers.resume(stopped_processes)
    gateway = open_gateway(config)
    try:
        again = await asyncio.wait_for(run_file(config, gateway, "users", users_file(names)), HANG)
        assert again.rows == 20
        assert again.counts.get("failed", 0) == 0, report_of(again)
        assert await usernames(gateway, names) == set(names)
    finally:
        await gateway.close()


async def test_a_killed_server_stops_the_run_saying_the_connection_was_lost(
    own_server: Server, own_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -9 of the server (of every PostgreSQL process) after the first batch."""
    config, gateway = own_site
    names = [unique("killed") for _ in range(20)]

    def kill(progress: Progress) -> None:
        if own_server.process.poll() is None:
            fault_servers.kill(own_server)

    with pytest.raises(RunProblem) as stopped:
        await asyncio.wait_for(run_file(config, gateway, "users", users_file(names), on_progress=kill), HANG)
    assert str(stopped.value).startswith("the connection to the database was lost: ")
    assert "Traceback" not in str(stopped.value)
    [report] = (config.data_dir / "reports").glob("*.txt")
    text = report.read_text()
    assert "the run stopped after 5 rows: the connection to the database was lost" in text
    assert all(f"line {line}: created" in text for line in range(2, 7))  # the batch before it, accounted
    await gateway.close()
    assert tracebacks(caplog, gateway) == []


def tracebacks(caplog: pytest.LogCaptureFixture, gateway: MoodleGateway) -> list[str]:
    """Records logged with an exception (SQLAlchemy's pool logs a failed reset or close so, traceback and all, which
    Python prints on stderr when nothing configures logging). On PostgreSQL postgres_deadline.py leaves none; on
    MariaDB the pool's reset of a connection to a dead or stalled server still logs one (not checked there)."""
    if gateway.kind != "postgresql":
        return []
    return [record.getMessage() for record in caplog.records if record.exc_info]


async def test_a_connection_ended_from_outside_stops_the_run_saying_the_connection_was_lost(
    dump_site: Site, dump_db_url: str
) -> None:
    """An administrator ends toolsync's connections (MariaDB's KILL CONNECTION, PostgreSQL's pg_terminate_backend)
    after the first batch: the run stops, the batch before it accounted, the server's words in the message."""
    config, gateway = dump_site
    config.set("run.batch_size", 5)
    names = [unique("ended") for _ in range(20)]
    ended: list[int] = []

    def end_connections(progress: Progress) -> None:
        if not ended:
            ended.append(fault_servers.kill_connections(dump_db_url))

    with pytest.raises(RunProblem) as stopped:
        await asyncio.wait_for(run_file(config, gateway, "users", users_file(names), on_progress=end_connections), HANG)
    assert ended[0] >= 1
    assert str(stopped.value).startswith("the connection to the database was lost: ")
    [report] = (config.data_dir / "reports").glob("*.txt")
    text = report.read_text()
    assert "the run stopped after 5 rows: the connection to the database was lost" in text
    assert await usernames(gateway, names) == set(names[:5])


async def test_the_start_up_check_of_a_server_that_is_gone_says_it_cannot_connect(
    own_server: Server, own_site: Site
) -> None:
    """No server behind the port (killed): the driver's refused connect (a bare OSError under asyncpg) is a database
    error with its words, not a problem of the data directory, nor a traceback."""
    _, gateway = own_site
    fault_servers.kill(own_server)
    with pytest.raises(DatabaseError) as refused:
        await asyncio.wait_for(gateway.site_info(), HANG)
    assert "could not connect to the database: " in str(refused.value), refused.value
    code = "(SQLSTATE 08001)" if gateway.kind == "postgresql" else "(error 2003)"
    assert str(refused.value).endswith(code), refused.value


def test_a_dbapi_error_without_a_number_is_a_refusal_not_a_lost_connection() -> None:
    """SQLite's errors carry no number: a refusal, except a locked database (another writer), which is retried."""
    import sqlite3

    refused = DBAPIError("INSERT", {}, sqlite3.IntegrityError("NOT NULL constraint failed: mdl_x.name"))
    locked = DBAPIError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert classify(refused) is Fault.REFUSED
    assert classify(locked) is Fault.RETRYABLE
