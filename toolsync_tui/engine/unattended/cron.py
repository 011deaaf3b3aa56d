"""`toolsync cron`, which the system crontab calls every few minutes: take the complete files of the drop directory
into the inbox, run every operation whose schedule is due (in dependency order, each on its preselected file or
archives), remove expired archives, reports and trybacks, and tell the administrators.

Calls never overlap (a second one, while a long run goes on, does nothing), and runs never overlap with runs from the
interface or the command line (the pipeline's lock: an operation that finds it held stays due for the next call).
Every line of the log is also printed as it happens, for the system log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.datadir.dropdir import capture
from toolsync_tui.engine.datadir.held import HeldRuns
from toolsync_tui.engine.datadir.retention import remove_expired
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_HELD, EXIT_OK
from toolsync_tui.engine.run.lock import LockBusy, RunLock
from toolsync_tui.engine.run.pipeline import RunBusy, RunProblem, RunResult, SafetyStop, operation_inputs, run_inputs
from toolsync_tui.engine.unattended.notify import notice_for, send, wanted
from toolsync_tui.engine.unattended.schedules import ScheduleProblem, ScheduleState, schedule_zone
from toolsync_tui.engine.words import plural, size_text

CRON_LOCK = ".toolsync-cron.lock"
STATE = "cron_state.json"
CAPTURES = "captures.jsonl"


@dataclass
class CronReport:
    lines: list[str] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # operations that could not run, in plain words
    waiting: list[str] = field(default_factory=list)  # operations not run: a held run of theirs awaits approval

    @property
    def exit_code(self) -> int:
        """2 when an operation could not run, else the worst run's code (4 when a held run waits; 0 when nothing was
        due)."""
        if self.problems:
            return EXIT_CANNOT_RUN
        worst = max((result.exit_code for result in self.results), default=EXIT_OK)
        return max(worst, EXIT_HELD) if self.waiting else worst


def cron_order(config: Config) -> list[str]:
    """The order operations run in: cron.order first, then the others in the original's dependency order."""
    chosen = config.settings.cron.order
    unknown = [name for name in chosen if name not in OPERATIONS]
    if unknown:
        raise ScheduleProblem(
            f"cron.order: {', '.join(unknown)} {'is not an operation' if len(unknown) == 1 else 'are not operations'}"
            f"; operations are {', '.join(OPERATIONS)}"
        )
    return list(dict.fromkeys([*chosen, *OPERATIONS]))


async def run_cron(config: Config, *, now: datetime | None = None, emit: Callable[[str], None] = print) -> CronReport:
    """One call of the crontab line. `now` pins the clock (an aware datetime) for tests."""
    report = CronReport()

    def say(line: str) -> None:
        report.lines.append(line)
        emit(line)

    try:
        with RunLock(config.data_dir, "cron", CRON_LOCK):
            await _Call(config, report, say).run(now)
    except LockBusy:
        say("an earlier toolsync cron is still running: nothing done this time")
    return report


