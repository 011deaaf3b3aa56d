"""`toolsync generate` (course delete and reset files from a selection), `toolsync categories clean` and
`toolsync groups repair-components`.

Each prints what it did on standard output; a problem is one line on standard error and exit code 2, a safety stop
exit code 3 (CONTRACT §5).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from toolsync_tui.cli.arguments import IntermixedParser
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
from toolsync_tui.engine.tools.generators import GENERATORS, GenerateProblem, generate
from toolsync_tui.engine.words import plural

SHOWN_LEFT_OUT = 10  # shortnames named in the warning about courses without an identifier
CATEGORY_HELP = "id, idnumber or path of names from the top ('Science/Biology')"
PROBLEMS = (CategoryProblem, SelectionProblem, GenerateProblem, BridgeError, DatabaseError, LockBusy)


class ToolProblem(Exception):
    """The command cannot do what was asked: exit code 2."""


def add_tool_parsers(commands: argparse._SubParsersAction[IntermixedParser]) -> None:
    generate_parser = commands.add_parser(
        "generate",
        help="write a course delete or reset file from a selection of courses",
        description="Write deletecourses.csv or resetcourses.csv for the courses of some categories, or whose "
        "shortname, fullname or idnumber matches a pattern, or both. The front page is never selected.",
    )
    generate_parser.add_argument("operation", choices=GENERATORS, help="the file to write")
    generate_parser.add_argument(
        "--category",
        action="append",
        default=[],
        metavar="CAT",
        help=f"courses of this category ({CATEGORY_HELP}); repeat for several",
    )
    generate_parser.add_argument("--recursive", action="store_true", help="and of the categories' subcategories")
    generate_parser.add_argument(
        "--pattern",
        metavar="GLOB",
        help="courses whose shortname, fullname or idnumber matches this shell pattern "
        "(* ? [...], case-insensitive), e.g. 'BIO*'",
    )
    generate_parser.add_argument(
        "--all", action="store_true", dest="every_course", help="every course of the site (there is no other selection)"
    )
    generate_parser.add_argument(
        "--output", type=Path, metavar="FILE", help="where to write (default: the operation's file in the inbox)"
    )
    generate_parser.add_argument("--force", action="store_true", help="overwrite an existing file")

    categories = commands.add_parser("categories", help="course category tools")
    category_commands = categories.add_subparsers(dest="categories_command", required=True)
    clean = category_commands.add_parser(
        "clean",
        help="delete empty course categories through the Moodle bridge",
        description="Delete the categories that hold no course, in them or in any subcategory, leaves first, with "
        "Moodle's core_course_category::delete_full() run by the Moodle bridge.",
    )
    clean.add_argument("--under", metavar="CAT", help=f"only below this category ({CATEGORY_HELP}); default: all")
    clean.add_argument(
        "--ignore-subcategories",
        action="store_true",
        help="delete only categories with no course and no subcategory at all (a parent they leave empty goes at "
        "the next run)",
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would be deleted; needs no bridge")
    clean.add_argument("--force", action="store_true", help="go past the safety threshold")

    groups = commands.add_parser("groups", help="group tools")
    group_commands = groups.add_subparsers(dest="groups_command", required=True)
    repair = group_commands.add_parser(
        "repair-components",
        help="give Moodle's component '' to group memberships tagged with a plugin the site does not have",
        description="Set component '' and itemid 0, as Moodle's groups_add_member() writes them, on every group "
        "membership whose component is not an installed plugin: 'tool_sync', which tool_sync and earlier toolsync "
        "runs wrote (the course's Group members page fails on such a row), or a plugin uninstalled since. The "
        "'tool_sync' ones are recorded as protected in the data directory, where toolsync now keeps that.",
    )
    repair.add_argument("--dry-run", action="store_true", help="list what would be repaired; change nothing")


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
