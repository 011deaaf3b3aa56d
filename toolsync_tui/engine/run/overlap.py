"""Batches whose write runs while the next batch is planned (operations with `overlaps_writes`, on MariaDB).

A batch is planned on its own connection (reads, in a READ COMMITTED transaction, so that a read made after the
previous write has committed sees it); its write then runs in that transaction while the next batch is planned on
another connection. Only one write is ever in flight: the next one starts when the previous has ended, and a batch's
outcomes are final only then (a failed write turns them into failures, nothing of the batch written). The database
does the writing while Python plans, on two cores instead of one after the other.

A write that meets a deadlock or a lock wait timeout is run again on its own, not overlapped (Retry); the next batch,
planned while that write was in flight, is then planned again, after it. So is a next batch whose plan read what the
write in flight changes (BatchPlan.reads meeting its writes: the same user, a group that write creates ...); an
operation may instead wait for that write before such reads (`previous`), or take what it writes as written
(BatchPlan.assumes: planned again only if that write does not commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Hashable
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
from toolsync_tui.engine.run.operation import BatchPlan, nothing_in_flight

OFF_SWITCH = "TOOLSYNC_OVERLAP"  # "0": every batch planned and written in turn (only to measure what overlap gains)

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


def overlap_on() -> bool:
    return os.environ.get(OFF_SWITCH, "1") != "0"


@dataclass
class _Batch:
    batch: pl.DataFrame
    number: int
    rows: pl.DataFrame  # the well-formed rows the operation planned
    unread: pl.DataFrame  # outcomes of the malformed rows
    plan: BatchPlan  # outcomes of the planned rows, if their write commits, and what the write changes
    write: asyncio.Task[pl.DataFrame | None] | None
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
        self.written: frozenset[object] = frozenset()  # what the write drained last changed (BatchPlan.writes)
        self.landed = False  # the write drained last committed
        self.replanned = 0  # batches planned again after the write before them
        self.check = check
        self.in_flight: _Batch | None = None
        self.changes: Session | None = None  # the run's recording of its writes, for an undo (changes/capture.py)
        # Awaited before each write starts (the run's bridge check, once): raising, it stops the run, unwritten.
        self.before_write: Callable[[], Awaitable[None]] | None = None

    async def submit(self, batch: pl.DataFrame, number: int) -> list[Settled]:
        """Plan `batch`, settle the batch before it (its write ends), start this one's write; the settled batches."""
        rows = batch.filter(pl.col(PROBLEM).is_null())
        unread = batch.filter(pl.col(PROBLEM).is_not_null())
        plan, pending = await self._plan(rows)
        try:
            if pending is not None and self.before_write is not None:
                await self.before_write()
            settled = await self.drain()
        except BaseException:
            if pending is not None:  # the run stops: this batch is not written
                await pending.discard()
            raise
        if self.retried or not self.written.isdisjoint(plan.reads) or (plan.assumes and not self.landed):
            # This plan read the database before that batch's write ended: what it read may have changed since, or
            # what it took as written was not.
            if pending is not None:
                await pending.discard()
            plan, pending = await self._plan(rows)
            self.replanned += 1
        task = asyncio.create_task(pending.run()) if pending is not None else None
        self.in_flight = _Batch(batch, number, rows, unread, plan, task, pending)
        await asyncio.sleep(0)  # the write sends its first statement before the batch before is recorded
        return settled

    async def drain(self) -> list[Settled]:
        """Wait for the write in flight; the batch it settles (none when nothing is in flight)."""
        done, self.in_flight, self.retried, self.written, self.landed = self.in_flight, None, False, frozenset(), False
        if done is None:
            return []
        planned = done.plan.outcomes
        committed = False
        if done.write is not None:
            self.written = done.plan.writes  # committed or not: the next plan may have read around it
            try:
                written = await done.write
                if written is not None:  # the write settled the outcomes itself
                    self.check(done.rows, written)
                    planned = written
                committed = True
            except SQLAlchemyError as exc:
                if classify(exc) is Fault.RETRYABLE:
                    planned, self.retried = await self.retry(done.rows, exc), True
                else:
                    committing = done.pending is not None and done.pending.committing
                    planned = self.failure(done.rows, exc, committing=committing)
            self.landed = committed
            if committed:  # the operation's own work after a commit, before the next write starts (as in turn)
                planned = await self.operation.after_commit(planned)
        outcomes = pl.concat([self._unread(done.unread), planned])
        return [(done.batch, done.number, outcomes.sort("line", "part", nulls_last=False, maintain_order=True))]

    async def _plan(self, rows: pl.DataFrame) -> tuple[BatchPlan, _Pending | None]:
        """The rows' plan, and its write, not started, holding the planning connection and its transaction."""
        if rows.is_empty():
            return BatchPlan(pl.DataFrame(schema=OUTCOME_SCHEMA), _no_write), None
        conn = await self.gateway.engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="READ COMMITTED")
            transaction = await conn.begin()
            flight = self.in_flight
            previous = (
                _WriteInFlight(flight.write, flight.plan.writes)
                if flight is not None and flight.write is not None
                else nothing_in_flight
            )
            plan = await self.operation.plan_batch(conn, rows, previous)
            self.check(rows, plan.outcomes)
        except SQLAlchemyError as exc:
            await _close(conn)
            return BatchPlan(self.failure(rows, exc), _no_write), None
        except BaseException:
            await _close(conn)
            raise
        return plan, _Pending(conn, transaction, plan, self.settle, self.changes)

    @staticmethod
    def _unread(rows: pl.DataFrame) -> pl.DataFrame:
        return outcome_rows(rows, Outcome.FAILED, "read", pl.lit(""), pl.col(PROBLEM))


@dataclass(frozen=True)
class _WriteInFlight:
    """The write in flight, as the next batch's plan sees it (PreviousWrite)."""

    task: asyncio.Task[pl.DataFrame | None]
    writes: frozenset[Hashable]

    async def __call__(self) -> None:
        await asyncio.wait([self.task])


@dataclass
class _Pending:
    """A planned batch's write, and the connection whose transaction it runs in."""

    conn: AsyncConnection
    transaction: AsyncTransaction
    plan: BatchPlan
    settle: Settle
    changes: Session | None = None
    committing: bool = False  # the commit is under way: an error now may come after the server committed

    async def run(self) -> pl.DataFrame | None:
        """The write, committed; the batch's outcomes when the write settled them."""
        committed = False
        if self.changes is not None:
            self.changes.open(self.conn)
        try:
            outcomes = await self.plan.write(self.conn)
            if self.changes is not None:
                await self.changes.ahead(self.conn)  # the journal and the ledger ahead of Moodle's commit
            self.committing = True
            await self.transaction.commit()
            committed, self.committing = True, False
            return outcomes
        finally:
            if self.changes is not None:
                self.changes.settle(self.conn, committed)
            self.settle(committed)
            await _close(self.conn)

    async def discard(self) -> None:
        await _close(self.conn)


async def _no_write(conn: AsyncConnection) -> None:
    return None


async def _close(conn: AsyncConnection) -> None:
    """Roll back what is not committed and give the connection back; a connection already lost is let go."""
    with contextlib.suppress(SQLAlchemyError):
        await conn.close()