class _Call:
    def __init__(self, config: Config, report: CronReport, say: Callable[[str], None]) -> None:
        self.config = config
        self.report = report
        self.say = say
        self.store = DataStore(config.data_dir)
        self._gateway: MoodleGateway | None = None

    async def run(self, now: datetime | None) -> None:
        settings = self.config.settings.cron
        zone = schedule_zone(settings.timezone)
        now = (now or datetime.now(zone)).astimezone(zone)
        for problem in self.store.ensure(group_readable=self.config.settings.files.group_readable):
            self.say(f"data directory: {problem}")
        if settings.drop_dir:
            self._take_dropped_files()
        state = ScheduleState(self.config.data_dir / STATE)
        try:
            for name in cron_order(self.config):
                operation = self.config.operation(name)
                expression = operation.schedule
                slot = state.due(name, expression, now) if expression else None
                # A paused schedule's slots pass unrun: enabled again, it waits for its next one.
                if slot is not None and (not operation.schedule_enabled or await self._run_due(name, slot)):
                    state.handled(name, expression, slot)
        finally:
            if self._gateway is not None:
                await self._gateway.close()
        if settings.retention_days:
            self._remove_expired(settings.retention_days)
        await self._notify()

    def _take_dropped_files(self) -> None:
        settings = self.config.settings.cron
        dropped = capture(
            self.config.resolve(settings.drop_dir),
            self.store.inbox,
            settle_seconds=settings.settle_seconds,
            lock_files=settings.lock_files,
            record=self.config.data_dir / CAPTURES,
        )
        if dropped.locked_by:
            self.say(f"drop directory: {dropped.locked_by} is there, the feeder is writing: nothing taken")
        for taken in dropped.captured:
            replaced = ", replacing the one waiting in the inbox" if taken.replaced else ""
            self.say(f"drop directory: took {taken.target.name} ({size_text(taken.size)}){replaced}")
        for name, why in dropped.waiting:
            self.say(f"drop directory: {name} left for next time: {why}")
        for note in dropped.notes:
            self.say(f"drop directory: {note}")

    async def _run_due(self, name: str, slot: datetime) -> bool:
        """Run a due operation on its inputs; whether its slot is handled (False: it stays due, the data directory
        was busy)."""
        when = f"due {slot:%Y-%m-%d %H:%M}"
        if self._waits_for_approval(name, when):
            return True
        try:
            inputs = [path for path in operation_inputs(self.config, name) if path.is_file()]
        except RunProblem:  # an operation of archives that found none
            inputs = []
        if not inputs:
            pattern = self.store.inputs_pattern(
                self.config.operation(name).file, OPERATIONS[name].implementation.inputs_suffix
            )
            self.say(f"{name}: {when}, nothing to run ({pattern.name} is not in the inbox)")
            return True
        try:
            hold = self.config.settings.run.hold != "never"  # "cron" and "always" both hold cron's runs
            await run_inputs(self.config, self._open_gateway(), name, inputs, on_result=self._ran, hold=hold)
        except RunBusy as busy:
            self.say(f"{name}: {when}, not run: {busy}; it stays due")
            return False
        except (SafetyStop, RunProblem, DatabaseError) as problem:
            self.report.problems.append(f"{name}: {problem}")
            self.say(f"{name}: {when}, could not run: {problem}")
        return True

    def _waits_for_approval(self, name: str, when: str) -> bool:
        """Whether a held run of the operation waits for approval: then the operation is not run (a newer file waits
        in the inbox), and every due slot says so, until the held run is approved or discarded."""
        held = HeldRuns(self.config.data_dir).for_operation(name)
        if not held:
            return False
        last = held[0]
        words = (
            f"{name}: a run held {last.held_at} waits for approval ({last.reason}); approve: "
            f"{last.approve_command()}, or discard: {last.discard_command()}"
        )
        self.report.waiting.append(words)
        self.say(f"{name}: {when}, not run: {words}")
        return True

    def _ran(self, result: RunResult) -> None:
        self.report.results.append(result)
        written = "; ".join(f"{label} {path}" for label, path in result.files())
        summary = result.verdict.summary()
        if result.held is not None:
            held = result.held
            waits = "its removals wait" if held.removals_only else "its dry run"
            summary = f"HELD for approval ({held.reason}; {held.approve_command()}); {waits}: {summary}"
        said = f"{result.operation}: {result.source.name}: {summary}"
        self.say(said + (f" ({written})" if written else ""))

    def _open_gateway(self) -> MoodleGateway:
        if self._gateway is None:
            self._gateway = open_gateway(self.config)
        return self._gateway

    def _remove_expired(self, days: int) -> None:
        problems: list[str] = []
        removed = remove_expired(self.store, days, problems=problems)
        if removed:
            files = plural(len(removed), "archive, report or tryback file")
            self.say(f"retention: removed {files} older than {plural(days, 'day')}")
        for problem in problems:
            self.say(f"retention: {problem}")

    async def _notify(self) -> None:
        settings = self.config.settings.notify
        if not wanted(settings, self.report.results, self.report.problems, self.report.waiting):
            return
        notice = notice_for(self.report.results, self._site_label(), self.report.problems, self.report.waiting)
        for problem in await asyncio.to_thread(send, settings, notice):
            self.say(f"notification: {problem}")

    def _site_label(self) -> str:
        database = self.config.settings.database
        if database.driver == "sqlite":
            return f"sandbox {database.sqlite_path}"
        return f"{database.name} on {database.socket or f'{database.host}:{database.port}'}"
