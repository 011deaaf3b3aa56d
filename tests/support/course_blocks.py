"""A course's blocks read back with their contexts, and the row create_course() wrote for a social course on a real
Moodle 4.5 site: tests/moodle/test_course_blocks.py and test_course_blocks_on_moodle.py share them."""

from __future__ import annotations

from typing import Any

from tests.support.course_forums import course_id
from tests.support.tables import rows_of
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# Every column of the block create_course() gave a social course, ids and times aside.
SOCIAL_ACTIVITIES: dict[str, Any] = {
    "blockname": "social_activities",
    "showinsubcontexts": 0,
    "requiredbytheme": 0,
    "pagetypepattern": "course-view-*",
    "subpagepattern": None,
    "defaultregion": "side-post",
    "defaultweight": 0,
    "configdata": "",
}
UNSTABLE = {"id", "parentcontextid", "timecreated", "timemodified"}


def stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in UNSTABLE}


async def blocks_of(gateway: MoodleGateway, shortname: str) -> list[dict[str, Any]]:
    """The course's blocks by id, ids and times aside. Fails unless each has its block context (path: the course
    context's and its id, depth one more, unlocked) and was written at one time (timecreated = timemodified)."""
    schema = gateway.schema
    course = await course_id(gateway, shortname)
    [context] = await rows_of(gateway, schema.context, contextlevel=50, instanceid=course)
    found = await rows_of(gateway, schema.block_instances, parentcontextid=context["id"])
    for block in found:
        [own] = await rows_of(gateway, schema.context, contextlevel=80, instanceid=block["id"])
        assert own["path"] == f"{context['path']}/{own['id']}", block
        assert (own["depth"], own["locked"]) == (context["depth"] + 1, 0), block
        assert block["timecreated"] == block["timemodified"], block
    return [stable(block) for block in found]


def block(name: str, region: str = "side-post", weight: int = 0) -> dict[str, Any]:
    """A default block as add_block() writes it."""
    return SOCIAL_ACTIVITIES | {"blockname": name, "defaultregion": region, "defaultweight": weight}
