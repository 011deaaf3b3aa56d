"""What a database error means for a run, decided by the server's error number, not by the driver's exception class.

pymysql (under aiomysql) raises OperationalError for a lost connection, a trigger's SIGNAL, a deadlock and a missing
privilege alike; only the MariaDB/MySQL error number (`exc.orig.args[0]`) tells them apart.
"""

from __future__ import annotations

import re
import sqlite3
from enum import Enum

import pymysql
from sqlalchemy.exc import DBAPIError

from toolsync_tui.engine.moodle.timed_connection import NoAnswer


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


def error_number(exc: BaseException) -> int | None:
    """The server's (or client library's) error number, None when the error has none."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None


def server_message(exc: BaseException) -> str:
    """The server's own words for the error, with its number: "refused by policy (error 1644)"."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    number, args = error_number(exc), tuple(getattr(orig, "args", ()))
    if number is not None and len(args) > 1:
        return f"{args[1]} (error {number})"
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def classify(exc: BaseException) -> Fault:
    """The error's class: its number decides; an error without one is a refusal, unless the driver lost the
    connection (or the SQLite sandbox is locked by another writer)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, NoAnswer):
        return Fault.TIMED_OUT
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
    if isinstance(orig, NoAnswer):
        return f"{orig.args[1]}: the server may be stalled or overloaded, or the network down"
    if fault is Fault.CONNECTION_LOST:
        return f"the connection to the database was lost: {said}"
    if fault is Fault.UNREACHABLE:
        return f"could not connect to the database: {said}"
    if fault is Fault.TIMED_OUT:
        return f"the database stopped a statement that ran past its time limit: {said}"
    if fault is Fault.PRIVILEGE:
        args = tuple(getattr(orig, "args", ()))
        denied = _DENIED.match(str(args[1])) if len(args) > 1 else None
        if denied:
            what = f"the {denied['privilege']} privilege on table {denied['table']}"
            return f"the database user lacks {what}: {said}"
        return f"the database user lacks a privilege: {said}"
    if fault is Fault.RETRYABLE:
        number = error_number(exc)
        if number == 1213:
            return f"a deadlock with another connection to the database: {said}"
        return f"another connection to the database held a lock this batch needed: {said}"
    return f"the database refused the batch: {said}"
