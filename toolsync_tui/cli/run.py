"""`toolsync run`: one operation on its inputs, a progress bar or line, the summary and where the files went."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from toolsync_tui.cli.output import complain, live_display, note, say
from toolsync_tui.cli.signals import stop_on_signals
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.datadir.held import HeldRuns
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.run.exits import EXIT_INTERRUPTED
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import Progress, RunProblem, RunResult, run_inputs


class TerminalProgress:
    """A live bar on a terminal; a plain line every few seconds otherwise (cron, pipes)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.interactive = sys.stderr.isatty()
        self._last_line = 0.0
        self._bar = None
        self._shown = False
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            # On standard error, and never in charge of standard output: Rich would reflow the lines printed while
            # the bar shows to the terminal's width, cutting a path with real line breaks (output.py prints them).
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._task = self._bar.add_task(operation, total=None, rate="")
            self._show()

    def _show(self) -> None:
        if self._bar is not None and not self._shown:
            self._bar.start()
            self._shown = True

    def pause(self) -> None:
        """Off the terminal until the next update, so that a line can be printed where it stood."""
        if self._bar is not None and self._shown:
            self._bar.stop()
            self._shown = False

    def __call__(self, progress: Progress) -> None:
        rate = f"{progress.rate:,.0f} rows/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=progress.lines_done, total=progress.lines_total, rate=rate)
            self._show()
        elif time.monotonic() - self._last_line >= 5:
            self._last_line = time.monotonic()
            note(f"{self.operation}: line {progress.lines_done}/{progress.lines_total}, {rate}")

    def clear(self) -> None:
        """Start afresh for the next input (picture archive) of the run."""
        if self._bar is not None:
            self._bar.reset(self._task, total=None, rate="")

    def stop(self) -> None:
        self.pause()


def print_result(result: RunResult) -> None:
    held = "" if result.held is None else "held for approval; " + ("its dry run: " if result.dry_run else "")
    say(f"{result.operation}: {held}{result.verdict.summary()}")
    for label, path in result.files():
        say(f"  {label}: {path}")
    for said in result.notes:
        say(f"  note: {said}")


def command_file(given: str, config: Config) -> Path:
    """FILE as given on the command line: a path to a file; a bare name (no folder, not even ./) that is no file of
    the current directory is looked for in the inbox. RunProblem, saying where it looked, when it is in neither."""
    path = Path(given)
    if path.is_file():
        return path
    if "/" not in given:
        inbox = DataStore(config.data_dir).inbox
        if (inbox / given).is_file():
            return inbox / given
        raise RunProblem(
            f"{given}: file not found, neither in the current directory ({Path.cwd()}) nor in the inbox ({inbox})"
        )
    raise RunProblem(f"{given}: file not found" + ("" if path.is_absolute() else f" ({path.absolute()})"))


async def command_run(args: argparse.Namespace) -> int:
    config = await load_or_sandbox(args.config)
    for warning in config.warnings:
        complain(f"warning: {warning}")
    for held in HeldRuns(config.data_dir).for_operation(args.operation):  # cron waits for it; a run by hand does not
        complain(f"warning: a run of {held.original} held {held.held_at} waits for approval ({held.approve_command()})")
    sources = None if args.file is None else [command_file(args.file, config)]
    gateway = open_gateway(config)
    progress = TerminalProgress(args.operation)

    def finished(result: RunResult) -> None:
        progress.clear()
        print_result(result)

    try:
        with live_display(progress.pause), stop_on_signals():
            results = await run_inputs(
                config,
                gateway,
                args.operation,
                sources,
                on_result=finished,
                dry_run=args.dry_run,
                force=args.force,
                on_progress=progress,
                full=args.full,
                hold=config.settings.run.hold == "always",  # cron holds by default; a run by hand when told
            )
    except asyncio.CancelledError:  # a second signal: the run log has what the run did
        progress.stop()
        return print_stopped(RunLog(config.data_dir))
    finally:
        progress.stop()
        await gateway.close()
    return max(result.exit_code for result in results)


def print_stopped(log: RunLog) -> int:
    """A run stopped at once: its last line of the run log, with its report, and its exit code."""
    last = log.recent(1)
    if not last or not last[0].interrupted:
        complain("stopped at once")
        return EXIT_INTERRUPTED
    record = last[0]
    say(f"{record.operation}: {record.interrupted_words()}")
    if record.report:
        say(f"  report: {record.report}")
    return record.exit_code
