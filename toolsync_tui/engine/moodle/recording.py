"""Where a run's writes are told, so that the run can be undone (engine/changes/capture.py records them).

A recorder is attached to the connection of a batch's write transaction by the run (never to a dry run's or the
safety pre-pass's): the gateway's bulk helpers, and every other write statement of engine/, call it before (or
after) they write. No recorder attached, nothing is done: the registry is keyed by the connection and weak, so a
recorder ends with its transaction's connection and never outlives its run.

Tables and columns that hold Moodle's audit trail or cache markers are never recorded: an undo leaves the standard
log as it is (the run happened) and invalidates caches forward instead of putting old markers back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncConnection

# Not undone: the standard log (what happened stays on record), dirty flags and sessions (cache and login markers:
# an undo marks caches dirty forward, a user logged out stays logged out).
NOT_RECORDED_TABLES = frozenset({"logstore_standard_log", "cache_flags", "sessions"})
# Cache revision counters: an undo never moves them back (Moodle would trust caches built after the run).
NOT_RECORDED_COLUMNS = frozenset({"cacherev"})


class Recorder(Protocol):
    """What one write transaction changed, told by the statements as they write."""

    async def inserted(
        self, conn: AsyncConnection, table: Table, first_id: int, count: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """A multi-row INSERT of `rows` whose first generated id is `first_id` (the driver's lastrowid)."""

    async def inserted_ids(
        self, conn: AsyncConnection, table: Table, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """An INSERT of `rows` whose new ids the statement returned (PostgreSQL's RETURNING), in the rows' order."""

    async def insert_mark(self, conn: AsyncConnection, table: Table) -> int:
        """Before INSERTs whose ids the driver does not give (SQLite's executemany): the table's highest id."""

    async def inserted_since(
        self, conn: AsyncConnection, table: Table, mark: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """After those INSERTs: the rows with an id above `mark` are the ones written."""

    async def updating(
        self, conn: AsyncConnection, table: Table, key: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Before an UPDATE of `columns` to the values of `rows` (a row lacking a column keeps it), by `key`."""

    async def updating_where(
        self,
        conn: AsyncConnection,
        table: Table,
        where: ColumnElement[bool],
        columns: Sequence[str],
        known: Sequence[Mapping[str, Any]] = (),
    ) -> object:
        """Before an UPDATE of `columns` by a condition (values computed by the server); a token for updated().
        `known`: rows (id and those columns) whose values after it the caller knows, such as new rows' paths."""

    async def updated(self, conn: AsyncConnection, token: object) -> None:
        """After that UPDATE: its values read back."""

    async def deleting(self, conn: AsyncConnection, table: Table, where: ColumnElement[bool]) -> None:
        """Before a DELETE of the rows matching `where`: the whole rows."""

    async def sealed(self, conn: AsyncConnection) -> None:
        """Nothing the transaction writes from now on is recorded (nothing_more_recorded())."""


_RECORDERS: WeakKeyDictionary[AsyncConnection, Recorder] = WeakKeyDictionary()


class Session(Protocol):
    """A run's recording: what gateway.transaction() asks of it for writes outside the batches (an operation's
    finish()); the batches' own transactions are opened by the pipeline."""

    def open(self, conn: AsyncConnection) -> None: ...

    async def ahead(self, conn: AsyncConnection) -> None: ...

    def settle(self, conn: AsyncConnection, committed: bool) -> None: ...


# The run in progress in this task (and the tasks it starts), set by the pipeline for the run's length.
RUN_SESSION: ContextVar[Session | None] = ContextVar("toolsync_run_session", default=None)


def attach(conn: AsyncConnection, recorder: Recorder) -> None:
    _RECORDERS[conn] = recorder


def detach(conn: AsyncConnection) -> None:
    _RECORDERS.pop(conn, None)


def recorder_of(conn: AsyncConnection) -> Recorder | None:
    """The recorder of the connection's transaction, or None (no run records it). The recorder itself passes over
    the tables and columns of NOT_RECORDED_TABLES and NOT_RECORDED_COLUMNS."""
    return _RECORDERS.get(conn)


async def deleting(conn: AsyncConnection, table: Table, where: ColumnElement[bool]) -> None:
    """Call before a DELETE not made through gateway.delete_in."""
    recorder = recorder_of(conn)
    if recorder is not None:
        await recorder.deleting(conn, table, where)


@asynccontextmanager
async def updating(
    conn: AsyncConnection,
    table: Table,
    where: ColumnElement[bool],
    columns: Sequence[str],
    known: Sequence[Mapping[str, Any]] = (),
) -> AsyncIterator[None]:
    """Around an UPDATE not made through gateway.update_many (its values computed by the server); `known`: rows (id
    and `columns`) whose values after it the caller knows (Recorder.updating_where)."""
    recorder = recorder_of(conn)
    token = await recorder.updating_where(conn, table, where, columns, known) if recorder is not None else None
    yield
    if recorder is not None:
        await recorder.updated(conn, token)


async def inserted_one(conn: AsyncConnection, table: Table, row_id: int, row: Mapping[str, Any]) -> None:
    """After a single-row INSERT not made through gateway.insert_many."""
    recorder = recorder_of(conn)
    if recorder is not None:
        await recorder.inserted(conn, table, row_id, 1, [row])


async def nothing_more_recorded(conn: AsyncConnection) -> None:
    """Call where a write transaction has written all it records, before what is never recorded (its log rows): its
    record is then taken and journalled while those are written, not after them. A recorded write after it fails."""
    recorder = recorder_of(conn)
    if recorder is not None:
        await recorder.sealed(conn)
