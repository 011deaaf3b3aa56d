"""The enrolments file leaves in Moodle's standard log the rows enrol_user(), update_user_enrol(), unenrol_user(),
role_assign(), role_unassign(), update_status() and the group API leave (issue 19).

The expected rows are those a Moodle 4.5 site wrote when the same changes went through its own API from the command
line (traced on a site made from the same dump, log buffer 1, row by row):

* enrol_user(): user_enrolment_created (objecttable user_enrolments, objectid the ue id, relateduserid the user,
  other {"enrol":"manual"}), then role_assigned (objecttable role, objectid the role, other
  {"id":<new ra id, an integer>,"component":"","itemid":0}); changing an enrolment: user_enrolment_updated, nothing
  when nothing changes;
* role_unassign(): role_unassigned, other {"id":"<ra id>","component":"","itemid":"0"} (the row as read: strings);
* unenrol_user() of a last enrolment: role_unassigned per role, group_member_removed per group (other null), then
  user_enrolment_deleted with other {"userenrolment":{the ue row, every column a string, "courseid":"<id>",
  "enrol":"manual","lastenrol":true},"enrol":"manual"}; of another: only user_enrolment_deleted with "lastenrol":false;
* groups_create_group(): group_created (objecttable groups, other null); groups_add_member(): group_member_added,
  other {"component":"","itemid":0};
* update_status(): enrol_instance_updated (objecttable enrol, objectid the instance, other {"enrol":"self"}).

All in the course context, courseid the course, crud c/u/d, edulevel 0, userid the admin (2), origin cli.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.course_factories import EDITINGTEACHER, STUDENT, TestCourse, add_enrolment_courses, add_users
from tests.support.course_log import enrolment_deleted, in_course, unordered
from tests.support.log_rows import log_mark, log_since, set_log_store
from tests.support.operation_files import header, identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.event_log import Event, EventLog, EventsAhead
from toolsync_tui.engine.moodle.events import USER_ENROLMENT_CREATED
from toolsync_tui.engine.moodle.gateway import MoodleGateway

Site = tuple[Config, MoodleGateway]
FILE = header("cid", "uid", "rolename", "enrol", "cmd", "starttime", "endtime", "gcmd", "g1")
ROLES_FILE = header("cid", "uid", "rolename", "cmd")


@pytest.fixture
async def site(dump_site: Site) -> Site:
    config, gateway = dump_site
    identifiers_by_id(config, "enrols", "course_identifier", "user_identifier")
    config.set("run.safety_min_rows", 1000)
    await set_log_store(gateway, enabled=True, jsonformat=True)
    return dump_site


async def enrolled(gateway: MoodleGateway, course: TestCourse, plugin: str, userid: int) -> dict[str, Any]:
    [ue] = await rows_of(gateway, gateway.schema.user_enrolments, enrolid=course.instance(plugin), userid=userid)
    return ue


async def assignment(gateway: MoodleGateway, course: TestCourse, roleid: int, userid: int) -> int:
    [ra] = await rows_of(
        gateway, gateway.schema.role_assignments, contextid=course.contextid, roleid=roleid, userid=userid
    )
    return int(ra["id"])


async def group_id(gateway: MoodleGateway, course: TestCourse, name: str) -> int:
    [group] = await rows_of(gateway, gateway.schema.groups, courseid=course.id, name=name)
    return int(group["id"])


def where(course: TestCourse) -> tuple[int, int]:
    return course.id, course.contextid


def ue_created(course: TestCourse, ue: int, user: int, plugin: str = "manual") -> dict[str, Any]:
    other = f'{{"enrol":"{plugin}"}}'
    return in_course(
        "user_enrolment_created", "user_enrolments", ue, "c", where(course), relateduserid=user, other=other
    )


def ue_updated(course: TestCourse, ue: int, user: int) -> dict[str, Any]:
    other = '{"enrol":"manual"}'
    return in_course(
        "user_enrolment_updated", "user_enrolments", ue, "u", where(course), relateduserid=user, other=other
    )


def assigned(course: TestCourse, role: int, user: int, ra: int) -> dict[str, Any]:
    other = f'{{"id":{ra},"component":"","itemid":0}}'
    return in_course("role_assigned", "role", role, "c", where(course), relateduserid=user, other=other)


def unassigned(course: TestCourse, role: int, user: int, ra: int) -> dict[str, Any]:
    other = f'{{"id":"{ra}","component":"","itemid":"0"}}'
    return in_course("role_unassigned", "role", role, "d", where(course), relateduserid=user, other=other)


def member_added(course: TestCourse, group: int, user: int) -> dict[str, Any]:
    other = '{"component":"","itemid":0}'
    return in_course("group_member_added", "groups", group, "c", where(course), relateduserid=user, other=other)


def member_removed(course: TestCourse, group: int, user: int) -> dict[str, Any]:
    return in_course("group_member_removed", "groups", group, "d", where(course), relateduserid=user)


def ue_deleted(course: TestCourse, ue: dict[str, Any], *, plugin: str = "manual", last: bool) -> dict[str, Any]:
    return enrolment_deleted(where(course), ue, plugin, last=last)


async def test_enrolments_updates_and_groups_are_logged_as_moodle_logs_them(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    first, second = await add_users(gateway, 2)
    mark = await log_mark(gateway)
    before = int(time.time())

    result = await run_file(
        config,
        gateway,
        "enrols",
        FILE
        + f"{course.id};{first};student;manual;add;;;gaddcreate;TD 1\n"
        + f"{course.id};{second};student;manual;add;1700000000;1800000000;;\n",
    )

    assert result.counts == {"created": 2}, report_of(result)
    logged = await log_since(gateway, mark, with_time=True)
    assert all(before <= r.pop("timecreated") <= int(time.time()) for r in logged)
    ue1, ue2 = await enrolled(gateway, course, "manual", first), await enrolled(gateway, course, "manual", second)
    group = await group_id(gateway, course, "TD 1")
    # Moodle: per row ue created, role assigned, then the group created and the member added.
    assert unordered(logged) == unordered(
        [
            ue_created(course, ue1["id"], first),
            assigned(course, STUDENT, first, await assignment(gateway, course, STUDENT, first)),
            in_course("group_created", "groups", group, "c", where(course)),
            member_added(course, group, first),
            ue_created(course, ue2["id"], second),
            assigned(course, STUDENT, second, await assignment(gateway, course, STUDENT, second)),
        ]
    )

    # The same rows again: nothing changes, nothing is logged. A new end date, a suspension: user_enrolment_updated.
    mark = await log_mark(gateway)
    again = await run_file(
        config,
        gateway,
        "enrols",
        FILE
        + f"{course.id};{first};student;manual;add;;;gaddcreate;TD 1\n"
        + f"{course.id};{second};student;manual;add;1700000000;1900000000;;\n",
    )
    assert again.counts == {"unchanged": 1, "updated": 1}, report_of(again)
    assert await log_since(gateway, mark) == [ue_updated(course, ue2["id"], second)]
    mark = await log_mark(gateway)
    suspended = await run_file(config, gateway, "enrols", FILE + f"{course.id};{first};student;manual;disable;;;;\n")
    assert suspended.counts == {"updated": 1}, report_of(suspended)
    assert await log_since(gateway, mark) == [ue_updated(course, ue1["id"], first)]


async def test_unenrolments_are_logged_with_the_enrolment_they_deleted(site: Site) -> None:
    config, gateway = site
    config.set("operations.enrols.enable_on_disabled", True)
    [course] = await add_enrolment_courses(gateway)
    last, other = await add_users(gateway, 2)
    await run_file(
        config,
        gateway,
        "enrols",
        FILE
        + f"{course.id};{last};student;manual;add;1700000000;0;gaddcreate;TD 2\n"
        + f"{course.id};{other};student;manual;add;;;;\n",
    )
    # A second enrolment of `other`, through the disabled self instance, enabled on the way (update_status()).
    mark = await log_mark(gateway)
    selfed = await run_file(config, gateway, "enrols", FILE + f"{course.id};{other};student;self;add;;;;\n")
    assert selfed.counts == {"created": 1}, report_of(selfed)
    ue_self = await enrolled(gateway, course, "self", other)
    instance = in_course(
        "enrol_instance_updated", "enrol", course.instance("self"), "u", where(course), other='{"enrol":"self"}'
    )
    # The role was held already (component '', itemid 0): role_assign() logs nothing new.
    assert unordered(await log_since(gateway, mark)) == unordered(
        [instance, ue_created(course, ue_self["id"], other, "self")]
    )

    ue_last, ue_other = (
        await enrolled(gateway, course, "manual", last),
        await enrolled(gateway, course, "manual", other),
    )
    role = await assignment(gateway, course, STUDENT, last)
    group = await group_id(gateway, course, "TD 2")
    mark = await log_mark(gateway)

    result = await run_file(
        config,
        gateway,
        "enrols",
        FILE + f"{course.id};{last};student;manual;del;;;;\n" + f"{course.id};{other};student;manual;del;;;;\n",
    )

    assert result.counts == {"deleted": 2}, report_of(result)
    # Moodle: the last enrolment takes the role and the membership with it (role_unassign_all(), then
    # groups_delete_group_members()), then user_enrolment_deleted; the other keeps both.
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            unassigned(course, STUDENT, last, role),
            member_removed(course, group, last),
            ue_deleted(course, ue_last, last=True),
            ue_deleted(course, ue_other, last=False),
        ]
    )


async def test_role_assignments_without_enrolment_are_logged(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [user] = await add_users(gateway, 1)
    mark = await log_mark(gateway)

    added = await run_file(config, gateway, "enrols", ROLES_FILE + f"{course.id};{user};editingteacher;add\n")

    assert added.counts == {"created": 1}, report_of(added)
    teacher = await assignment(gateway, course, EDITINGTEACHER, user)
    assert await log_since(gateway, mark) == [assigned(course, EDITINGTEACHER, user, teacher)]

    # shift: the other roles unassigned, the named one assigned.
    mark = await log_mark(gateway)
    shifted = await run_file(config, gateway, "enrols", ROLES_FILE + f"{course.id};{user};student;shift\n")
    assert shifted.counts == {"updated": 1}, report_of(shifted)
    student = await assignment(gateway, course, STUDENT, user)
    assert await log_since(gateway, mark) == [
        unassigned(course, EDITINGTEACHER, user, teacher),
        assigned(course, STUDENT, user, student),
    ]

    mark = await log_mark(gateway)
    removed = await run_file(config, gateway, "enrols", ROLES_FILE + f"{course.id};{user};student;del\n")
    assert removed.counts == {"deleted": 1}, report_of(removed)
    assert await log_since(gateway, mark) == [unassigned(course, STUDENT, user, student)]


async def test_a_dry_run_and_a_site_without_the_standard_log_write_no_log_row(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    first, second = await add_users(gateway, 2)
    mark = await log_mark(gateway)

    dry = await run_file(
        config, gateway, "enrols", FILE + f"{course.id};{first};student;manual;add;;;gaddcreate;TD 3\n", dry_run=True
    )
    await set_log_store(gateway, enabled=False)
    real = await run_file(
        config, gateway, "enrols", FILE + f"{course.id};{second};student;manual;add;;;gaddcreate;TD 3\n"
    )

    assert dry.counts == {"created": 1}, report_of(dry)
    assert real.counts == {"created": 1}, report_of(real)
    assert await log_since(gateway, mark) == []


async def test_events_gathered_ahead_are_logged_once_each_in_the_order_they_came(site: Site) -> None:
    """EventLog.ahead(): each part added is written as statements while the write goes on; record() sends them all,
    in the order the events came (parts added with +=, extend() and append())."""
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    mark = await log_mark(gateway)

    def enrolled(number: int) -> Event:
        return Event(USER_ENROLMENT_CREATED, number, course.contextid, 50, course.id, course.id, 2, {"enrol": "x"})

    async with gateway.transaction() as conn:
        log = await EventLog.load(gateway, conn, config.settings.events)
        gathered = log.ahead(conn, 1_700_000_000)
        assert gathered is not None
        assert isinstance(gathered, EventsAhead) == (gateway.kind == "mariadb")  # elsewhere, a plain list
        gathered += [enrolled(1), enrolled(2)]
        gathered.append(enrolled(3))
        gathered.extend(enrolled(n) for n in (4, 5))
        gathered += []
        gathered += [enrolled(6)]
        await log.record(conn, gathered, 1_700_000_000)
    rows = await log_since(gateway, mark)
    assert [(r["objectid"], r["other"]) for r in rows] == [(n, '{"enrol":"x"}') for n in range(1, 7)]
