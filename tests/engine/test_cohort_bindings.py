"""Cohort-course bindings (cohortscourses.csv) end to end on SQLite and MariaDB, and on the real Moodle dump."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.course_factories import STUDENT, TEACHER, TestCourse, add_cohort, add_enrolment_courses, add_users
from tests.support.factories import unique
from tests.support.operation_files import report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, SafetyStop

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(site: Site) -> Site:
    """Cohorts and courses by idnumber (the defaults), roles by shortname."""
    site[0].set("operations.cohortscourses.cohort_identifier", "idnumber")
    site[0].set("operations.cohortscourses.course_identifier", "idnumber")
    return site


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "cohortscourses", content, **options)


async def cohort_instances(gateway: MoodleGateway, course: TestCourse) -> list[dict[str, Any]]:
    return await rows_of(gateway, gateway.schema.enrol, courseid=course.id, enrol="cohort")


async def course_and_cohort(gateway: MoodleGateway, name: str = "Year 1") -> tuple[TestCourse, int, str]:
    [course] = await add_enrolment_courses(gateway, idnumbers=[unique("CRS")])
    code = unique("COH")
    return course, await add_cohort(gateway, name, idnumber=code), code


async def test_add_writes_the_instance_as_enrol_cohort_does_and_twice_is_unchanged(site: Site) -> None:
    config, gateway = site
    course, cohort, code = await course_and_cohort(gateway)
    content = f"cohort;course\n{code};{course.idnumber}\n"

    result = await run(config, gateway, content)

    assert result.counts == {"created": 1}, report_of(result)
    [row] = await cohort_instances(gateway, course)
    assert (row["status"], row["roleid"], row["customint1"], row["customint2"]) == (0, STUDENT, cohort, 0)
    assert (row["sortorder"], row["enrolstartdate"], row["enrolenddate"]) == (3, 0, 0)  # after manual, guest, self
    assert row["timecreated"] == row["timemodified"] > 0
    # No bridge: the report says who enrols the cohort's members.
    assert "\\enrol_cohort\\task\\enrol_cohort_sync" in report_of(result)

    again = await run(
        config, gateway, f"cohort;course;role;cmd\n{code};{course.idnumber};;\n{code};{course.idnumber};student;add\n"
    )
    assert again.counts == {"unchanged": 2}
    assert len(await cohort_instances(gateway, course)) == 1


async def test_roles_groups_disable_restore(site: Site) -> None:
    config, gateway = site
    course, _, code = await course_and_cohort(gateway, "Chemistry")
    result = await run(
        config,
        gateway,
        "cohort;course;role;makegroup\n"
        f"{code};{course.idnumber};editingteacher;1\n"
        f"{code};{course.idnumber};teacher;1\n",
    )
    assert result.counts == {"created": 2}, report_of(result)
    rows = await cohort_instances(gateway, course)
    assert [(r["roleid"], r["sortorder"]) for r in rows] == [(3, 3), (TEACHER, 4)]
    groups = {g["id"]: g["name"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)}
    assert [groups[r["customint2"]] for r in rows] == ["Chemistry cohort", "Chemistry cohort (2)"]

    disabled = await run(config, gateway, f"cohort;course;role;cmd\n{code};{course.idnumber};*;del\n", force=True)
    assert disabled.counts == {"updated": 1}
    assert [r["status"] for r in await cohort_instances(gateway, course)] == [1, 1]
    restored = await run(
        config,
        gateway,
        f"cohort;course;role;cmd\n{code};{course.idnumber};teacher;restore\n{code};{course.idnumber};;restore\n",
    )
    assert restored.counts == {"updated": 1, "failed": 1}
    assert [r["status"] for r in await cohort_instances(gateway, course)] == [1, 0]
    assert "no binding of cohort 'Chemistry'" in report_of(restored)
    assert "with role student to restore" in report_of(restored)
    # add enables a disabled binding again
    readd = await run(config, gateway, f"cohort;course;role\n{code};{course.idnumber};editingteacher\n")
    assert readd.counts == {"updated": 1}
    assert [r["status"] for r in await cohort_instances(gateway, course)] == [0, 0]


async def test_fulldel_unenrols_what_the_binding_enrolled(site: Site) -> None:
    config, gateway = site
    course, _cohort, code = await course_and_cohort(gateway)
    await run(config, gateway, f"cohort;course;makegroup\n{code};{course.idnumber};1\n")
    [instance] = await cohort_instances(gateway, course)
    ann, bob = await add_users(gateway, 2)
    schema = gateway.schema
    # What Moodle's cohort sync leaves for two members; bob is also enrolled manually.
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            schema.user_enrolments,
            [
                {"enrolid": instance["id"], "userid": u, "status": 0, "timestart": 0, "timeend": 0, "modifierid": 2}
                for u in (ann, bob)
            ]
            + [
                {
                    "enrolid": course.instance(),
                    "userid": bob,
                    "status": 0,
                    "timestart": 0,
                    "timeend": 0,
                    "modifierid": 2,
                }
            ],
        )
        await gateway.insert_many(
            conn,
            schema.role_assignments,
            [
                {"roleid": STUDENT, "contextid": course.contextid, "userid": u, "component": "enrol_cohort",
                 "itemid": instance["id"], "modifierid": 2, "timemodified": 1}
                for u in (ann, bob)
            ],
        )  # fmt: skip
        await gateway.insert_many(
            conn,
            schema.groups_members,
            [
                {"groupid": instance["customint2"], "userid": u, "component": "enrol_cohort", "itemid": instance["id"]}
                for u in (ann, bob)
            ],
        )

    dry = await run(config, gateway, f"cohort;course;cmd\n{code};{course.idnumber};fulldel\n", dry_run=True)
    assert dry.counts == {"deleted": 1}
    assert "would be deleted, 2 user(s) unenrolled" in report_of(dry)
    assert len(await cohort_instances(gateway, course)) == 1

    result = await run(config, gateway, f"cohort;course;cmd\n{code};{course.idnumber};fulldel\n", force=True)

    assert result.counts == {"deleted": 1}, report_of(result)
    assert await cohort_instances(gateway, course) == []
    enrolled = await rows_of(gateway, schema.user_enrolments, userid=[ann, bob])
    assert [(r["enrolid"], r["userid"]) for r in enrolled] == [(course.instance(), bob)]
    assert await rows_of(gateway, schema.role_assignments, component="enrol_cohort", itemid=instance["id"]) == []
    assert await rows_of(gateway, schema.groups_members, userid=[ann, bob]) == []
    dirty = await rows_of(gateway, schema.cache_flags, flagtype="accesslib/dirtyusers", name=[str(ann), str(bob)])
    assert len(dirty) == 2
    gone = await run(config, gateway, f"cohort;course;cmd\n{code};{course.idnumber};fulldel\n")
    assert gone.counts == {"unchanged": 1}


async def test_each_unknown_name_fails_its_row_into_the_tryback(site: Site) -> None:
    config, gateway = site
    course, _cohort, code = await course_and_cohort(gateway)
    lines = [
        f"nocohort;{course.idnumber};student;add",
        f"{code};nocourse;student;add",
        f"{code};{course.idnumber};norole;add",
        f"{code};{course.idnumber};*;add",
        f"{code};{course.idnumber};student;move",
    ]
    result = await run(config, gateway, "cohort;course;role;cmd\n" + "".join(f"{line}\n" for line in lines))

    assert result.counts == {"failed": 5}
    report = report_of(result)
    assert "cohort 'nocohort' not found (cohort_identifier idnumber)" in report
    assert "course 'nocourse' not found (course_identifier idnumber)" in report
    assert "role 'norole' not found (role_identifier shortname)" in report
    assert "role *: every role is for del, restore and fulldel" in report
    assert "cmd 'move': expected add, del, restore or fulldel" in report
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines()[1:] == lines
    assert await cohort_instances(gateway, course) == []


async def test_safety_threshold_stops_mass_removal(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 2)
    courses = await add_enrolment_courses(gateway, 3, idnumbers=[unique("CRS") for _ in range(3)])
    code = unique("COH")
    await add_cohort(gateway, "Safe", idnumber=code)
    await run(config, gateway, "cohort;course\n" + "".join(f"{code};{c.idnumber}\n" for c in courses))
    removal = "cohort;course;cmd\n" + "".join(f"{code};{c.idnumber};fulldel\n" for c in courses)
    with pytest.raises(SafetyStop):
        await run(config, gateway, removal)
    assert all([await cohort_instances(gateway, c) for c in courses])
    forced = await run(config, gateway, removal, force=True)
    assert forced.counts == {"deleted": 3}


# -- the real Moodle schema ---------------------------------------------------------------------------------------


async def test_on_the_real_moodle_dump(dump_site: Site) -> None:
    config, gateway = dump_site
    course, cohort, code = await course_and_cohort(gateway)
    content = f"cohort;course;makegroup\n{code};{course.idnumber};1\n"
    assert (await run(config, gateway, content)).counts == {"created": 1}
    assert (await run(config, gateway, content)).counts == {"unchanged": 1}
    [row] = await cohort_instances(gateway, course)
    assert (row["roleid"], row["customint1"], row["status"]) == (STUDENT, cohort, 0)
    removed = await run(config, gateway, f"cohort;course;cmd\n{code};{course.idnumber};fulldel\n", force=True)
    assert removed.counts == {"deleted": 1}
    assert await cohort_instances(gateway, course) == []
