"""`toolsync undo RUN|last [--dry-run]`: revert a run as a new run with its own report (engine/changes/undo.py)."""

from __future__ import annotations

import argparse

from toolsync_tui.cli.arguments import IntermixedParser
from toolsync_tui.cli.output import complain
from toolsync_tui.cli.run import TerminalProgress, print_result
from toolsync_tui.cli.signals import stop_on_signals
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN


def add_undo_parsers(commands: argparse._SubParsersAction[IntermixedParser]) -> None:
    undo = commands.add_parser(
        "undo",
        help="revert a run: what it created removed, what it changed or removed put back",
        description="Revert a run as a new run with its own report (operation 'undo' in runs.jsonl): the rows it "
        "created are removed, the columns it updated restored, the enrolments, roles and memberships it removed put "
        "back, the users it suspended reactivated. A record changed since the run (by a later run or in Moodle) is "
        "a conflict: reported with its table and key, and left as it is. Not undone: the standard log (the run "
        "happened), caches (marked to be rebuilt). A run that went through Moodle's own code (deleting users or "
        "courses, course resets, courses filled from templates), an undo, or a run already undone is refused "
        "before anything is done. A run's record of its changes is kept as long as its report (cron "
        "retention_days).",
        epilog="Exit codes: 0 undone, 1 some records were conflicts (see the report), 2 the run cannot be undone "
        "or the undo could not happen (nothing was undone).",
    )
    undo.add_argument(
        "run",
        metavar="RUN",
        help="the run's id as runs.jsonl and History show it (or its first 8 or more characters), or 'last': the "
        "last run that wrote something",
    )
    undo.add_argument("--dry-run", action="store_true", help="do it all and roll it back: report, write nothing")


async def command_undo(args: argparse.Namespace) -> int:
    from toolsync_tui.engine.changes.undo import undo_refusal, undo_run
    from toolsync_tui.engine.connect import open_gateway

    config = await load_or_sandbox(args.config)
    refusal = undo_refusal(config.data_dir, args.run)
    if refusal is not None:
        complain(f"undo: {refusal}")
        return EXIT_CANNOT_RUN
    gateway = open_gateway(config)
    progress = TerminalProgress("undo")
    try:
        with stop_on_signals():
            result = await undo_run(config, gateway, args.run, dry_run=args.dry_run, on_progress=progress)
    finally:
        progress.stop()
        await gateway.close()
    print_result(result)
    return result.exit_code
