"""The course reset file (resetcourses.csv) on the real Moodle dump, with a fake bridge standing in for Moodle's
reset_course_userdata() (tests/test_course_bridge.py runs the real one): cells checked, options built and sent,
courses resolved by the identifier setting, outcomes reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge_fakes import fake_moodle, requests_seen
from tests.support.case_rules import cased
from tests.support.course_factories import STUDENT, TEACHER, add_enrolment_courses
from tests.support.operation_files import report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult, SafetyStop

Site = tuple[Config, MoodleGateway]
HEADER = "shortname;events;logs;notes;grades;roles;local_roles;groups;groupings;modules"


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "resetcourses", content, **options)


def resets(php: str) -> list[dict[str, Any]]:
    """The resets (course, options) of every reset_courses call the fake bridge got."""
    return [reset for r in requests_seen(php) if r["command"] == "reset_courses" for reset in r["resets"]]


async def test_without_a_bridge_the_run_stops_with_the_reason(dump_site: Site) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway, 1)

    with pytest.raises(RunProblem, match=r"^resetcourses\.csv: resetting courses runs Moodle's own code through the "):
        await run(config, gateway, f"{HEADER}\n{course.shortname};1;0;1;all;student;all;all;all;all\n")


async def test_the_options_of_each_row_go_to_the_bridge(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    first, second, third = await add_enrolment_courses(gateway, 3)
    php = fake_moodle(config, tmp_path)
    content = (
        f"{HEADER};completion;comments;forum_all\n"
        f"{first.shortname};yes;;1;items;student teacher;roles;members;groups;all -quiz;no;0;\n"
        f"{second.shortname};0;no;;all;all;overrides;1;;forum;1;;0\n"
        f"{third.shortname};;;;;;;;;;;;\n"
    )

    result = await run(config, gateway, content)

    assert result.counts == {"updated": 3}, report_of(result)
    assert resets(php) == [
        {
            "course": first.id,
            "options": {
                "reset_events": 1,
                "reset_notes": 1,
                "delete_blog_associations": 1,  # no such column: on, as the original
                "reset_roles_local": 1,
                "reset_gradebook_items": 1,
                "reset_groups_members": 1,
                "reset_groupings_remove": 1,
                "unenrol_users": [STUDENT, TEACHER],
                "modules": ["assign", "forum", "page"],
            },
        },
        {
            "course": second.id,
            "options": {
                "reset_completion": 1,
                "delete_blog_associations": 1,  # (comments: an empty cell of a column is no)
                "reset_roles_overrides": 1,
                "reset_gradebook_items": 1,
                "reset_gradebook_grades": 1,
                "reset_groups_remove": 1,
                "reset_groups_members": 1,
                "reset_forum_all": 0,  # turns off what the forum's defaults turn on
                "unenrol_users": [1, 2, 3, 4, 5, 6, 7, 8, 0],  # every role, and the users with none
                "modules": ["forum"],
            },
        },
        {"course": third.id, "options": {"delete_blog_associations": 1}},
    ]
    report = report_of(result)
    assert (
        f"line 2: updated (reset) course '{first.shortname}' (id {first.id}) reset: General: Events: OK; "
        "Forums: All posts: OK"
    ) in report
    assert "by Moodle's own reset_course_userdata()" in report
    assert "logs: Moodle 4.5 has no reset of course logs; the logs were kept" not in report  # no row asked


async def test_bad_cells_unknown_roles_modules_and_courses_fail_their_row(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    [course, other] = await add_enrolment_courses(gateway, 2)
    php = fake_moodle(config, tmp_path)
    lines = [
        f"{course.shortname};maybe;1;1;some;student;all;all;all;",
        f"{other.shortname};1;1;1;all;student wizard;all;all;all;forum nosuchmod",
        "NOSUCH201;1;1;1;all;student;all;all;all;all",
        f"{course.shortname};1;1;0;;;;;;",
        f"{course.shortname};1;0;0;;;;;;",
    ]

    result = await run(config, gateway, HEADER + "\n" + "".join(f"{line}\n" for line in lines))

    assert result.counts == {"failed": 4, "updated": 1}, report_of(result)
    report = report_of(result)
    assert (
        "line 2: failed (check) events 'maybe' is not allowed; expected yes, 1, no or 0 (or empty); grades 'some' is "
        "not allowed; expected all, items, grades, yes, 1, no or 0"
    ) in report
    assert (
        "line 3: failed (check) roles: no role 'wizard' on this site (role shortnames separated by spaces, or all); "
        "modules: 'nosuchmod' not installed on this site (installed: assign, forum, page, quiz)"
    ) in report
    assert "line 4: failed (check) course 'NOSUCH201' not found (identifier shortname)" in report
    assert f"line 5: updated (reset) course '{course.shortname}' (id {course.id}) reset:" in report
    assert f"line 6: failed (check) course '{course.shortname}' (id {course.id}) is already named by line 5" in report
    assert [r["course"] for r in resets(php)] == [course.id]  # the first row of the course failed its check
    assert "logs: Moodle 4.5 has no reset of course logs; the logs were kept" in report
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines() == [HEADER, lines[0], lines[1], lines[2], lines[4]]


async def test_courses_by_the_identifier_setting(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    config.set("operations.resetcourses.identifier", "idnumber")
    [course] = await add_enrolment_courses(gateway, 1, idnumbers=["RESET-ID-1"])
    php = fake_moodle(config, tmp_path)
    header = HEADER.replace("shortname", "idnumber")

    idnumber = cased(gateway, "reset-id-1", "RESET-ID-1")
    result = await run(config, gateway, f"{header}\n{idnumber};1;0;0;;;;;;\n", dry_run=True)

    assert result.counts == {"updated": 1}
    assert (
        f"course '{course.shortname}' (id {course.id}) would be reset through the Moodle bridge: reset_events, "
        "delete_blog_associations, "
        "reset_comments"
    ) in report_of(result)
    assert [r["command"] for r in requests_seen(php)] == ["info"]  # a dry run runs no reset
    with pytest.raises(RunProblem, match=r"required column 'idnumber' missing \(the file has shortname\): courses are"):
        await run(config, gateway, f"{HEADER}\n{course.shortname};1;0;0;;;;;;\n")


async def test_the_safety_threshold_stops_a_mass_reset(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    config.set("run.safety_min_rows", 2)
    config.set("run.safety_threshold", 0.0001)
    courses = await add_enrolment_courses(gateway, 2)
    php = fake_moodle(config, tmp_path)
    content = HEADER + "\n" + "".join(f"{c.shortname};1;0;0;;;;;;\n" for c in courses)

    with pytest.raises(SafetyStop):
        await run(config, gateway, content)

    assert resets(php) == []
    assert (await run(config, gateway, content, force=True)).counts == {"updated": 2}


async def test_a_row_that_resets_nothing_is_unchanged_and_runs_no_php(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway, 1)
    php = fake_moodle(config, tmp_path)

    result = await run(config, gateway, f"{HEADER};blog_associations;comments\n{course.shortname};no;0;;;;;;;;0;\n")

    assert result.counts == {"unchanged": 1}
    assert f"course '{course.shortname}' (id {course.id}): the row resets nothing" in report_of(result)
    assert resets(php) == []
