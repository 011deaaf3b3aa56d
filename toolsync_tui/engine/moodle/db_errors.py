"""What a database error means for a run, decided by the server's error number, not by the driver's exception class.

pymysql (under aiomysql) raises OperationalError for a lost connection, a trigger's SIGNAL, a deadlock and a missing
privilege alike; only the MariaDB/MySQL error number (`exc.orig.args[0]`) tells them apart. PostgreSQL's errors carry
a SQLSTATE (`exc.orig.sqlstate` under SQLAlchemy's asyncpg dialect), whose class (its first two characters) or whole
code decides.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from enum import Enum
from types import ModuleType
from typing import Any

import pymysql
from sqlalchemy.exc import DBAPIError

from toolsync_tui.engine.moodle.timed_connection import NoAnswer

# PostgreSQL's driver and toolsync's module for it are imported by a PostgreSQL site's gateway only (a MariaDB run
# does without their import time): no error of theirs can exist before.
_PG_DEADLINE = "toolsync_tui.engine.moodle.postgres_deadline"


class Fault(Enum):
    """A class of database error, and what a run does about it."""

    CONNECTION_LOST = "connection lost"  # the connection broke mid-way: the run stops
    UNREACHABLE = "cannot connect"  # no connection could be made or logged in: the run stops
    TIMED_OUT = "timed out"  # the server did not answer in time: the run stops
    PRIVILEGE = "privilege"  # the account may not do what the run needs: the run stops, once
    RETRYABLE = "retryable"  # a deadlock or lock wait timeout: the batch is tried again
    REFUSED = "refused"  # the server refused the batch's statement (trigger, value, key): its rows fail

    @property
    def stops_run(self) -> bool:
        return self not in (Fault.RETRYABLE, Fault.REFUSED)


# ER_SERVER_SHUTDOWN, ER_ABORTING_CONNECTION, ER_NET_READ_INTERRUPTED, ER_NET_WRITE_INTERRUPTED,
# ER_NEW_ABORTING_CONNECTION, ER_CONNECTION_KILLED (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8); and every
# client error (2000-2999: CR_SERVER_GONE_ERROR, CR_SERVER_LOST ...) but those of UNREACHABLE.
_LOST = {1053, 1152, 1159, 1161, 1184, 1927, 4031}
# CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_UNKNOWN_HOST, CR_AUTH_PLUGIN_CANNOT_LOAD; ER_CON_COUNT_ERROR,
# ER_ACCESS_DENIED_ERROR (wrong user or password), ER_BAD_DB_ERROR, ER_HOST_IS_BLOCKED, ER_HOST_NOT_PRIVILEGED,
# ER_TOO_MANY_USER_CONNECTIONS, ER_USER_LIMIT_REACHED, ER_NOT_SUPPORTED_AUTH_MODE.
_UNREACHABLE = {2002, 2003, 2005, 2059, 1040, 1045, 1049, 1129, 1130, 1203, 1226, 1251}
# ER_STATEMENT_TIMEOUT (MariaDB's max_statement_time), ER_QUERY_TIMEOUT (MySQL's max_execution_time).
_TIMED_OUT = {1969, 3024}
# ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR,
# ER_PROCACCESS_DENIED_ERROR.
_PRIVILEGE = {1044, 1142, 1143, 1227, 1370}
# ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, ER_CHECKREAD (a row changed since read, MariaDB's snapshot isolation).
_RETRYABLE = {1205, 1213, 1020}

# "INSERT command denied to user 'moodle'@'localhost' for table `moodle`.`mdl_user`" (1142, 1143 "... for column
# 'x' in table 'y'"); the quotes differ between servers and versions.
_DENIED = re.compile(
    r"^(?P<privilege>[A-Z][A-Z ]*?) command denied to user .* table "
    r"(?:[`'\"]?[^`'\"]+[`'\"]?\.)?[`'\"]?(?P<table>[^`'\".]+)[`'\"]?$"
)

# PostgreSQL's SQLSTATEs: a whole code decides first, then its class (the first two characters).
_PG_CODES = {
    "08001": Fault.UNREACHABLE,  # sqlclient_unable_to_establish_sqlconnection (postgres_deadline: no server)
    "08004": Fault.UNREACHABLE,  # sqlserver_rejected_establishment_of_sqlconnection
    "57P01": Fault.CONNECTION_LOST,  # admin_shutdown: the server stopping, or pg_terminate_backend()
    "57P02": Fault.CONNECTION_LOST,  # crash_shutdown: another server process crashed
    "57P03": Fault.UNREACHABLE,  # cannot_connect_now: the server is starting or stopping
    "3D000": Fault.UNREACHABLE,  # invalid_catalog_name: no such database
    "53300": Fault.UNREACHABLE,  # too_many_connections
    "57014": Fault.TIMED_OUT,  # query_canceled: statement_timeout
    "42501": Fault.PRIVILEGE,  # insufficient_privilege
    "40P01": Fault.RETRYABLE,  # deadlock_detected
    "40001": Fault.RETRYABLE,  # serialization_failure
    "55P03": Fault.RETRYABLE,  # lock_not_available: lock_timeout
}
_PG_CLASSES = {
    "08": Fault.CONNECTION_LOST,  # connection_exception (08003 connection_does_not_exist, 08006 connection_failure)
    "28": Fault.UNREACHABLE,  # invalid_authorization_specification: a wrong user or password
}
# "permission denied for table mdl_user": PostgreSQL names the table, not the privilege; the statement's verb says
# what was being done.
_PG_DENIED = re.compile(r"permission denied for (?P<kind>table|relation|sequence) (?P<table>\S+)")
_VERB = re.compile(r"^\s*(?P<verb>INSERT|UPDATE|DELETE|SELECT)\b", re.IGNORECASE)


def error_number(exc: BaseException) -> int | None:
    """The server's (or client library's) error number, None when the error has none."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None


