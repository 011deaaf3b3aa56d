"""The Moodle bridge of a run: opened once by the run, next to the gateway, for the operations that use it; the others
never start PHP. A configured bridge that does not work stops the run before any row, except for the course file,
which writes courses without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bridge_fakes import fake_moodle, requests_seen
from tests.support.course_factories import add_enrolment_courses
from tests.support.factories import unique
from tests.support.operation_files import inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem, run_operation

Site = tuple[Config, MoodleGateway]


async def test_the_run_opens_the_bridge_once_and_only_for_operations_that_use_it(
    dump_site: Site, tmp_path: Path
) -> None:
    config, gateway = dump_site
    php = fake_moodle(config, tmp_path)
    [course] = await add_enrolment_courses(gateway, 1)

    checked = await run_operation(config, gateway, "check", inbox_file(config, "courses.csv", f"{course.shortname}\n"))
    assert checked.counts == {"unchanged": 1}
    assert requests_seen(php) == []  # the course check uses no bridge: no PHP started

    content = f"courseid;name\n{course.id};{unique('G')}\n{course.id};{unique('G')}\n"
    grouped = await run_operation(config, gateway, "groups", inbox_file(config, "groups.csv", content))
    assert grouped.counts == {"created": 2}, report_of(grouped)
    assert [r["command"] for r in requests_seen(php)].count("info") == 1


async def test_a_bridge_that_does_not_work_stops_the_run_before_any_row(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    config.set("bridge.moodle_dir", str(tmp_path / "no-moodle-here"))
    name = unique("nobridge")

    with pytest.raises(RunProblem, match="no-moodle-here"):
        await run_operation(
            config, gateway, "users", inbox_file(config, "userimport.csv", f"username;firstname;lastname\n{name};F;L\n")
        )

    assert await rows_of(gateway, gateway.schema.user, username=name) == []


async def test_the_course_file_goes_on_without_a_bridge_that_does_not_work(dump_site: Site, tmp_path: Path) -> None:
    config, gateway = dump_site
    config.set("bridge.moodle_dir", str(tmp_path / "no-moodle-here"))
    name = unique("NB")

    result = await run_operation(
        config, gateway, "courses", inbox_file(config, "uploadcourses.csv", f"shortname;fullname\n{name};N\n")
    )

    assert result.counts == {"created": 1}, report_of(result)
    assert "no-moodle-here" in report_of(result)  # why the caches were not purged
    assert len(await rows_of(gateway, gateway.schema.course, shortname=name)) == 1
