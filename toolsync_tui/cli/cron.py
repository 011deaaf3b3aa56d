"""`toolsync cron` (what the system crontab runs) and `toolsync crontab install|remove|show` (that crontab line)."""

from __future__ import annotations

import argparse

from toolsync_tui.cli.arguments import IntermixedParser
from toolsync_tui.cli.output import say
from toolsync_tui.config import Config


def add_cron_parsers(commands: argparse._SubParsersAction[IntermixedParser]) -> None:
    commands.add_parser(
        "cron",
        help="run the operations whose schedule is due (for the system crontab)",
        description="Take complete files from the drop directory, run every operation whose schedule is due, in "
        "dependency order, remove expired files and notify. A run a source guard or a threshold stops is held for "
        "approval (run.hold; toolsync held), and its operation is not run again while it waits. One line per "
        "operation on standard output. Exit codes: 0 every row succeeded (or nothing was due), 1 some rows failed, 2 "
        "an operation could not run, 4 a run is held for approval.",
    )
    crontab = commands.add_parser("crontab", help="install, remove or show the crontab line that runs toolsync cron")
    crontab.add_argument("action", choices=("install", "remove", "show"))
    crontab.add_argument("--every", type=int, default=5, metavar="MINUTES", help="how often cron calls (default 5)")


async def command_cron(config: Config) -> int:
    from toolsync_tui.cli.signals import stop_on_signals
    from toolsync_tui.engine.unattended.cron import run_cron

    with stop_on_signals():  # SIGTERM (a `timeout` around cron) stops the operation in progress cleanly
        report = await run_cron(config, emit=say)
    return report.exit_code


def command_crontab(config: Config, action: str, every: int) -> int:
    from toolsync_tui.engine.unattended.crontab import install, remove, show

    if action == "install":
        say(f"installed: {install(config, every)}")
    elif action == "remove":
        say("removed the toolsync line" if remove(config) else "no toolsync line to remove")
    else:
        line = show(config)
        say(line if line is not None else "no toolsync line in this user's crontab")
    return 0
