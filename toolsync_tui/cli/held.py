"""`toolsync held list|approve ID|discard ID`: the runs a source guard or a threshold held for approval."""

from __future__ import annotations

import argparse

from toolsync_tui.cli.arguments import IntermixedParser
from toolsync_tui.cli.output import complain, say
from toolsync_tui.cli.run import TerminalProgress, print_result
from toolsync_tui.cli.signals import stop_on_signals
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import HeldProblem, HeldRun, HeldRuns
from toolsync_tui.engine.rows import counts_text
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_OK


def add_held_parsers(commands: argparse._SubParsersAction[IntermixedParser]) -> None:
    held = commands.add_parser(
        "held",
        help="list, approve or discard the runs held for approval",
        description="A run that a source guard or a threshold stopped is held (run.hold): its file waits in the data "
        "directory's held/ folder with what its dry run found. approve runs it (past the guard or threshold that "
        "held it) with its own report, tryback and archive; discard moves its file to archive/discarded/. While a "
        "run of an operation is held, toolsync cron does not run that operation.",
    )
    actions = held.add_subparsers(dest="held_action", required=True)
    actions.add_parser("list", help="the held runs, newest first, with their dry run and what they would remove")
    approve = actions.add_parser("approve", help="run a held run's file now (exit code: the run's)")
    approve.add_argument("id", metavar="ID", help="the held run's id, or the first characters of it (8 suffice)")
    discard = actions.add_parser("discard", help="never run a held run's file: it goes to archive/discarded/")
    discard.add_argument("id", metavar="ID", help="the held run's id, or the first characters of it (8 suffice)")


async def command_held(args: argparse.Namespace) -> int:
    config = await load_or_sandbox(args.config)
    runs = HeldRuns(config.data_dir)
    try:
        if args.held_action == "list":
            return _list(runs.list())
        if args.held_action == "discard":
            held = runs.find(args.id)
            target = runs.discard(held.id)
            say(f"{held.operation}: held run {held.short_id} discarded; its file is in {target}")
            return EXIT_OK
        held = runs.find(args.id)
    except HeldProblem as exc:
        complain(str(exc))
        return EXIT_CANNOT_RUN
    return await _approve(config, held)


def _list(held: list[HeldRun]) -> int:
    if not held:
        say("no run is held")
        return EXIT_OK
    for run in held:
        what = "its removals" if run.removals_only else run.original
        say(f"{run.short_id}  {run.operation}: {what}, held {run.held_at}")
        say(f"  why: {run.reason}")
        say(f"  its dry run: {counts_text(run.counts) or 'no rows'}")
        say(f"  file: {run.file}")
        if run.report:
            say(f"  report: {run.report}")
        if run.sample:
            say("  what it would remove:")
            for line in run.sample:
                say(f"    {line}")
        say(f"  approve: {run.approve_command()}   discard: {run.discard_command()}")
    return EXIT_OK


async def _approve(config: Config, held: HeldRun) -> int:
    from toolsync_tui.engine.connect import open_gateway
    from toolsync_tui.engine.run.hold import approve_held

    gateway = open_gateway(config)
    progress = TerminalProgress(held.operation)
    try:
        with stop_on_signals():
            results = await approve_held(config, gateway, held.id, on_progress=progress)
    finally:
        progress.stop()
        await gateway.close()
    for result in results:
        print_result(result)
    return max(result.exit_code for result in results)
