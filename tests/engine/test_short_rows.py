"""Rows with fewer values than the header (issue 19, defect 5): tool_sync's users, enrolments and groups readers map
the values they find onto the header, the missing trailing ones absent; toolsync reads those cells as empty (which
these files take as "not given") and the report says which lines. The course and cohort files stay strict, as the
original's are, and `files.short_rows = "fail"` makes the three strict too. A dry run reads them as the run does."""

from __future__ import annotations

import csv
import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.course_factories import add_enrolment_courses, add_users
from tests.support.factories import unique
from tests.support.operation_files import identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(site: Site) -> Site:
    """conftest's site with the course, user and group identifiers by id."""
    identifiers_by_id(site[0], "enrols", "course_identifier", "user_identifier")
    identifiers_by_id(site[0], "groups", "course_identifier", "group_identifier", "grouping_identifier")
    identifiers_by_id(site[0], "cohorts", "user_identifier")
    return site


def table(result: RunResult) -> list[tuple[str, str, str, str]]:
    """The report's own rows (no parts) as (line, outcome, action, message)."""
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        return [(r["line"], r["outcome"], r["action"], r["message"]) for r in rows if r["part"] == ""]


def heading(result: RunResult) -> str:
    """The report's `file:` line, which says how the file was read."""
    return next(line for line in report_of(result).splitlines() if line.startswith("file: "))


async def users_named(gateway: MoodleGateway, names: list[str]) -> dict[str, dict[str, Any]]:
    user = gateway.schema.user
    async with gateway.reading() as conn:
        found = await conn.execute(select(user).where(user.c.username.in_(names)))
        return {row.username: dict(row._mapping) for row in found}


async def test_users_file_short_rows_create_and_update_with_the_cells_they_have(site: Site) -> None:
    config, gateway = site
    old, new, full = unique("short"), unique("short"), unique("short")
    await run_file(config, gateway, "users", f"username;firstname;lastname;email;idnumber\n{old};Ann;Old;a@x.org;IDA\n")
    content = (
        "username;firstname;lastname;email;idnumber;city\n"
        f"{old};Ann;Renamed\n"  # the stored e-mail and idnumber stay: their cells are missing, not empty values
        f"{new};Bob;New;b@x.org\n"
        f"{full};Cy;Full;c@x.org;IDC;Lyon\n"
        f"{unique('long')};D;L;d@x.org;IDD;Paris;extra\n"
    )

    dry = await run_file(config, gateway, "users", content, dry_run=True)
    result = await run_file(config, gateway, "users", content)

    assert result.counts == dry.counts == {"updated": 1, "created": 2, "failed": 1}, report_of(result)
    note = (
        "lines 2 and 3 have fewer values than the header: their missing trailing cells were read as empty, as "
        "files.short_rows allows"
    )
    assert note in heading(result)
    assert note in heading(dry)
    too_many = "7 values found, 6 expected (a separator inside a value must be quoted)"
    assert table(result)[3][1:] == ("failed", "read", too_many)
    stored = await users_named(gateway, [old, new, full])
    assert (stored[old]["lastname"], stored[old]["email"], stored[old]["idnumber"]) == ("Renamed", "a@x.org", "IDA")
    assert (stored[new]["firstname"], stored[new]["email"], stored[new]["idnumber"]) == ("Bob", "b@x.org", "")
    assert stored[new]["city"] == stored[old]["city"]  # the site's default city, as for an absent column
    assert (stored[full]["idnumber"], stored[full]["city"]) == ("IDC", "Lyon")
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines()[1:] == [content.splitlines()[4]]


async def test_enrolments_file_short_rows_take_the_defaults_of_their_missing_cells(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    ann, bob = await add_users(gateway, 2)
    group = unique("G ")
    content = (
        "rolename;cid;uid;enrol;starttime;endtime;gcmd;g1\n"
        f"student;{course.id};{ann};manual\n"  # no dates (now, no end), no group command
        f"student;{course.id};{bob};manual;;1900000000;gaddcreate;{group}\n"
    )
    before = int(time.time())

    result = await run_file(config, gateway, "enrols", content)

    assert result.counts == {"created": 2}, report_of(result)
    assert "line 2 has fewer values than the header" in heading(result)
    found = {r["userid"]: r for r in await rows_of(gateway, gateway.schema.user_enrolments, userid=[ann, bob])}
    assert found[ann]["enrolid"] == found[bob]["enrolid"] == course.instance()
    assert found[ann]["timestart"] >= before - 1
    assert (found[ann]["timeend"], found[bob]["timeend"]) == (0, 1900000000)
    members = await rows_of(gateway, gateway.schema.groups_members, userid=[ann, bob])
    assert [m["userid"] for m in members] == [bob]


async def test_groups_file_short_rows_create_groups_with_the_cells_they_have(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    bare, named = unique("Bare "), unique("Named ")
    content = (
        "courseid;name;type;idnumber;selfgrouping;description\n"
        f"{course.id};{bare}\n"
        f"{course.id};{named};group;N1\n"
        f"{course.id}\n"  # no name: the groups file's own reason, not a count of values
    )

    result = await run_file(config, gateway, "groups", content)

    assert result.counts == {"created": 2, "failed": 1}, report_of(result)
    assert table(result)[2][1:] == ("failed", "check", "empty name: a new group needs a name")
    assert "lines 2, 3 and 4 have fewer values than the header" in heading(result)
    groups = await rows_of(gateway, gateway.schema.groups, courseid=course.id)
    assert sorted((g["name"], g["idnumber"], g["description"]) for g in groups) == [
        (bare, "", None),
        (named, "N1", None),
    ]
    assert await rows_of(gateway, gateway.schema.groupings, courseid=course.id) == []


async def test_the_strict_setting_fails_short_rows_of_the_tolerant_files(site: Site) -> None:
    config, gateway = site
    config.set("files.short_rows", "fail")
    [course] = await add_enrolment_courses(gateway)
    name = unique("short")

    users = await run_file(config, gateway, "users", f"username;firstname;lastname;email\n{name};Ann;A\n")
    groups = await run_file(config, gateway, "groups", f"courseid;name;idnumber\n{course.id};{unique('G ')}\n")

    for result, found, expected in ((users, 3, 4), (groups, 2, 3)):
        assert result.counts == {"failed": 1}
        assert table(result) == [
            ("2", "failed", "read", f'{found} values found, {expected} expected (files.short_rows is "fail")')
        ]
        assert "fewer values than the header" not in heading(result)
    assert await users_named(gateway, [name]) == {}


async def test_course_and_cohort_files_stay_strict(site: Site) -> None:
    config, gateway = site
    courses = await run_file(config, gateway, "courses", "shortname;fullname;category\nSHORT1;Short\n")
    cohorts = await run_file(config, gateway, "cohorts", f"cmd;cidnumber;cname;userid\nadd;{unique('C')}\n")

    assert table(courses) == [("2", "failed", "read", "2 values found, 3 expected")]
    assert table(cohorts) == [("2", "failed", "read", "2 values found, 4 expected")]
    assert await rows_of(gateway, gateway.schema.course, shortname="SHORT1") == []
