"""Course enrolment requests (users file courseN columns): rows as enrol_user/role_assign/groups write them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import update

from tests.support.case_rules import cased
from tests.support.course_factories import (
    EDITINGTEACHER,
    STUDENT,
    TEACHER,
    TestCourse,
    add_enrolment_courses,
    add_group,
    add_users,
    created_group,
)
from tests.support.factories import unique
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects
from toolsync_tui.engine.parts.course_enrolments import REQUEST_COLUMNS, CourseEnrolments
from toolsync_tui.engine.rows import LINE

Site = tuple[Config, MoodleGateway]
NOW = 1_790_000_000
ACTOR = 2
LONDON = ZoneInfo("Europe/London")  # the site timezone of the sandbox, the baseline and the dump


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Unix time of a wall time of the site's timezone (zoneinfo: the reference for the expected values)."""
    return int(datetime(year, month, day, hour, minute, tzinfo=LONDON).timestamp())


def requests(*rows: dict[str, Any]) -> pl.DataFrame:
    """One request per dict, line numbers 1, 2, ... unless given; text columns default to ""."""
    blank = dict.fromkeys(("course", "role", "group", "enrol", "start", "end"), "")
    return pl.DataFrame(
        [{LINE: n, "part": "course1", "userid": None, **blank, **row} for n, row in enumerate(rows, start=1)],
        schema=REQUEST_COLUMNS,
    )


async def run(
    gateway: MoodleGateway,
    batch: pl.DataFrame,
    *,
    identity: str = "shortname",
    dry_run: bool = False,
    now: int = NOW,
) -> tuple[list[tuple[Any, ...]], EnrolmentEffects]:
    """Apply one batch in one transaction; the outcomes as (line, part, outcome, action, key, message) tuples."""
    enrolments = CourseEnrolments(gateway, course_identity=identity, site_timezone="Europe/London", actor_id=ACTOR)
    async with gateway.transaction() as conn:
        await enrolments.prepare(conn)
        outcomes, effects = await enrolments.apply(conn, batch, now=now, dry_run=dry_run)
    assert outcomes.columns == ["line", "part", "outcome", "action", "key", "message"]
    assert outcomes.height == batch.height  # exactly one detail per request
    return list(outcomes.iter_rows()), effects


def outcomes_of(result: tuple[list[tuple[Any, ...]], EnrolmentEffects]) -> list[tuple[str, str]]:
    return [(row[2], row[5]) for row in result[0]]


async def enrolments_of(gateway: MoodleGateway, users: list[int]) -> list[dict[str, Any]]:
    rows = await rows_of(gateway, gateway.schema.user_enrolments, userid=users)
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


async def roles_of(gateway: MoodleGateway, users: list[int]) -> list[dict[str, Any]]:
    rows = await rows_of(gateway, gateway.schema.role_assignments, userid=users)
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


def ue_row(instance: int, user: int, start: int, end: int = 0, status: int = 0, created: int = NOW) -> dict[str, Any]:
    return {
        "status": status,
        "enrolid": instance,
        "userid": user,
        "timestart": start,
        "timeend": end,
        "modifierid": ACTOR,
        "timecreated": created,
        "timemodified": NOW,
    }


def ra_row(role: int, course: TestCourse, user: int) -> dict[str, Any]:
    return {
        "roleid": role,
        "contextid": course.contextid,
        "userid": user,
        "timemodified": NOW,
        "modifierid": ACTOR,
        "component": "",
        "itemid": 0,
        "sortorder": 0,
    }


# -- enrolments and roles ---------------------------------------------------------------------------------


