"""The standard log rows of the courses file's writes, as create_course() and update_course() log them.

Traced on a Moodle 4.5 site (tests/moodle/test_course_log_events.py): create_course() logs course_created (other
{"shortname", "fullname"}), then course_section_created per section from 0 up (other {"sectionnum": n}), then
enrol_instance_created per default enrolment method in sortorder (other {"enrol": plugin}); the news forum logs nothing.
update_course() logs course_updated with other {"shortname", "fullname" (after the update), "updatedfields": {field:
new value}}; a section renamed (course_update_section) course_section_updated; an enrolment method enabled or disabled
(update_status) enrol_instance_updated. All in the course's context. core_course_category::create() logs
course_category_created in the new category's context.

The writes note what they did in a CourseLog while the batch is written; `course_events` turns it into events, reading
the ids and contexts the writes gave: those of new courses as the server gave them, the others read (a query per table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.contexts import ContextLevel, instance_contexts
from toolsync_tui.engine.moodle.event_log import Event, EventKind
from toolsync_tui.engine.moodle.events import (
    COURSE_CATEGORY_CREATED,
    COURSE_CREATED,
    COURSE_SECTION_CREATED,
    COURSE_SECTION_UPDATED,
    COURSE_UPDATED,
    ENROL_INSTANCE_CREATED,
    ENROL_INSTANCE_UPDATED,
)
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# Written by toolsync alongside a change, never by the caller of update_course(): not in its updatedfields.
NOT_UPDATED_FIELDS = frozenset({"visibleold", "cacherev", "timemodified", "sortorder"})


@dataclass
class CourseLog:
    """What one batch's course writes did, in order."""

    created: list[int] = field(default_factory=list)  # new course ids
    updated: dict[int, dict[str, Any]] = field(default_factory=dict)  # course id -> updatedfields
    new_sections: list[tuple[int, int]] = field(default_factory=list)  # (course, section number)
    changed_sections: list[tuple[int, int, int]] = field(default_factory=list)  # (section id, course, number)
    new_instances: list[tuple[int, int, str]] = field(default_factory=list)  # (enrol id, course, plugin)
    changed_instances: list[tuple[int, int, str]] = field(default_factory=list)  # (enrol id, course, plugin)
    categories: list[int] = field(default_factory=list)  # new categories
    # What the writes of new courses know already (ids the server gave): course events read only the rest.
    contexts: dict[int, int] = field(default_factory=dict)  # course id -> its context id
    names: dict[int, tuple[str, str]] = field(default_factory=dict)  # course id -> shortname, fullname
    sections: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # new course -> (number, id), all
    instances: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # new course -> (id, plugin), sortorder

    def course_updated(self, course: int, fields: Mapping[str, Any], order: Sequence[str]) -> None:
        """The course's changed fields (`order`: the course table's columns), as update_course()'s updatedfields."""
        known = self.updated.setdefault(course, {})
        for name in sorted(fields, key=lambda n: order.index(n) if n in order else len(order)):
            if name not in NOT_UPDATED_FIELDS:
                known[name] = fields[name]

    def __bool__(self) -> bool:
        return any(
            (
                self.created,
                self.updated,
                self.new_sections,
                self.changed_sections,
                self.new_instances,
                self.changed_instances,
                self.categories,
            )
        )


