"""The fault tests' hands on a database server of either kind (MariaDB, PostgreSQL): a server of a test's own, its
processes stalled, resumed or killed, the connections to a database ended from outside, and rows counted on a
connection of the test's own.

MariaDB is one process; PostgreSQL is a postmaster and a process per connection (and its background workers): a
stalled or killed PostgreSQL is all of them stopped or killed, as a frozen machine or the OOM killer would.
"""

from __future__ import annotations

import contextlib
import signal

import psutil
import pytest
from sqlalchemy.engine import make_url

from tests.support.mariadb_server import SHARED_DUMP, ThrowawayMariaDB
from tests.support.postgres_server import SHARED_PG_DUMP, ThrowawayPostgreSQL
from tests.support.table_compare import connect

Server = ThrowawayMariaDB | ThrowawayPostgreSQL


def own_server(kind: str, database: str) -> Server:
    """A throwaway server of `kind` ("mariadb", "postgresql") with the real dump loaded as `database`, for one test
    that stalls or kills it (never the session's server other modules use)."""
    dump = SHARED_PG_DUMP if kind == "postgresql" else SHARED_DUMP
    if not dump.exists():
        pytest.skip(f"the real Moodle dump is not present at {dump}")
    server: Server = (ThrowawayPostgreSQL if kind == "postgresql" else ThrowawayMariaDB).start(in_memory=True)
    try:
        server.load_dump(database)
    except BaseException:
        server.stop()
        raise
    return server


def processes(server: Server) -> list[psutil.Process]:
    """The server's processes, the one that accepts connections first."""
    if server.process.poll() is not None:
        return []
    with contextlib.suppress(psutil.NoSuchProcess):
        main = psutil.Process(server.process.pid)
        return [main, *main.children(recursive=True)] if isinstance(server, ThrowawayPostgreSQL) else [main]
    return []


def stall(server: Server) -> list[psutil.Process]:
    """Stop every process of the server (SIGSTOP): it keeps its connections open and answers nothing. The processes
    stopped, for resume()."""
    stopped = processes(server)
    for process in stopped:  # the postmaster first: it forks no new backend meanwhile
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGSTOP)
    return stopped


def resume(stopped: list[psutil.Process]) -> None:
    for process in stopped:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGCONT)


def kill(server: Server) -> None:
    """kill -9 every process of the server, and reap the one the test started."""
    for process in processes(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    server.process.wait()


def count_users(url: str, prefix: str) -> int:
    """Accounts whose username starts with `prefix`, read on a connection of the test's own."""
    with connect(url) as db, db.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mdl_user WHERE username LIKE %s AND deleted = 0", (prefix + "%",))
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def kill_connections(url: str) -> int:
    """End every connection to the URL's database but the caller's (MariaDB's KILL CONNECTION, PostgreSQL's
    pg_terminate_backend), as a server restart or an administrator would. How many were ended."""
    database = make_url(url).database
    with connect(url) as db, db.cursor() as cursor:
        if make_url(url).get_backend_name() == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'",
                (database,),
            )
            return len(cursor.fetchall())
        cursor.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()", (database,)
        )
        ids = [int(row[0]) for row in cursor.fetchall()]
        for found in ids:
            with contextlib.suppress(Exception):  # ended meanwhile
                cursor.execute(f"KILL CONNECTION {found}")
        return len(ids)
