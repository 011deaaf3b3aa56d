"""A run: one command file through one operation, every row accounted for.

read (batches) -> validate (structure) -> apply per batch in a transaction -> report, tryback, archive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui import __version__
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import NO_BRIDGE, open_bridge
from toolsync_tui.engine.datadir.store import DataStore, timestamp
from toolsync_tui.engine.moodle.bridge.client import BridgeError
from toolsync_tui.engine.moodle.event_log import ActingUserUnknown, EventLog
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.registry import OPERATIONS, Operation
from toolsync_tui.engine.rows import (
    LINE,
    NOT_PROCESSED,
    PROBLEM,
    Outcome,
    count_failed_details,
    count_outcomes,
    outcome_rows,
    row_outcomes,
)
from toolsync_tui.engine.run.after_commit import AfterCommit
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_OK, EXIT_ROWS_FAILED, EXIT_SAFETY
from toolsync_tui.engine.run.lock import LockBusy, RunLock
from toolsync_tui.engine.run.log import RunLog, RunRecord
from toolsync_tui.engine.run.operation import SetupProblem, Source
from toolsync_tui.engine.run.overlap import OverlappedWrites
from toolsync_tui.engine.run.report import RunReport, report_lines
from toolsync_tui.engine.run.verdict import Verdict

RECENT_MESSAGES = 50


class RunProblem(Exception):
    """The run cannot happen or cannot go on (file, header, configuration, database): exit code 2."""


class RunBusy(RunProblem):
    """Another run holds the data directory: nothing was tried (cron tries again at its next call)."""


class SafetyStop(Exception):
    """The run would remove more than the configured share of what it touches: exit code 3."""

    def __init__(self, operation: str, destructive: int, base: int, threshold: float) -> None:
        share = destructive / base if base else 1.0
        super().__init__(
            f"{operation}: this file would delete, unenrol or suspend {destructive} of {base} existing "
            f"records ({share:.0%}), more than the safety threshold of {threshold:.0%}. Nothing was "
            f"written. Re-run with --force (or confirm in the interface) if this is intended."
        )
        self.destructive = destructive
        self.base = base


@dataclass
class Progress:
    operation: str
    lines_done: int
    lines_total: int
    counts: dict[str, int]
    rate: float  # data rows per second
    batch: int
    elapsed: float
    recent: list[str] = field(default_factory=list)  # report lines of the last batch (bounded)


@dataclass
class RunResult:
    operation: str
    source: Path
    dry_run: bool
    counts: dict[str, int]
    rows: int
    duration: float
    report_path: Path | None = None
    table_path: Path | None = None
    tryback_path: Path | None = None
    archive_path: Path | None = None
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)
    failed_details: int = 0  # failed parts of rows (a user's course2 enrolment ...), beyond the rows' own outcomes

    def files(self) -> list[tuple[str, Path]]:
        """What the run wrote, labelled: report, table, tryback, archived."""
        labelled = (
            ("report", self.report_path),
            ("table", self.table_path),
            ("tryback", self.tryback_path),
            ("archived", self.archive_path),
        )
        return [(label, path) for label, path in labelled if path is not None]

    @property
    def exit_code(self) -> int:
        failed = self.counts.get(Outcome.FAILED, 0) or self.failed_details or self.cancelled
        return EXIT_ROWS_FAILED if failed else EXIT_OK

    @property
    def verdict(self) -> Verdict:
        """What the run came to, in the words every surface uses (engine/run/verdict.py)."""
        return Verdict(
            self.rows, self.counts, self.duration, self.dry_run, self.cancelled, failed_details=self.failed_details
        )


ProgressCallback = Callable[[Progress], None]
# Asked when the safety threshold stops an input's run (nothing was written): whether to run it again with force.
Confirm = Callable[[SafetyStop], Awaitable[bool]]
RunInput = Callable[[Path, bool], Awaitable[RunResult]]  # one input's run, with force or not


def _implementation(name: str) -> type[Operation]:
    info = OPERATIONS.get(name)
    if info is None:
        raise RunProblem(f"unknown operation '{name}'; operations are {', '.join(OPERATIONS)}")
    return info.implementation


def make_operation(name: str, config: Config, gateway: MoodleGateway) -> Operation:
    return _implementation(name)(config, gateway)


def operation_inputs(config: Config, name: str) -> list[Path]:
    """What the operation runs on when no file is given: its preselected file, or every picture archive of the
    inbox; raises RunProblem when an operation of archives finds none."""
    suffix = _implementation(name).inputs_suffix
    store = DataStore(config.data_dir)
    setting = config.operation(name).file
    inputs = store.inputs(setting, suffix)
    if not inputs:
        raise RunProblem(f"{name}: nothing to run, no {store.inputs_pattern(setting, suffix)} found")
    return inputs


async def run_inputs(
    config: Config,
    gateway: MoodleGateway,
    name: str,
    sources: Sequence[Path] | None = None,
    *,
    confirm: Confirm | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    dry_run: bool = False,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[RunResult]:
    """run_operation on each input in turn (each picture archive of the inbox, in name order), each with its own
    report, tryback and archive; see run_series."""

    async def run_input(source: Path, force: bool) -> RunResult:
        return await run_operation(
            config, gateway, name, source, dry_run=dry_run, force=force, on_progress=on_progress, cancel=cancel
        )

    inputs = operation_inputs(config, name) if sources is None else sources
    return await run_series(inputs, run_input, force=force, confirm=confirm, on_result=on_result)


async def run_series(
    inputs: Sequence[Path],
    run_input: RunInput,
    *,
    force: bool = False,
    confirm: Confirm | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Each input's run in turn, `run_input` running one (the interface's runs each in a thread of its own).

    A cancelled run ends the series. A run the safety threshold stops is run again with force when `confirm` says so;
    without `confirm` (the command line, cron), or unconfirmed, the SafetyStop ends the series. A run that cannot
    happen (RunProblem) ends it too: the inputs before it done and archived, the ones after it left in the inbox."""
    results: list[RunResult] = []
    for source in inputs:
        try:
            result = await run_input(source, force)
        except SafetyStop as stop:
            if confirm is None or not await confirm(stop):
                raise
            result = await run_input(source, True)  # asked once: with force, the threshold is not checked
        results.append(result)
        if on_result is not None:
            on_result(result)
        if result.cancelled:
            break
    return results


