"""Users and the rows that hang off them, written straight into the tables, and whole-database snapshots to compare.

`add_member` gives a user a row in every table deleting a user touches (or should leave alone), the way Moodle's own
code writes them as far as the deletion reads them; `snapshot` and `diff` show every row a deletion changed, the way
the DB-diff trace of moodle-db-semantics §0 did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Numeric, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support.factories import unique
from toolsync_tui.engine.moodle.contexts import ContextLevel, create_contexts
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.users.profile_fields import (
    ProfileField,
    load_profile_fields,
)

SYSTEM_PATH = "/1"
CATEGORY_CONTEXT = 3  # the context of category 1 in the fresh site (and the sandbox seed)
STUDENT, MANAGER, TEACHER, AUTHENTICATED = 5, 1, 4, 7

Rows = dict[str, dict[int, dict[str, Any]]]


async def add_row(gateway: MoodleGateway, conn: AsyncConnection, table_name: str, **values: Any) -> int:
    """Insert one row; NOT NULL columns without a default that are not given get 0 or ''. Returns its id."""
    table = getattr(gateway.schema, table_name)
    for column in table.columns:
        if column.primary_key or column.nullable or column.server_default is not None or column.name in values:
            continue
        values[column.name] = 0 if isinstance(column.type, Integer | Numeric) else ""
    result = await conn.execute(insert(table).values(**values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def add_user(gateway: MoodleGateway, conn: AsyncConnection, **values: Any) -> int:
    """A confirmed manual account on the local host, with its user context (as user_create_user() leaves it)."""
    username = values.pop("username", None) or unique("deluser")
    row = {
        "username": username,
        "auth": "manual",
        "confirmed": 1,
        "mnethostid": 1,
        "firstname": "First",
        "lastname": "Last",
        "email": f"{username}@example.com",
        "timecreated": 1,
        "timemodified": 1,
        **values,
    }
    user_id = await add_row(gateway, conn, "user", **row)
    await create_contexts(gateway, conn, ContextLevel.USER, [(user_id, SYSTEM_PATH)])
    return user_id


async def context_of(gateway: MoodleGateway, conn: AsyncConnection, level: ContextLevel, instance: int) -> int:
    context = gateway.schema.context
    query = select(context.c.id).where(context.c.contextlevel == int(level), context.c.instanceid == instance)
    return int((await conn.execute(query)).scalar_one())


async def add_course(gateway: MoodleGateway, conn: AsyncConnection) -> tuple[int, int]:
    """A course in category 1 with its context; returns (course id, context id)."""
    name = unique("delcourse")
    course_id = await add_row(gateway, conn, "course", category=1, shortname=name, fullname=name, summary="")
    created = await create_contexts(
        gateway, conn, ContextLevel.COURSE, [(course_id, f"{SYSTEM_PATH}/{CATEGORY_CONTEXT}")]
    )
    return course_id, created[course_id][0]


async def enrol(
    gateway: MoodleGateway, conn: AsyncConnection, instance: int, user_id: int, *, roleid: int | None = None
) -> int:
    """A user enrolment, and the role the instance gives in the course context (component '' for manual)."""
    enrol_row = (await conn.execute(select(gateway.schema.enrol).where(gateway.schema.enrol.c.id == instance))).one()
    ue = await add_row(gateway, conn, "user_enrolments", enrolid=instance, userid=user_id, timestart=0, timeend=0)
    if roleid is not None:
        protected = enrol_row.enrol != "manual"
        await add_row(
            gateway,
            conn,
            "role_assignments",
            roleid=roleid,
            contextid=await context_of(gateway, conn, ContextLevel.COURSE, enrol_row.courseid),
            userid=user_id,
            component=f"enrol_{enrol_row.enrol}" if protected else "",
            itemid=instance if protected else 0,
        )
    return ue


@dataclass
class Member:
    """A user given a row in every table user deletion reads, with the ids of those rows."""

    user_id: int
    context_id: int
    rows: dict[str, list[int]] = field(default_factory=dict)  # table -> ids of the rows written for this user
    kept: dict[str, list[int]] = field(default_factory=dict)  # the subset delete_user() leaves in place

    def add(self, table: str, row_id: int, *, kept: bool = False) -> None:
        self.rows.setdefault(table, []).append(row_id)
        if kept:
            self.kept.setdefault(table, []).append(row_id)


@dataclass
class Courses:
    """Course A (manual and cohort enrolment, groups, a forum), B (only a disabled plugin's enrolment: no "last
    enrolment" clean-up there) and C (no enrolment), each with a forum."""

    a: int
    b: int
    c: int
    manual: int
    cohort_instance: int
    meta: int
    forums: dict[str, int]
    group_a: int
    group_a_cohort: int
    group_a_others: int
    group_b: int
    cohort: int
    profile_field: int


async def add_courses(gateway: MoodleGateway, conn: AsyncConnection) -> Courses:
    (a, _), (b, _), (c, _) = [await add_course(gateway, conn) for _ in range(3)]
    manual = await add_row(gateway, conn, "enrol", enrol="manual", courseid=a, roleid=STUDENT, status=0)
    cohort = await add_row(gateway, conn, "cohort", contextid=1, name=unique("Cohort "), descriptionformat=1)
    cohort_instance = await add_row(
        gateway, conn, "enrol", enrol="cohort", courseid=a, roleid=STUDENT, customint1=cohort, status=0
    )
    meta = await add_row(gateway, conn, "enrol", enrol="meta", courseid=b, roleid=STUDENT, customint1=a, status=0)
    forums = {
        key: await add_row(gateway, conn, "forum", course=course, name="Forum", intro="")
        for key, course in (("a", a), ("b", b), ("c", c))
    }
    groups = [
        await add_row(gateway, conn, "groups", courseid=course, name=unique("Group "), timemodified=5)
        for course in (a, a, a, b)
    ]
    category = await add_row(gateway, conn, "user_info_category", name=unique("Category "), sortorder=1)
    profile_field = await add_row(
        gateway, conn, "user_info_field", shortname=unique("delpf"), name="Field", datatype="text", categoryid=category
    )
    group_a, group_a_cohort, group_a_others, group_b = groups
    return Courses(
        a,
        b,
        c,
        manual,
        cohort_instance,
        meta,
        forums,
        group_a,
        group_a_cohort,
        group_a_others,
        group_b,
        cohort,
        profile_field,
    )


async def add_member(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Courses, *, now: int, **user_values: Any
) -> Member:
    """A user with: manual and cohort enrolments in A, a meta enrolment in B; roles in A, B and category 1; cohort
    and group memberships (one added by the cohort instance); a preference, profile data, a session, last access,
    a grade, and a row in each table delete_user() or its callbacks empty."""
    user_id = await add_user(gateway, conn, **user_values)
    member = Member(user_id, await context_of(gateway, conn, ContextLevel.USER, user_id))
    add = member.add

    async def row(table: str, *, kept: bool = False, **values: Any) -> int:
        row_id = await add_row(gateway, conn, table, **values)
        add(table, row_id, kept=kept)
        return row_id

    ue_before = await _ids(gateway, conn, "user_enrolments", user_id)
    ra_before = await _ids(gateway, conn, "role_assignments", user_id)
    await enrol(gateway, conn, courses.manual, user_id, roleid=STUDENT)
    await enrol(gateway, conn, courses.cohort_instance, user_id, roleid=STUDENT)
    await enrol(gateway, conn, courses.meta, user_id, roleid=STUDENT)
    for ue in sorted(set(await _ids(gateway, conn, "user_enrolments", user_id)) - set(ue_before)):
        add("user_enrolments", ue)
    for ra in sorted(set(await _ids(gateway, conn, "role_assignments", user_id)) - set(ra_before)):
        add("role_assignments", ra)
    await row("role_assignments", roleid=MANAGER, contextid=CATEGORY_CONTEXT, userid=user_id, component="", itemid=0)
    await row("cohort_members", cohortid=courses.cohort, userid=user_id, timeadded=now - 50)
    await row("groups_members", groupid=courses.group_a, userid=user_id, component="", itemid=0)
    await row(
        "groups_members",
        groupid=courses.group_a_cohort,
        userid=user_id,
        component="enrol_cohort",
        itemid=courses.cohort_instance,
    )
    await row("groups_members", groupid=courses.group_b, userid=user_id, component="", itemid=0)
    await row("user_preferences", userid=user_id, name="email_bounce_count", value="1")
    await row("user_info_data", userid=user_id, fieldid=courses.profile_field, data="value", dataformat=0)
    await row("sessions", userid=user_id, sid=unique("sid"), state=0, timecreated=now - 60, timemodified=now - 60)
    await row("user_lastaccess", userid=user_id, courseid=courses.a, timeaccess=now - 60)
    await row(
        "grade_grades",
        itemid=999,
        userid=user_id,
        rawgrade=71.5,
        finalgrade=71.5,
        usermodified=2,
        feedback="Good",
        timecreated=now - 500,
        timemodified=now - 400,
    )
    await row("user_password_history", userid=user_id, hash="$6$x", timecreated=now - 70)
    await row("external_tokens", userid=user_id, token=unique("token"), externalserviceid=1, contextid=1, creatorid=2)
    await row("external_services_users", userid=user_id, externalserviceid=1)
    await row("user_private_key", userid=user_id, script="rss", value=unique("key"))
    await row("oauth2_refresh_token", userid=user_id, issuerid=1, token="t", scopehash="h")
    await row("event_subscriptions", userid=user_id, url="https://example.org/cal.ics", name="Cal")
    await row("event", userid=user_id, name="Imported", description="", subscriptionid=1, eventtype="user")
    await row("tool_monitor_subscriptions", userid=user_id, courseid=courses.a, ruleid=1)
    await row("auth_oauth2_linked_login", userid=user_id, issuerid=1, username="x", email="x@example.org")
    await row("auth_lti_linked_login", userid=user_id, issuer="i", issuer256="i", sub=unique("sub"), sub256="s")
    await row("tool_cohortroles", userid=user_id, cohortid=courses.cohort, roleid=TEACHER)
    await row("my_pages", userid=user_id, name="__default", private=1)
    await row("tag_instance", tagid=1, component="core", itemtype="user", itemid=user_id, tiuserid=0)
    usercomp = await row("competency_usercomp", userid=user_id, competencyid=1, status=0)
    await row("competency_evidence", usercompetencyid=usercomp, contextid=1, descidentifier="x", desccomponent="y")
    await row("competency_usercompcourse", userid=user_id, courseid=courses.a, competencyid=1)
    await row("competency_usercompplan", userid=user_id, competencyid=1, planid=1)
    evidence = await row("competency_userevidence", userid=user_id, name="Evidence", description="", url="")
    await row("competency_userevidencecomp", userevidenceid=evidence, competencyid=1)
    plan = await row("competency_plan", userid=user_id, name="Plan", status=0)
    await row("competency_plancomp", planid=plan, competencyid=1)
    for course, forum in courses.forums.items():
        kept = course != "a"  # the forum clean-up only follows the last enrolment, through an enabled plugin
        await row("forum_digests", kept=kept, userid=user_id, forum=forum, maildigest=1)
        await row("forum_subscriptions", kept=kept, userid=user_id, forum=forum)
        await row("forum_track_prefs", kept=kept, userid=user_id, forumid=forum)
        read = {"discussionid": 1, "postid": 1, "firstread": 1, "lastread": 1}
        await row("forum_read", kept=kept, userid=user_id, forumid=forum, **read)
    # Rows that delete_user() leaves: a user calendar event, the public dashboard copy, a tag on something else.
    await row("event", kept=True, userid=user_id, name="Mine", description="", eventtype="user")
    await row("my_pages", kept=True, userid=user_id, name="__courses", private=0)
    await row("tag_instance", kept=True, tagid=1, component="core", itemtype="course", itemid=user_id, tiuserid=0)
    return member


async def _ids(gateway: MoodleGateway, conn: AsyncConnection, table_name: str, user_id: int) -> list[int]:
    table = getattr(gateway.schema, table_name)
    return [int(i) for i in (await conn.execute(select(table.c.id).where(table.c.userid == user_id))).scalars()]


async def set_plugin_config(gateway: MoodleGateway, conn: AsyncConnection, plugin: str, name: str, value: str) -> None:
    """Upsert a mdl_config_plugins value (the sandbox seed holds only some plugins' settings)."""
    table = gateway.schema.config_plugins
    found = (await conn.execute(select(table.c.id).where(table.c.plugin == plugin, table.c.name == name))).scalar()
    if found is None:
        await conn.execute(insert(table).values(plugin=plugin, name=name, value=value))
    else:
        await conn.execute(table.update().where(table.c.id == found).values(value=value))


# -- snapshots ------------------------------------------------------------------------------------------------------


async def snapshot(gateway: MoodleGateway) -> Rows:
    """Every row of every declared table, by table (without prefix) and id."""
    rows: Rows = {}
    async with gateway.reading() as conn:
        for table in gateway.schema.metadata.tables.values():
            name = table.name.removeprefix(gateway.schema.prefix)
            result = await conn.execute(select(table))
            rows[name] = {int(r["id"]): dict(r) for r in result.mappings()}
    return rows


@dataclass
class Diff:
    removed: dict[str, set[int]]
    added: dict[str, list[dict[str, Any]]]
    changed: dict[str, dict[int, dict[str, tuple[Any, Any]]]]  # table -> id -> column -> (before, after)


def diff(before: Mapping[str, Mapping[int, Mapping[str, Any]]], after: Rows) -> Diff:
    removed: dict[str, set[int]] = {}
    added: dict[str, list[dict[str, Any]]] = {}
    changed: dict[str, dict[int, dict[str, tuple[Any, Any]]]] = {}
    for table, rows in after.items():
        old = before[table]
        if gone := set(old) - set(rows):
            removed[table] = gone
        if new := [rows[i] for i in sorted(set(rows) - set(old))]:
            added[table] = new
        for row_id in set(rows) & set(old):
            columns = {c: (old[row_id][c], v) for c, v in rows[row_id].items() if old[row_id][c] != v}
            if columns:
                changed.setdefault(table, {})[row_id] = columns
    return Diff(removed, added, changed)


async def add_fields(gateway: MoodleGateway, specs: dict[str, dict[str, Any]]) -> dict[str, ProfileField]:
    """Field definitions, as profile_save_field() writes them, in a new category; returns them by spec key."""
    category, field = gateway.schema.user_info_category, gateway.schema.user_info_field
    shortnames = {key: unique(f"pf{key}") for key in specs}
    category_name = unique("Category ")
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, category, [{"name": category_name, "sortorder": 1}])
        [category_id] = (await gateway.fetch_in(conn, category, "name", [category_name], ["id"]))["id"]
        rows = [
            {
                "shortname": shortnames[key],
                "name": key,
                "description": "",
                "descriptionformat": 1,
                "categoryid": category_id,
                "sortorder": n,
                "required": 0,
                "locked": 0,
                "visible": 2,
                "forceunique": 0,
                "signup": 0,
                "defaultdata": "",
                "defaultdataformat": 0,
                **dict.fromkeys(("param1", "param2", "param3", "param4", "param5")),
                **spec,
            }
            for n, (key, spec) in enumerate(specs.items(), start=1)
        ]
        await gateway.insert_many(conn, field, rows)
        fields = await load_profile_fields(gateway, conn)
    return {key: fields[shortname] for key, shortname in shortnames.items()}
