"""The sandbox's sample files, run as a new user would run them from the dashboard (issue 21, item 13): the courses
sample first (the others name its courses), then every operation in the dashboard's order (the registry's). Every row
succeeds, but for the failures the samples make on purpose; the course delete and reset samples, which need a Moodle
bridge the sandbox cannot have, are dry runs that say what Moodle would be asked to do."""

from __future__ import annotations

import csv

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.pipeline import RunResult, run_inputs

# The operations that run only through a Moodle bridge, which a sandbox cannot have: their samples are dry runs.
BRIDGE_ONLY = {"deletecourses", "resetcourses"}
# (operation, line, key): the rows a sample fails on purpose, each said so in the sample itself.
ON_PURPOSE = {("check", 6, "NOPE999")}  # courses.csv: "NOPE999;a course that does not exist"


def failed_rows(result: RunResult) -> list[dict[str, str]]:
    """The rows and parts of rows the run failed, from its report's CSV twin."""
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["outcome"] == "failed"]


async def test_every_sample_succeeds_in_the_dashboards_order_once_courses_has_run(sandbox: Config) -> None:
    gateway = open_gateway(sandbox)
    failures: list[tuple[str, int, str, str]] = []
    results: dict[str, RunResult] = {}
    try:
        for name in ["courses", *(name for name in OPERATIONS if name != "courses")]:
            for result in await run_inputs(sandbox, gateway, name, dry_run=name in BRIDGE_ONLY):
                results[name] = result
                for row in failed_rows(result):
                    failures.append((name, int(row["line"]), row["key"], row["message"]))
    finally:
        await gateway.close()

    assert set(results) == set(OPERATIONS)
    assert {(name, line, key) for name, line, key, _ in failures} == ON_PURPOSE, failures
    deleted = "line 2: deleted (delete) Course 'OLD2019' (id 5) would be deleted through the Moodle bridge"
    assert results["deletecourses"].report_path is not None
    assert deleted in results["deletecourses"].report_path.read_text()
    assert results["resetcourses"].counts == {"updated": 1}
    assert results["groupmembers"].counts == {"created": 1}
