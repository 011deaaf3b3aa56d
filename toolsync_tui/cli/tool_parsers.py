"""The command line of `toolsync generate`, `toolsync categories clean` and `toolsync groups repair-components`:
their parsers only, so that building the command line imports none of what they run (cli/tools.py, on use)."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolsync_tui.cli.arguments import IntermixedParser
from toolsync_tui.engine.tools.generators import GENERATORS

CATEGORY_HELP = "id, idnumber or path of names from the top ('Science/Biology')"


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
