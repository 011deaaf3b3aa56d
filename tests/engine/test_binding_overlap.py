"""The cohort-course and metacourse binding files with overlapped writes (run/overlap.py) against the same files run
batch after batch (TOOLSYNC_OVERLAP=0), each on its own copy of one database (MariaDB, PostgreSQL): with batches of 2
rows, rows on the methods (and groups) of a course another batch changed just before come out exactly as in turn: same
enrol and groups tables (sortorders, group names), same log events, same report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text

from tests.conftest import Server
from tests.support.course_factories import add_cohort, add_enrolment_courses
from tests.support.factories import unique
from tests.support.operation_files import report_rows, run_file
from tests.support.overlap_runs import serial_and_overlapped
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.overlap import OverlappedWrites

TIMES = {"timecreated", "timemodified"}
TABLES = ("enrol", "groups")
LOGGED = "eventname, component, action, target, objecttable, objectid, contextid, courseid, other"


async def state(gateway: MoodleGateway, courses: list[int]) -> dict[str, Any]:
    schema = gateway.schema
    found: dict[str, Any] = {}
    async with gateway.reading() as conn:
        for name in TABLES:
            table: Table = getattr(schema, name)
            query = select(table).where(table.c.courseid.in_(courses)).order_by(table.c.id)
            found[name] = [{k: v for k, v in r._mapping.items() if k not in TIMES} for r in await conn.execute(query)]
        logged = await conn.execute(text(f"SELECT {LOGGED} FROM mdl_logstore_standard_log ORDER BY id"))
        found["log"] = [tuple(r) for r in logged]
    return found


async def test_overlapped_binding_batches_give_the_serial_result(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replans: list[OverlappedWrites],
) -> None:
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    try:
        a, b, c = await add_enrolment_courses(gateway, 3, idnumbers=[unique("CA"), unique("CB"), unique("CC")])
        h1, h2, h3 = unique("H1"), unique("H2"), unique("H3")
        for code in (h1, h2, h3):  # one name: the groups makegroup creates take 'Year cohort', then 'Year cohort (2)'
            await add_cohort(gateway, "Year", idnumber=code)
    finally:
        await gateway.close()
    ca, cb, cc = a.idnumber, b.idnumber, c.idnumber
    bindings = (
        "cohort;course;cmd;makegroup\n"
        f"{h1};{ca};add;1\n"  # batch 1: a method and its group
        f"{h2};{ca};add;\n"
        f"{h1};{ca};add;\n"  # batch 2: batch 1's method: unchanged
        f"{h3};{ca};add;1\n"  # the group name batch 1 took: 'Year cohort (2)'
        f"{h2};{ca};fulldel;\n"  # batch 3: batch 1's method, deleted
        f"{h1};{cb};add;\n"
        f"{h2};{ca};restore;\n"  # batch 4: deleted by batch 3: fails
        f"{h2};{ca};add;\n"  # created again, last in the course's sortorder
    )
    metas = (
        "master;meta;cmd\n"
        f"{ca};{cb};add\n"  # batch 1
        f"{ca};{cc};add\n"
        f"{ca};{cb};del\n"  # batch 2: batch 1's link
        f"{cb};{cc};add\n"
        f"{ca};{cb};add\n"  # batch 3: again, after batch 2's deletion
        f"{ca};{cc};add\n"  # batch 1's: unchanged
    )

    def configure(config: Config) -> None:
        config.set("operations.cohortscourses.cohort_identifier", "idnumber")
        config.set("operations.cohortscourses.course_identifier", "idnumber")
        config.set("operations.metacourses.identifier", "idnumber")

    async def run(config: Config, gateway: MoodleGateway) -> tuple[Any, ...]:
        runs = [
            await run_file(config, gateway, "cohortscourses", bindings),
            await run_file(config, gateway, "metacourses", metas),
        ]
        return [report_rows(r) for r in runs], await state(gateway, [a.id, b.id, c.id])

    results = await serial_and_overlapped(db_server, project_db_url, tmp_path, monkeypatch, run, configure)
    serial, overlapped = results["0"], results["1"]
    assert overlapped[0] == serial[0]
    for name, rows in serial[1].items():
        assert overlapped[1][name] == rows, name
    said = [(o["outcome"], o["action"]) for run in serial[0] for o in run]
    wanted = {("created", "add"), ("unchanged", "none"), ("deleted", "remove"), ("failed", "check")}
    assert wanted <= set(said), said
    assert sorted(g["name"] for g in serial[1]["groups"]) == ["Year cohort", "Year cohort (2)"]
    assert len(replans) == 2, "each run overlaps its writes"
    assert all(r.replanned > 0 for r in replans), [r.replanned for r in replans]
