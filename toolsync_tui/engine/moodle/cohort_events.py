"""The standard-log events of cohort changes, as Moodle 4.5's cohort API logs them (checked against its own rows,
tests/moodle/test_cohort_events.py): the cohort's context (the system context, or a category's: level 40, instance
= the category), courseid 0, objectid = the cohort, no `other`.

| API | event, relateduserid |
|---|---|
| cohort_add_cohort() / cohort_update_cohort() / cohort_delete_cohort() | cohort_created / _updated / _deleted, - |
| cohort_add_member() / cohort_remove_member() | cohort_member_added / _removed, the user |

cohort_delete_cohort() deletes the members with the cohort and logs no member removal.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.event_log import Event, EventKind
from toolsync_tui.engine.moodle.gateway import MoodleGateway


class CohortContexts:
    """Context id -> (level, instance id), read once per context for a run (cohorts live in few contexts)."""

    def __init__(self, gateway: MoodleGateway) -> None:
        self.gateway = gateway
        self.known: dict[int, tuple[int, int]] = {}

    async def read(self, conn: AsyncConnection, context_ids: Iterable[int]) -> None:
        missing = sorted({int(i) for i in context_ids} - set(self.known))
        if not missing:
            return
        found = await self.gateway.fetch_in(
            conn, self.gateway.schema.context, "id", missing, ["id", "contextlevel", "instanceid"]
        )
        self.known.update({int(i): (int(level), int(instance)) for i, level, instance in found.iter_rows()})

    def event(self, kind: EventKind, cohortid: int, contextid: int, userid: int | None = None) -> Event:
        """The event of `kind` for a cohort of context `contextid` (read() first)."""
        level, instance = self.known[contextid]
        return Event(kind, cohortid, contextid, level, instance, 0, userid)

    async def events(
        self, conn: AsyncConnection, kind: EventKind, rows: Iterable[tuple[int, int, int | None]]
    ) -> list[Event]:
        """One event per (cohort id, context id, user id or None)."""
        rows = list(rows)
        await self.read(conn, (contextid for _, contextid, _ in rows))
        return [self.event(kind, cohortid, contextid, userid) for cohortid, contextid, userid in rows]
