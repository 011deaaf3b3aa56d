"""Course welcome messages: what Moodle 4.5's enrol_user() sends for an enrolment, for the enrolments toolsync creates.

enrol_user() dispatches the after_user_enrolled hook after writing the user enrolment and before assigning its role;
enrol_manual and enrol_self answer it with the instance's welcome message when its option says so (manual:
customint1, self: customint4; 0 none, 1 from the course contact, 2 from the key holder, 3 from the no-reply address),
through message_send() (component 'moodle', name 'enrolcoursewelcomemessage'): a `notifications` row and its
`message_popup_notifications` row, an email as the user's preferences say, a notification_sent log row. The sender
is the course's first contact at that moment: a row's own role, and the roles of later rows, are not assigned yet,
so a course's first teacher is never welcomed by themselves (WelcomeRole).

While a batch is planned, CourseEnrolments queues the requests that call enrol_user() and the course-contact roles
they assign, in the order a row-by-row run would make them; once the batch has committed, the run sends the messages
through the bridge (Moodle's own code decides and writes everything), or counts the ones a dry run would send.

Moodle dispatches the hook on every enrol_user() call, for a user enrolled already too (verified on Moodle 4.5): a
request that creates an enrolment, reactivates one, changes its dates or adds a role to it welcomes its user, as does
an enrolments-file shift (unenrol_user() then enrol_user()). A request that changes nothing calls no enrol_user()
(tool_sync called it on every row, so each re-run welcomed everyone again): a re-run sends nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.bridge.client import WelcomeRole
from toolsync_tui.engine.moodle.contexts import ContextLevel, instance_contexts
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# The instance field holding the welcome option, for the plugins whose hook callback sends a message.
OPTION_FIELDS = {"manual": "customint1", "self": "customint4"}
NO_MESSAGE = 0  # ENROL_DO_NOT_SEND_EMAIL
FROM_COURSE_CONTACT = 1  # ENROL_SEND_EMAIL_FROM_COURSE_CONTACT

POSITION = ["line", "req"]  # a request's place in a row-by-row run: its file line, then its place in the line
ENROLMENT_SCHEMA: dict[str, type[pl.DataType]] = {
    "line": pl.Int64,
    "req": pl.Int64,
    "enrolid": pl.Int64,
    "userid": pl.Int64,
}
ROLE_SCHEMA: dict[str, type[pl.DataType]] = {
    "line": pl.Int64,
    "req": pl.Int64,
    "courseid": pl.Int64,
    "userid": pl.Int64,
    "roleid": pl.Int64,
}


@dataclass(frozen=True)
class WelcomeBatch:
    """A batch's enrol_user() calls (enrolid, userid) in the order they were made, and its new course-contact roles."""

    enrolments: list[tuple[int, int]] = field(default_factory=list)
    roles: list[WelcomeRole] = field(default_factory=list)


@dataclass
class WelcomeQueue:
    """The enrolments made or changed (and the course-contact roles assigned) by the batch being written."""

    enrolments: list[pl.DataFrame] = field(default_factory=list)
    roles: list[pl.DataFrame] = field(default_factory=list)

    def add(self, enrolments: pl.DataFrame, roles: pl.DataFrame) -> None:
        """`enrolments`: line, req, enrolid, userid; `roles`: line, req, courseid, userid, roleid (course-contact
        roles only). A request's role comes after its enrolment, as enrol_user() assigns it after the hook."""
        if enrolments.height:
            self.enrolments.append(enrolments.select(list(ENROLMENT_SCHEMA)).cast(ENROLMENT_SCHEMA))  # type: ignore[arg-type]
        if roles.height:
            self.roles.append(roles.select(list(ROLE_SCHEMA)).cast(ROLE_SCHEMA))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return sum(frame.height for frame in self.enrolments)

    def clear(self) -> None:
        self.enrolments.clear()
        self.roles.clear()

    def take(self) -> WelcomeBatch:
        """The queued batch in row-by-row order, each role with the first enrolment that sees it; the queue empties."""
        enrolments = pl.concat(self.enrolments) if self.enrolments else pl.DataFrame(schema=ENROLMENT_SCHEMA)
        roles = pl.concat(self.roles) if self.roles else pl.DataFrame(schema=ROLE_SCHEMA)
        self.clear()
        enrolments = enrolments.sort(POSITION, maintain_order=True)
        made = list(enrolments.select(POSITION).iter_rows())
        return WelcomeBatch(
            [(int(e), int(u)) for e, u in enrolments.select("enrolid", "userid").iter_rows()],
            [
                # The enrolments at or before the role's (line, req) were made without it: seen from the next one on.
                WelcomeRole(int(course), int(user), int(role), bisect_right(made, (line, req)) + 1)
                for line, req, course, user, role in roles.select(*POSITION, "courseid", "userid", "roleid").iter_rows()
            ],
        )


