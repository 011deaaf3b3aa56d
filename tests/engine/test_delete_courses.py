"""The course delete file (deletecourses.csv) on the real Moodle dump, with a fake bridge standing in for Moodle's
delete_course() (tests/test_course_bridge.py runs the real one): what is resolved, sent, reported and refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge_fakes import fake_moodle, requests_seen
from tests.support.case_rules import cased
from tests.support.course_factories import add_enrolment_courses
from tests.support.operation_files import report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import Progress, RunProblem, RunResult, SafetyStop

Site = tuple[Config, MoodleGateway]


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "deletecourses", content, **options)


def deletions(php: str) -> list[list[int]]:
    """The course ids of each delete_courses call the fake bridge got."""
    return [r["courseids"] for r in requests_seen(php) if r["command"] == "delete_courses"]


async def front_page(gateway: MoodleGateway) -> str:
    [row] = await rows_of(gateway, gateway.schema.course, category=0)
    return str(row["shortname"])


async def test_without_a_bridge_the_run_stops_before_any_row(dump_site: Site) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway, 1)

    with pytest.raises(RunProblem) as stopped:
        await run(config, gateway, f"{course.shortname}\n")

    assert str(stopped.value) == (
        "deletecourses.csv: deleting courses runs Moodle's own code through the Moodle bridge, and none is "
        "configured: set [bridge] moodle_dir to the site's directory (the one holding config.php); nothing was done"
    )
    assert not list((config.data_dir / "reports").iterdir())


async def test_every_line_is_accounted_for_and_the_courses_go_to_the_bridge_once(
    dump_site: Site, tmp_path: Path
) -> None:
    config, gateway = dump_site
    gone, refused = await add_enrolment_courses(gateway, 2)
    php = fake_moodle(config, tmp_path, refuse=(refused.id,))
    again_named = cased(gateway, gone.shortname.lower(), gone.shortname)
    lines = [gone.shortname, "NOSUCH101", refused.shortname, again_named, await front_page(gateway), ""]
    content = "# courses to delete\n" + "".join(f"{line}\n" for line in lines)

    result = await run(config, gateway, content)

    assert result.counts == {"deleted": 1, "failed": 3, "unchanged": 1}, report_of(result)
    assert deletions(php) == [[gone.id, refused.id]]
    report = report_of(result)
    assert f"line 2: deleted (delete) Course '{gone.shortname}' (id {gone.id}) deleted" in report
    assert "line 3: failed (check) course 'NOSUCH101' not found (identifier shortname)" in report
    assert f"line 4: failed (delete) delete_courses refused course {refused.id}" in report
    again = f"course '{gone.shortname}' (id {gone.id}) is named by line 2, which deletes it"
    assert f"line 5: unchanged (none) {again}" in report
    assert "line 6: failed (check) course '" in report
    assert "is the site's front page, which cannot be deleted" in report
    assert "by Moodle's own delete_course()" in report
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines() == ["NOSUCH101", refused.shortname, lines[4]]


async def test_a_dry_run_resolves_and_runs_no_php(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway, 1)
    php = fake_moodle(config, tmp_path)

    result = await run(config, gateway, f"{course.shortname}\nNOSUCH102\n", dry_run=True)

    assert result.counts == {"deleted": 1, "failed": 1}
    assert f"Course '{course.shortname}' (id {course.id}) would be deleted" in report_of(result)
    assert [r["command"] for r in requests_seen(php)] == ["info"]


async def test_courses_by_idnumber_in_batches_of_fifty(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    config.set("operations.deletecourses.identifier", "idnumber")
    config.set("run.safety_min_rows", 1000)
    courses = await add_enrolment_courses(gateway, 60, idnumbers=[f"DEL-{n:03d}" for n in range(60)])
    php = fake_moodle(config, tmp_path)
    seen: list[Progress] = []

    del_ = cased(gateway, "del", "DEL")
    result = await run(config, gateway, "".join(f"{del_}-{n:03d}\n" for n in range(60)), on_progress=seen.append)

    assert result.counts == {"deleted": 60}
    assert deletions(php) == [[c.id for c in courses[:50]], [c.id for c in courses[50:]]]
    assert [p.lines_done for p in seen] == [50, 60]


async def test_the_safety_threshold_stops_a_mass_deletion_before_any_php(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    config.set("run.safety_min_rows", 2)
    config.set("run.safety_threshold", 0.0001)
    courses = await add_enrolment_courses(gateway, 3)
    php = fake_moodle(config, tmp_path)
    content = "".join(f"{c.shortname}\n" for c in courses)

    with pytest.raises(SafetyStop, match="would delete, unenrol or suspend 3 of"):
        await run(config, gateway, content)

    assert deletions(php) == []
    forced = await run(config, gateway, content, force=True)
    assert forced.counts == {"deleted": 3}


async def test_php_dying_half_way_fails_the_courses_it_did_not_answer(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    first, second, third = await add_enrolment_courses(gateway, 3)
    fake_moodle(config, tmp_path, die_after=1)

    result = await run(config, gateway, f"{first.shortname}\n{second.shortname}\n{third.shortname}\n")

    assert result.counts == {"deleted": 1, "failed": 2}
    report = report_of(result)
    assert (
        "line 2: failed (delete) not deleted: the Moodle bridge failed: bridge delete_courses: the PHP process "
        "exited with code 255 and no answer after 1 item(s)"
    ) in report
    assert "Allowed memory size exhausted" in report


async def test_a_failure_after_the_last_course_is_in_the_report(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    [course] = await add_enrolment_courses(gateway, 1)
    fake_moodle(config, tmp_path, answer_error="delete_courses failed: dml_write_exception: fix_course_sortorder")

    result = await run(config, gateway, f"{course.shortname}\n")

    assert result.counts == {"deleted": 1}
    assert (
        "after deleting the courses of a batch, bridge delete_courses: delete_courses failed: dml_write_exception: "
        "fix_course_sortorder"
    ) in report_of(result)
