"""The standard-log events Moodle 4.5's delete_user() triggers, for a batch that user_deletion.py deletes directly.

Traced on a 4.5 site (tests/moodle/test_deletion_log_events.py): user after user, in the batch's order, each in the
order delete_user() runs. Values read from the database are strings in `other`, as PHP's driver returns them.

1. grade_user_delete(): grade_deleted per grade (by id) whose grade item exists, in the item's course context;
   {"itemid":"<item>","overridden":<bool>,"finalgrade":"<as stored>"|null}.
2. remove_all_item_tags('core', 'user', id): per interest (by ordering, then id) tag_removed in the instance's
   context, {"tagid","tagname","tagrawname","itemid","itemtype":"user"}; right after it tag_deleted (system context,
   relateduserid the tag's creator, {"name","rawname"}) when the tag is not standard and has no instance left.
   Built by `tag_events` from the rows user_deletion.py reads and deletes.
3. enrol_user_delete(): each enabled plugin, in $CFG->enrol_plugins_enabled order (guest's unenrol_user() does
   nothing), unenrols the user from its instances in the order of the user's enrolment ids (MariaDB reads them through
   the userid index on any site with more courses than a user has enrolments). unenrol_user(): group_member_removed
   and role_unassigned for what the instance made (component enrol_<plugin>, itemid the instance); when no enrolment
   of the user is left in the course (one of a disabled plugin counts), role_unassigned for every role in the course
   context (by id), then below it (by context path, then id), and group_member_removed for each group of the course
   (by group id: the (userid, groupid) index); then user_enrolment_deleted with the row, courseid, enrol and
   lastenrol.
4. role_unassign_all(): role_unassigned for every role left, by id, where the context exists; an assignment in the
   user context of a user deleted earlier in the batch went, without an event, with that context's content.
5. user_deleted in the user context: {"username","email","idnumber","picture","mnethostid"} as stored.

Orders Moodle leaves to the database (no ORDER BY: user_delete()'s enrol join, role_unassign_all()'s get_records(),
get_child_contexts(), groups_delete_group_members()) are those of the plans a live site gets, the same on both
servers: MariaDB's, and PostgreSQL's once its statistics are current at a realistic size (EXPLAIN, 2026-12-07: the
userid indexes for the join and role_assignments, (userid, groupid) for groups, the path index for contexts). On a
PostgreSQL site whose tables were never or only just analyzed, other plans give other orders (enrol ids, contexts,
heap order): which one Moodle gets depends on autovacuum's timing, not on the rows, so no order can follow it
(tests/moodle/test_deletion_log_events.py, unordered_unenrolments()).

Cohort members, the other brute-force deletes, competencies, the data privacy request (automatic: no message) and the
user context's content log nothing. Steps 3 to 5 are read by `membership_events` and `deleted_events` before any
row goes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import events as kinds
from toolsync_tui.engine.moodle.contexts import Context, ContextLevel, instance_contexts, system_context
from toolsync_tui.engine.moodle.event_log import Event, EventKind
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# user_enrolments columns in the order Moodle's record has them: user_enrolment_deleted's snapshot.
UE_COLUMNS = ("id", "status", "enrolid", "userid", "timestart", "timeend", "modifierid", "timecreated", "timemodified")
GRADE_SCALE = 5  # grade_grades.finalgrade is DECIMAL(10,5): PHP gets "55.00000"
SKIPPED_PLUGINS = frozenset({"guest"})  # enrol_guest::unenrol_user() returns at once

PerUser = dict[int, list[Event]]


class Where(NamedTuple):
    """A context as an event carries it."""

    id: int
    level: int
    instance: int
    course: int  # base::create(): the course of the context or of its course ancestor, else 0
    path: str = ""


@dataclass
class _Assignment:
    id: int
    roleid: int
    component: str
    itemid: int
    where: Where


@dataclass
class _Membership:
    id: int
    groupid: int
    component: str
    itemid: int
    course: int


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


async def contexts_of(gateway: MoodleGateway, conn: AsyncConnection, ids: Iterable[int]) -> dict[int, Where]:
    """Context id -> Where, for those of `ids` that exist; the course is found through the context's path."""
    table = gateway.schema.context
    wanted = sorted(set(ids))
    found = await gateway.fetch_in(conn, table, "id", wanted, ["id", "contextlevel", "instanceid", "path"])
    rows = [(int(i), int(level), int(instance), str(path or "")) for i, level, instance, path in found.iter_rows()]
    ancestors = {int(part) for *_, path in rows for part in path.split("/") if part.isdigit()}
    courses = await gateway.fetch_in(
        conn,
        table,
        "id",
        sorted(ancestors),
        ["id", "instanceid"],
        where=table.c.contextlevel == int(ContextLevel.COURSE),
    )
    course_of = {int(i): int(instance) for i, instance in courses.iter_rows()}
    result = {}
    for context_id, level, instance, path in rows:
        above = [
            course_of[int(part)] for part in reversed(path.split("/")) if part.isdigit() and int(part) in course_of
        ]
        result[context_id] = Where(context_id, level, instance, above[0] if above else 0, path)
    return result


