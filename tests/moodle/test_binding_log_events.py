"""The cohort-course and metacourse binding files leave in Moodle's standard log the rows Moodle's enrol API leaves
for the enrolment methods they write (issue 19).

The expected rows are those a Moodle 4.5 site wrote when the same changes went through its own API from the command
line (traced on a site made from the same dump; the same files run by toolsync on a twin site, with the bridge running
Moodle's sync, gave the same rows, ids included): add_instance() enrol_instance_created, update_status() and
update_instance() enrol_instance_updated, delete_instance() the unenrol_user() rows of each enrolment (the memberships
and roles the method made: group_member_removed, role_unassigned with other {"id":"<ra>","component":"enrol_cohort",
"itemid":"<instance>"} as read, then user_enrolment_deleted) and enrol_instance_deleted. An instance event's other is
{"enrol":"<plugin>"}, objecttable enrol, objectid the instance, in the course context. The enrolments a new method
brings are logged by Moodle's own sync (the bridge, or its scheduled task), not here.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.course_factories import STUDENT, TestCourse, add_cohort, add_enrolment_courses, add_users
from tests.support.course_log import enrolment_deleted, in_course, unordered
from tests.support.factories import unique
from tests.support.log_rows import log_mark, log_since, set_log_store
from tests.support.operation_files import header, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway

Site = tuple[Config, MoodleGateway]


@pytest.fixture
async def site(dump_site: Site) -> Site:
    config, gateway = dump_site
    config.set("operations.cohortscourses.cohort_identifier", "idnumber")
    config.set("operations.cohortscourses.course_identifier", "idnumber")
    config.set("operations.metacourses.identifier", "idnumber")
    config.set("run.safety_min_rows", 1000)
    await set_log_store(gateway, enabled=True, jsonformat=True)
    return dump_site


def event(name: str, table: str, objectid: int, crud: str, course: TestCourse, **more: Any) -> dict[str, Any]:
    return in_course(name, table, objectid, crud, (course.id, course.contextid), **more)


def instance_event(name: str, crud: str, instance: int, course: TestCourse, plugin: str) -> dict[str, Any]:
    return event(f"enrol_instance_{name}", "enrol", instance, crud, course, other=f'{{"enrol":"{plugin}"}}')


async def enrolled_through(
    gateway: MoodleGateway, instance: int, plugin: str, course: TestCourse, user: int
) -> dict[str, Any]:
    """What the plugin's sync leaves for a user: the enrolment, the role (component enrol_<plugin>, itemid = the
    instance) and, for a cohort method with a group, the membership. Returns the user_enrolments row."""
    schema = gateway.schema
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            schema.user_enrolments,
            [
                {
                    "enrolid": instance,
                    "userid": user,
                    "status": 0,
                    "timestart": 0,
                    "timeend": 0,
                    "modifierid": 2,
                    "timecreated": 100,
                    "timemodified": 100,
                }
            ],
        )
        await gateway.insert_many(
            conn,
            schema.role_assignments,
            [
                {
                    "roleid": STUDENT,
                    "contextid": course.contextid,
                    "userid": user,
                    "timemodified": 100,
                    "modifierid": 2,
                    "component": f"enrol_{plugin}",
                    "itemid": instance,
                    "sortorder": 0,
                }
            ],
        )
    [ue] = await rows_of(gateway, schema.user_enrolments, enrolid=instance, userid=user)
    return ue


def deleted(course: TestCourse, ue: dict[str, Any], plugin: str) -> dict[str, Any]:
    return enrolment_deleted((course.id, course.contextid), ue, plugin, last=True)


async def test_cohort_bindings_are_logged(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway, idnumbers=[unique("CRS")])
    code = unique("COH")
    await add_cohort(gateway, "Log cohort", idnumber=code)
    [user] = await add_users(gateway, 1)
    mark = await log_mark(gateway)

    added = await run_file(
        config, gateway, "cohortscourses", header("cohort", "course", "makegroup") + f"{code};{course.idnumber};1\n"
    )

    assert added.counts == {"created": 1}, report_of(added)
    [instance] = await rows_of(gateway, gateway.schema.enrol, courseid=course.id, enrol="cohort")
    [group] = await rows_of(gateway, gateway.schema.groups, courseid=course.id, name="Log cohort cohort")
    # Moodle: the group first ("Create new group"), then the method.
    assert await log_since(gateway, mark) == [
        event("group_created", "groups", group["id"], "c", course),
        instance_event("created", "c", instance["id"], course, "cohort"),
    ]

    mark = await log_mark(gateway)
    file = header("cohort", "course", "cmd")
    disabled = await run_file(config, gateway, "cohortscourses", file + f"{code};{course.idnumber};del\n")
    restored = await run_file(config, gateway, "cohortscourses", file + f"{code};{course.idnumber};restore\n")
    assert (disabled.counts, restored.counts) == ({"updated": 1}, {"updated": 1}), report_of(restored)
    assert await log_since(gateway, mark) == [instance_event("updated", "u", instance["id"], course, "cohort")] * 2

    # fulldel unenrols the users the method enrolled: their membership of its group and their role go with it.
    ue = await enrolled_through(gateway, instance["id"], "cohort", course, user)
    [role] = await rows_of(gateway, gateway.schema.role_assignments, userid=user, contextid=course.contextid)
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.groups_members,
            [
                {
                    "groupid": group["id"],
                    "userid": user,
                    "timeadded": 100,
                    "component": "enrol_cohort",
                    "itemid": instance["id"],
                }
            ],
        )
    mark = await log_mark(gateway)
    gone = await run_file(config, gateway, "cohortscourses", file + f"{code};{course.idnumber};fulldel\n")
    assert gone.counts == {"deleted": 1}, report_of(gone)
    unassigned = f'{{"id":"{role["id"]}","component":"enrol_cohort","itemid":"{instance["id"]}"}}'
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("group_member_removed", "groups", group["id"], "d", course, relateduserid=user),
            event("role_unassigned", "role", STUDENT, "d", course, relateduserid=user, other=unassigned),
            deleted(course, ue, "cohort"),
            instance_event("deleted", "d", instance["id"], course, "cohort"),
        ]
    )


async def test_meta_links_are_logged(site: Site) -> None:
    config, gateway = site
    master, meta = await add_enrolment_courses(gateway, 2, idnumbers=[unique("MST"), unique("MTA")])
    [user] = await add_users(gateway, 1)
    mark = await log_mark(gateway)

    added = await run_file(
        config, gateway, "metacourses", header("master", "meta") + f"{master.idnumber};{meta.idnumber}\n"
    )

    assert added.counts == {"created": 1}, report_of(added)
    [instance] = await rows_of(gateway, gateway.schema.enrol, courseid=meta.id, enrol="meta")
    assert await log_since(gateway, mark) == [instance_event("created", "c", instance["id"], meta, "meta")]

    ue = await enrolled_through(gateway, instance["id"], "meta", meta, user)
    [role] = await rows_of(gateway, gateway.schema.role_assignments, userid=user, contextid=meta.contextid)
    mark = await log_mark(gateway)
    removed = await run_file(
        config, gateway, "metacourses", header("master", "meta", "cmd") + f"{master.idnumber};{meta.idnumber};del\n"
    )
    assert removed.counts == {"deleted": 1}, report_of(removed)
    unassigned = f'{{"id":"{role["id"]}","component":"enrol_meta","itemid":"{instance["id"]}"}}'
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("role_unassigned", "role", STUDENT, "d", meta, relateduserid=user, other=unassigned),
            deleted(meta, ue, "meta"),
            instance_event("deleted", "d", instance["id"], meta, "meta"),
        ]
    )