async def test_enrols_as_enrol_user_writes_and_a_rerun_is_unchanged(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    ann, bob = await add_users(gateway, 2)
    lowered = cased(gateway, course.shortname.lower(), course.shortname)
    batch = requests(
        {
            "userid": ann,
            "course": course.shortname,
            "role": "teacher",
            "start": "2026-09-01",
            "end": "2027-06-30 18:00:00",
        },
        {"userid": bob, "course": lowered, "role": cased(gateway, "Student", "student"), "part": "course2"},
    )

    result = await run(gateway, batch)

    assert result[0] == [
        (
            1,
            "course1",
            "created",
            "enrol",
            course.shortname,
            f"enrolled in course '{course.shortname}' (manual) as teacher",
        ),
        (
            2,
            "course2",
            "created",
            "enrol",
            lowered,
            f"enrolled in course '{lowered}' (manual) as student",
        ),
    ]
    manual = course.instance("manual")
    assert await enrolments_of(gateway, [ann, bob]) == [
        ue_row(manual, ann, local(2026, 9, 1), local(2027, 6, 30, 18)),
        ue_row(manual, bob, NOW),  # empty start = now, empty end = 0 (no end)
    ]
    assert await roles_of(gateway, [ann, bob]) == [ra_row(TEACHER, course, ann), ra_row(STUDENT, course, bob)]
    assert result[1] == EnrolmentEffects(dirty_users={ann, bob}, group_courses=set(), group_users=set())

    again = await run(gateway, batch, now=NOW + 3600)

    assert outcomes_of(again) == [
        ("unchanged", f"already enrolled in course '{course.shortname}' (manual) as teacher"),
        ("unchanged", f"already enrolled in course '{lowered}' (manual) as student"),
    ]
    assert len(await enrolments_of(gateway, [ann, bob])) == 2
    assert len(await roles_of(gateway, [ann, bob])) == 2
    assert (await enrolments_of(gateway, [bob]))[0]["timestart"] == NOW  # an empty start keeps the stored one
    assert again[1] == EnrolmentEffects()


async def test_no_role_takes_the_instances_default_role_else_student(site: Site) -> None:
    _, gateway = site
    [teaching] = await add_enrolment_courses(gateway, roleid=TEACHER)
    [no_default] = await add_enrolment_courses(gateway, roleid=0)
    [user] = await add_users(gateway, 1)

    result = await run(
        gateway,
        requests({"userid": user, "course": teaching.shortname}, {"userid": user, "course": no_default.shortname}),
    )

    assert outcomes_of(result) == [
        ("created", f"enrolled in course '{teaching.shortname}' (manual) as teacher (default role)"),
        ("created", f"enrolled in course '{no_default.shortname}' (manual) as student (default role)"),
    ]
    assert [(r["roleid"], r["contextid"]) for r in await roles_of(gateway, [user])] == [
        (TEACHER, teaching.contextid),
        (STUDENT, no_default.contextid),
    ]


async def test_dates_timestamps_and_their_errors(site: Site) -> None:
    _, gateway = site
    courses = await add_enrolment_courses(gateway, 6)
    users = await add_users(gateway, 1)
    user = users[0]
    cells = [
        ("1767225600", "1798761600"),  # unix timestamps
        ("2026-01-15 08:30", "2026-03-29 01:30"),  # minutes; a time in the spring-forward gap moves an hour on
        ("2026-07-01", "0"),  # 0 = no end
        ("tomorrow", ""),
        ("", "2026-02-30"),
        ("2026-09-01", "2026-08-31"),
    ]
    batch = requests(
        *(
            {"userid": user, "course": c.shortname, "start": s, "end": e}
            for c, (s, e) in zip(courses, cells, strict=True)
        )
    )

    result = await run(gateway, batch)

    expected = "a date YYYY-MM-DD, YYYY-MM-DD hh:mm:ss or a unix timestamp (up to 2038-01-19)"
    assert [o for o, _ in outcomes_of(result)] == ["created"] * 3 + ["failed"] * 3
    assert [m for _, m in outcomes_of(result)][3:] == [
        f"start 'tomorrow': expected {expected}",
        f"end '2026-02-30': expected {expected}",
        "end '2026-08-31' is before the start of the enrolment (2026-09-01 00:00:00)",
    ]
    stored = {r["enrolid"]: (r["timestart"], r["timeend"]) for r in await enrolments_of(gateway, [user])}
    assert stored == {
        courses[0].instance(): (1767225600, 1798761600),
        courses[1].instance(): (local(2026, 1, 15, 8, 30), local(2026, 3, 29, 2, 30)),
        courses[2].instance(): (local(2026, 7, 1), 0),
    }


async def test_an_end_before_a_stored_start_or_now_fails(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [user, other] = await add_users(gateway, 2)
    await run(gateway, requests({"userid": user, "course": course.shortname, "start": "2027-01-01"}))

    result = await run(
        gateway,
        requests(
            {"userid": user, "course": course.shortname, "end": "2026-12-31"},
            {"userid": other, "course": course.shortname, "end": str(NOW - 1)},
        ),
    )

    assert outcomes_of(result) == [
        ("failed", "end '2026-12-31' is before the start of the enrolment (2027-01-01 00:00:00)"),
        ("failed", f"end '{NOW - 1}' is before the start of the enrolment (2026-09-21 15:13:20)"),
    ]
    assert await enrolments_of(gateway, [other]) == []


async def test_bad_values_fail_one_detail_each_and_write_nothing(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [no_manual] = await add_enrolment_courses(gateway, instances=(("manual", 1), ("self", 0)))
    [user] = await add_users(gateway, 1)
    c = course.shortname
    batch = requests(
        {"userid": user, "course": "BIO9"},
        {"userid": user, "course": c, "role": "studnet"},
        {"userid": user, "course": c, "role": "guest"},
        {"userid": user, "course": c, "enrol": "cohort"},
        {"userid": user, "course": c, "enrol": "wizardry"},
        {"userid": user, "course": c, "enrol": "self"},  # the self instance is disabled
        {"userid": user, "course": no_manual.shortname},  # the manual instance is disabled
        {"userid": user, "course": c, "group": "g" * 255},
        {"userid": None, "course": c},
        {"userid": user, "course": "lab"},  # the front page's shortname in the sandbox and the dump
    )

    result = await run(gateway, batch)

    course_roles = "manager, editingteacher, teacher, student"
    assert outcomes_of(result) == [
        ("failed", "course 'BIO9' not found (course_identity shortname)"),
        ("failed", f"role 'studnet' is not a role of the site; expected one of {course_roles}"),
        ("failed", f"role 'guest' cannot be assigned in a course; expected one of {course_roles}"),
        (
            "failed",
            "enrol 'cohort': cohort enrolments are made by the plugin itself, not from a file; expected manual or self",
        ),
        ("failed", "enrol 'wizardry' is not an enrolment plugin of the site; expected manual or self"),
        ("failed", f"course '{c}' has no enabled self enrolment instance"),
        ("failed", f"course '{no_manual.shortname}' has no enabled manual enrolment instance"),
        ("failed", f"group '{'g' * 60}...': a group name has at most 254 characters"),
        ("failed", "the user was not created or found, so no enrolment was made"),
        ("failed", "course 'lab' is the site's front page, which takes no enrolments"),
    ]
    assert [row[0] for row in result[0]] == list(range(1, 11))
    assert await enrolments_of(gateway, [user]) == []
    assert await roles_of(gateway, [user]) == []
    assert result[1] == EnrolmentEffects()


async def test_course_by_id_and_idnumber_and_an_ambiguous_idnumber(site: Site) -> None:
    _, gateway = site
    code, shared = unique("IDN"), unique("SHARED")
    one, two, three = await add_enrolment_courses(gateway, 3, idnumbers=[code, shared, shared])
    [user] = await add_users(gateway, 1)
    lowered = cased(gateway, code.lower(), code)

    by_id = await run(
        gateway, requests({"userid": user, "course": str(one.id)}, {"userid": user, "course": "x1"}), identity="id"
    )
    by_idnumber = await run(
        gateway,
        requests({"userid": user, "course": lowered}, {"userid": user, "course": shared}),
        identity="idnumber",
    )

    assert outcomes_of(by_id) == [
        ("created", f"enrolled in course '{one.id}' (manual) as student (default role)"),
        ("failed", "course id 'x1' is not a number"),
    ]
    assert outcomes_of(by_idnumber) == [
        ("unchanged", f"already enrolled in course '{lowered}' (manual) as student (default role)"),
        ("failed", f"course '{shared}' is ambiguous: 2 courses have this idnumber"),
    ]
    assert [r["enrolid"] for r in await enrolments_of(gateway, [user])] == [one.instance()]
    assert two.id != three.id


async def test_an_existing_enrolment_is_updated_only_where_it_differs(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [user] = await add_users(gateway, 1)
    manual = course.instance()
    await run(
        gateway, requests({"userid": user, "course": course.shortname, "start": "100", "end": "200"}), now=NOW - 50
    )
    ue = gateway.schema.user_enrolments
    async with gateway.transaction() as conn:  # suspended meanwhile, in Moodle
        await conn.execute(update(ue).where(ue.c.userid == user).values(status=1))

    result = await run(gateway, requests({"userid": user, "course": course.shortname, "start": "150"}))

    assert outcomes_of(result) == [
        (
            "updated",
            f"enrolment in course '{course.shortname}' (manual) updated (reactivated, start); "
            "role student (default role) already assigned",
        )
    ]
    # update_user_enrol(): the row keeps timecreated, gets the actor and now; the empty end keeps the stored one.
    assert await enrolments_of(gateway, [user]) == [ue_row(manual, user, 150, 200, created=NOW - 50)]
    assert result[1].dirty_users == {user}

    cleared = await run(gateway, requests({"userid": user, "course": course.shortname, "end": "0"}))

    assert outcomes_of(cleared) == [
        (
            "updated",
            f"enrolment in course '{course.shortname}' (manual) updated (end); "
            "role student (default role) already assigned",
        )
    ]
    assert (await enrolments_of(gateway, [user]))[0]["timeend"] == 0


async def test_requests_for_one_user_and_course_apply_in_order(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [user] = await add_users(gateway, 1)
    c = course.shortname
    batch = requests(
        {"userid": user, "course": c, "role": "student", "start": "1000"},
        {"userid": user, "course": c, "role": "editingteacher", "part": "course2"},
        {"userid": user, "course": c, "role": "student", "start": "2000", "part": "course3"},
        {"userid": user, "course": c, "role": "student", "part": "course4"},
    )

    result = await run(gateway, batch)

    assert outcomes_of(result) == [
        ("created", f"enrolled in course '{c}' (manual) as student"),
        ("updated", f"already enrolled in course '{c}' (manual); role editingteacher assigned"),
        ("updated", f"enrolment in course '{c}' (manual) updated (start); role student already assigned"),
        ("unchanged", f"already enrolled in course '{c}' (manual) as student"),
    ]
    assert await enrolments_of(gateway, [user]) == [ue_row(course.instance(), user, 2000)]
    assert await roles_of(gateway, [user]) == [ra_row(STUDENT, course, user), ra_row(EDITINGTEACHER, course, user)]
    # editingteacher is the fresh site's course contact ($CFG->coursecontact = 3)
    assert result[1] == EnrolmentEffects(dirty_users={user}, contact_courses={course.id})

    again = await run(gateway, batch)

    # The file itself moves the start 2000 -> 1000 -> 2000: each step is reported, but the stored row already has the
    # final state, so nothing is written and nothing goes stale.
    assert [o for o, _ in outcomes_of(again)] == ["updated", "unchanged", "updated", "unchanged"]
    assert await enrolments_of(gateway, [user]) == [ue_row(course.instance(), user, 2000)]
    assert again[1] == EnrolmentEffects()
    assert len(await enrolments_of(gateway, [user])) == 1
    assert len(await roles_of(gateway, [user])) == 2


async def test_the_first_enabled_instance_by_sortorder_and_self_enrolment(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(
        gateway, instances=(("manual", 1), ("self", 0), ("manual", 0), ("manual", 0))
    )
    [user] = await add_users(gateway, 1)

    result = await run(
        gateway,
        requests(
            {"userid": user, "course": course.shortname}, {"userid": user, "course": course.shortname, "enrol": "SELF"}
        ),
    )

    assert [o for o, _ in outcomes_of(result)] == ["created", "created"]
    assert outcomes_of(result)[1][1] == f"enrolled in course '{course.shortname}' (self) as student (default role)"
    assert [r["enrolid"] for r in await enrolments_of(gateway, [user])] == [
        course.instance("manual", 1),  # manual #0 is disabled
        course.instance("self"),
    ]
    assert len(await roles_of(gateway, [user])) == 1  # one role assignment for both (component '', itemid 0)


async def test_a_plugin_disabled_on_the_site_fails(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway, instances=(("self", 0),))
    [user] = await add_users(gateway, 1)
    config = gateway.schema.config
    async with gateway.transaction() as conn:
        await conn.execute(update(config).where(config.c.name == "enrol_plugins_enabled").values(value="manual,guest"))
    try:
        result = await run(gateway, requests({"userid": user, "course": course.shortname, "enrol": "self"}))
    finally:
        async with gateway.transaction() as conn:
            await conn.execute(
                update(config).where(config.c.name == "enrol_plugins_enabled").values(value="manual,guest,self,cohort")
            )
    assert outcomes_of(result) == [("failed", "enrol 'self': the self enrolment plugin is disabled on the site")]


# -- groups -------------------------------------------------------------------------------------------------


async def test_groups_are_created_once_and_joined_after_the_enrolment(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [other_course] = await add_enrolment_courses(gateway)
    ann, bob = await add_users(gateway, 2)
    existing = await add_group(gateway, course.id, "Existing Group")
    new = unique("Group ")
    c = course.shortname
    upper, existing_name = cased(gateway, new.upper(), new), cased(gateway, "existing group", "Existing Group")
    batch = requests(
        {"userid": ann, "course": c, "group": new},
        {"userid": bob, "course": c, "group": upper},
        {"userid": ann, "course": c, "group": existing_name, "part": "course2"},
        {"userid": ann, "course": other_course.shortname, "group": new, "part": "course3"},
    )

    result = await run(gateway, batch)

    assert outcomes_of(result) == [
        (
            "created",
            f"enrolled in course '{c}' (manual) as student (default role); group '{new}' created, member added",
        ),
        ("created", f"enrolled in course '{c}' (manual) as student (default role); added to group '{upper}'"),
        (
            "updated",
            f"already enrolled in course '{c}' (manual) as student (default role); added to group '{existing_name}'",
        ),
        (
            "created",
            f"enrolled in course '{other_course.shortname}' (manual) as student (default role); "
            f"group '{new}' created, member added",
        ),
    ]
    groups = await rows_of(gateway, gateway.schema.groups, courseid=[course.id, other_course.id])
    created = [g for g in groups if g["id"] != existing]
    assert [{k: v for k, v in g.items() if k != "id"} for g in created] == [
        created_group(courseid, new, NOW) for courseid in sorted([course.id, other_course.id])
    ]
    by_course = {g["courseid"]: g["id"] for g in created}
    members = await rows_of(gateway, gateway.schema.groups_members, userid=[ann, bob])
    assert sorted((m["groupid"], m["userid"], m["timeadded"], m["component"], m["itemid"]) for m in members) == sorted(
        [
            (by_course[course.id], ann, NOW, "", 0),
            (by_course[course.id], bob, NOW, "", 0),
            (existing, ann, NOW, "", 0),
            (by_course[other_course.id], ann, NOW, "", 0),
        ]
    )
    [touched] = [g for g in groups if g["id"] == existing]
    assert touched["timemodified"] == NOW  # groups_add_member() touches the group
    assert result[1].group_courses == {course.id, other_course.id}
    assert result[1].group_users == {ann, bob}

    again = await run(gateway, batch)

    assert [o for o, _ in outcomes_of(again)] == ["unchanged"] * 4
    assert outcomes_of(again)[1][1].endswith(f"; already in group '{upper}'")
    assert len(await rows_of(gateway, gateway.schema.groups, courseid=[course.id, other_course.id])) == 3
    assert len(await rows_of(gateway, gateway.schema.groups_members, userid=[ann, bob])) == 4
    assert again[1] == EnrolmentEffects()


async def test_a_failed_enrolment_joins_no_group(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [user] = await add_users(gateway, 1)
    group = unique("Group ")

    result = await run(
        gateway, requests({"userid": user, "course": course.shortname, "role": "nobody", "group": group})
    )

    assert result[0][0][2] == "failed"
    assert await rows_of(gateway, gateway.schema.groups, courseid=course.id) == []


# -- dry run ----------------------------------------------------------------------------------------------


async def test_a_dry_run_reports_the_same_and_writes_nothing(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    ann, bob = await add_users(gateway, 2)
    await run(gateway, requests({"userid": ann, "course": course.shortname, "start": "10"}))
    group = unique("Group ")
    batch = requests(
        {"userid": ann, "course": course.shortname, "role": "teacher", "start": "20", "group": group},
        {"userid": bob, "course": course.shortname, "group": group},
        {"userid": bob, "course": course.shortname, "role": "wizard"},
    )
    before = (
        await enrolments_of(gateway, [ann, bob]),
        await roles_of(gateway, [ann, bob]),
        await rows_of(gateway, gateway.schema.groups, courseid=course.id),
    )

    dry = await run(gateway, batch, dry_run=True)

    after = (
        await enrolments_of(gateway, [ann, bob]),
        await roles_of(gateway, [ann, bob]),
        await rows_of(gateway, gateway.schema.groups, courseid=course.id),
    )
    assert after == before
    c = course.shortname
    assert outcomes_of(dry) == [
        (
            "updated",
            f"enrolment in course '{c}' (manual) updated (start); role teacher assigned; "
            f"group '{group}' would be created, member added",
        ),
        ("created", f"enrolled in course '{c}' (manual) as student (default role); added to group '{group}'"),
        (
            "failed",
            "role 'wizard' is not a role of the site; expected one of manager, editingteacher, teacher, student",
        ),
    ]

    real = await run(gateway, batch)

    assert [o for o, _ in outcomes_of(real)] == [o for o, _ in outcomes_of(dry)]
    assert outcomes_of(real)[0][1].endswith(f"group '{group}' created, member added")
    assert real[1] == dry[1]


# -- the real Moodle schema ----------------------------------------------------------------------------


async def test_on_the_real_moodle_schema(dump_gateway: MoodleGateway) -> None:
    gateway = dump_gateway
    [course] = await add_enrolment_courses(gateway)
    ann, bob = await add_users(gateway, 2)
    group = unique("Group ")
    batch = requests(
        {"userid": ann, "course": course.shortname, "role": "editingteacher", "group": group, "end": "2030-01-01"},
        {"userid": bob, "course": course.shortname, "group": group},
        {"userid": bob, "course": course.shortname, "role": "guest"},
    )

    result = await run(gateway, batch)

    assert [o for o, _ in outcomes_of(result)] == ["created", "created", "failed"]
    manual = course.instance()
    assert await enrolments_of(gateway, [ann, bob]) == [
        ue_row(manual, ann, NOW, local(2030, 1, 1)),
        ue_row(manual, bob, NOW),
    ]
    assert await roles_of(gateway, [ann, bob]) == [ra_row(EDITINGTEACHER, course, ann), ra_row(STUDENT, course, bob)]
    [created] = await rows_of(gateway, gateway.schema.groups, courseid=course.id)
    assert (created["name"], created["participation"], created["timecreated"]) == (group, 1, NOW)
    members = await rows_of(gateway, gateway.schema.groups_members, groupid=created["id"])
    assert [(m["userid"], m["component"], m["itemid"]) for m in members] == [(ann, "", 0), (bob, "", 0)]
    assert result[1] == EnrolmentEffects(
        dirty_users={ann, bob}, group_courses={course.id}, group_users={ann, bob}, contact_courses={course.id}
    )

    again = await run(gateway, batch)

    assert [o for o, _ in outcomes_of(again)] == ["unchanged", "unchanged", "failed"]