def _event(kind: EventKind, objectid: int, where: Where, user: int | None, other: Mapping[str, Any] | None) -> Event:
    return Event(kind, objectid, where.id, where.level, where.instance, where.course, user, other)


# -- 1. grades ------------------------------------------------------------------------------------------------------


async def grade_events(gateway: MoodleGateway, conn: AsyncConnection, grades: Sequence[Mapping[str, Any]]) -> PerUser:
    """grade_deleted for `grades` (grade_grades rows, in deletion order)."""
    items = await gateway.fetch_in(
        conn, gateway.schema.grade_items, "id", sorted({int(g["itemid"]) for g in grades}), ["id", "courseid"]
    )
    course_of = {int(i): int(c) for i, c in items.iter_rows() if c is not None}
    contexts = await instance_contexts(gateway, conn, ContextLevel.COURSE, sorted(set(course_of.values())))
    result: PerUser = defaultdict(list)
    for grade in grades:
        course = course_of.get(int(grade["itemid"]))
        if course is None or course not in contexts:  # no grade item: grade_grade::delete() triggers nothing
            continue
        final = grade["finalgrade"]
        other = {
            "itemid": str(grade["itemid"]),
            "overridden": bool(grade["overridden"]),
            "finalgrade": None if final is None else f"{Decimal(final):.{GRADE_SCALE}f}",
        }
        where = Where(contexts[course].id, int(ContextLevel.COURSE), course, course)
        result[int(grade["userid"])].append(
            _event(kinds.GRADE_DELETED, int(grade["id"]), where, int(grade["userid"]), other)
        )
    return result


# -- 2. interests ---------------------------------------------------------------------------------------------------


async def tag_events(
    gateway: MoodleGateway, conn: AsyncConnection, removed: Sequence[Mapping[str, Any]], deleted: Iterable[int]
) -> PerUser:
    """tag_removed per instance of `removed` (in deletion order: id, tagid, itemid, contextid, name, rawname and the
    tag's userid), tag_deleted after the last instance of each tag of `deleted`."""
    gone = set(deleted)
    contexts = await contexts_of(gateway, conn, {int(r["contextid"]) for r in removed if r["contextid"] is not None})
    system = await system_context(gateway, conn)
    at_system = Where(system.id, int(ContextLevel.SYSTEM), 0, 0)
    last = {int(r["tagid"]): n for n, r in enumerate(removed)}
    result: PerUser = defaultdict(list)
    for n, row in enumerate(removed):
        user, tag = int(row["itemid"]), int(row["tagid"])
        # A NULL context is the system context (delete_instance_as_record()); a user context names its user.
        where = contexts.get(int(row["contextid"])) if row["contextid"] is not None else at_system
        if where is None:
            continue  # context::instance_by_id() would fail: Moodle cannot log it either
        related = where.instance if where.level == int(ContextLevel.USER) else None
        other = {
            "tagid": str(tag),
            "tagname": row["name"],
            "tagrawname": row["rawname"],
            "itemid": str(user),
            "itemtype": "user",
        }
        result[user].append(_event(kinds.TAG_REMOVED, int(row["id"]), where, related, other))
        if tag in gone and last[tag] == n:
            other = {"name": row["name"], "rawname": row["rawname"]}
            result[user].append(_event(kinds.TAG_DELETED, tag, at_system, int(row["tag_userid"]), other))
    return result


