"""Batches whose write runs while the next batch is planned (operations with `overlaps_writes`, on MariaDB).

A batch is planned on its own connection (reads, in a READ COMMITTED transaction, so that a read made after the
previous write has committed sees it); its write then runs in that transaction while the next batch is planned on
another connection. Only one write is ever in flight: the next one starts when the previous has ended, and a batch's
outcomes are final only then (a failed write turns them into failures, nothing of the batch written). The database
does the writing while Python plans, on two cores instead of one after the other.

A write that meets a deadlock or a lock wait timeout is run again on its own, not overlapped (Retry); the next batch,
planned while that write was in flight, is then planned again, after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import polars as pl
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from toolsync_tui.engine.moodle.db_errors import Fault, classify
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.recording import Session
from toolsync_tui.engine.registry import Operation
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, PROBLEM, Outcome, outcome_rows
from toolsync_tui.engine.run.operation import BatchWrite

Settled = tuple[pl.DataFrame, int, pl.DataFrame]  # a batch, its number, its final outcomes


class Failure(Protocol):
    """Failed outcomes for rows (or raises); `committing`: the error came while their batch was being committed."""

    def __call__(
        self, rows: pl.DataFrame, exc: SQLAlchemyError, attempts: int = 1, *, committing: bool = False
    ) -> pl.DataFrame: ...


# The rows' outcomes once written on their own, after their overlapped write met the (retryable) error.
Retry = Callable[[pl.DataFrame, SQLAlchemyError], Awaitable[pl.DataFrame]]
Check = Callable[[pl.DataFrame, pl.DataFrame], None]  # (rows, outcomes): raises when they do not match
# Called as a write ends, committed or not, before the next write starts: what follows a commit is taken then (the
# run's after_commit.py), so an operation that overlaps its writes must queue such work in its write, not its plan.
Settle = Callable[[bool], None]


@dataclass
class _Batch:
    batch: pl.DataFrame
    number: int
    rows: pl.DataFrame  # the well-formed rows the operation planned
    unread: pl.DataFrame  # outcomes of the malformed rows
    planned: pl.DataFrame  # outcomes of the planned rows, if their write commits
    write: asyncio.Task[None] | None
    pending: _Pending | None  # the write's connection and state


class OverlappedWrites:
    def __init__(
        self,
        gateway: MoodleGateway,
        operation: Operation,
        failure: Failure,
        retry: Retry,
        check: Check,
        settle: Settle,
    ) -> None:
        self.gateway = gateway
        self.settle = settle
        self.operation = operation
        self.failure = failure
        self.retry = retry
        self.retried = False  # the write drained last was run again: what was planned meanwhile is planned again
        self.check = check
        self.in_flight: _Batch | None = None
        self.changes: Session | None = None  # the run's recording of its writes, for an undo (changes/capture.py)

    async def submit(self, batch: pl.DataFrame, number: int) -> list[Settled]:
        """Plan `batch`, settle the batch before it (its write ends), start this one's write; the settled batches."""
        rows = batch.filter(pl.col(PROBLEM).is_null())
        unread = batch.filter(pl.col(PROBLEM).is_not_null())
        planned, pending = await self._plan(rows)
        try:
            settled = await self.drain()
        except BaseException:
            if pending is not None:  # the run stops: this batch is not written
                await pending.discard()
            raise
        if self.retried:  # this plan read the database before that batch was written: it may be out of date
            if pending is not None:
                await pending.discard()
            planned, pending = await self._plan(rows)
        task = asyncio.create_task(pending.run()) if pending is not None else None
        self.in_flight = _Batch(batch, number, rows, unread, planned, task, pending)
        return settled

    async def drain(self) -> list[Settled]:
        """Wait for the write in flight; the batch it settles (none when nothing is in flight)."""
        done, self.in_flight, self.retried = self.in_flight, None, False
        if done is None:
            return []
        planned = done.planned
        if done.write is not None:
            try:
                await done.write
            except SQLAlchemyError as exc:
                if classify(exc) is Fault.RETRYABLE:
                    planned, self.retried = await self.retry(done.rows, exc), True
                else:
                    committing = done.pending is not None and done.pending.committing
                    planned = self.failure(done.rows, exc, committing=committing)
        outcomes = pl.concat([self._unread(done.unread), planned])
        return [(done.batch, done.number, outcomes.sort("line", "part", nulls_last=False, maintain_order=True))]

    async def _previous(self) -> None:
        if self.in_flight is not None and self.in_flight.write is not None:
            await asyncio.wait([self.in_flight.write])

    async def _plan(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, _Pending | None]:
        """The rows' outcomes, and their write, not started, holding the planning connection and its transaction."""
        if rows.is_empty():
            return pl.DataFrame(schema=OUTCOME_SCHEMA), None
        conn = await self.gateway.engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="READ COMMITTED")
            transaction = await conn.begin()
            planned, write = await self.operation.plan_batch(conn, rows, self._previous)
            self.check(rows, planned)
        except SQLAlchemyError as exc:
            await _close(conn)
            return self.failure(rows, exc), None
        except BaseException:
            await _close(conn)
            raise
        return planned, _Pending(conn, transaction, write, self.settle, self.changes)

    @staticmethod
    def _unread(rows: pl.DataFrame) -> pl.DataFrame:
        return outcome_rows(rows, Outcome.FAILED, "read", pl.lit(""), pl.col(PROBLEM))


@dataclass
class _Pending:
    """A planned batch's write, and the connection whose transaction it runs in."""

    conn: AsyncConnection
    transaction: AsyncTransaction
    write: BatchWrite
    settle: Settle
    changes: Session | None = None
    committing: bool = False  # the commit is under way: an error now may come after the server committed

    async def run(self) -> None:
        committed = False
        if self.changes is not None:
            self.changes.open(self.conn)
        try:
            await self.write(self.conn)
            if self.changes is not None:
                await self.changes.ahead(self.conn)  # the journal and the ledger ahead of Moodle's commit
            self.committing = True
            await self.transaction.commit()
            committed, self.committing = True, False
        finally:
            if self.changes is not None:
                self.changes.settle(self.conn, committed)
            self.settle(committed)
            await _close(self.conn)

    async def discard(self) -> None:
        await _close(self.conn)


async def _close(conn: AsyncConnection) -> None:
    """Roll back what is not committed and give the connection back; a connection already lost is let go."""
    with contextlib.suppress(SQLAlchemyError):
        await conn.close()
