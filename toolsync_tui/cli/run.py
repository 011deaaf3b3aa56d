"""`toolsync run`: one operation on its inputs, a progress bar or line, the summary and where the files went."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from toolsync_tui.cli.signals import stop_on_signals
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.run.exits import EXIT_INTERRUPTED
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import Progress, RunResult, run_inputs


class TerminalProgress:
    """A live bar on a terminal; a plain line every few seconds otherwise (cron, pipes)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.interactive = sys.stderr.isatty()
        self._last_line = 0.0
        self._bar = None
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(operation, total=None, rate="")
            self._bar.start()

    def __call__(self, progress: Progress) -> None:
        rate = f"{progress.rate:,.0f} rows/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=progress.lines_done, total=progress.lines_total, rate=rate)
        elif time.monotonic() - self._last_line >= 5:
            self._last_line = time.monotonic()
            print(f"{self.operation}: line {progress.lines_done}/{progress.lines_total}, {rate}", file=sys.stderr)

    def clear(self) -> None:
        """Start afresh for the next input (picture archive) of the run."""
        if self._bar is not None:
            self._bar.reset(self._task, total=None, rate="")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_result(result: RunResult) -> None:
    print(f"{result.operation}: {result.verdict.summary()}")
    for label, path in result.files():
        print(f"  {label}: {path}")
    for note in result.notes:
        print(f"  note: {note}")


async def command_run(args: argparse.Namespace) -> int:
    config = await load_or_sandbox(args.config)
    for warning in config.warnings:
        print(f"toolsync: warning: {warning}", file=sys.stderr)
    gateway = open_gateway(config)
    progress = TerminalProgress(args.operation)

    def finished(result: RunResult) -> None:
        progress.clear()
        print_result(result)

    try:
        with stop_on_signals():
            results = await run_inputs(
                config,
                gateway,
                args.operation,
                None if args.file is None else [args.file],
                on_result=finished,
                dry_run=args.dry_run,
                force=args.force,
                on_progress=progress,
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
        print("toolsync: stopped at once", file=sys.stderr)
        return EXIT_INTERRUPTED
    record = last[0]
    print(f"{record.operation}: {record.interrupted_words()}")
    if record.report:
        print(f"  report: {record.report}")
    return record.exit_code
