"""`toolsync generate` (course delete and reset files from a selection), `toolsync categories clean` and
`toolsync groups repair-components`.

Each prints what it did on standard output; a problem is one line on standard error and exit code 2, a safety stop
exit code 3 (CONTRACT §5).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.exc import SQLAlchemyError

from toolsync_tui.cli.output import complain, say
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import bridge_from_config, open_gateway
from toolsync_tui.engine.datadir.protected_groups import StateProblem, for_site
from toolsync_tui.engine.groups.repair import find_foreign, repair_components
from toolsync_tui.engine.moodle.bridge.client import BridgeError
from toolsync_tui.engine.moodle.categories import CategoryProblem
from toolsync_tui.engine.moodle.db_errors import describe
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_OK, EXIT_ROWS_FAILED, EXIT_SAFETY
from toolsync_tui.engine.run.lock import LockBusy, RunLock
from toolsync_tui.engine.tools.category_cleanup import CleanupSafetyStop, delete_planned, plan_cleanup
from toolsync_tui.engine.tools.course_selection import CourseSelection, SelectionProblem
from toolsync_tui.engine.tools.generators import GenerateProblem, generate
from toolsync_tui.engine.words import plural

SHOWN_LEFT_OUT = 10  # shortnames named in the warning about courses without an identifier
PROBLEMS = (CategoryProblem, SelectionProblem, GenerateProblem, BridgeError, DatabaseError, LockBusy)


class ToolProblem(Exception):
    """The command cannot do what was asked: exit code 2."""


async def run_tool(args: argparse.Namespace) -> int:
    config = await load_or_sandbox(args.config)
    for warning in config.warnings:
        complain(f"warning: {warning}")
    commands: dict[str, tuple[str, Callable[[Config, argparse.Namespace], Awaitable[int]]]] = {
        "generate": (f"generate {getattr(args, 'operation', '')}", command_generate),
        "categories": ("categories clean", command_categories_clean),
        "groups": ("groups repair-components", command_groups_repair),
    }
    name, command = commands[args.command]
    try:
        return await command(config, args)
    except CleanupSafetyStop as exc:
        complain(f"{name}: {exc}")
        return EXIT_SAFETY
    except StateProblem as exc:
        complain(f"{name}: {exc}; nothing was changed")
        return EXIT_CANNOT_RUN
    except (ToolProblem, *PROBLEMS) as exc:
        complain(f"{name}: {exc}")
        return EXIT_CANNOT_RUN


@asynccontextmanager
async def connected(config: Config) -> AsyncIterator[MoodleGateway]:
    """The configured database, checked to be a Moodle 4.5 site; a failure on the way is a DatabaseError."""
    gateway = open_gateway(config)
    try:
        await gateway.site_info()
        yield gateway
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot use the database at {gateway.label}: {describe(exc)}") from None
    finally:
        await gateway.close()


async def command_generate(config: Config, args: argparse.Namespace) -> int:
    selection = CourseSelection(tuple(args.category), args.recursive, args.pattern, args.every_course)
    selection.check()  # before connecting
    async with connected(config) as gateway:
        result = await generate(config, gateway, args.operation, selection, args.output, force=args.force)
    if result.left_out:
        names = ", ".join(c.shortname for c in result.left_out[:SHOWN_LEFT_OUT])
        more = " ..." if len(result.left_out) > SHOWN_LEFT_OUT else ""
        complain(
            f"warning: left out {plural(len(result.left_out), 'selected course')} "
            f"with an empty {result.identifier}: {names}{more}"
        )
    written = plural(result.written, "course")
    say(f"generate {result.operation}: {written} written to {result.path} (by {result.identifier})")
    return EXIT_OK


async def command_categories_clean(config: Config, args: argparse.Namespace) -> int:
    bridge = None
    if not args.dry_run:
        bridge = bridge_from_config(config)
        if bridge is None:
            raise ToolProblem(
                "deleting categories needs the Moodle bridge: set [bridge] moodle_dir (--dry-run lists them without it)"
            )
    async with connected(config) as gateway:
        plan = await plan_cleanup(gateway, args.under, ignore_subcategories=args.ignore_subcategories)
    if not plan.empty:
        say(f"categories clean: no empty category under {plan.start_label}")
        return EXIT_OK
    if bridge is None:
        for category in plan.empty:
            say(f"would delete: {plan.label(category)}")
        say(
            f"categories clean (dry run): {plural(len(plan.empty), 'empty category', 'empty categories')} under "
            f"{plan.start_label} would be deleted; nothing was deleted"
        )
        if reason := plan.over_threshold(config.settings.run):
            say(f"  note: a real run needs --force: {reason}")
        return EXIT_OK
    plan.check_safety(config.settings.run, force=args.force)
    await bridge.verify_database(config.settings.database)
    try:
        outcomes = await delete_planned(plan, bridge)
    except BridgeError as exc:
        for line in plan.outcome_lines(exc.done):
            say(line)
        raise
    for line in plan.outcome_lines(outcomes):
        say(line)
    failed = sum(1 for why in outcomes.values() if why is not None)
    say(
        f"categories clean: {len(outcomes) - failed} deleted, {failed} not deleted, of "
        f"{plural(len(plan.empty), 'empty category', 'empty categories')} under {plan.start_label}"
    )
    return EXIT_ROWS_FAILED if failed else EXIT_OK


async def command_groups_repair(config: Config, args: argparse.Namespace) -> int:
    """Exit 0 when done (or nothing to do), 1 when the rows were repaired but could not be recorded as protected, 2
    when nothing could be done (database, another run holding the data directory, a state file that cannot be used)."""
    async with connected(config) as gateway:
        state = await for_site(config.data_dir, gateway)
        state.check()
        if args.dry_run:
            repair = await find_foreign(gateway)
        else:
            # The state file is the runs' too: one writer at a time.
            with RunLock(config.data_dir, "groups repair-components"):
                repair = await repair_components(gateway, state)
    for line in repair.lines():
        say(line)
    say(repair.summary(state))
    if repair.problem is not None:
        complain(f"groups repair-components: {repair.problem}")
        return EXIT_ROWS_FAILED
    return EXIT_OK
