"""Dry runs of the course delete and reset files without a Moodle bridge (issue 21, item 13): they resolve every
course and say what Moodle would be asked to do, their report noting that a real run needs the bridge, which still
stops before any row without one."""

from __future__ import annotations

import re

import pytest

from tests.support.course_factories import add_enrolment_courses
from tests.support.operation_files import report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem

Site = tuple[Config, MoodleGateway]
RESET_HEADER = "shortname;events;logs;notes;grades;roles;local_roles;groups;groupings;modules"
REAL_RUN_NEEDS = "runs Moodle's own code through the Moodle bridge, and none is configured: set [bridge] moodle_dir"


async def test_a_delete_dry_run_without_a_bridge_resolves_every_line(dump_site: Site) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway, 1)

    result = await run_file(config, gateway, "deletecourses", f"{course.shortname}\nNOSUCH103\n", dry_run=True)

    assert result.counts == {"deleted": 1, "failed": 1}
    report = report_of(result)
    would = f"Course '{course.shortname}' (id {course.id}) would be deleted through the Moodle bridge"
    assert f"line 1: deleted (delete) {would}" in report
    assert "line 2: failed (check) course 'NOSUCH103' not found (identifier shortname)" in report
    assert f"deleting courses {REAL_RUN_NEEDS}" in report
    assert "a real run stops before any row until it works; this dry run ran no PHP" in report
    assert result.exit_code == 1  # the unknown course, as the real run would fail it

    with pytest.raises(RunProblem, match=re.escape(f"deleting courses {REAL_RUN_NEEDS}")):
        await run_file(config, gateway, "deletecourses", f"{course.shortname}\n")


async def test_a_reset_dry_run_without_a_bridge_checks_modules_against_the_site(dump_site: Site) -> None:
    config, gateway = dump_site
    first, second = await add_enrolment_courses(gateway, 2)
    content = (
        f"{RESET_HEADER}\n{first.shortname};1;0;0;;student;;;;quiz forum\n{second.shortname};0;0;0;;;;;;nosuchmodule\n"
    )

    result = await run_file(config, gateway, "resetcourses", content, dry_run=True)

    assert result.counts == {"updated": 1, "failed": 1}
    report = report_of(result)
    assert (
        f"course '{first.shortname}' (id {first.id}) would be reset through the Moodle bridge: reset_events, "
        "delete_blog_associations, reset_comments, unenrol_users student, modules forum quiz"
    ) in report
    assert "modules: 'nosuchmodule' not installed on this site (installed: assign, " in report
    assert f"resetting courses {REAL_RUN_NEEDS}" in report

    with pytest.raises(RunProblem, match=re.escape(f"resetting courses {REAL_RUN_NEEDS}")):
        await run_file(config, gateway, "resetcourses", content)
