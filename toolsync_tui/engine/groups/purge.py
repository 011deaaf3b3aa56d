"""The group members file's `purge_empty`: after the run, the empty groups (and groupings) of the file's courses only.

The original deleted every empty group of the whole site, and its grouping purge failed on a misspelt table
(reference §2.5.2); here only the courses the file named are touched (CONTRACT §3). A grouping is empty when no group
is assigned to it, after the empty groups are gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import groups as gm
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks

SHOWN = 10  # names listed in the report note


@dataclass
class PurgePlan:
    groups: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (courseid, name)
    groupings: dict[int, tuple[int, str]] = field(default_factory=dict)
    existing: int = 0  # groups (and groupings) of the courses: the purge's share of the safety base
    existing_groupings: bool = False  # groupings are purged too: the note names them, even none

    @property
    def count(self) -> int:
        return len(self.groups) + len(self.groupings)

    @property
    def courses(self) -> set[int]:
        return {c for c, _ in [*self.groups.values(), *self.groupings.values()]}

    async def apply(self, gateway: MoodleGateway, conn: AsyncConnection, *, events: list[Event] | None = None) -> None:
        """groups_delete_group() and groups_delete_grouping(); their log events go to `events`."""
        await gm.delete_groups(gateway, conn, list(self.groups), events=events)
        await gm.delete_groupings(gateway, conn, list(self.groupings), events=events)

    def note(self, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"

        def listed(found: dict[int, tuple[int, str]], what: str) -> str:
            names = sorted(f"'{name}' (course {course})" for course, name in found.values())
            more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            return f"{len(names)} empty {what}" + (f": {', '.join(names[:SHOWN])}{more}" if names else "")

        text = f"purge_empty: {verb} {listed(self.groups, 'groups')}"
        if self.groupings or self.existing_groupings:
            text += f"; {verb} {listed(self.groupings, 'groupings')}"
        return text + " of the file's courses"


async def plan_purge(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Sequence[int], mode: str, filled: set[int]
) -> PurgePlan:
    """The empty groups (mode "groups") and groupings ("groups_and_groupings") of `courses`. `filled`: groups a dry
    run would have added members to, so not empty after the real run."""
    schema = gateway.schema
    groups, members = schema.groups, schema.groups_members
    groupings, assigned = schema.groupings, schema.groupings_groups
    plan = PurgePlan(existing_groupings=mode == "groups_and_groupings")
    for part in chunks(list(courses)):
        rows = await conn.execute(
            select(groups.c.id, groups.c.courseid, groups.c.name).where(groups.c.courseid.in_(part))
        )
        every = {int(i): (int(c), str(n)) for i, c, n in rows}
        plan.existing += len(every)
        used = {
            int(g)
            for (g,) in await conn.execute(
                select(members.c.groupid)
                .distinct()
                .join(groups, groups.c.id == members.c.groupid)
                .where(groups.c.courseid.in_(part))
            )
        }
        plan.groups.update({g: v for g, v in every.items() if g not in used and g not in filled})
        if mode != "groups_and_groupings":
            continue
        rows = await conn.execute(
            select(groupings.c.id, groupings.c.courseid, groupings.c.name).where(groupings.c.courseid.in_(part))
        )
        every = {int(i): (int(c), str(n)) for i, c, n in rows}
        plan.existing += len(every)
        kept: set[int] = set()
        for ids in chunks(list(every)):
            query = select(assigned.c.groupingid, assigned.c.groupid).where(assigned.c.groupingid.in_(ids))
            kept |= {int(grouping) for grouping, group in await conn.execute(query) if int(group) not in plan.groups}
        plan.groupings.update({g: v for g, v in every.items() if g not in kept})
    return plan
