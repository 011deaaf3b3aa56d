"""The enrolments file (enrols.csv) end to end on SQLite and MariaDB: the rows Moodle would hold afterwards, the
report, the tryback, dry runs and the safety threshold."""

from __future__ import annotations

import csv
from typing import Any

import polars as pl
import pytest
from sqlalchemy import delete

from tests.support.case_rules import cased
from tests.support.course_factories import (
    EDITINGTEACHER,
    STUDENT,
    TEACHER,
    TestCourse,
    add_enrolment_courses,
    add_group,
    add_users,
)
from tests.support.factories import unique
from tests.support.operation_files import dry_and_real, identifiers_by_id, run_file, welcomes_counted
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.protected_groups import MEMBER_SCHEMA, for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, SafetyStop

Site = tuple[Config, MoodleGateway]
Outcomes = list[tuple[str, str, str, str]]  # part, outcome, action, message


@pytest.fixture
def site(site: Site) -> Site:
    """conftest's site with the identifiers at their defaults (id), whatever the sandbox's configuration names."""
    identifiers_by_id(site[0], "enrols", "course_identifier", "user_identifier")
    return site


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "enrols", content, **options)


def outcomes(result: RunResult) -> Outcomes:
    """The report's rows as (part, outcome, action, message), in report order."""
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        return [(r["part"], r["outcome"], r["action"], r["message"]) for r in csv.DictReader(handle)]


def own(result: RunResult) -> list[tuple[str, str, str]]:
    return [(o, a, m) for part, o, a, m in outcomes(result) if part == ""]


async def enrolments(gateway: MoodleGateway, users: list[int]) -> list[tuple[int, int, int, int, int]]:
    """(enrolid, userid, status, timestart, timeend) of the users."""
    found = await rows_of(gateway, gateway.schema.user_enrolments, userid=users)
    return [(r["enrolid"], r["userid"], r["status"], r["timestart"], r["timeend"]) for r in found]


async def roles(gateway: MoodleGateway, users: list[int]) -> list[tuple[int, int, int, str, int]]:
    """(roleid, contextid, userid, component, itemid) of the users."""
    found = await rows_of(gateway, gateway.schema.role_assignments, userid=users)
    return [(r["roleid"], r["contextid"], r["userid"], r["component"], r["itemid"]) for r in found]


async def members(gateway: MoodleGateway, users: list[int]) -> list[tuple[int, int, str]]:
    found = await rows_of(gateway, gateway.schema.groups_members, userid=users)
    return sorted((r["groupid"], r["userid"], r["component"]) for r in found)


async def protected(config: Config, gateway: MoodleGateway, users: list[int]) -> list[tuple[int, int]]:
    """(groupid, userid) of the users' memberships that toolsync's state protects (recorded with the row's id)."""
    found = await rows_of(gateway, gateway.schema.groups_members, userid=users)
    stored = pl.DataFrame([(r["groupid"], r["userid"], r["id"]) for r in found], schema=MEMBER_SCHEMA, orient="row")
    state = await for_site(config.data_dir, gateway)
    return sorted((int(g), int(u)) for g, u, _ in state.protected(stored).iter_rows())


async def dirty(gateway: MoodleGateway, users: list[int]) -> set[str]:
    flags = await rows_of(gateway, gateway.schema.cache_flags, flagtype="accesslib/dirtyusers")
    return {f["name"] for f in flags} & {str(u) for u in users}


async def course_and_users(gateway: MoodleGateway, count: int = 2, **options: Any) -> tuple[TestCourse, list[int]]:
    [course] = await add_enrolment_courses(gateway, **options)
    return course, await add_users(gateway, count)


# -- enrol mode -------------------------------------------------------------------------------------------------


