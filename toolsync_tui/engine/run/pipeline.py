"""A run: one command file through one operation, every row accounted for.

read (batches) -> validate (structure) -> apply per batch in a transaction -> report, tryback, archive.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui import __version__
from toolsync_tui.config import Config
from toolsync_tui.engine.changes.capture import RunChanges, start_recording
from toolsync_tui.engine.connect import NO_BRIDGE, BridgeLink, open_bridge
from toolsync_tui.engine.datadir.held import HeldRun
from toolsync_tui.engine.datadir.state_db import site_of
from toolsync_tui.engine.datadir.store import DataStore, timestamp
from toolsync_tui.engine.moodle.bridge.client import BridgeError
from toolsync_tui.engine.moodle.db_errors import Fault, classify, describe
from toolsync_tui.engine.moodle.event_log import ActingUserUnknown, EventLog
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.moodle.recording import RUN_SESSION
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
from toolsync_tui.engine.run.blanked_passwords import blanking_rewrite
from toolsync_tui.engine.run.command_file import CommandFile, FileProblem
from toolsync_tui.engine.run.diff import DiffProblem, RowDiff, fingerprint
from toolsync_tui.engine.run.exits import (
    EXIT_CANNOT_RUN,
    EXIT_HELD,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROWS_FAILED,
    EXIT_SAFETY,
)
from toolsync_tui.engine.run.gil import switch_often
from toolsync_tui.engine.run.guards import SourceGuard
from toolsync_tui.engine.run.holding import Holding
from toolsync_tui.engine.run.interrupt import INTERRUPTION, Interruption, Stop, interrupted_words
from toolsync_tui.engine.run.lock import LockBusy, RunLock
from toolsync_tui.engine.run.log import Journal, RunLog, RunRecord
from toolsync_tui.engine.run.operation import SetupProblem, Source
from toolsync_tui.engine.run.overlap import OverlappedWrites, overlap_on
from toolsync_tui.engine.run.report import RunReport, report_lines
from toolsync_tui.engine.run.stops import BrokenDelivery, GuardStop, threshold_stop
from toolsync_tui.engine.run.stops import SafetyStop as SafetyStop  # where callers have always found it
from toolsync_tui.engine.run.verdict import Verdict
from toolsync_tui.engine.snapshot.plan import delivered, snapshot_reasons, with_snapshot
from toolsync_tui.engine.snapshot.source import SnapshotSource
from toolsync_tui.engine.words import plural

RECENT_MESSAGES = 50
T = TypeVar("T")
# A batch that meets a deadlock or a lock wait timeout is tried this many times in all, waiting RETRY_WAIT seconds
# before the second attempt, twice as long before each next one: the other transaction has usually ended by then.
ATTEMPTS = 3
FIRST_BATCH = 1000  # rows at most in the first batch of an operation that overlaps its writes (_batches)
RETRY_WAIT = 0.5


class RunProblem(Exception):
    """The run cannot happen or cannot go on (file, header, configuration, database): exit code 2."""


class RunBusy(RunProblem):
    """Another run holds the data directory: nothing was tried (cron tries again at its next call)."""


class SourceRefused(RunProblem):
    """A broken delivery (guards.py: a cut file, a row count or checksum that does not match): exit code 3."""


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
    interrupted: Stop | None = None  # stopped mid-way (a signal, a full disk): the rows after last_line were not run
    last_line: int | None = None  # the last line of the file the run accounted for
    held: HeldRun | None = None  # held for approval (whole, or its removals only: holding.py)
    file_rows: int | None = None  # the command file's data rows (a snapshot's added rows not counted): guards.py

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
        if self.interrupted is not None:
            return self.interrupted.exit_code
        if self.held is not None:
            return EXIT_HELD
        failed = self.counts.get(Outcome.FAILED, 0) or self.failed_details or self.cancelled
        return EXIT_ROWS_FAILED if failed else EXIT_OK

    @property
    def verdict(self) -> Verdict:
        """What the run came to, in the words every surface uses (engine/run/verdict.py)."""
        return Verdict(
            self.rows,
            self.counts,
            self.duration,
            self.dry_run,
            self.cancelled,
            failed_details=self.failed_details,
            interrupted=self.interrupted.reason if self.interrupted else None,
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
    full: bool = False,
    hold: bool = False,
) -> list[RunResult]:
    """run_operation on each input in turn (each picture archive of the inbox, in name order), each with its own
    report, tryback and archive; see run_series. `hold`: see run_operation."""

    async def run_input(source: Path, force: bool) -> RunResult:
        return await run_operation(
            config,
            gateway,
            name,
            source,
            dry_run=dry_run,
            force=force,
            on_progress=on_progress,
            cancel=cancel,
            full=full,
            hold=hold,
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
        if result.cancelled or result.interrupted:
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
    full: bool = False,
    hold: bool = False,
) -> RunResult:
    """`full`: with the operation's diff on, every row is resolved and the digests saved anew (diff.py). `hold`: a
    threshold or a source guard holds the run for approval rather than stop it (holding.py; never a dry run)."""
    switch_often()
    operation = make_operation(name, config, gateway)
    store = DataStore(config.data_dir)
    path = source or operation_inputs(config, name)[0]
    cancel = cancel if cancel is not None else INTERRUPTION.get()
    if isinstance(cancel, Interruption) and cancel.stop is not None:
        raise RunBusy(f"{name}: not started, toolsync is stopping ({cancel.stop.reason})")  # not tried: stays due
    log = RunLog(config.data_dir)
    started = datetime.now().isoformat(timespec="seconds")
    first = RunRecord(name, path.name, started, dry_run=dry_run)
    try:
        unprivate = store.ensure(group_readable=config.settings.files.group_readable)
        with RunLock(config.data_dir, name) as lock:
            earlier = [_earlier_note(record) for record in log.close_unfinished()]
            journal = log.begin(first)
            run = _Run(config, gateway, operation, store, path, dry_run, on_progress, cancel)
            run.journal = journal
            run.full = full
            run.holding = Holding(config, enabled=hold and not dry_run)
            run.notes.extend(earlier or ([lock.stale_note] if lock.stale_note else []))
            run.notes.extend(unprivate)
            try:
                result = await run.execute(force)
            except (FileProblem, SetupProblem, DatabaseError, BridgeError, DiffProblem, OSError) as exc:
                problem = str(exc) if not isinstance(exc, OSError) else _data_dir_problem(config.data_dir, exc)
                _end(journal, _partial(first, run.result, exit_code=EXIT_CANNOT_RUN, problem=problem))
                if run.result is not None and run.result.report_path is not None:
                    problem += f" (report: {run.result.report_path})"
                raise RunProblem(problem) from None
            except SafetyStop as stop:
                _end(journal, _partial(first, run.result, exit_code=EXIT_SAFETY, problem=str(stop)))
                raise
            except BrokenDelivery as refused:  # never held: no approval makes the file whole
                _end(journal, _partial(first, run.result, exit_code=EXIT_SAFETY, problem=str(refused)))
                raise SourceRefused(str(refused)) from None
            except (asyncio.CancelledError, KeyboardInterrupt):  # stopped at once (a second signal)
                why = run.stopped or Stop("stopped at once", EXIT_INTERRUPTED)
                writing = journal.record.writing  # the batch it cut short, in case its commit had begun
                ended = _partial(first, run.result, exit_code=why.exit_code, interrupted=why.reason, writing=writing)
                _end(journal, ended)
                raise
            except Exception as exc:  # a defect: the run log still says what was committed
                problem = f"unexpected error ({type(exc).__name__})"
                _end(journal, _partial(first, run.result, exit_code=EXIT_CANNOT_RUN, problem=problem))
                raise
            finally:
                run.drop_bridge_check()  # a run that stopped before it needed its bridge: PHP stopped too
            held = {"dry_run": result.dry_run, "problem": result.held.reason} if result.held else {}
            if not _end(journal, _partial(first, result, exit_code=result.exit_code, **held)):
                result.notes.append("the run log could not be written; the next run writes this run's line")
    except LockBusy as exc:
        raise RunBusy(str(exc)) from None  # nothing was tried: not a run of the log
    except OSError as exc:  # the data directory: not a folder, not writable, full
        raise RunProblem(_data_dir_problem(config.data_dir, exc)) from None
    return result


def _end(journal: Journal, record: RunRecord) -> bool:
    """The run's last line; False when the log cannot take it (the progress page keeps it for the next run)."""
    try:
        journal.end(record)
    except OSError:
        return False
    return True


