"""The blocks create_course() gives a new course: blocks_add_default_course_blocks() (lib/blocklib.php).

Which blocks, by the first of these the site has:

* the setting `defaultblocks_override` (every format),
* the setting `defaultblocks_<format>`,
* the format's get_default_blocks(): none for topics, weeks and singleactivity, `social_activities` on the right for
  social; a format that does not override it (not a core one) takes the setting `defaultblocks`, else none.

A setting is "left blocks:right blocks", each a comma list (blocks_parse_default_blocks_list()); a name that is not
a row of the `block` table (installed, visible or not) is dropped, and the weights count the kept names of a region
from 0. Each block is written as moodle_block_manager::add_block() writes it (traced on a real 4.5 site): a
`block_instances` row under the course context (page type `course-view-*`, no subpage, not shown in subcontexts,
configdata ''), then its block context. No `block_positions` row, no event and no log row; update_course() adds none.

Moodle reads these settings from `config` and from config.php; one set in config.php only is not seen here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.contexts import ContextLevel, create_contexts, instance_contexts
from toolsync_tui.engine.moodle.gateway import MoodleGateway

LEFT: Final = "side-pre"  # BLOCK_POS_LEFT
RIGHT: Final = "side-post"  # BLOCK_POS_RIGHT
COURSE_PAGES: Final = "course-view-*"
OVERRIDE: Final = "defaultblocks_override"
BASE_SETTING: Final = "defaultblocks"  # read by the base format's get_default_blocks() only
# get_default_blocks() of the core formats (course/format/*/lib.php), as a setting would say it.
FORMAT_BLOCKS: Final = {"topics": "", "weeks": "", "singleactivity": "", "social": ":social_activities"}
PHP_SPACE: Final = " \t\n\r\0\x0b"  # what PHP's trim() removes


def parse_blocks(setting: str) -> list[tuple[str, list[str]]]:
    """blocks_parse_default_blocks_list(): (region, names) for the left part, then the right, when not empty. The
    names are not trimmed: one with a space is no installed block."""
    parts = setting.split(":")
    regions = []
    for region, part in zip((LEFT, RIGHT), parts, strict=False):
        if (text := part.strip(PHP_SPACE)) != "":
            regions.append((region, text.split(",")))
    return regions


def default_blocks(
    format_name: str, settings: Mapping[str, str], installed: frozenset[str]
) -> list[tuple[str, str, int]]:
    """(block name, region, weight) of what a new course of this format gets, in the order Moodle adds them."""
    if OVERRIDE in settings:
        setting = settings[OVERRIDE]
    elif f"defaultblocks_{format_name}" in settings:
        setting = settings[f"defaultblocks_{format_name}"]
    else:
        setting = FORMAT_BLOCKS.get(format_name, settings.get(BASE_SETTING, ""))
    found = []
    for region, names in parse_blocks(setting):
        kept = [name for name in names if name in installed]
        found += [(name, region, weight) for weight, name in enumerate(kept)]
    return found


async def add_default_blocks(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Mapping[int, str], now: int
) -> int:
    """blocks_add_default_course_blocks() for new courses (course id -> format), in bulk; their contexts exist.
    Returns the number of blocks written."""
    if not courses:
        return 0
    settings, installed = await _block_settings(gateway, conn, courses.values())
    wanted = {course: default_blocks(fmt, settings, installed) for course, fmt in sorted(courses.items())}
    wanted = {course: blocks for course, blocks in wanted.items() if blocks}
    if not wanted:
        return 0
    contexts = await instance_contexts(gateway, conn, ContextLevel.COURSE, list(wanted))
    wanted = {course: blocks for course, blocks in wanted.items() if course in contexts}
    rows: list[dict[str, Any]] = [
        {
            "blockname": name,
            "parentcontextid": contexts[course].id,
            "showinsubcontexts": 0,
            "requiredbytheme": 0,
            "pagetypepattern": COURSE_PAGES,
            "subpagepattern": None,
            "defaultregion": region,
            "defaultweight": weight,
            "configdata": "",
            "timecreated": now,
            "timemodified": now,
        }
        for course, blocks in wanted.items()
        for name, region, weight in blocks
    ]
    table = gateway.schema.block_instances
    await gateway.insert_many(conn, table, rows)
    # The courses are new: every block under their contexts is one just written.
    paths = {context.id: context.path for context in contexts.values()}
    found = await gateway.fetch_in(conn, table, "parentcontextid", sorted(paths), ["id", "parentcontextid"])
    blocks = sorted((int(block), paths[int(parent)]) for block, parent in found.iter_rows())
    await create_contexts(gateway, conn, ContextLevel.BLOCK, blocks)
    return len(rows)


async def _block_settings(
    gateway: MoodleGateway, conn: AsyncConnection, formats: Iterable[str]
) -> tuple[dict[str, str], frozenset[str]]:
    """The site's default-block settings that concern these formats, and the installed block names."""
    config = gateway.schema.config
    names = {OVERRIDE, BASE_SETTING} | {f"defaultblocks_{fmt}" for fmt in formats}
    query = select(config.c.name, config.c.value).where(config.c.name.in_(sorted(names)))
    settings = {str(name): "" if value is None else str(value) for name, value in await conn.execute(query)}
    block = gateway.schema.block
    installed = frozenset(str(name) for name in (await conn.execute(select(block.c.name))).scalars())
    return settings, installed