async def test_add_enrols_with_role_and_dates_and_a_rerun_is_unchanged(site: Site) -> None:
    config, gateway = site
    course, (ann, bob) = await course_and_users(gateway)
    content = (
        "rolename;cid;uid;cmd;enrol;starttime;endtime\n"
        f"student;{course.id};{ann};add;manual;2030-01-01 08:00:00;1900000000\n"
        f"editingteacher;{course.id};{bob};add;;;\n"
    )

    result = await run(config, gateway, content)

    assert result.counts == {"created": 2}, outcomes(result)
    manual = course.instance()
    stored = await enrolments(gateway, [ann, bob])
    assert [(e, u, s, end) for e, u, s, _, end in stored] == [(manual, ann, 0, 1900000000), (manual, bob, 0, 0)]
    assert stored[0][3] == 1893484800  # 2030-01-01 08:00 Europe/London (GMT in winter)
    assert await roles(gateway, [ann, bob]) == [
        (STUDENT, course.contextid, ann, "", 0),
        (EDITINGTEACHER, course.contextid, bob, "", 0),
    ]
    assert await dirty(gateway, [ann, bob]) == {str(ann), str(bob)}
    assert any("caches were not purged" in n for n in result.notes)

    again = await run(config, gateway, content)

    assert again.counts == {"unchanged": 2}, outcomes(again)
    assert await enrolments(gateway, [ann, bob]) == stored


async def test_del_unenrols_with_the_last_enrolment_cleanup(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    course, (ann, bob) = await course_and_users(gateway)
    group = await add_group(gateway, course.id, unique("G"))
    schema = gateway.schema
    await run(
        config, gateway, f"rolename;cid;uid;enrol\nstudent;{course.id};{ann};manual\nstudent;{course.id};{bob};\n"
    )
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, schema.groups_members, [{"groupid": group, "userid": ann, "timeadded": 1}])
        await gateway.insert_many(
            conn, schema.user_lastaccess, [{"userid": ann, "courseid": course.id, "timeaccess": 1}]
        )
        # A role given by hand besides the enrolment's: the last-enrolment cleanup removes it too.
        await gateway.insert_many(
            conn,
            schema.role_assignments,
            [{"roleid": TEACHER, "contextid": course.contextid, "userid": ann, "timemodified": 1, "modifierid": 2}],
        )
        await gateway.insert_many(
            conn,
            schema.forum,
            [{"course": course.id, "name": "News", "intro": "", "timemodified": 1}],
        )
        [forum] = (await gateway.fetch_in(conn, schema.forum, "course", [course.id], ["id"]))["id"].to_list()
        await gateway.insert_many(conn, schema.forum_subscriptions, [{"userid": ann, "forum": forum}])

    result = await run(config, gateway, f"rolename;cid;uid;cmd;enrol\n;{course.id};{ann};del;manual\n")

    [(outcome, action, message)] = own(result)
    assert (outcome, action) == ("deleted", "unenrol")
    assert message.endswith(f"' unenrolled from course '{course.shortname}' (manual)")
    assert await enrolments(gateway, [ann]) == []
    assert await roles(gateway, [ann]) == []
    assert await members(gateway, [ann]) == []
    assert await rows_of(gateway, schema.user_lastaccess, userid=ann) == []
    assert await rows_of(gateway, schema.forum_subscriptions, userid=ann) == []
    assert [e[1] for e in await enrolments(gateway, [bob])] == [bob]  # the others stay

    again = await run(config, gateway, f"rolename;cid;uid;cmd;enrol\n;{course.id};{ann};delete;manual\n")

    assert again.counts == {"unchanged": 1}, outcomes(again)