async def run_operation(
    config: Config,
    gateway: MoodleGateway,
    name: str,
    source: Path | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    operation = make_operation(name, config, gateway)
    store = DataStore(config.data_dir)
    store.ensure()
    path = source or operation_inputs(config, name)[0]
    log = RunLog(config.data_dir)
    started = datetime.now().isoformat(timespec="seconds")
    try:
        with RunLock(config.data_dir, name) as lock:
            run = _Run(config, gateway, operation, store, path, dry_run, on_progress, cancel)
            if lock.stale_note:
                run.notes.append(lock.stale_note)
            result = await run.execute(force)
    except LockBusy as exc:
        raise RunBusy(str(exc)) from None  # nothing was tried: not a run of the log
    except (FileProblem, SetupProblem, DatabaseError, BridgeError) as exc:
        log.add(RunRecord(name, path.name, started, exit_code=EXIT_CANNOT_RUN, dry_run=dry_run, problem=str(exc)))
        raise RunProblem(str(exc)) from None
    except SafetyStop as stop:
        log.add(RunRecord(name, path.name, started, exit_code=EXIT_SAFETY, dry_run=dry_run, problem=str(stop)))
        raise
    log.add(
        RunRecord(
            name,
            path.name,
            started,
            duration=round(result.duration, 3),
            rows=result.rows,
            counts=result.counts,
            exit_code=result.exit_code,
            dry_run=dry_run,
            cancelled=result.cancelled,
            report=str(result.report_path) if result.report_path else None,
        )
    )
    return result


class _Run:
    def __init__(
        self,
        config: Config,
        gateway: MoodleGateway,
        operation: Operation,
        store: DataStore,
        path: Path,
        dry_run: bool,
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.operation = operation
        self.store = store
        self.path = path
        self.dry_run = dry_run
        self.on_progress = on_progress
        self.cancel = cancel
        self.notes: list[str] = []
        self.started = datetime.now()
        self.stamp = timestamp(self.started)
        self.after = AfterCommit(config.settings.events, NO_BRIDGE, operation, gateway)

    @property
    def batch_size(self) -> int:
        size = self.config.settings.run.batch_size
        size = max(size, 10_000) if self.operation.read_only else size
        limit = self.operation.batch_limit
        return min(size, limit) if limit else size

    async def execute(self, force: bool) -> RunResult:
        source = self.operation.open_source(self.path)
        site = await self.gateway.site_info()
        # Next to the gateway, once per run: PHP starts only for operations that use it or whose events it triggers.
        events = self.config.settings.events
        triggers = events.trigger and not self.operation.read_only
        link = await open_bridge(self.config) if self.operation.uses_bridge or triggers else NO_BRIDGE
        self.after = AfterCommit(events, link, self.operation, self.gateway)
        self.after.check()
        if self.operation.uses_bridge:
            self.operation.take_bridge(link)
        try:
            async with self.gateway.reading() as conn:
                self.operation.event_log = await _event_log(self.gateway, conn, self.config)
                await self.operation.prepare(conn, source.columns)
        except FileProblem as exc:
            await self.operation.finish(self.dry_run)
            raise FileProblem(f"{source.name}: {exc}") from None
        except SetupProblem:
            await self.operation.finish(self.dry_run)
            raise
        if self.operation.may_destroy(source.columns) and not self.dry_run and not force:
            try:
                await self._check_safety(source)
            except BaseException:
                await self.operation.finish(self.dry_run)
                raise
        files = self.config.settings.files
        report = tryback = None
        if files.report:
            text_path, table_path = self.store.report_paths(self.stamp, self.operation.name, self.path, self.dry_run)
            report = RunReport(text_path, table_path, self._heading(site.label, source))
        if files.tryback and not self.dry_run:
            tryback = source.tryback(self.store.tryback_path(self.stamp, self.path))
        counts: Counter[str] = Counter()
        failed_details = 0
        rows = 0
        clock = time.monotonic()
        cancelled = False
        overlapped = (
            OverlappedWrites(self.gateway, self.operation, self._failure, self._check, self.after.settle)
            if self.operation.overlaps_writes and self.gateway.kind == "mariadb" and not self.dry_run
            else None
        )

        def record(batch: pl.DataFrame, batch_number: int, outcomes: pl.DataFrame) -> None:
            nonlocal rows, failed_details
            rows += batch.height
            counts.update(count_outcomes(outcomes))
            failed_details += count_failed_details(outcomes)
            if report:
                report.add(outcomes)
            if tryback:
                # A row with a failed part goes to the tryback too: re-running it redoes only what failed.
                retry = outcomes.filter((pl.col("outcome") == Outcome.FAILED) | (pl.col("action") == NOT_PROCESSED))
                tryback.add(batch.join(retry.select(pl.col("line").alias(LINE)), on=LINE, how="semi"))
            self._progress(source, batch, batch_number, rows, counts, clock, outcomes)

        try:
            try:
                async for batch_number, batch in _numbered(source.batches(self.batch_size)):
                    if self.cancel is not None and self.cancel.is_set():
                        cancelled = True
                        for settled in await overlapped.drain() if overlapped else []:
                            record(*settled)
                        skipped = "not processed: the run was cancelled"
                        record(
                            batch,
                            batch_number,
                            outcome_rows(batch, Outcome.SKIPPED, NOT_PROCESSED, pl.lit(""), skipped),
                        )
                    elif overlapped:
                        for settled in await overlapped.submit(batch, batch_number):
                            record(*settled)
                        await self.after.flush()
                    else:
                        record(batch, batch_number, await self._apply(batch))
            finally:
                # The batch written last, also when the run stops: its rows are accounted for.
                for settled in await overlapped.drain() if overlapped else []:
                    record(*settled)
                await self.after.flush()
        except DatabaseError as exc:
            self.notes.append(
                f"the run stopped after {rows} rows: {exc}. The rows after them were not "
                "processed; the file stays in the inbox and can be run again as it is."
            )
            raise
        finally:
            self.notes.extend(await self.operation.finish(self.dry_run))
            self.notes.extend(self.after.notes(self.dry_run))
            duration = time.monotonic() - clock
            result = RunResult(
                self.operation.name,
                self.path,
                self.dry_run,
                dict(counts),
                rows,
                duration,
                cancelled=cancelled,
                notes=self.notes,
                failed_details=failed_details,
            )
            if report:
                report.close([result.verdict.summary(), *self.notes])
                result.report_path, result.table_path = report.text_path, report.table_path
            if tryback:
                result.tryback_path = tryback.close()
        if not self.dry_run and not cancelled:
            result.archive_path = self.store.archive_file(self.path, self.stamp, files.archive)
        return result

    async def _apply(self, batch: pl.DataFrame) -> pl.DataFrame:
        malformed = batch.filter(pl.col(PROBLEM).is_not_null())
        wellformed = batch.filter(pl.col(PROBLEM).is_null())
        parts = [outcome_rows(malformed, Outcome.FAILED, "read", pl.lit(""), pl.col(PROBLEM))]
        if not wellformed.is_empty():
            write = not (self.dry_run or self.operation.read_only)
            parts.append(await self._apply_in_transaction(wellformed, write=write))
        return pl.concat(parts).sort("line", "part", nulls_last=False, maintain_order=True)

    async def _apply_in_transaction(self, rows: pl.DataFrame, *, write: bool, counted: bool = True) -> pl.DataFrame:
        """A batch's resolution, plan and (when `write`) writes in one transaction: all or nothing; then what follows
        its commit (after_commit.py, then the operation's own). `counted`: a dry pass whose welcome messages the
        report counts (not the safety pre-pass).

        A database error rolls the batch back and fails its rows; a lost connection stops the run.
        """
        committed = False
        try:
            async with self.gateway.engine.connect() as conn:
                transaction = await conn.begin()
                try:
                    outcomes = await self.operation.apply(conn, rows, not write)
                    if not write and counted and self.dry_run:
                        await self.after.count_dry(conn)
                except BaseException:
                    await transaction.rollback()
                    raise
                if write:
                    await transaction.commit()
                    committed = True
                else:
                    await transaction.rollback()
        except SQLAlchemyError as exc:
            return self._failure(rows, exc)
        finally:
            self.after.settle(committed)
        self._check(rows, outcomes)
        if not write:
            return outcomes
        await self.after.flush()
        return await self.operation.after_commit(outcomes)

    @staticmethod
    def _failure(rows: pl.DataFrame, exc: SQLAlchemyError) -> pl.DataFrame:
        """The outcomes of a batch the database refused, rolled back; a lost connection stops the run instead."""
        if isinstance(exc, OperationalError):
            raise DatabaseError(
                f"the database connection failed during the run: {_reason(exc)}; the batch in progress was rolled back"
            ) from None
        return outcome_rows(
            rows,
            Outcome.FAILED,
            "write",
            pl.lit(""),
            f"database error, nothing of this batch was written: {_reason(exc)}",
        )

    def _check(self, rows: pl.DataFrame, outcomes: pl.DataFrame) -> None:
        own = row_outcomes(outcomes)
        if own.height != rows.height or own["line"].n_unique() != rows.height:
            raise AssertionError(f"{self.operation.name} returned {own.height} outcomes for {rows.height} rows")

    async def _check_safety(self, source: Source) -> None:
        run = self.config.settings.run
        if run.safety_threshold <= 0:
            return
        destructive = 0
        actions = list(self.operation.destructive_actions)
        async for _, batch in _numbered(source.batches(self.batch_size)):
            candidates = self.operation.safety_candidates(batch.filter(pl.col(PROBLEM).is_null()))
            if candidates.is_empty():
                continue
            planned = await self._apply_in_transaction(candidates, write=False, counted=False)
            # A row's own destructive action (suspend, shift ...) and every record it removes, its own or a part's
            # (a group left by greplace), each count once.
            removing = pl.col("action").is_in(actions) | (pl.col("outcome") == Outcome.DELETED.value)
            destructive += planned.filter(removing).height
        async with self.gateway.reading() as conn:
            base = await self.operation.safety_base(conn)
            destructive += await self.operation.removals_after_rows(conn)
        if destructive >= max(run.safety_min_rows, 1) and destructive > run.safety_threshold * base:
            raise SafetyStop(self.operation.name, destructive, base, run.safety_threshold)

    def _heading(self, site: str, source: Source) -> list[str]:
        mode = " (DRY RUN: nothing was written)" if self.dry_run else ""
        return [
            f"toolsync {__version__}: {self.operation.title}{mode}",
            f"file: {self.path} ({source.describe()})",
            f"site: {site}",
            f"started: {self.started:%Y-%m-%d %H:%M:%S}",
        ]

    def _progress(
        self,
        source: Source,
        batch: pl.DataFrame,
        number: int,
        rows: int,
        counts: Counter[str],
        clock: float,
        outcomes: pl.DataFrame,
    ) -> None:
        if self.on_progress is None:
            return
        elapsed = time.monotonic() - clock
        recent = outcomes.tail(RECENT_MESSAGES).select(report_lines()).to_series().to_list()
        self.on_progress(
            Progress(
                operation=self.operation.name,
                lines_done=int(batch[LINE].max() or 0),  # type: ignore[arg-type]
                lines_total=source.physical_lines,
                counts=dict(counts),
                rate=rows / elapsed if elapsed > 0 else 0.0,
                batch=number,
                elapsed=elapsed,
                recent=recent,
            )
        )


async def _numbered(batches: Iterator[pl.DataFrame]) -> AsyncIterator[tuple[int, pl.DataFrame]]:
    """Batches pulled in a worker thread: parsing a batch never stalls the event loop, and the next batch is
    parsed while the current one is applied (the database's turn is mostly waiting)."""
    number = 0
    ahead = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
    try:
        while (batch := await ahead) is not None:
            number += 1
            ahead = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
            yield number, batch
    finally:
        if not ahead.done():
            await asyncio.wait([ahead])  # the generator is not re-entered while its thread still runs


async def _event_log(gateway: MoodleGateway, conn: AsyncConnection, config: Config) -> EventLog:
    """The run's standard log (site settings and acting user read once); an unknown acting user stops the run."""
    try:
        return await EventLog.load(gateway, conn, config.settings.events)
    except ActingUserUnknown as exc:
        raise SetupProblem(str(exc)) from None


def _reason(exc: SQLAlchemyError) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    return str(exc).splitlines()[0]