def _partial(first: RunRecord, result: RunResult | None, **fields: Any) -> RunRecord:
    """The run's last line: what it had done (also when it stopped mid-way) and how it ended (`fields`)."""
    done: dict[str, Any] = {}
    if result is not None:
        done = {
            "duration": round(result.duration, 3),
            "rows": result.rows,
            "counts": result.counts,
            "cancelled": result.cancelled,
            "report": str(result.report_path) if result.report_path else None,
            "interrupted": result.interrupted.reason if result.interrupted else None,
            "last_line": result.last_line,
            "file_rows": result.file_rows,
        }
    return replace(first, **{**done, **fields})


def close_unfinished_runs(data_dir: Path) -> list[str]:
    """At the interface's start: the runs that ended without their last line (kill -9, a crash) get it, their reports
    their closing words; a note for each. Nothing when a run holds the data directory now (it will do it)."""
    if not data_dir.is_dir():
        return []
    try:
        with RunLock(data_dir, "recovery"):
            return [_earlier_note(record) for record in RunLog(data_dir).close_unfinished()]
    except (LockBusy, OSError):
        return []


def _earlier_note(record: RunRecord) -> str:
    """A note of the run that found an earlier one which never closed (kill -9, a crash)."""
    report = f"; its report: {record.report}" if record.report else ""
    if not record.interrupted:  # it ended but its last line could not be written (a full disk): written now
        return f"the previous {record.operation} run (started {record.started}) was recorded late{report}"
    return f"the previous {record.operation} run (started {record.started}) was {record.interrupted_words()}{report}"


