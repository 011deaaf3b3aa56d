"""Courses as enrolment tests need them: course rows, their contexts, enrol instances; users; cohorts.

Written straight into the tables, with the values create_course() and enrol_plugin::add_default_instance() write for
the columns toolsync reads (moodle-db-semantics §3, §6). Works on the sandbox, the project schema and the real dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from tests.support.factories import add_courses, unique
from toolsync_tui.engine.moodle.contexts import ContextLevel, create_contexts
from toolsync_tui.engine.moodle.gateway import MoodleGateway

STUDENT, TEACHER, EDITINGTEACHER, GUEST = 5, 4, 3, 6  # role ids of a fresh site (the dump and the sandbox)
# add_default_instances() of a fresh site: manual enabled, guest and self disabled, in this order.
DEFAULT_INSTANCES: tuple[tuple[str, int], ...] = (("manual", 0), ("guest", 1), ("self", 1))


@dataclass
class TestCourse:
    __test__ = False  # not a pytest test class

    id: int
    shortname: str
    idnumber: str
    contextid: int
    instances: dict[str, list[int]] = field(default_factory=dict)  # plugin -> instance ids, by sortorder

    def instance(self, plugin: str = "manual", n: int = 0) -> int:
        return self.instances[plugin][n]


async def add_enrolment_courses(
    gateway: MoodleGateway,
    count: int = 1,
    *,
    instances: tuple[tuple[str, int], ...] = DEFAULT_INSTANCES,
    roleid: int = STUDENT,
    idnumbers: list[str] | None = None,
) -> list[TestCourse]:
    """`count` courses in category 1, each with its context (under the category's) and `instances` = (plugin,
    status) pairs as enrol instances with sortorder 0, 1, ... and default role `roleid`."""
    shortnames = [unique("EC") for _ in range(count)]
    given = idnumbers or [""] * count
    ids = await add_courses(gateway, [{"shortname": s, "idnumber": i} for s, i in zip(shortnames, given, strict=True)])
    schema = gateway.schema
    async with gateway.transaction() as conn:
        context = schema.context
        category_path = (
            await conn.execute(
                select(context.c.path).where(
                    (context.c.contextlevel == int(ContextLevel.COURSECAT)) & (context.c.instanceid == 1)
                )
            )
        ).scalar_one()
        contexts = await create_contexts(gateway, conn, ContextLevel.COURSE, [(i, category_path) for i in ids])
        await gateway.insert_many(
            conn,
            schema.enrol,
            [
                {
                    "enrol": plugin,
                    "status": status,
                    "courseid": course,
                    "sortorder": n,
                    "roleid": 0 if plugin == "guest" else roleid,
                    "expirythreshold": 86400,
                    "customint1": None,
                    "timecreated": 0,
                    "timemodified": 0,
                }
                for course in ids
                for n, (plugin, status) in enumerate(instances)
            ],
        )
        found = await gateway.fetch_in(conn, schema.enrol, "courseid", ids, ["id", "courseid", "enrol", "sortorder"])
    courses = {
        i: TestCourse(id=i, shortname=s, idnumber=n, contextid=contexts[i][0])
        for i, s, n in zip(ids, shortnames, given, strict=True)
    }
    for instance, course, plugin, _sortorder in found.sort("sortorder", "id").iter_rows():
        courses[course].instances.setdefault(plugin, []).append(instance)
    return [courses[i] for i in ids]


async def add_users(gateway: MoodleGateway, count: int) -> list[int]:
    """Plain local accounts; returns their ids."""
    user = gateway.schema.user
    names = [unique("enuser") for _ in range(count)]
    rows = [
        {"username": n, "firstname": "F", "lastname": "L", "email": f"{n}@example.com", "mnethostid": 1, "confirmed": 1}
        for n in names
    ]
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, user, rows)
        found = await gateway.fetch_in(conn, user, "username", names, ["id", "username"])
    ids = dict(zip(found["username"], found["id"], strict=True))
    return [ids[n] for n in names]


async def add_group(gateway: MoodleGateway, courseid: int, name: str) -> int:
    groups = gateway.schema.groups
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            groups,
            [{"courseid": courseid, "name": name, "idnumber": "", "timecreated": 1, "timemodified": 1}],
        )
        found = await gateway.fetch_in(conn, groups, "courseid", [courseid], ["id", "name"])
    return int(found.filter(found["name"] == name)["id"].max())  # type: ignore[arg-type]


def created_group(courseid: int, name: str, now: int) -> dict[str, object]:
    """A groups row (without its id) as groups_create_group() writes it at `now`."""
    return {
        "courseid": courseid,
        "idnumber": "",
        "name": name,
        "description": None,
        "descriptionformat": 0,
        "enrolmentkey": None,
        "picture": 0,
        "visibility": 0,
        "participation": 1,
        "timecreated": now,
        "timemodified": now,
    }


async def add_cohort(gateway: MoodleGateway, name: str, *, contextid: int = 1, idnumber: str | None = None) -> int:
    """A cohort as cohort_add_cohort() writes it; returns its id."""
    cohort = gateway.schema.cohort
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            cohort,
            [
                {
                    "contextid": contextid,
                    "name": name,
                    "idnumber": idnumber,
                    "description": "",
                    "descriptionformat": 1,
                    "visible": 1,
                    "component": "",
                    "timecreated": 1,
                    "timemodified": 1,
                    "theme": "",
                }
            ],
        )
        found = await gateway.fetch_in(conn, cohort, "name", [name], ["id"])
    return int(found["id"].max())  # type: ignore[arg-type]


@dataclass
class TestCategory:
    __test__ = False  # not a pytest test class

    id: int
    idnumber: str
    contextid: int


async def add_category(gateway: MoodleGateway, name: str, *, parent: int, idnumber: str = "") -> TestCategory:
    """A course category under `parent` with its context (under the parent's), as core_course_category::create()
    leaves the columns toolsync reads."""
    categories, context = gateway.schema.course_categories, gateway.schema.context
    async with gateway.transaction() as conn:
        parent_path, parent_depth = (
            await conn.execute(select(categories.c.path, categories.c.depth).where(categories.c.id == parent))
        ).one()
        result = await conn.execute(
            categories.insert().values(name=name, idnumber=idnumber, parent=parent, depth=parent_depth + 1, sortorder=0)
        )
        category = int(result.inserted_primary_key[0])  # type: ignore[index]
        await conn.execute(
            categories.update().where(categories.c.id == category).values(path=f"{parent_path}/{category}")
        )
        parent_context = (
            await conn.execute(
                select(context.c.path).where(
                    (context.c.contextlevel == int(ContextLevel.COURSECAT)) & (context.c.instanceid == parent)
                )
            )
        ).scalar_one()
        contexts = await create_contexts(gateway, conn, ContextLevel.COURSECAT, [(category, parent_context)])
    return TestCategory(category, idnumber, contexts[category][0])