async def test_shift_enable_and_disable_with_an_enrol_method(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    course, (ann,) = await course_and_users(gateway, 1)
    head = "rolename;cid;uid;cmd;enrol;starttime\n"
    await run(config, gateway, head + f"student;{course.id};{ann};add;manual;2030-01-01\n")
    [(_, _, _, start, _)] = await enrolments(gateway, [ann])

    shifted = await run(config, gateway, head + f"editingteacher;{course.id};{ann};shift;manual;2030-01-01\n")

    assert [(o, a) for o, a, _ in own(shifted)] == [("updated", "shift")], outcomes(shifted)
    assert await roles(gateway, [ann]) == [(EDITINGTEACHER, course.contextid, ann, "", 0)]
    assert await enrolments(gateway, [ann]) == [(course.instance(), ann, 0, start, 0)]
    again = await run(config, gateway, head + f"editingteacher;{course.id};{ann};shift;manual;2030-01-01\n")
    assert again.counts == {"unchanged": 1}, outcomes(again)

    disabled = await run(config, gateway, head + f";{course.id};{ann};disable;manual;\n")

    assert [(o, a) for o, a, _ in own(disabled)] == [("updated", "disable")], outcomes(disabled)
    assert await enrolments(gateway, [ann]) == [(course.instance(), ann, 1, start, 0)]  # timestart kept
    assert await roles(gateway, [ann]) == [(EDITINGTEACHER, course.contextid, ann, "", 0)]  # roles kept
    assert (await run(config, gateway, head + f";{course.id};{ann};disable;manual;\n")).counts == {"unchanged": 1}

    enabled = await run(config, gateway, head + f";{course.id};{ann};enable;manual;\n")

    assert [(o, a) for o, a, _ in own(enabled)] == [("updated", "enable")]
    assert await enrolments(gateway, [ann]) == [(course.instance(), ann, 0, start, 0)]


# -- role mode --------------------------------------------------------------------------------------------------


async def test_role_mode_assigns_shifts_and_unassigns_without_enrolling(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    course, (ann,) = await course_and_users(gateway, 1)
    head = "rolename;cid;uid;cmd\n"

    added = await run(config, gateway, head + f"teacher;{course.id};{ann};add\n")

    assert [(o, a) for o, a, _ in own(added)] == [("created", "assign")]
    assert await roles(gateway, [ann]) == [(TEACHER, course.contextid, ann, "", 0)]
    assert await enrolments(gateway, [ann]) == []
    assert (await run(config, gateway, head + f"teacher;{course.id};{ann};add\n")).counts == {"unchanged": 1}

    shifted = await run(config, gateway, head + f"editingteacher;{course.id};{ann};shift\n")

    assert [(o, a) for o, a, _ in own(shifted)] == [("updated", "shift")]
    assert await roles(gateway, [ann]) == [(EDITINGTEACHER, course.contextid, ann, "", 0)]

    removed = await run(config, gateway, head + f"editingteacher;{course.id};{ann};del\n")

    assert [(o, a) for o, a, _ in own(removed)] == [("deleted", "unassign")]
    assert await roles(gateway, [ann]) == []
    assert (await run(config, gateway, head + f"editingteacher;{course.id};{ann};del\n")).counts == {"unchanged": 1}


async def test_role_mode_disable_and_enable_touch_every_enrolment_in_the_course(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    course, (ann, bob) = await course_and_users(gateway, instances=(("manual", 0), ("self", 0)))
    await run(
        config,
        gateway,
        f"rolename;cid;uid;enrol\nstudent;{course.id};{ann};manual\nstudent;{course.id};{ann};self\n",
    )

    result = await run(
        config, gateway, f"rolename;cid;uid;cmd\n;{course.id};{ann};disable\n;{course.id};{bob};disable\n"
    )

    assert [(o, a) for o, a, _ in own(result)] == [("updated", "disable"), ("failed", "check")]
    assert [s for _, _, s, _, _ in await enrolments(gateway, [ann])] == [1, 1]
    assert "is not enrolled in course" in own(result)[1][2]


# -- failures -----------------------------------------------------------------------------------------------------


async def test_each_bad_value_fails_its_row_with_a_clear_message_and_a_tryback_line(site: Site) -> None:
    config, gateway = site
    course, (ann,) = await course_and_users(gateway, 1)
    c, u = course.id, ann
    lines = [
        f"student;{c};999999;add;manual;;;;",
        f"student;999999;{u};add;manual;;;;",
        f"wizard;{c};{u};add;manual;;;;",
        f"student;{c};{u};add;self;;;;",  # self is disabled in the course
        f"student;{c};{u};promote;manual;;;;",
        f"student;{c};{u};add;manual;;;gmove;G",
        f"student;{c};{u};add;manual;tomorrow;;;",
        f"student;{c};{u};add;manual;;2030-13-45;;",
    ]
    content = "rolename;cid;uid;cmd;enrol;starttime;endtime;gcmd;g1\n" + "\n".join(lines) + "\n"

    result = await run(config, gateway, content)

    assert result.counts == {"failed": 8}
    messages = [m for _, _, m in own(result)]
    assert "uid '999999': no user has this id (user_identifier)" in messages[0]
    assert "cid '999999': no course has this id (course_identifier)" in messages[1]
    assert "rolename 'wizard' is not a role of the site; expected one of" in messages[2]
    assert f"course '{c}' has no enabled self enrolment instance" in messages[3]
    assert "cmd 'promote' is not a command; expected add, del/delete, shift, enable, disable" in messages[4]
    assert "gcmd 'gmove' is not a group command; expected gadd, gaddcreate, greplace" in messages[5]
    assert "starttime 'tomorrow': expected a date YYYY-MM-DD" in messages[6]
    assert "endtime '2030-13-45': expected a date" in messages[7]
    assert await enrolments(gateway, [ann]) == []
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines()[1:] == lines


async def test_del_in_role_mode_with_an_unknown_role_fails_the_row(site: Site) -> None:
    config, gateway = site
    course, (ann,) = await course_and_users(gateway, 1)

    result = await run(config, gateway, f"rolename;cid;uid;cmd\nwizard;{course.id};{ann};del\n;{course.id};{ann};del\n")

    assert [(o, a) for o, a, _ in own(result)] == [("failed", "check"), ("failed", "check")]
    assert "rolename 'wizard' is not a role of the site" in own(result)[0][2]
    assert "rolename is empty" in own(result)[1][2]


# -- groups -------------------------------------------------------------------------------------------------------


async def test_group_commands_and_greplace_reports_each_group_left(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    course, (ann, bob) = await course_and_users(gateway)
    red, blue = unique("Red"), unique("Blue")
    green = await add_group(gateway, course.id, unique("Green"))
    yellow = await add_group(gateway, course.id, unique("Yellow"))
    head = "rolename;cid;uid;enrol;gcmd;g1;g2\n"

    created = await run(config, gateway, head + f"student;{course.id};{ann};manual;gaddcreate;{red};{blue}\n")

    assert [(p, o) for p, o, _, _ in outcomes(created)] == [("", "created"), ("g1", "created"), ("g2", "created")]
    groups = {g["name"]: g["id"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)}
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.groups_members,
            [{"groupid": green, "userid": ann, "timeadded": 1}, {"groupid": yellow, "userid": ann, "timeadded": 1}],
        )

    replaced = await run(config, gateway, head + f"student;{course.id};{ann};manual;greplace;{red};\n")

    report = outcomes(replaced)
    assert report[0][:3] == ("", "unchanged", "none")
    removals = sorted((p, o) for p, o, _, _ in report if p.startswith("group "))
    assert len(removals) == 3  # Blue, Green and Yellow: each its own line
    assert all(o == "deleted" and p.startswith("group ") for p, o in removals)
    assert await members(gateway, [ann]) == [(groups[red], ann, "")]

    missing = await run(config, gateway, head + f"student;{course.id};{bob};;gadd;Nowhere;{red}\n")

    assert [(p, o) for p, o, _, _ in outcomes(missing)] == [("", "created"), ("g1", "failed"), ("g2", "created")]
    assert "does not exist in course" in outcomes(missing)[1][3]
    assert missing.tryback_path is not None
    assert missing.tryback_path.exists()  # a row with a failed group part goes to the tryback

    left = await run(config, gateway, head + f"student;{course.id};{bob};;gdel;{red};\n")

    assert [(p, o) for p, o, _, _ in outcomes(left)] == [("", "unchanged"), ("g1", "deleted")]
    assert await members(gateway, [bob]) == []


async def test_groups_are_found_by_course_and_name_as_the_site_compares_names(site: Site) -> None:
    """Each row's group is its own course's group of that name (another case of it where the site ignores case),
    never the same-named group of another course of the batch, and no group is created for it."""
    config, gateway = site
    first, second = await add_enrolment_courses(gateway, 2)
    ann, bob = await add_users(gateway, 2)
    red, blue = unique("Red"), unique("Blue")
    ids = {(c.id, n): await add_group(gateway, c.id, n) for c in (first, second) for n in (red, blue)}
    head = "rolename;cid;uid;enrol;gcmd;g1\n"
    content = (
        head
        + f"student;{first.id};{ann};manual;gaddcreate;{cased(gateway, red.upper(), red)}\n"
        + f"student;{second.id};{bob};manual;gaddcreate;{cased(gateway, blue.lower(), blue)}\n"
    )

    result = await run(config, gateway, content)

    assert [(p, o) for p, o, _, _ in outcomes(result)] == [("", "created"), ("g1", "created")] * 2
    expected = [(ids[first.id, red], ann, ""), (ids[second.id, blue], bob, "")]
    assert await members(gateway, [ann, bob]) == sorted(expected)
    for course in (first, second):
        assert len(await rows_of(gateway, gateway.schema.groups, courseid=course.id)) == 2  # none created


async def test_group_membership_needs_an_enrolment(site: Site) -> None:
    config, gateway = site
    course, (ann,) = await course_and_users(gateway, 1)
    name = unique("G")
    await add_group(gateway, course.id, name)

    result = await run(config, gateway, f"rolename;cid;uid;cmd;gcmd;g1\nteacher;{course.id};{ann};add;gadd;{name}\n")

    assert [(p, o) for p, o, _, _ in outcomes(result)] == [("", "created"), ("g1", "failed")]
    assert "the user is not enrolled in course" in outcomes(result)[1][3]
    assert await members(gateway, [ann]) == []


async def test_protect_groups_records_memberships_and_greplace_keeps_the_others(site: Site) -> None:
    config, gateway = site
    config.set("operations.enrols.protect_groups", True)
    config.set("run.safety_min_rows", 100)
    course, (ann,) = await course_and_users(gateway, 1)
    mine, kept = unique("Mine"), await add_group(gateway, course.id, unique("Kept"))
    head = "rolename;cid;uid;enrol;gcmd;g1\n"
    await run(config, gateway, head + f"student;{course.id};{ann};manual;gaddcreate;{mine}\n")
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn, gateway.schema.groups_members, [{"groupid": kept, "userid": ann, "timeadded": 1}]
        )
    [mine_id] = [
        g["id"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id) if g["name"] == mine
    ]
    # Component '' as groups_add_member() writes it (tool_sync is no plugin of the site); the protection is toolsync's
    # own record in the data directory.
    assert await members(gateway, [ann]) == sorted([(mine_id, ann, ""), (kept, ann, "")])
    assert await protected(config, gateway, [ann]) == [(mine_id, ann)]
    other = unique("Other")

    result = await run(config, gateway, head + f"student;{course.id};{ann};manual;greplacecreate;{other}\n")

    [new_id] = [
        g["id"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id) if g["name"] == other
    ]
    assert await members(gateway, [ann]) == sorted([(kept, ann, ""), (new_id, ann, "")])
    assert [p for p, o, _, _ in outcomes(result) if o == "deleted"] == [f"group {mine}"]
    assert await protected(config, gateway, [ann]) == [(new_id, ann)]


async def test_protect_groups_gdel_and_greplace_remove_only_what_toolsync_protects(site: Site) -> None:
    """The state decides, with the stored row's id: a membership made by hand, one made again by hand after toolsync's
    was removed in Moodle, stay; one an earlier run tagged 'tool_sync' is toolsync's. Rows in one batch see the
    protection of the rows before them (the state is written after the commit)."""
    config, gateway = site
    config.set("operations.enrols.protect_groups", True)
    config.set("run.safety_min_rows", 100)
    course, (ann, bob) = await course_and_users(gateway, 2)
    names = {n: unique(n) for n in ("Mine", "Again", "Hand", "Legacy", "New")}
    head = "rolename;cid;uid;enrol;gcmd;g1;g2\n"
    first = await run(
        config, gateway, head + f"student;{course.id};{ann};manual;gaddcreate;{names['Mine']};{names['Again']}\n"
    )
    assert first.counts == {"created": 1}, outcomes(first)
    hand, legacy = [await add_group(gateway, course.id, names[n]) for n in ("Hand", "Legacy")]
    groups = {g["name"]: g["id"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)}
    mine, again = groups[names["Mine"]], groups[names["Again"]]
    gm = gateway.schema.groups_members
    async with gateway.transaction() as conn:
        # A teacher removes ann from Again on the Group members page (possible now: component '') and adds her again.
        await conn.execute(delete(gm).where((gm.c.groupid == again) & (gm.c.userid == ann)))
        await gateway.insert_many(
            conn,
            gm,
            [
                {"groupid": again, "userid": ann, "timeadded": 2, "component": "", "itemid": 0},
                {"groupid": hand, "userid": ann, "timeadded": 2, "component": "", "itemid": 0},
                {"groupid": legacy, "userid": ann, "timeadded": 2, "component": "tool_sync", "itemid": 0},
            ],
        )
    assert await protected(config, gateway, [ann]) == [(mine, ann)]

    left = await run(
        config,
        gateway,
        head
        + f"student;{course.id};{ann};manual;gdel;{names['Hand']};{names['Again']}\n"
        + f"student;{course.id};{ann};manual;gdel;{names['Mine']};\n",
    )

    steps = [(p, o, m) for p, o, _, m in outcomes(left) if p]
    assert [(p, o) for p, o, _ in steps] == [("g1", "unchanged"), ("g2", "unchanged"), ("g1", "deleted")]
    assert all("kept: toolsync did not make it under protect_groups" in m for _, o, m in steps if o == "unchanged")
    assert await members(gateway, [ann]) == sorted([(again, ann, ""), (hand, ann, ""), (legacy, ann, "tool_sync")])
    assert await protected(config, gateway, [ann]) == []

    # gadd then greplace of the same user in one file: the second row sees what the first protected.
    replaced = await run(
        config,
        gateway,
        head
        + f"student;{course.id};{ann};manual;gaddcreate;{names['New']};\n"
        + f"student;{course.id};{ann};manual;greplace;{names['Hand']};\n"
        + f"student;{course.id};{bob};manual;gadd;{names['Hand']};\n",
        force=True,
    )

    removed = sorted(p for p, o, _, _ in outcomes(replaced) if o == "deleted")
    assert removed == sorted([f"group {names['Legacy']}", f"group {names['New']}"])
    assert await members(gateway, [ann, bob]) == sorted([(again, ann, ""), (hand, ann, ""), (hand, bob, "")])
    assert await protected(config, gateway, [ann, bob]) == [(hand, bob)]


async def test_without_protect_groups_nothing_is_recorded(site: Site) -> None:
    config, gateway = site
    course, (ann,) = await course_and_users(gateway, 1)
    name = unique("G")
    result = await run(
        config, gateway, f"rolename;cid;uid;enrol;gcmd;g1\nstudent;{course.id};{ann};manual;gaddcreate;{name}\n"
    )
    assert result.counts == {"created": 1}
    [group] = [g["id"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)]
    stored = await rows_of(gateway, gateway.schema.groups_members, userid=ann)
    assert [(m["groupid"], m["component"], m["itemid"]) for m in stored] == [(group, "", 0)]
    assert await protected(config, gateway, [ann]) == []


# -- settings, dry run, safety ------------------------------------------------------------------------------------


async def test_enable_on_disabled_enrols_through_a_disabled_instance_and_enables_it(site: Site) -> None:
    config, gateway = site
    config.set("operations.enrols.enable_on_disabled", True)
    course, (ann,) = await course_and_users(gateway, 1)

    result = await run(config, gateway, f"rolename;cid;uid;enrol\nstudent;{course.id};{ann};self\n")

    assert result.counts == {"created": 1}, outcomes(result)
    assert "disabled instance enabled" in own(result)[0][2]
    self_instance = course.instance("self")
    [instance] = await rows_of(gateway, gateway.schema.enrol, id=self_instance)
    assert instance["status"] == 0
    assert [e[0] for e in await enrolments(gateway, [ann])] == [self_instance]
    flags = await rows_of(gateway, gateway.schema.cache_flags, flagtype="accesslib/dirtycontexts")
    assert any(f["name"].endswith(f"/{course.contextid}") for f in flags)


async def test_enable_on_disabled_enables_the_instance_once_for_rows_that_apply_in_turn(site: Site) -> None:
    """The second row for the same pair applies after the first one enabled the instance: it sees it enabled."""
    config, gateway = site
    config.set("operations.enrols.enable_on_disabled", True)
    course, (ann,) = await course_and_users(gateway, 1)
    row = f"student;{course.id};{ann};self\n"

    result = await run(config, gateway, "rolename;cid;uid;enrol\n" + row + row)

    assert [o for o, _, _ in own(result)] == ["created", "unchanged"], outcomes(result)
    assert ["disabled instance enabled" in m for _, _, m in own(result)] == [True, False]


async def test_dry_run_writes_nothing_and_says_would(site: Site) -> None:
    config, gateway = site
    course, (ann,) = await course_and_users(gateway, 1)
    content = f"rolename;cid;uid;enrol;gcmd;g1\nstudent;{course.id};{ann};manual;gaddcreate;{unique('G')}\n"

    result = await run(config, gateway, content, dry_run=True)

    assert result.counts == {"created": 1}
    assert [o for _, o, _, _ in outcomes(result)] == ["created", "created"]
    assert "would be created" in outcomes(result)[1][3]
    assert await enrolments(gateway, [ann]) == []
    assert await rows_of(gateway, gateway.schema.groups, courseid=course.id) == []


async def test_a_dry_run_predicts_the_rows_that_apply_after_an_earlier_row_of_the_batch(site: Site) -> None:
    """Rows naming a user and course again apply in a later generation: the dry run plans them on what the earlier
    rows would have written (an enrolment, a group), as the real run does, and counts the same welcome messages. A
    group that a row creates is found by the other rows of its generation too."""
    config, gateway = site
    course, (ann, bob, cem) = await course_and_users(gateway, 3)
    async with gateway.transaction() as conn:  # the manual method welcomes from the course contact
        await gateway.update_many(
            conn, gateway.schema.enrol, "id", [{"id": course.instance("manual"), "customint1": 1}]
        )
    group = unique("G")
    content = (
        "rolename;cid;uid;enrol;gcmd;g1\n"
        f"editingteacher;{course.id};{bob};manual;gaddcreate;{group}\n"
        f"student;{course.id};{cem};manual;gadd;{group}\n"
        f"student;{course.id};{ann};manual;;\n"
        f"student;{course.id};{ann};manual;gadd;{group}\n"
        f"teacher;{course.id};{bob};manual;gadd;{group}\n"
    )

    dry = await run(config, gateway, content, dry_run=True)
    real = await run(config, gateway, content)

    assert dry_and_real(dry) == dry_and_real(real), (outcomes(dry), outcomes(real))
    assert [o for o, _, _ in own(real)] == ["created", "created", "created", "unchanged", "updated"]
    assert welcomes_counted(dry) == welcomes_counted(real) > 0


async def test_safety_threshold_stops_a_mass_unenrolment(site: Site) -> None:
    config, gateway = site
    course, users = await course_and_users(gateway, 12)
    await run(config, gateway, "rolename;cid;uid;enrol\n" + "".join(f"student;{course.id};{u};manual\n" for u in users))
    content = "rolename;cid;uid;cmd;enrol\n" + "".join(f";{course.id};{u};del;manual\n" for u in users)
    config.set("run.safety_threshold", 0.0001)

    with pytest.raises(SafetyStop):
        await run(config, gateway, content)

    assert len(await enrolments(gateway, users)) == 12
    forced = await run(config, gateway, content, force=True)
    assert forced.counts == {"deleted": 12}


async def test_memberships_greplace_removes_count_towards_the_safety_threshold(site: Site) -> None:
    config, gateway = site
    course, users = await course_and_users(gateway, 12)
    head = "rolename;cid;uid;enrol;gcmd;g1\n"
    await run(config, gateway, head + "".join(f"student;{course.id};{u};manual;gaddcreate;Red\n" for u in users))
    # Every row is an unchanged enrolment; what it destroys is each user's membership of Red.
    content = head + "".join(f"student;{course.id};{u};manual;greplacecreate;Blue\n" for u in users)
    config.set("run.safety_threshold", 0.0001)

    with pytest.raises(SafetyStop):
        await run(config, gateway, content)

    forced = await run(config, gateway, content, force=True)
    assert forced.counts == {"unchanged": 12}
    left = [line for line in outcomes(forced) if line[1] == "deleted"]
    message = f"removed from group 'Red' of course '{course.id}' (greplace: not named in the row)"
    assert left == [("group Red", "deleted", "greplace", message)] * 12


# -- the real Moodle schema ---------------------------------------------------------------------------------------


async def test_on_the_real_moodle_dump(dump_site: Site) -> None:
    config, gateway = dump_site
    config.set("run.safety_min_rows", 100)
    course, (ann, bob) = await course_and_users(gateway)
    group = unique("G")
    content = (
        "rolename;cid;uid;cmd;enrol;gcmd;g1\n"
        f"student;{course.id};{ann};add;manual;gaddcreate;{group}\n"
        f"teacher;{course.id};{bob};add;;;\n"
    )

    result = await run(config, gateway, content)

    assert result.counts == {"created": 2}, outcomes(result)
    assert await roles(gateway, [ann, bob]) == [
        (STUDENT, course.contextid, ann, "", 0),
        (TEACHER, course.contextid, bob, "", 0),
    ]
    assert (await run(config, gateway, content)).counts == {"unchanged": 2}
    deleted = await run(config, gateway, f"rolename;cid;uid;cmd;enrol\n;{course.id};{ann};del;manual\n")
    assert deleted.counts == {"deleted": 1}
    assert await members(gateway, [ann]) == []
    await test_protect_groups_gdel_and_greplace_remove_only_what_toolsync_protects(dump_site)


async def test_groups_a_rolled_back_batch_created_are_not_taken_as_existing_by_the_next_batch(site: Site) -> None:
    """The run remembers the groups its batches found stored (committed) before writing; a group a batch creates is
    looked up again by the next batch naming it, so the groups of a batch whose transaction did not commit (a
    database error, a dry run) are never taken as existing."""
    from toolsync_tui.engine.enrolments.groups import GroupSteps
    from toolsync_tui.engine.enrolments.rows import GROUP_COLUMNS
    from toolsync_tui.engine.rows import LINE

    _config, gateway = site
    course, (ann,) = await course_and_users(gateway, 1)
    kept = await add_group(gateway, course.id, "Kept")

    def rows(*names: str) -> pl.DataFrame:
        groups = {column: [names[n] if n < len(names) else ""] for n, column in enumerate(GROUP_COLUMNS)}
        return pl.DataFrame(
            {"__row": [0], LINE: [2], "userid": [ann], "courseid": [course.id], "contextid": [course.contextid]}
            | {"cid": [str(course.id)]}
            | {"group_command": ["gaddcreate"], **groups, "enrolled_after": [True]}
        )

    steps = GroupSteps(gateway, protect=False)
    async with gateway.engine.connect() as conn:
        await conn.begin()
        await steps.apply(conn, rows("Kept", "New"), now=1, dry_run=False, cache=True)
        await conn.rollback()

    assert steps.known.rows() == [(course.id, cased(gateway, "kept", "Kept"), kept)]  # the name's key
    async with gateway.transaction() as conn:
        steps_out, _ = await steps.apply(conn, rows("New"), now=1, dry_run=False, cache=True)
    assert steps_out["outcome"].to_list() == ["created"]
    stored = await rows_of(gateway, gateway.schema.groups, courseid=[course.id])
    assert sorted(r["name"] for r in stored) == ["Kept", "New"]
    assert len(await members(gateway, [ann])) == 1