def _data_dir_problem(data_dir: Path, exc: OSError) -> str:
    """One line for a file the run could not create or write: not a folder, not writable, a full disk."""
    where = Path(exc.filename) if exc.filename else data_dir
    words = f"{where}: {_os_words(exc)}"
    inside = where == data_dir or data_dir in where.parents
    return f"the data directory {data_dir} cannot be used: {words}" if inside else words


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
        self.committing = False  # a batch's commit is under way (_transaction)
        self.journal: Journal | None = None  # the run log's progress page (run_operation)
        self.stopped: Stop | None = None  # why the run stops before the end of its file (interrupt.py)
        self.result: RunResult | None = None  # what it came to, also when it raised (run_operation logs it)
        self.last_line: int | None = None  # the last line of the file accounted for
        self.unwritten: list[str] = []  # files the run could not write (a full disk): each said once
        self.changes: RunChanges | None = None  # what a real run writes, recorded for its undo (changes/capture.py)
        self.full = False  # diff on: resolve every row all the same, and save the digests anew
        self.diff: RowDiff | None = None  # the operation's diff against its last applied file (diff.py)
        self.holding = Holding(config)  # held rather than stopped (run_operation enables it)
        self.removals_beyond_rows = 0  # what the safety pre-pass found the operation removes after its rows
        self.bridge_check: asyncio.Future[BridgeLink] | None = None  # the bridge's start-up check, until _bridge_ready

    @property
    def batch_size(self) -> int:
        size = self.config.settings.run.batch_size
        size = max(size, 10_000) if self.operation.read_only else size
        limit = self.operation.batch_limit
        return min(size, limit) if limit else size

    async def execute(self, force: bool) -> RunResult:
        guard = SourceGuard(self.config, self.operation.name, self.path, dry_run=self.dry_run)  # guards.py
        self.notes.extend(guard.delivery())
        source = self.operation.open_source(self.path)
        try:
            self.notes.extend(guard.rows(source, force))
        except GuardStop as stop:
            if not self._hold(stop):
                raise
        # Snapshot mode: the rows giving its action to what the file no longer names, after the file's (snapshot/).
        source = await with_snapshot(self.config, self.gateway, self.operation, source, self.path, self.notes)
        site = await self.gateway.site_info()
        # Next to the gateway, once per run: PHP starts only for operations that use it or whose events it triggers.
        events = self.config.settings.events
        triggers = events.trigger and not self.operation.read_only
        # PHP's start-up check runs while the run prepares and plans its first batch; the bridge is handed over before
        # prepare() to an operation that plans with it, else before the first write (_bridge_ready).
        if self.operation.uses_bridge or triggers:
            self.bridge_check = asyncio.ensure_future(open_bridge(self.config))
        self.after = AfterCommit(events, NO_BRIDGE, self.operation, self.gateway)
        self.operation.dry_run = self.dry_run  # a dry run may do without the bridge a real run needs
        if self.operation.uses_bridge and self.operation.needs_bridge_to_plan(source.columns):
            await self._bridge_ready()
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
        self.diff = await self._diff(source)
        checked = self.operation.may_destroy(source.columns) or self._counts_updates
        if checked and not self.dry_run and not force:
            try:
                await self._check_safety(source)
            except SafetyStop as stop:
                if not self._hold(stop):
                    await self.operation.finish(self.dry_run)
                    raise
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
            OverlappedWrites(self.gateway, self.operation, self._failure, self._retry, self._check, self.after.settle)
            if self.operation.overlaps_writes and self.gateway.kind != "sqlite" and not self.dry_run and overlap_on()
            else None
        )

        def record(batch: pl.DataFrame, batch_number: int, outcomes: pl.DataFrame) -> None:
            nonlocal rows, failed_details
            outcomes = snapshot_reasons(source, outcomes)  # a snapshot row says why it is there
            self.holding.observe(outcomes, self._removing)  # a run held whole: a sample of its removals
            if self.diff is not None:  # the batch's unchanged rows join it
                batch, outcomes = self.diff.merge(batch, batch_number, outcomes)
            rows += batch.height
            counts.update(count_outcomes(outcomes))
            failed_details += count_failed_details(outcomes)
            if report:
                self._write("report", report.add, outcomes)
            if tryback:
                # A row with a failed part goes to the tryback too: re-running it redoes only what failed.
                retry = outcomes.filter((pl.col("outcome") == Outcome.FAILED) | (pl.col("action") == NOT_PROCESSED))
                self._write(
                    "tryback", tryback.add, batch.join(retry.select(pl.col("line").alias(LINE)), on=LINE, how="semi")
                )
            self.last_line = max(self.last_line or 0, int(batch[LINE].max() or 0))  # type: ignore[arg-type]
            if self.journal is not None:  # committed rows are on record before the next batch starts
                writing = self.journal.record.writing
                self.journal.progress(
                    rows=rows,
                    counts=dict(counts),
                    last_line=self.last_line,
                    report=str(report.text_path) if report else None,
                    writing=writing if writing and writing[1] > self.last_line else None,  # overlapped: the next
                )
            self._progress(source, batch, batch_number, rows, counts, clock, outcomes)
            if self.changes is not None:
                self.changes.account(outcomes)

        self.changes = await start_recording(
            self.config.data_dir, self.gateway, self.journal, self.operation, self.dry_run
        )
        if overlapped is not None:
            overlapped.changes = self.changes
            overlapped.before_write = self._bridge_ready
        session = RUN_SESSION.set(self.changes)
        try:
            try:
                async for batch_number, batch in _numbered(self._batches(source)):
                    if (batch := self._set_aside(source, batch, batch_number, record)).is_empty():
                        continue  # every row of it held for approval (holding.py)
                    if self._stopping():  # a signal or a full disk: the rest goes to the tryback, unprocessed
                        for settled in await overlapped.drain() if overlapped else []:
                            record(*settled)
                        if tryback:
                            self._write("tryback", tryback.add, batch)
                        continue
                    if self.journal is not None and not self.dry_run:  # a kill in its write: lines maybe committed
                        self.journal.progress(writing=[int(batch[LINE].min()), int(batch[LINE].max())])  # type: ignore[arg-type]
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
                    elif (work := self._changed(batch, batch_number)).is_empty():  # all unchanged (diff.py)
                        for settled in await overlapped.drain() if overlapped else []:
                            record(*settled)
                        record(work, batch_number, RowDiff.no_outcomes())
                    elif overlapped:
                        for settled in await overlapped.submit(work, batch_number):
                            record(*settled)
                        await self.after.flush()
                    else:
                        record(work, batch_number, await self._apply(work))
                await self._bridge_ready()  # a run that wrote nothing stops as well on a bridge that does not work
            finally:
                # The batch written last, also when the run stops: its rows are accounted for.
                for settled in await overlapped.drain() if overlapped else []:
                    record(*settled)
                await self.after.flush()
        except DatabaseError as exc:
            self.notes.append(
                f"the run stopped after {plural(rows, 'row')}: {exc}. The rows after them were not "
                "processed; the file stays in the inbox and can be run again as it is."
            )
            raise
        finally:
            try:
                self.notes.extend(await self.operation.finish(self.dry_run))  # its writes recorded too
            finally:
                RUN_SESSION.reset(session)
            self.notes.extend(self.after.notes(self.dry_run))
            self._stopping()  # a second signal cancels the batch in progress: the first one's reason
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
                interrupted=self.stopped,
                last_line=self.last_line,
                file_rows=guard.count,
            )
            if self.stopped is not None:
                self.notes.insert(0, self._interrupted_words(result, tryback is not None, sys.exc_info()[0]))
            if tryback:
                result.tryback_path = self._close("tryback", tryback.close)
            if report:
                self._close("report", lambda: report.close([result.verdict.summary(), *self.notes]))
                result.report_path, result.table_path = report.text_path, report.table_path
            self.result = result
        if not self.dry_run and not cancelled and self.stopped is None:
            self._save_digests()
            # Passwords emptied, unless files.archive_passwords; the file as delivered (no snapshot rows).
            rewrite = blanking_rewrite(delivered(source), files)
            result.archive_path = self.store.archive_file(self.path, self.stamp, files.archive, rewrite)
            guard.archived(self.stamp)
        if self.holding.stop is not None:
            self._held(result, cancelled)
        return result

    async def _diff(self, source: Source) -> RowDiff | None:
        """The run's diff against the operation's last applied file, when the operation's diff setting is on."""
        settings = getattr(self.config.settings.operations, self.operation.name, None)  # None: no settings of its own
        if not getattr(settings, "diff", False):
            return None
        file = delivered(source)  # a snapshot's added rows are always resolved (diff.py)
        if self.operation.read_only or not isinstance(file, CommandFile):
            self.notes.append(f"diff: not used by {self.operation.name} (it writes nothing, or reads no command file)")
            return None
        print_ = fingerprint(self.config, self.operation.name, await site_of(self.gateway))
        added_from = source.first_line if isinstance(source, SnapshotSource) else None
        diff = RowDiff(
            self.config.data_dir, self.operation.name, file.columns, print_, full=self.full, added_from=added_from
        )
        if diff.note:
            self.notes.append(f"diff: {diff.note}")
        return diff

    def _batches(self, source: Source) -> Iterator[pl.DataFrame]:
        """The source's checked batches; with diff, marked and regrouped around their changed rows. An operation that
        overlaps its writes starts with a batch of FIRST_BATCH rows at most (its rows then split in two batches), so
        that its first write starts sooner, the next batch planned meanwhile; dry runs and the safety pre-pass batch
        the same."""
        batches = self.operation.checked_batches(source, self.batch_size)
        if self.diff is not None:
            return self.diff.batches(batches, self.batch_size)
        return _small_first(batches, FIRST_BATCH) if self.operation.overlaps_writes else batches

    def _changed(self, batch: pl.DataFrame, number: int) -> pl.DataFrame:
        """The rows of a batch to resolve: all, or with diff those that changed (the others wait in the diff)."""
        return self.diff.take(batch, number) if self.diff is not None else batch

    def _save_digests(self) -> None:
        """With diff, the digests of the rows that went through, for the next run (a run that went through only)."""
        if self.diff is None or self.journal is None or self.journal.record.run is None:
            return
        try:
            self.diff.save(self.journal.record.run, self.path.name, self.started)
        except DiffProblem as exc:
            self.notes.append(f"diff: {exc}")

    def _stopping(self) -> bool:
        """Whether the run stops before its next batch: a signal (Interruption) or a file it could not write."""
        if self.stopped is None and isinstance(self.cancel, Interruption) and self.cancel.stop is not None:
            self.stopped = self.cancel.stop
        return self.stopped is not None

    def _write(self, what: str, write: Callable[[pl.DataFrame], None], frame: pl.DataFrame) -> None:
        """A batch's lines into the report or the tryback. When they cannot be written (a full disk), the run stops
        before its next batch: no row is written to the database that the report could not account for."""
        try:
            write(frame)
        except OSError as exc:
            self._unwritten(what, exc)
            if self.stopped is None:
                self.stopped = Stop(f"the {what} could not be written: {_os_words(exc)}", EXIT_CANNOT_RUN)

    def _close(self, what: str, close: Callable[[], T]) -> T | None:
        try:
            return close()
        except OSError as exc:
            self._unwritten(what, exc)
            return None

    def _unwritten(self, what: str, exc: OSError) -> None:
        if what not in self.unwritten:
            self.unwritten.append(what)
            self.notes.append(f"the {what} could not be written ({_os_words(exc)}): it misses lines")

    def _interrupted_words(self, result: RunResult, kept: bool, raised: type[BaseException] | None) -> str:
        """The report's closing line of a run stopped mid-way, and where the rows it did not process are."""
        assert self.stopped is not None
        words = interrupted_words(self.stopped.reason, result.rows, result.last_line)
        if raised is not None and issubclass(raised, asyncio.CancelledError | KeyboardInterrupt):
            cut = "was being committed: it may have been" if self.committing else "was rolled back, not"
            return f"{words}; the batch in progress {cut} written; the command file stays in the inbox"
        if kept and "tryback" not in self.unwritten:
            return f"{words}; the tryback holds them; the command file stays in the inbox"
        return f"{words}; the command file stays in the inbox"

    async def _bridge_ready(self) -> None:
        """The run's bridge, checked and handed over to the operation and to what follows each commit, once: before
        prepare() for an operation that plans with it, else before the first batch is written (a dry run's too, as a
        real run's), PHP's start-up check having run meanwhile. A configured bridge that does not work, for an
        operation that needs it, stops the run there: nothing was written (BridgeError, SetupProblem)."""
        if self.bridge_check is None:
            return
        link = await self.bridge_check
        self.bridge_check = None
        self.after.link = link
        self.after.check()
        if self.operation.uses_bridge:
            self.operation.take_bridge(link)

    def drop_bridge_check(self) -> None:
        """A run that stopped before it needed its bridge: the check (its PHP process) stopped, never awaited."""
        if self.bridge_check is not None:
            self.bridge_check.cancel()
            self.bridge_check = None

    async def _apply(self, batch: pl.DataFrame) -> pl.DataFrame:
        await self._bridge_ready()
        malformed = batch.filter(pl.col(PROBLEM).is_not_null())
        wellformed = batch.filter(pl.col(PROBLEM).is_null())
        parts = [outcome_rows(malformed, Outcome.FAILED, "read", pl.lit(""), pl.col(PROBLEM))]
        if not wellformed.is_empty():
            write = not (self.dry_run or self.operation.read_only)
            parts.append(await self._apply_in_transaction(wellformed, write=write))
        return pl.concat(parts).sort("line", "part", nulls_last=False, maintain_order=True)

    async def _apply_in_transaction(
        self, rows: pl.DataFrame, *, write: bool, counted: bool = True, failed: SQLAlchemyError | None = None
    ) -> pl.DataFrame:
        """A batch's resolution, plan and (when `write`) writes in one transaction: all or nothing; then what follows
        its commit (after_commit.py, then the operation's own). `counted`: a dry pass whose welcome messages the
        report counts (not the safety pre-pass). `failed`: the error its first attempt met (an overlapped write).

        A deadlock or lock wait timeout rolls the batch back and tries it again (ATTEMPTS in all); any other error
        rolls it back and fails its rows, or stops the run (_failure).
        """
        attempt, error = (2, failed) if failed is not None else (1, None)
        while True:
            if error is not None:
                await asyncio.sleep(RETRY_WAIT * 2 ** (attempt - 2))
            try:
                outcomes = await self._transaction(rows, write=write, counted=counted)
                break
            except SQLAlchemyError as exc:
                if classify(exc) is not Fault.RETRYABLE or attempt == ATTEMPTS:
                    return self._failure(rows, exc, attempt, committing=self.committing)
                error, attempt = exc, attempt + 1
        if error is not None:
            self.notes.append(f"{_lines(rows)} were tried again after {describe(error)}; attempt {attempt} succeeded")
        self._check(rows, outcomes)
        if not write:
            return outcomes
        await self.after.flush()
        return await self.operation.after_commit(outcomes)

    async def _transaction(self, rows: pl.DataFrame, *, write: bool, counted: bool) -> pl.DataFrame:
        """One attempt at a batch: committed when `write`, else rolled back."""
        committed = self.committing = False
        changes = self.changes if write else None  # the batch's writes recorded for an undo (changes/capture.py)
        recorded: AsyncConnection | None = None
        try:
            async with self.gateway.engine.connect() as conn:
                transaction = await conn.begin()
                if changes is not None:
                    changes.open(recorded := conn)
                try:
                    outcomes = await self.operation.apply(conn, rows, not write)
                    if not write and counted and self.dry_run:
                        await self.after.count_dry(conn)
                except BaseException:
                    await transaction.rollback()
                    raise
                if write:
                    if changes is not None:
                        await changes.ahead(conn)  # the journal and the ledger ahead of Moodle's commit
                    self.committing = True  # an error now may come after the server committed: unknown
                    await transaction.commit()
                    committed, self.committing = True, False
                else:
                    await transaction.rollback()
        finally:
            if changes is not None and recorded is not None:
                changes.settle(recorded, committed)
            self.after.settle(committed)
        return outcomes

    async def _retry(self, rows: pl.DataFrame, failed: SQLAlchemyError) -> pl.DataFrame:
        """An overlapped write that met a deadlock or lock wait timeout, tried again on its own (overlap.py)."""
        return await self._apply_in_transaction(rows, write=True, failed=failed)

    @staticmethod
    def _failure(
        rows: pl.DataFrame, exc: SQLAlchemyError, attempts: int = 1, *, committing: bool = False
    ) -> pl.DataFrame:
        """The outcomes of a batch the database refused, rolled back: its rows fail with the server's words. A lost
        or refused connection, a timeout or a missing privilege stops the run instead (db_errors.Fault); `committing`:
        the error came while the batch was being committed."""
        if classify(exc).stops_run:
            if committing:
                fate = (
                    "the batch in progress was being committed: whether the database kept it is unknown (a new run of "
                    "the file finds its rows written or writes them)"
                )
            else:
                fate = "the batch in progress was rolled back"
            raise DatabaseError(f"{describe(exc)}; {fate}") from None
        tried = f", at each of {attempts} attempts" if attempts > 1 else ""
        return outcome_rows(
            rows, Outcome.FAILED, "write", pl.lit(""), f"{describe(exc)}{tried}; nothing of this batch was written"
        )

    def _check(self, rows: pl.DataFrame, outcomes: pl.DataFrame) -> None:
        own = row_outcomes(outcomes)
        if own.height != rows.height or own["line"].n_unique() != rows.height:
            raise AssertionError(f"{self.operation.name} returned {own.height} outcomes for {rows.height} rows")

    async def _check_safety(self, source: Source) -> None:
        """The safety pre-pass: the rows that can remove (all rows, when updates are counted too) dry-run batch by
        batch; raises SafetyStop past a threshold (stops.threshold_stop)."""
        run = self.config.settings.run
        if run.safety_threshold <= 0 and not run.safety_max_rows and not self._counts_updates:
            return
        destructive = updated = seen = 0
        async for _, batch in _numbered(self._batches(source)):
            rows = self.diff.changed_rows(batch) if self.diff is not None else batch  # unchanged rows do nothing
            wellformed = rows.filter(pl.col(PROBLEM).is_null())
            seen += batch.filter(pl.col(PROBLEM).is_null()).height  # the file's rows, unchanged ones too (diff.py)
            candidates = wellformed if self._counts_updates else self.operation.safety_candidates(wellformed)
            if candidates.is_empty():
                continue
            planned = await self._apply_in_transaction(candidates, write=False, counted=False)
            destructive += planned.filter(self._removing).height
            updated += row_outcomes(planned).filter(pl.col("outcome") == Outcome.UPDATED.value).height
            self.holding.saw(planned, self._removing)  # the rows a hold of the removals only sets aside
        async with self.gateway.reading() as conn:
            base = await self.operation.safety_base(conn)
            self.removals_beyond_rows = await self.operation.removals_after_rows(conn)
        destructive += self.removals_beyond_rows
        stop = threshold_stop(self.operation.name, run, destructive, updated, base, seen)
        if stop is not None:
            raise stop

    @property
    def _removing(self) -> pl.Expr:
        """The outcomes that remove: a row's own destructive action (suspend, shift ...) and every record it removes,
        its own or a part's (a group left by greplace), each counted once."""
        actions = list(self.operation.destructive_actions)
        return pl.col("action").is_in(actions) | (pl.col("outcome") == Outcome.DELETED.value)

    @property
    def _counts_updates(self) -> bool:
        """Whether a threshold counts updates: the pre-pass then dry-runs every row (only then)."""
        run = self.config.settings.run
        return (run.update_threshold > 0 or run.update_max_rows > 0) and not self.operation.read_only

    def _hold(self, stop: SafetyStop) -> bool:
        """Whether the run goes on held rather than stop: whole, as a dry run, or without its removals."""
        run_id = self.journal.record.run if self.journal is not None else None
        if run_id is None or not self.holding.take(stop, self.removals_beyond_rows):
            return False
        self.notes.append(self.holding.note(run_id))
        if self.holding.whole:
            self.dry_run = self.operation.dry_run = True
            if self.journal is not None:
                self.journal.progress(dry_run=True)
        return True

    def _set_aside(
        self,
        source: Source,
        batch: pl.DataFrame,
        number: int,
        record: Callable[[pl.DataFrame, int, pl.DataFrame], None],
    ) -> pl.DataFrame:
        """A batch without its rows held for approval (a hold of the removals only), which are recorded skipped."""
        run_id = self.journal.record.run if self.journal is not None else None
        if self.holding.stop is None or run_id is None:
            return batch
        rest, held = self.holding.set_aside(batch, source, run_id)
        if not held.is_empty():
            record(held, number, self.holding.held_outcomes(held, run_id))
        return rest

    def _held(self, result: RunResult, cancelled: bool) -> None:
        """The hold made once the run has gone through (its file, or its held rows, into held/); a cancelled or
        interrupted run holds nothing: its file stays in the inbox."""
        run_id = self.journal.record.run if self.journal is not None else None
        if cancelled or self.stopped is not None or run_id is None:
            self.holding.abandon(run_id)
            return
        result.held = self.holding.hold(run_id, self.operation.name, self.path, result.counts, result.report_path)

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


def _small_first(batches: Iterator[pl.DataFrame], first: int) -> Iterator[pl.DataFrame]:
    head = next(batches, None)
    if head is None:
        return
    yield from [head.slice(0, first), head.slice(first)] if head.height > first else [head]
    yield from batches


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


def _os_words(exc: OSError) -> str:
    """ "No space left on device": the system's words, also from polars' errors, which carry no errno."""
    if exc.strerror:
        return exc.strerror
    code = re.search(r"\(os error (\d+)\)", str(exc))
    return os.strerror(int(code[1])) if code else str(exc)


def _lines(rows: pl.DataFrame) -> str:
    """A batch's lines, for a note: "lines 2-501"."""
    first, last = int(rows[LINE].min()), int(rows[LINE].max())  # type: ignore[arg-type]
    return f"line {first}" if first == last else f"lines {first}-{last}"
