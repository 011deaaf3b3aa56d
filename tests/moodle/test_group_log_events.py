"""The groups file and the group members file leave in Moodle's standard log the rows Moodle's group API leaves
(issue 19).

The expected rows are those a Moodle 4.5 site wrote when the same changes went through its own API from the command
line (traced on a site made from the same dump; the same files run by toolsync on a twin site gave the same rows, ids
included): groups_create_group() group_created, groups_create_grouping() grouping_created,
groups_assign_grouping() grouping_group_assigned with other {"groupid":"<id>"} (a string: the id as read),
groups_update_group() group_updated, groups_add_member() group_member_added with other {"component":"","itemid":0},
groups_remove_member() group_member_removed (other null), groups_delete_group() group_deleted and
groups_delete_grouping() grouping_deleted (no member or assignment row of their own). All in the course context,
objecttable groups (groupings for the grouping events), edulevel 0.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.course_factories import TestCourse, add_enrolment_courses, add_users
from tests.support.course_log import in_course, unordered
from tests.support.log_rows import log_mark, log_since, set_log_store
from tests.support.operation_files import header, identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway

Site = tuple[Config, MoodleGateway]


@pytest.fixture
async def site(dump_site: Site) -> Site:
    config, gateway = dump_site
    identifiers_by_id(config, "groups", "course_identifier", "group_identifier", "grouping_identifier")
    identifiers_by_id(config, "groupmembers", "course_identifier", "group_identifier", "user_identifier")
    identifiers_by_id(config, "enrols", "course_identifier", "user_identifier")
    config.set("run.safety_min_rows", 1000)
    await set_log_store(gateway, enabled=True, jsonformat=True)
    return dump_site


async def named(gateway: MoodleGateway, table: str, course: TestCourse, name: str) -> int:
    [found] = await rows_of(gateway, getattr(gateway.schema, table), courseid=course.id, name=name)
    return int(found["id"])


def event(name: str, table: str, objectid: int, crud: str, course: TestCourse, **more: Any) -> dict[str, Any]:
    return in_course(name, table, objectid, crud, (course.id, course.contextid), **more)


async def test_groups_groupings_and_their_updates_are_logged(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    mark = await log_mark(gateway)

    result = await run_file(
        config,
        gateway,
        "groups",
        header("courseid", "name", "idnumber", "description", "selfgrouping")
        + f"{course.id};GA;ga;Group A;1\n{course.id};GB;;;0\n",
    )

    assert result.counts == {"created": 2}, report_of(result)
    group_a, group_b = await named(gateway, "groups", course, "GA"), await named(gateway, "groups", course, "GB")
    grouping = await named(gateway, "groupings", course, "GA")
    # Moodle, row by row: group GA created, its grouping created, GA assigned to it; GB created.
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("group_created", "groups", group_a, "c", course),
            event("grouping_created", "groupings", grouping, "c", course),
            event("grouping_group_assigned", "groupings", grouping, "c", course, other=f'{{"groupid":"{group_a}"}}'),
            event("group_created", "groups", group_b, "c", course),
        ]
    )

    mark = await log_mark(gateway)
    renamed = await run_file(
        config, gateway, "groups", header("courseid", "name", "updateid") + f"{course.id};GA renamed;{group_a}\n"
    )
    assert renamed.counts == {"updated": 1}, report_of(renamed)
    assert await log_since(gateway, mark) == [event("group_updated", "groups", group_a, "u", course)]

    # A grouping of its own (type grouping): grouping_created; renamed: grouping_updated.
    mark = await log_mark(gateway)
    file = header("courseid", "name", "type", "updateid")
    made = await run_file(config, gateway, "groups", file + f"{course.id};GR;grouping;\n")
    own = await named(gateway, "groupings", course, "GR")
    changed = await run_file(config, gateway, "groups", file + f"{course.id};GR renamed;grouping;{own}\n")
    assert (made.counts, changed.counts) == ({"created": 1}, {"updated": 1}), report_of(changed)
    assert await log_since(gateway, mark) == [
        event("grouping_created", "groupings", own, "c", course),
        event("grouping_updated", "groupings", own, "u", course),
    ]


async def test_members_added_shifted_removed_and_purged_are_logged(site: Site) -> None:
    config, gateway = site
    config.set("operations.groupmembers.purge_empty", "groups_and_groupings")
    [course] = await add_enrolment_courses(gateway)
    first, second = await add_users(gateway, 2)
    await run_file(
        config,
        gateway,
        "groups",
        header("courseid", "name", "selfgrouping") + f"{course.id};GA;1\n{course.id};GB;0\n",
    )
    await run_file(
        config,
        gateway,
        "enrols",
        header("cid", "uid", "rolename", "enrol")
        + f"{course.id};{first};student;manual\n{course.id};{second};student;manual\n",
    )
    group_a, group_b = await named(gateway, "groups", course, "GA"), await named(gateway, "groups", course, "GB")
    grouping = await named(gateway, "groupings", course, "GA")
    file = header("groupid", "userid", "courseid", "cmd")
    mark = await log_mark(gateway)

    added = await run_file(
        config,
        gateway,
        "groupmembers",
        file + f"{group_a};{first};{course.id};add\n{group_b};{second};{course.id};add\n",
    )

    assert added.counts == {"created": 2}, report_of(added)
    plain = '{"component":"","itemid":0}'
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("group_member_added", "groups", group_a, "c", course, relateduserid=first, other=plain),
            event("group_member_added", "groups", group_b, "c", course, relateduserid=second, other=plain),
        ]
    )

    # first shifts to GB (leaving GA), second leaves GB; the purge then deletes the emptied GA and its grouping.
    mark = await log_mark(gateway)
    shifted = await run_file(
        config,
        gateway,
        "groupmembers",
        file + f"{group_b};{first};{course.id};shift\n{group_b};{second};{course.id};del\n",
    )
    assert shifted.counts == {"updated": 1, "deleted": 1}, report_of(shifted)
    assert unordered(await log_since(gateway, mark)) == unordered(
        [
            event("group_member_removed", "groups", group_a, "d", course, relateduserid=first),
            event("group_member_added", "groups", group_b, "c", course, relateduserid=first, other=plain),
            event("group_member_removed", "groups", group_b, "d", course, relateduserid=second),
            event("group_deleted", "groups", group_a, "d", course),
            event("grouping_deleted", "groupings", grouping, "d", course),
        ]
    )
