"""The `toolsync` command: the interface by default; `run`, `cron`, `crontab`, `sandbox init`, `generate`,
`categories clean`, `groups repair-components`, `ledger show|adopt`, `held list|approve|discard`, `undo RUN|last`
headless.

Exit codes: 0 every row succeeded, 1 some rows failed (see the report), 2 the run could not happen (or go on:
a lost database, a full disk), 3 stopped by a threshold or a source guard (nothing written), 4 held for approval
(`toolsync held`), 130 / 143 stopped by SIGINT / SIGTERM (128 + the signal's number) after the batch in progress,
the report saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from toolsync_tui import __version__
from toolsync_tui.cli.arguments import IntermixedParser, add_config_option, config_option_everywhere
from toolsync_tui.cli.cron import add_cron_parsers
from toolsync_tui.cli.held import add_held_parsers
from toolsync_tui.cli.ledger import add_ledger_parsers
from toolsync_tui.cli.output import complain, say
from toolsync_tui.cli.run import command_run
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.cli.tool_parsers import add_tool_parsers
from toolsync_tui.cli.undo import add_undo_parsers
from toolsync_tui.config import ConfigError, load_config
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, EXIT_OK, EXIT_SAFETY
from toolsync_tui.engine.run.pipeline import RunProblem, SafetyStop, SourceRefused
from toolsync_tui.engine.unattended.schedules import ScheduleProblem
from toolsync_tui.paths import embedded_sandbox_dir, find_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolsync",
        description="Feed a Moodle site from tool_sync command files.",
        epilog="Exit codes: 0 all rows succeeded, 1 some rows failed, 2 the run could not happen or go on, "
        "3 stopped by a threshold or a source guard, 4 held for approval (toolsync held), 130 / 143 stopped by "
        "SIGINT / SIGTERM (the report says where).",
    )
    add_config_option(parser)
    parser.add_argument("--version", action="version", version=f"toolsync {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=IntermixedParser)
    run = commands.add_parser("run", help="run one operation on its command file, without the interface")
    run.add_argument(
        "operation", choices=list(OPERATIONS), metavar="OPERATION", help="one of: " + ", ".join(OPERATIONS)
    )
    run.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="command file or picture archive; a bare name not in the current directory is looked for in the inbox "
        "(default: the preselected file; pictures: every archive)",
    )
    run.add_argument("--dry-run", action="store_true", help="resolve and report, write nothing")
    run.add_argument("--force", action="store_true", help="go past the safety threshold")
    run.add_argument(
        "--full", action="store_true", help="with the operation's diff on: resolve every row, and save its digests anew"
    )
    sandbox = commands.add_parser("sandbox", help="manage a local SQLite sandbox site")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    init = sandbox_commands.add_parser("init", help="create a sandbox (config, database, sample files)")
    init.add_argument("directory", type=Path)
    add_tool_parsers(commands)
    add_cron_parsers(commands)
    add_held_parsers(commands)
    add_ledger_parsers(commands)
    add_undo_parsers(commands)
    config_option_everywhere(parser)
    return parser


def _unattended(args: argparse.Namespace) -> int:
    from toolsync_tui.cli.cron import command_cron, command_crontab
    from toolsync_tui.engine.sandbox import existing_sandbox
    from toolsync_tui.engine.unattended.crontab import CrontabProblem

    # An explicit configuration only: cron must never fall back to the sandbox by accident.
    path = find_config(args.config)
    if path is None and args.command == "crontab":
        # The interface's site when nothing is configured, whose line its schedules screen shows (never created here).
        path = existing_sandbox(embedded_sandbox_dir())
    if path is None:
        raise ConfigError("no configuration found: give --config PATH (or set TOOLSYNC_CONFIG)")
    config = load_config(path)
    if args.command == "cron":
        return asyncio.run(command_cron(config))
    try:
        return command_crontab(config, args.action, args.every)
    except CrontabProblem as exc:
        complain(str(exc))
        return EXIT_CANNOT_RUN


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SQLAlchemy's pool logs a connection it could not reset (a server killed or stalled mid-run) with its traceback,
    # which Python's last-resort handler would print: the run's own words say what happened, once.
    logging.getLogger("sqlalchemy").addHandler(logging.NullHandler())
    try:
        if args.command == "run":
            return asyncio.run(command_run(args))
        if args.command == "ledger":
            from toolsync_tui.cli.ledger import command_ledger

            return asyncio.run(command_ledger(args))
        if args.command in ("cron", "crontab"):
            return _unattended(args)
        if args.command == "held":
            from toolsync_tui.cli.held import command_held

            return asyncio.run(command_held(args))
        if args.command == "undo":
            from toolsync_tui.cli.undo import command_undo

            return asyncio.run(command_undo(args))
        if args.command in ("generate", "categories", "groups"):
            from toolsync_tui.cli.tools import run_tool

            return asyncio.run(run_tool(args))
        if args.command == "sandbox":
            from toolsync_tui.engine.sandbox import init_sandbox

            config = asyncio.run(init_sandbox(args.directory))
            say(f"sandbox ready: {config.path}")
            say(f"  try: toolsync --config {config.path} run check")
            return EXIT_OK
        from toolsync_tui.app import ToolsyncApp

        config = asyncio.run(load_or_sandbox(args.config))
        ToolsyncApp(config).run()
        return EXIT_OK
    except (SafetyStop, SourceRefused) as exc:  # a threshold or a source guard: nothing was written
        complain(str(exc))
        return EXIT_SAFETY
    except (ConfigError, RunProblem, DatabaseError, ScheduleProblem) as exc:
        complain(str(exc))
        return EXIT_CANNOT_RUN
    except OSError as exc:  # a file or folder toolsync cannot use (the data directory, a full disk)
        where = f"{exc.filename}: " if exc.filename else ""
        complain(f"{where}{exc.strerror or exc}")
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        complain("interrupted; the batch in progress was rolled back")
        return EXIT_INTERRUPTED