# -- 3, 4. enrolments, groups and roles -----------------------------------------------------------------------------


async def membership_events(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int], plugins: Sequence[str]
) -> PerUser:
    """What enrol_user_delete() and role_unassign_all() log for the users `ids` (batch order), `plugins` the enabled
    enrolment plugins in the site's order. Read before anything is deleted."""
    s = gateway.schema
    ue = await gateway.fetch_in(conn, s.user_enrolments, "userid", ids, list(UE_COLUMNS))
    enrol = await gateway.fetch_in(
        conn, s.enrol, "id", sorted({int(i) for i in ue["enrolid"]}) if ue.height else [], ["id", "enrol", "courseid"]
    )
    instances = {int(i): (str(plugin), int(course)) for i, plugin, course in enrol.iter_rows()}
    members = await gateway.fetch_in(
        conn, s.groups_members, "userid", ids, ["id", "groupid", "userid", "component", "itemid"]
    )
    group_ids = sorted({int(g) for g in members["groupid"]}) if members.height else []
    groups = await gateway.fetch_in(conn, s.groups, "id", group_ids, ["id", "courseid"])
    group_course = {int(g): int(c) for g, c in groups.iter_rows()}
    held = await gateway.fetch_in(
        conn, s.role_assignments, "userid", ids, ["id", "roleid", "userid", "component", "itemid", "contextid"]
    )
    contexts = await contexts_of(gateway, conn, [int(c) for c in held["contextid"]] if held.height else [])
    courses = {course for _, course in instances.values()} | set(group_course.values())
    course_contexts = await instance_contexts(gateway, conn, ContextLevel.COURSE, sorted(courses))
    user_contexts = await instance_contexts(gateway, conn, ContextLevel.USER, ids)

    enrolments: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in ue.iter_rows(named=True):
        if int(row["enrolid"]) in instances:  # an enrolment without its instance: no plugin reaches it
            enrolments[int(row["userid"])].append(row)
    memberships: dict[int, list[_Membership]] = defaultdict(list)
    for gm, group, user, component, itemid in members.iter_rows():
        if group_course.get(int(group)) in course_contexts:
            memberships[int(user)].append(
                _Membership(int(gm), int(group), component or "", int(itemid), group_course[int(group)])
            )
    assignments: dict[int, list[_Assignment]] = defaultdict(list)
    for ra, role, user, component, itemid, context in held.iter_rows():
        if int(context) in contexts:  # IGNORE_MISSING: no event for a context that is gone
            where = contexts[int(context)]
            assignments[int(user)].append(_Assignment(int(ra), int(role), component or "", int(itemid), where))

    order = [p for p in dict.fromkeys(plugins) if p not in SKIPPED_PLUGINS]
    result: PerUser = {}
    deleted_contexts: set[int] = set()  # user contexts whose content went with an earlier user of the batch
    for user in ids:
        unenrol = _Unenrolment(user, instances, course_contexts, memberships[user], assignments[user])
        left = list(enrolments[user])
        for plugin in order:
            mine = sorted((r for r in left if instances[int(r["enrolid"])][0] == plugin), key=lambda r: int(r["id"]))
            for row in mine:
                left.remove(row)
                unenrol.unenrol(row, still_enrolled={instances[int(r["enrolid"])][1] for r in left})
        # role_unassign_all(['userid' => ...]): what is left, by id.
        for ra in sorted(unenrol.assignments, key=lambda a: a.id):
            if ra.where.id not in deleted_contexts:
                unenrol.log_unassigned(ra)
        unenrol.assignments.clear()
        if user in user_contexts:
            deleted_contexts.add(user_contexts[user].id)
        result[user] = unenrol.events
    return result


