"""The course file with overlapped writes (run/overlap.py) against the same file run batch after batch
(TOOLSYNC_OVERLAP=0), each on its own copy of one database (MariaDB, PostgreSQL): with batches of 2 rows, rows that
create courses in a category another batch created just before, update or claim what it wrote, or name a course twice in
one batch, come out exactly as in turn: same tables (sortorders, course counts, contexts, sections, methods, log), same
report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text

from tests.conftest import Server
from tests.support.operation_files import report_rows, run_file
from tests.support.overlap_runs import serial_and_overlapped
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.overlap import OverlappedWrites

TIMES = {"timecreated", "timemodified", "cacherev", "added"}
TABLES = ("course", "course_categories", "context", "course_sections", "course_format_options", "enrol", "forum")
LOGGED = "eventname, component, action, target, objecttable, objectid, contextid, courseid, other"

COURSES = (
    "shortname;fullname;idnumber;category;startdate\n"
    "C1;One;I1;Top/New;2026-09-01\n"  # batch 1: two levels of new categories
    "C2;Two;I2;Top/New/Deep;2026-09-01\n"
    "C1;One again;;Top/New;2026-09-01\n"  # batch 2: batch 1's course, updated
    "C3;Three;I3;top/new;2026-09-01\n"  # batch 1's category: not a new one
    "C4;Four;I3;Top/New;2026-09-01\n"  # batch 3: batch 2's idnumber: fails
    "C5;Five;I5;Top/New/Deep;2026-09-01\n"  # batch 2 left Top/New/Deep's sortorders
    "C3;Three b;;Other;2026-09-01\n"  # batch 4: batch 2's course moved to a new category ...
    "C3;Three c;I3b;;2026-09-01\n"  # ... and named again in the batch: the next round
    "C6;Six;I3;Other;2026-09-01\n"  # batch 5: the idnumber batch 4 freed
    "C7;Seven;I7;Other/Sub;2026-09-01\n"
)


async def state(gateway: MoodleGateway) -> dict[str, Any]:
    """The course tables (without times) and the log events."""
    schema = gateway.schema
    found: dict[str, Any] = {}
    async with gateway.reading() as conn:
        for name in TABLES:
            table: Table = getattr(schema, name)
            rows = [dict(r._mapping) for r in await conn.execute(select(table).order_by(table.c.id))]
            found[name] = [{k: v for k, v in row.items() if k not in TIMES} for row in rows]
        logged = await conn.execute(text(f"SELECT {LOGGED} FROM mdl_logstore_standard_log ORDER BY id"))
        found["log"] = [tuple(r) for r in logged]
    return found


async def test_overlapped_course_batches_give_the_serial_result(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
) -> None:
    def configure(config: Config) -> None:
        config.set("operations.courses.forceupdate", True)

    async def run(config: Config, gateway: MoodleGateway) -> tuple[Any, ...]:
        return report_rows(await run_file(config, gateway, "courses", COURSES)), await state(gateway)

    results = await serial_and_overlapped(db_server, project_db_url, tmp_path, monkeypatch, run, configure)
    serial, overlapped = results["0"], results["1"]
    assert overlapped[0] == serial[0]
    for name, rows in serial[1].items():
        assert overlapped[1][name] == rows, name
    said = [(o["line"], o["outcome"]) for o in serial[0] if not o.get("part")]
    assert [o for _, o in said].count("created") == 6, said
    assert ("6", "failed") in said, said
    assert ("9", "updated") in said, said
    assert any("Top/New (new category)" in o["message"] for o in serial[0]), serial[0]
    assert len(replans) == 1, "the run overlaps its writes"
    assert replans[0].replanned > 0