def server_message(exc: BaseException) -> str:
    """The server's own words for the error, with its number: "refused by policy (error 1644)"."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    number, args = error_number(exc), tuple(getattr(orig, "args", ()))
    state = sqlstate(exc)
    if state is not None:
        text = str(orig).strip()
        return f"{text.splitlines()[0] if text else type(orig).__name__} (SQLSTATE {state})"
    if number is not None and len(args) > 1:
        return f"{args[1]} (error {number})"
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _loaded(name: str) -> ModuleType | None:
    return sys.modules.get(name)


def _asyncpg_error(orig: Any) -> bool:
    """An error of asyncpg or of SQLAlchemy's asyncpg dialect (toolsync's own PostgreSQL errors derive from it)."""
    asyncpg, dialect = _loaded("asyncpg"), _loaded("sqlalchemy.dialects.postgresql.asyncpg")
    return (asyncpg is not None and isinstance(orig, asyncpg.PostgresError)) or (
        dialect is not None and isinstance(orig, dialect.AsyncAdapt_asyncpg_dbapi.Error)
    )


def _no_answer(orig: Any) -> bool:
    """A call the server did not answer within its deadline (timed_connection.py, postgres_deadline.py)."""
    deadline = _loaded(_PG_DEADLINE)
    return isinstance(orig, NoAnswer) or (deadline is not None and isinstance(orig, deadline.NoAnswer))


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of the error, None for another server's (pymysql's errors carry MariaDB's SQLSTATE too,
    "HY000" for most: its error number decides there)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if not _asyncpg_error(orig):
        return None
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _classify_postgres(state: str) -> Fault:
    return _PG_CODES.get(state) or _PG_CLASSES.get(state[:2], Fault.REFUSED)


def _closed_under_asyncpg(exc: BaseException) -> bool:
    """asyncpg's "connection is closed" (no SQLSTATE): a call on a connection the server or the network ended."""
    cause = exc.orig.__cause__ if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    asyncpg = _loaded("asyncpg")
    return asyncpg is not None and isinstance(cause, asyncpg.InterfaceError) and "connection is closed" in str(cause)


def classify(exc: BaseException) -> Fault:
    """The error's class: its number (MariaDB) or SQLSTATE (PostgreSQL) decides; an error without one is a refusal,
    unless the driver lost the connection (or the SQLite sandbox is locked by another writer)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if _no_answer(orig):
        return Fault.TIMED_OUT
    state = sqlstate(exc)
    if state is not None:
        return _classify_postgres(state)
    if _closed_under_asyncpg(exc):
        return Fault.CONNECTION_LOST
    number = error_number(exc)
    if number is None or number == 0:
        if isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig):
            return Fault.RETRYABLE  # the SQLite sandbox: another process writes
        if isinstance(orig, pymysql.err.InterfaceError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return Fault.CONNECTION_LOST  # aiomysql: "Not connected", "Cancelled during execution"
        return Fault.REFUSED
    if number in _UNREACHABLE:
        return Fault.UNREACHABLE
    if number in _LOST or 2000 <= number < 3000:
        return Fault.CONNECTION_LOST
    if number in _TIMED_OUT:
        return Fault.TIMED_OUT
    if number in _PRIVILEGE:
        return Fault.PRIVILEGE
    if number in _RETRYABLE:
        return Fault.RETRYABLE
    return Fault.REFUSED


def describe(exc: BaseException) -> str:
    """What happened, in words that say it, the server's own message included."""
    fault, said = classify(exc), server_message(exc)
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if orig is not None and _no_answer(orig):
        said = orig.args[1] if isinstance(orig, NoAnswer) else orig.args[0]
        return f"{said}: the server may be stalled or overloaded, or the network down"
    if fault is Fault.CONNECTION_LOST:
        if sqlstate(exc) is None and _asyncpg_error(orig):
            # asyncpg's own words for a connection the server or the network closed under it say little: "connection
            # is closed", "cannot switch to state 11; another operation (2) is in progress".
            said = f"the server or the network closed it (asyncpg: {said})"
        return f"the connection to the database was lost: {said}"
    if fault is Fault.UNREACHABLE:
        return f"could not connect to the database: {said}"
    if fault is Fault.TIMED_OUT:
        return f"the database stopped a statement that ran past its time limit: {said}"
    if fault is Fault.PRIVILEGE:
        args = tuple(getattr(orig, "args", ()))
        denied = _DENIED.match(str(args[1])) if len(args) > 1 else None
        on_table = _PG_DENIED.search(str(orig)) if sqlstate(exc) else None
        if on_table:
            statement = _VERB.match(exc.statement or "") if isinstance(exc, DBAPIError) else None
            verb = statement["verb"].upper() if statement else ""
            doing = f" for {'an' if verb[:1] in 'IU' else 'a'} {verb}" if verb else ""
            where = "sequence" if on_table["kind"] == "sequence" else "table"
            return f"the database user lacks a privilege on {where} {on_table['table']}{doing}: {said}"
        if denied:
            what = f"the {denied['privilege']} privilege on table {denied['table']}"
            return f"the database user lacks {what}: {said}"
        return f"the database user lacks a privilege: {said}"
    if fault is Fault.RETRYABLE:
        number = error_number(exc)
        if number == 1213 or sqlstate(exc) == "40P01":
            return f"a deadlock with another connection to the database: {said}"
        return f"another connection to the database held a lock this batch needed: {said}"
    return f"the database refused the batch: {said}"