class _Unenrolment:
    """One user's unenrol_user() calls, in order: what each removes, and the events."""

    def __init__(
        self,
        user: int,
        instances: Mapping[int, tuple[str, int]],
        course_contexts: Mapping[int, Context],
        memberships: list[_Membership],
        assignments: list[_Assignment],
    ) -> None:
        self.user = user
        self.instances = instances
        self.course_contexts = course_contexts
        self.memberships = list(memberships)
        self.assignments = list(assignments)
        self.events: list[Event] = []

    def _course(self, course: int) -> Where:
        return Where(self.course_contexts[course].id, int(ContextLevel.COURSE), course, course)

    def log_unassigned(self, ra: _Assignment) -> None:
        other = {"id": str(ra.id), "component": ra.component, "itemid": str(ra.itemid)}
        self.events.append(_event(kinds.ROLE_UNASSIGNED, ra.roleid, ra.where, self.user, other))

    def _unassign(self, chosen: list[_Assignment]) -> None:
        for ra in chosen:
            self.assignments.remove(ra)
            self.log_unassigned(ra)

    def _remove_members(self, chosen: list[_Membership]) -> None:
        for member in chosen:
            self.memberships.remove(member)
            self.events.append(
                _event(kinds.GROUP_MEMBER_REMOVED, member.groupid, self._course(member.course), self.user, None)
            )

    def unenrol(self, row: Mapping[str, Any], still_enrolled: set[int]) -> None:
        """unenrol_user() of the enrolment `row`; `still_enrolled`: the courses where the user has enrolments left."""
        instance = int(row["enrolid"])
        plugin, course = self.instances[instance]
        if course not in self.course_contexts:
            return  # context_course::instance(MUST_EXIST) throws: Moodle stops there
        context = self.course_contexts[course]
        component = f"enrol_{plugin}"
        self._remove_members(
            sorted(
                (m for m in self.memberships if m.component == component and m.itemid == instance), key=lambda m: m.id
            )
        )
        self._unassign(
            sorted(
                (
                    a
                    for a in self.assignments
                    if a.where.id == context.id and a.component == component and a.itemid == instance
                ),
                key=lambda a: a.id,
            )
        )
        last = course not in still_enrolled
        if last:
            # role_unassign_all(userid, course context, subcontexts): the context itself, then get_child_contexts()
            # (by path, as the path index returns them).
            self._unassign(sorted((a for a in self.assignments if a.where.id == context.id), key=lambda a: a.id))
            below = [a for a in self.assignments if a.where.path.startswith(context.path + "/")]
            self._unassign(sorted(below, key=lambda a: (a.where.path, a.id)))
            # groups_delete_group_members(course, user): by group.
            self._remove_members(sorted((m for m in self.memberships if m.course == course), key=lambda m: m.groupid))
        snapshot: dict[str, Any] = {name: _text(row[name]) for name in UE_COLUMNS}
        snapshot.update(courseid=str(course), enrol=plugin, lastenrol=last)
        other = {"userenrolment": snapshot, "enrol": plugin}
        self.events.append(_event(kinds.USER_ENROLMENT_DELETED, int(row["id"]), self._course(course), self.user, other))


# -- 5. the account -------------------------------------------------------------------------------------------------


async def deleted_events(gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int]) -> dict[int, Event]:
    """user_deleted for each user of `ids` that has a user context, from the row as stored before the deletion."""
    columns = ["id", "username", "email", "idnumber", "picture", "mnethostid"]
    found = await gateway.fetch_in(conn, gateway.schema.user, "id", ids, columns)
    contexts = await instance_contexts(gateway, conn, ContextLevel.USER, ids)
    result = {}
    for row in found.iter_rows(named=True):
        user = int(row["id"])
        if user not in contexts:
            continue
        other = {name: _text(row[name]) for name in columns[1:]}
        where = Where(contexts[user].id, int(ContextLevel.USER), user, 0)
        result[user] = _event(kinds.USER_DELETED, user, where, user, other)
    return result


def in_order(ids: Sequence[int], *steps: Mapping[int, Sequence[Event]]) -> list[Event]:
    """The events of the batch, user after user, each user's steps in order."""
    return [event for user in ids for step in steps for event in step.get(user, ())]
