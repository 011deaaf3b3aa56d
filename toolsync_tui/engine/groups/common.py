"""What the groups file and the group members file share: course resolution, row cells, cache purges."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup, lookup_problem
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects, purge_after_run


def course_lookup(gateway: MoodleGateway, identifier: str) -> KeyLookup:
    """The lookup of the file's courses for a whole run: the groups files change no course, so each value is looked
    up once, whatever the number of batches (and the safety pre-pass) naming it."""
    return KeyLookup(gateway, gateway.schema.course, identifier, columns=["id"], remember=True)


async def resolve_courses(
    lookup: KeyLookup, conn: AsyncConnection, values: pl.Series
) -> dict[str, tuple[int | None, str | None]]:
    """File value -> (course id, why not): unknown, ambiguous (several courses share the value) or not a number."""
    identifier = lookup.field
    found = await lookup.resolve(conn, values)
    answers: dict[str, tuple[int | None, str | None]] = {}
    column = found.columns[0]
    for answer in found.to_dicts():
        value = answer[column]
        why = lookup_problem(answer, value, "course", "course_identifier", identifier)
        if value == "":
            answers[value] = (None, "empty courseid: the row names no course")
        else:
            answers[value] = (None, why) if why is not None else (int(answer["id"]), None)
    return answers


@dataclass
class GroupCaches:
    """Courses whose groups or groupings changed and users whose memberships changed, across batches (§11): Moodle's
    core/groupdata and core/user_group_groupings caches have no expiry, so they are purged after the run."""

    courses: set[int] = field(default_factory=set)
    users: set[int] = field(default_factory=set)

    async def purge(self, bridge: MoodleBridge | None) -> list[str]:
        return await purge_after_run(bridge, EnrolmentEffects(group_courses=self.courses, group_users=self.users))
