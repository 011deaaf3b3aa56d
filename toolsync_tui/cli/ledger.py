"""`toolsync ledger show` (the ownership ledger's entries per kind) and `toolsync ledger adopt OPERATION FILE`
("these records are ours": the records the file names enter the ledger, for snapshot mode to manage them).

Prints what it found on standard output; a problem is one line on standard error and exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from toolsync_tui.cli.arguments import IntermixedParser
from toolsync_tui.cli.output import complain, say
from toolsync_tui.cli.run import command_file
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.datadir.ledger import KINDS, LedgerProblem, ledger_for_site
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_OK
from toolsync_tui.engine.run.operation import SetupProblem
from toolsync_tui.engine.run.pipeline import RunProblem
from toolsync_tui.engine.snapshot.adopt import Adoption, AdoptProblem, adopt
from toolsync_tui.engine.snapshot.plan import OPERATIONS
from toolsync_tui.engine.words import plural

SHOWN_LINES = 20  # lines of rows not found the output names
PROBLEMS = (LedgerProblem, AdoptProblem, FileProblem, SetupProblem, DatabaseError, RunProblem)


def add_ledger_parsers(commands: argparse._SubParsersAction[IntermixedParser]) -> None:
    ledger = commands.add_parser("ledger", help="the ownership ledger: what toolsync manages (snapshot mode)")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_commands.add_parser("show", help="how many records of each kind the ledger holds for the site")
    adopting = ledger_commands.add_parser(
        "adopt",
        help="enter the records a file names in the ledger: these records are ours",
        description="Resolve the records a command file names as a run of the operation would (users: accounts; "
        "enrols: enrolments, or role assignments for a file without an enrol column; groupmembers and cohorts: "
        "memberships) and enter them in the ownership ledger, so that the operation's snapshot mode manages them. "
        "Nothing is written to Moodle.",
    )
    adopting.add_argument("operation", choices=OPERATIONS, metavar="OPERATION", help="one of: " + ", ".join(OPERATIONS))
    adopting.add_argument("file", metavar="FILE", help="the command file (a bare name is looked for in the inbox too)")
    adopting.add_argument("--dry-run", action="store_true", help="count what would be adopted; change nothing")


async def command_ledger(args: argparse.Namespace) -> int:
    config = await load_or_sandbox(args.config)
    for warning in config.warnings:
        complain(f"warning: {warning}")
    try:
        if args.ledger_command == "show":
            return await _show(config)
        return await _adopt(config, args.operation, command_file(args.file, config), args.dry_run)
    except PROBLEMS as exc:
        complain(f"ledger {args.ledger_command}: {exc}")
        return EXIT_CANNOT_RUN


async def _show(config: Config) -> int:
    gateway = open_gateway(config)
    try:
        ledger = await ledger_for_site(config.data_dir, gateway)
    finally:
        await gateway.close()
    counts = ledger.counts()
    say(f"ownership ledger {ledger.path} (site {ledger.site}):")
    if not counts:
        say("  no records yet: runs record what they create; `toolsync ledger adopt` what was there before")
    for kind in KINDS:
        if counts.get(kind):
            say(f"  {kind}: {counts[kind]:,}")
    return EXIT_OK


async def _adopt(config: Config, operation: str, path: Path, dry_run: bool) -> int:
    gateway = open_gateway(config)
    try:
        adoption = await adopt(config, gateway, operation, path, dry_run=dry_run)
    finally:
        await gateway.close()
    for line in adoption_lines(adoption):
        say(line)
    return EXIT_OK


def adoption_lines(adoption: Adoption) -> list[str]:
    """What an adoption did, in words: adopted, already owned, not found (with lines)."""
    would = "would be " if adoption.dry_run else ""
    lines = [
        f"{adoption.operation}: {plural(adoption.adopted, adoption.kind.replace('_', ' '))} {would}adopted, "
        f"{adoption.owned:,} already owned, {len(adoption.not_found):,} not found"
        + (" (dry run: the ledger is unchanged)" if adoption.dry_run else "")
    ]
    for what, found in (("not found", adoption.not_found), ("could not be read", adoption.unreadable)):
        if found:
            shown = ", ".join(str(n) for n in found[:SHOWN_LINES]) + (", ..." if len(found) > SHOWN_LINES else "")
            lines.append(f"  {what}: line{'s' if len(found) > 1 else ''} {shown}")
    return lines
