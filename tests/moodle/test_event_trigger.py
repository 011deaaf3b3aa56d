"""`[events] trigger`: the bridge triggers Moodle's events after each batch, and Moodle's log rows are then those that
toolsync writes itself without the setting. Two sites from the same dump run the same files, one each way; their
log rows must be equal, ids included, times aside (tests/support/moodle_site.py makes the sites)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Server
from tests.support.bridge_fakes import fake_php
from tests.support.moodle_site import Site, provision_site, site_config
from tests.support.operation_files import inbox_file, report_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem, run_operation

# A new course in a new category; users enrolled into it (a teacher, students in a group, a cohort); a student
# unenrolled again: created, updated and deleted objects.
STEPS = [
    ("courses", "shortname;fullname;category\nTRIG1;Triggered course;Trigger/Events\n"),
    (
        "users",
        "username;firstname;lastname;email;course1;role1;group1;cohort\n"
        "trigt;Tea;Cher;trigt@example.com;TRIG1;editingteacher;;\n"
        "trigs1;Stu;One;trigs1@example.com;TRIG1;student;Red;Trig cohort\n"
        "trigs2;Stu;Two;trigs2@example.com;TRIG1;student;Red;Trig cohort\n",
    ),
    ("enrols", "cmd;rolename;cid;uid;enrol\ndel;student;TRIG1;trigs2;manual\n"),
]

TIMES = re.compile(r'"(time(?:start|end|created|modified))":"[1-9]\d*"')
LOG_COLUMNS = (
    "eventname, component, action, target, objecttable, objectid, crud, edulevel, contextid, contextlevel, "
    "contextinstanceid, userid, courseid, relateduserid, anonymous, other, origin, ip, realuserid"
)


@pytest.fixture(scope="module")
def sites(db_server: Server) -> tuple[Site, Site]:
    """Two fresh sites: toolsync logs on the first, the bridge triggers on the second."""
    db_server.restart_if_dead()
    return provision_site(db_server, "site_trigger_logged"), provision_site(db_server, "site_trigger_triggered")


def config_for(site: Site, tmp_path: Path, *, trigger: bool) -> Config:
    config = site_config(site, tmp_path, bridge=True)
    config.set("events.trigger", trigger)
    config.set("operations.users.primary_identity", "username")
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    return config


async def run_steps(config: Config, gateway: MoodleGateway) -> list[str]:
    reports = []
    for operation, content in STEPS:
        inbox_file(config, config.operation(operation).file, content)
        result = await run_operation(config, gateway, operation)
        reports.append(report_of(result))
        assert result.exit_code == 0, reports[-1]
    return reports


async def log_rows(gateway: MoodleGateway, after: int) -> list[dict[str, Any]]:
    sql = f"SELECT {LOG_COLUMNS} FROM {gateway.schema.prefix}logstore_standard_log WHERE id > :after"
    async with gateway.reading() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(text(sql), {"after": after})]
    for row in rows:  # times in `other` (a deleted enrolment's record) are the run's
        row["other"] = TIMES.sub(r'"\1":"<time>"', row["other"] or "")
    return sorted(rows, key=lambda row: [str(value) for value in row.values()])


async def last_log_id(gateway: MoodleGateway) -> int:
    async with gateway.reading() as conn:
        found = await conn.execute(text(f"SELECT MAX(id) FROM {gateway.schema.prefix}logstore_standard_log"))
        return int(found.scalar() or 0)


async def test_triggered_events_are_logged_by_moodle_as_toolsync_logs_them(
    sites: tuple[Site, Site], tmp_path: Path
) -> None:
    logged_site, triggered_site = sites
    logged = MoodleGateway.for_url(logged_site.url, logged_site.prefix)
    triggered = MoodleGateway.for_url(triggered_site.url, triggered_site.prefix)
    try:
        start = await last_log_id(logged)
        assert start == await last_log_id(triggered)  # the same dump
        await run_steps(config_for(logged_site, tmp_path / "logged", trigger=False), logged)
        reports = await run_steps(config_for(triggered_site, tmp_path / "triggered", trigger=True), triggered)
        ours, moodles = await log_rows(logged, start), await log_rows(triggered, start)
    finally:
        await logged.close()
        await triggered.close()
    for report in reports:
        assert "triggered through the bridge (observers ran; Moodle logged them)" in report, report
        assert "not triggered" not in report, report
    names = {row["eventname"] for row in ours}
    for wanted in ("course_category_created", "course_created", "user_created", "user_enrolment_deleted"):
        assert f"\\core\\event\\{wanted}" in names
    assert moodles == ours


async def test_trigger_without_a_bridge_stops_the_run_before_any_write(
    sites: tuple[Site, Site], tmp_path: Path
) -> None:
    site = sites[0]
    gateway = MoodleGateway.for_url(site.url, site.prefix)
    try:
        config = site_config(site, tmp_path, bridge=False)
        config.set("events.trigger", True)
        inbox_file(config, config.operation("courses").file, "shortname;fullname\nNOBRIDGE1;Never written\n")
        with pytest.raises(RunProblem, match=r"\[events\] trigger = true .* no Moodle bridge is configured"):
            await run_operation(config, gateway, "courses")
        async with gateway.reading() as conn:
            found = await conn.execute(
                text(f"SELECT COUNT(*) FROM {gateway.schema.prefix}course WHERE shortname = 'NOBRIDGE1'")
            )
            assert found.scalar() == 0
    finally:
        await gateway.close()


# The real bridge, except that trigger_events dies as PHP does on a fatal error.
DYING_TRIGGER = """
import subprocess
request = sys.stdin.buffer.read()
if json.loads(request).get("command") == "trigger_events":
    print("PHP Fatal error: Allowed memory size exhausted", file=sys.stderr)
    sys.exit(255)
done = subprocess.run(%(php)r + sys.argv[1:], input=request)
sys.exit(done.returncode)
"""


async def test_a_failed_trigger_is_reported_and_the_rows_stay_written(sites: tuple[Site, Site], tmp_path: Path) -> None:
    site = sites[0]
    gateway = MoodleGateway.for_url(site.url, site.prefix)
    try:
        config = site_config(site, tmp_path, bridge=True)
        config.set("events.trigger", True)
        config.set("bridge.php", fake_php(tmp_path, DYING_TRIGGER % {"php": shlex.split(site.php)}))
        inbox_file(config, config.operation("courses").file, "shortname;fullname\nDYING1;Still written\n")
        result = await run_operation(config, gateway, "courses")
        report = report_of(result)
        assert result.counts == {"created": 1}, report
        assert "Moodle's events: 0 triggered through the bridge" in report
        assert "not triggered (their changes are written, not logged): the bridge failed: bridge trigger_events" in (
            report
        )
        assert "PHP Fatal error: Allowed memory size exhausted" in report
        async with gateway.reading() as conn:
            found = await conn.execute(
                text(f"SELECT COUNT(*) FROM {gateway.schema.prefix}course WHERE shortname = 'DYING1'")
            )
            assert found.scalar() == 1
    finally:
        await gateway.close()
