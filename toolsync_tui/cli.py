"""The `toolsync` command: the interface by default; `run`, `cron`, `crontab`, `sandbox init`, `generate`,
`categories clean` headless.

Exit codes: 0 every row succeeded, 1 some rows failed (see the report), 2 the run could not happen,
3 stopped by the safety threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import Config, ConfigError, load_config
from .crontab import CrontabProblem
from .engine.gateway import DatabaseError, open_gateway
from .engine.operations import OPERATIONS
from .engine.pipeline import Progress, RunProblem, RunResult, SafetyStop, run_inputs
from .engine.sandbox import init_sandbox, open_or_create_sandbox
from .engine.schedules import ScheduleProblem
from .paths import embedded_sandbox_dir, find_config

EXIT_OK, EXIT_ROWS_FAILED, EXIT_CANNOT_RUN, EXIT_SAFETY = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolsync",
        description="Feed a Moodle site from tool_sync command files.",
        epilog="Exit codes: 0 all rows succeeded, 1 some rows failed, 2 the run could not happen, "
        "3 stopped by the safety threshold.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="configuration file (default: $TOOLSYNC_CONFIG, "
        "~/.config/toolsync/toolsync.toml, else the embedded sandbox)",
    )
    parser.add_argument("--version", action="version", version=f"toolsync {__version__}")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run one operation on its command file, without the interface")
    run.add_argument(
        "operation", choices=list(OPERATIONS), metavar="OPERATION", help="one of: " + ", ".join(OPERATIONS)
    )
    run.add_argument(
        "file",
        nargs="?",
        type=Path,
        help="command file or picture archive (default: the preselected file; pictures: every archive)",
    )
    run.add_argument("--dry-run", action="store_true", help="resolve and report, write nothing")
    run.add_argument("--force", action="store_true", help="go past the safety threshold")
    sandbox = commands.add_parser("sandbox", help="manage a local SQLite sandbox site")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    init = sandbox_commands.add_parser("init", help="create a sandbox (config, database, sample files)")
    init.add_argument("directory", type=Path)
    from .cli_cron import add_cron_parsers
    from .cli_tools import add_tool_parsers  # here: cli_tools builds on this module

    add_tool_parsers(commands)
    add_cron_parsers(commands)
    return parser


async def load_or_sandbox(explicit: Path | None) -> Config:
    path = find_config(explicit)
    if path is None:
        return await open_or_create_sandbox(embedded_sandbox_dir())
    return load_config(path)


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
    print(f"{result.operation}: {result.summary()}")
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
    finally:
        progress.stop()
        await gateway.close()
    return max(result.exit_code for result in results)


def _unattended(args: argparse.Namespace) -> int:
    from .cli_cron import command_cron, command_crontab

    # An explicit configuration only: cron must never fall back to the sandbox by accident.
    path = find_config(args.config)
    if path is None:
        raise ConfigError("no configuration found: give --config PATH (or set TOOLSYNC_CONFIG)")
    config = load_config(path)
    if args.command == "cron":
        return asyncio.run(command_cron(config))
    return command_crontab(config, args.action, args.every)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return asyncio.run(command_run(args))
        if args.command in ("cron", "crontab"):
            return _unattended(args)
        if args.command in ("generate", "categories"):
            from .cli_tools import run_tool

            return asyncio.run(run_tool(args))
        if args.command == "sandbox":
            config = asyncio.run(init_sandbox(args.directory))
            print(f"sandbox ready: {config.path}\n  try: toolsync --config {config.path} run check")
            return EXIT_OK
        from .app import ToolsyncApp

        config = asyncio.run(load_or_sandbox(args.config))
        ToolsyncApp(config).run()
        return EXIT_OK
    except SafetyStop as exc:
        print(f"toolsync: {exc}", file=sys.stderr)
        return EXIT_SAFETY
    except (ConfigError, RunProblem, DatabaseError, ScheduleProblem, CrontabProblem) as exc:
        print(f"toolsync: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        print("toolsync: interrupted; the batch in progress was rolled back", file=sys.stderr)
        return EXIT_CANNOT_RUN