@dataclass
class WelcomeOptions:
    """The welcome option of each enrol instance a run's batches name, read once a run: instance id -> (courseid,
    option). A run never changes an instance's option: toolsync creates instances with their plugin's defaults (new
    ids) and edits none."""

    known: dict[int, tuple[int, int]] = field(default_factory=dict)

    async def of(self, gateway: MoodleGateway, conn: AsyncConnection, ids: set[int]) -> dict[int, tuple[int, int]]:
        """The options of `ids` (an instance that no longer exists is left out)."""
        missing = sorted(ids - self.known.keys())
        if missing:
            columns = ["id", "enrol", "courseid", "customint1", "customint4"]
            found = await gateway.fetch_in(conn, gateway.schema.enrol, "id", missing, columns)
            for row in found.iter_rows(named=True):
                option = row[OPTION_FIELDS[row["enrol"]]] if row["enrol"] in OPTION_FIELDS else None  # others send none
                self.known[int(row["id"])] = (int(row["courseid"]), int(option or NO_MESSAGE))
        return self.known


async def sendable(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    batch: WelcomeBatch,
    options: WelcomeOptions,
    contact_courses: set[int] | None = None,
) -> int:
    """How many of the batch's messages Moodle would send, the batch's own rows written or not: its enrolments
    through a method whose option sends one, and, from the course contact, only where one exists at that moment (a
    course-contact role in the course's context or above it, the batch's own roles counted from their first_seen).
    A key holder's message counts as sent (whether anyone holds enrol/self:holdkey is not checked).

    `options`: the run's instance options, read here as new instances come up; `contact_courses`: courses given a
    contact by earlier batches whose rows are not written (a dry run's); the batch's are added to it."""
    if not batch.enrolments:
        return 0
    used = {e for e, _ in batch.enrolments}
    instances = await options.of(gateway, conn, used)
    courses = {instances[e][0] for e in used if instances.get(e, (0, NO_MESSAGE))[1] == FROM_COURSE_CONTACT}
    staffed = await _courses_with_contacts(gateway, conn, sorted(courses), batch.roles)
    earlier = contact_courses if contact_courses is not None else set()
    first_role: dict[int, int] = {}  # course -> the item from which the batch's own roles give it a contact
    for role in batch.roles:
        first_role[role.courseid] = min(role.first_seen, first_role.get(role.courseid, role.first_seen))
    count = 0
    for item, (enrolid, _) in enumerate(batch.enrolments, start=1):
        course, option = instances.get(enrolid, (0, NO_MESSAGE))
        if option == FROM_COURSE_CONTACT:
            new = first_role.get(course, item + 1) <= item
            count += course in staffed or course in earlier or new
        else:
            count += option != NO_MESSAGE
    if contact_courses is not None:
        contact_courses.update(r.courseid for r in batch.roles)
    return count


async def _courses_with_contacts(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Sequence[int], hidden: Sequence[WelcomeRole]
) -> set[int]:
    """The courses with a course-contact role assigned in their context or a parent one ($CFG->coursecontact, as
    get_role_users(..., $parent = true) finds them), the `hidden` assignments of the course context left out."""
    if not courses:
        return set()
    setting = (await gateway.config_values(["coursecontact"])).get("coursecontact") or ""
    roles = [int(r) for r in setting.split(",") if r.strip().isdigit()]
    contexts = await instance_contexts(gateway, conn, ContextLevel.COURSE, courses)
    paths = {course: [int(i) for i in context.path.split("/") if i] for course, context in contexts.items()}
    if not roles or not paths:
        return set()
    ra = gateway.schema.role_assignments
    found = await gateway.fetch_in(
        conn,
        ra,
        "contextid",
        sorted({i for path in paths.values() for i in path}),
        ["contextid", "userid", "roleid"],
        where=ra.c.roleid.in_(roles),
    )
    skip = {(contexts[r.courseid].id, r.userid, r.roleid) for r in hidden if r.courseid in contexts}
    holding = {int(c) for c, u, r in found.iter_rows() if (int(c), int(u), int(r)) not in skip}
    return {course for course, path in paths.items() if holding.intersection(path)}