async def course_events(gateway: MoodleGateway, conn: AsyncConnection, log: CourseLog) -> list[Event]:
    """The events of what `log` holds: new categories first, then each new course, then each changed course."""
    if not log:
        return []
    schema = gateway.schema
    events: list[Event] = []
    if log.categories:
        contexts = await instance_contexts(gateway, conn, ContextLevel.COURSECAT, log.categories)
        level = int(ContextLevel.COURSECAT)
        events += [Event(COURSE_CATEGORY_CREATED, c, contexts[c].id, level, c) for c in log.categories if c in contexts]
    courses = list(
        dict.fromkeys(
            [
                *log.created,
                *log.updated,
                *(c for c, _ in log.new_sections),
                *(c for _, c, _ in log.changed_sections),
                *(c for _, c, _ in log.new_instances),
                *(c for _, c, _ in log.changed_instances),
            ]
        )
    )
    if not courses:
        return events
    context_ids = {c: log.contexts[c] for c in courses if c in log.contexts}
    if unknown := [c for c in courses if c not in context_ids]:
        found = await instance_contexts(gateway, conn, ContextLevel.COURSE, unknown)
        context_ids |= {c: context.id for c, context in found.items()}
    named = {c: log.names[c] for c in courses if c in log.names}
    if unknown := [c for c in courses if c not in named]:
        names = await gateway.fetch_in(conn, schema.course, "id", unknown, ["id", "shortname", "fullname"])
        named |= {int(i): (str(s), str(f)) for i, s, f in names.iter_rows()}
    new = set(log.created)
    # Sections: all of a new course's; in other courses, those the batch added.
    sections: dict[int, list[tuple[int, int]]] = {c: sorted(log.sections[c]) for c in new if c in log.sections}
    section_courses = sorted((new | {c for c, _ in log.new_sections}) - set(sections))
    stored = await gateway.fetch_in(
        conn, schema.course_sections, "course", section_courses, ["id", "course", "section"]
    )
    wanted = set(log.new_sections)
    for ident, course, number in sorted(stored.iter_rows(), key=lambda r: (int(r[1]), int(r[2]))):
        if int(course) in new or (int(course), int(number)) in wanted:
            sections.setdefault(int(course), []).append((int(number), int(ident)))
    instances: dict[int, list[tuple[int, str]]] = {c: log.instances[c] for c in new if c in log.instances}
    if unread := sorted(new - set(instances)):
        found_instances = await gateway.fetch_in(
            conn, schema.enrol, "courseid", unread, ["id", "courseid", "enrol", "sortorder"]
        )
        for ident, course, plugin, _ in sorted(found_instances.iter_rows(), key=lambda r: (int(r[3]), int(r[0]))):
            instances.setdefault(int(course), []).append((int(ident), str(plugin)))
    changed_sections = _by_course([(c, (i, n)) for i, c, n in log.changed_sections])
    new_instances = _by_course([(c, (i, p)) for i, c, p in log.new_instances])
    changed_instances = _by_course([(c, (i, p)) for i, c, p in log.changed_instances])

    def event(kind: EventKind, course: int, objectid: int, other: Mapping[str, Any]) -> Event:
        return Event(kind, objectid, context_ids[course], int(ContextLevel.COURSE), course, course, None, other)

    for course in courses:
        if course not in context_ids:
            continue  # no course context (a damaged course): Moodle's event could not be made either
        shortname, fullname = named.get(course, ("", ""))
        if course in new:
            events.append(event(COURSE_CREATED, course, course, {"shortname": shortname, "fullname": fullname}))
        elif course in log.updated:
            other = {"shortname": shortname, "fullname": fullname, "updatedfields": log.updated[course]}
            events.append(event(COURSE_UPDATED, course, course, other))
        events += [
            event(COURSE_SECTION_CREATED, course, ident, {"sectionnum": number})
            for number, ident in sections.get(course, [])
        ]
        events += [
            event(COURSE_SECTION_UPDATED, course, ident, {"sectionnum": number})
            for ident, number in changed_sections.get(course, [])
        ]
        events += [event(ENROL_INSTANCE_CREATED, course, i, {"enrol": p}) for i, p in instances.get(course, [])]
        events += [event(ENROL_INSTANCE_CREATED, course, i, {"enrol": p}) for i, p in new_instances.get(course, [])]
        events += [event(ENROL_INSTANCE_UPDATED, course, i, {"enrol": p}) for i, p in changed_instances.get(course, [])]
    return events


def _by_course(pairs: list[tuple[int, tuple[int, Any]]]) -> dict[int, list[tuple[int, Any]]]:
    """course -> its items, in the order given."""
    grouped: dict[int, list[tuple[int, Any]]] = {}
    for course, item in pairs:
        grouped.setdefault(course, []).append(item)
    return grouped
