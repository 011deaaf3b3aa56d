"""`benchmarks.peers`' files, read by both tools, and its command line (the benchmark itself is not run here).

The files must hold only columns Moodle 4.5's upload tools accept (the lists in benchmarks/peers_files.py, held to
the Moodle source beside the checkout) and read as toolsync's operations expect them (a dry run on the real dump).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import update

from benchmarks.generate import course_shortname
from benchmarks.peers import CASES, build_parser
from benchmarks.peers_files import (
    MOODLE_COURSE_COLUMNS,
    MOODLE_USER_COLUMNS,
    header_of,
    moodle_accepts_users_header,
    write_courses,
    write_enrolling_users,
    write_new_users,
)
from tests.support.course_factories import add_enrolment_courses
from tests.support.moodle_site import moodle_code_tree
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

ROWS = 6


def quoted_names(php: str) -> set[str]:
    return set(re.findall(r"'(\w+)'", php))


def test_the_column_lists_are_moodles_own() -> None:
    """Every name the lists give is in the Moodle source's own list of it (a list made up here would prove nothing)."""
    tool = moodle_code_tree() / "admin" / "tool"
    process = (tool / "uploaduser" / "classes" / "process.php").read_text()
    standard = process.split("function find_standard_fields", 1)[1].split("}", 1)[0]
    name_fields = (moodle_code_tree() / "user" / "classes" / "fields.php").read_text()
    names = name_fields.split("function get_name_fields", 1)[1].split("}", 1)[0]
    assert quoted_names(standard) | quoted_names(names) >= MOODLE_USER_COLUMNS
    course = (tool / "uploadcourse" / "classes" / "course.php").read_text()
    valid = course.split("$validfields = array(", 1)[1].split(");", 1)[0]
    helper = (tool / "uploadcourse" / "classes" / "helper.php").read_text()
    resolve = helper.split("function resolve_category(", 1)[1].split("\n    }", 1)[0]
    assert quoted_names(valid) | quoted_names(resolve) >= MOODLE_COURSE_COLUMNS
    numbered = (tool / "uploaduser" / "locallib.php").read_text().split("$acceptedfields = [", 1)[1].split("]", 1)[0]
    assert {"course", "role"} <= quoted_names(numbered)


def test_every_file_has_a_header_moodles_tool_accepts(tmp_path: Path) -> None:
    users = write_new_users(tmp_path / "users.csv", ROWS, passwords=False, seed=1)
    passwords = write_new_users(tmp_path / "passwords.csv", ROWS, passwords=True, seed=1)
    enrolling = write_enrolling_users(tmp_path / "enrolling.csv", ROWS, 2, seed=1)
    courses = write_courses(tmp_path / "courses.csv", ROWS)
    for generated in (users, passwords, enrolling):
        header = header_of(generated.path)
        assert moodle_accepts_users_header(header), header
        assert "username" in header
    assert "password" in header_of(passwords.path)
    assert "password" not in header_of(users.path)
    assert header_of(enrolling.path)[-2:] == ["course1", "role1"]
    assert set(header_of(courses.path)) <= MOODLE_COURSE_COLUMNS
    assert not moodle_accepts_users_header(["username", "no_such_column"])
    for generated in (users, passwords, enrolling, courses):
        lines = generated.path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == ROWS + 1 == generated.lines + 1
        assert {line.count(";") for line in lines} == {len(header_of(generated.path)) - 1}


async def test_toolsync_reads_every_file_as_the_benchmark_configures_it(
    dump_site: tuple[Config, MoodleGateway], tmp_path: Path
) -> None:
    """A dry run of each file, with each case's settings, on the real dump: every row goes through, none fails."""
    config, gateway = dump_site
    made = await add_enrolment_courses(gateway, 2)
    async with gateway.transaction() as conn:
        for number, course in enumerate(made):
            table = gateway.schema.course
            await conn.execute(update(table).where(table.c.id == course.id).values(shortname=course_shortname(number)))
    files = {
        "users": write_new_users(tmp_path / "users.csv", ROWS, passwords=False, seed=1),
        "passwords": write_new_users(tmp_path / "passwords.csv", ROWS, passwords=True, seed=1),
        "courses": write_courses(tmp_path / "courses.csv", ROWS, first=100),
        "enrolments": write_enrolling_users(tmp_path / "enrolling.csv", ROWS, 2, seed=1),
    }
    assert set(files) == set(CASES)
    for name, generated in files.items():
        case = CASES[name]
        for setting, value in case.settings.items():
            config.set(f"operations.{case.operation}.{setting}", value)
        result = await run_operation(config, gateway, case.operation, generated.path, dry_run=True)
        assert result.rows == ROWS, name
        assert result.failed_details == 0, (name, result.report_path)
        assert result.counts == {"created": ROWS}, (name, result.counts)  # the enrolments' users are new here
        if name == "enrolments":  # each row's course1 is a part of its own in the report
            assert result.table_path is not None
            parts = pl.read_csv(result.table_path, infer_schema=False).filter(pl.col("part").is_not_null())
            assert parts.height == ROWS, parts


def test_the_command_line_takes_the_sizes_and_cases() -> None:
    args = build_parser().parse_args(
        ["--only", "users", "--only", "courses", "--users", "50", "--courses", "7", "--repeat", "3", "--keep"]
    )
    assert (args.only, args.users, args.courses, args.repeat, args.keep) == (["users", "courses"], 50, 7, 3, True)
    defaults = build_parser().parse_args([])
    sizes = (defaults.users, defaults.password_users, defaults.courses, defaults.enrolments)
    assert sizes == (10_000, 1_000, 1_000, 10_000)
    assert defaults.only is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--only", "nothing"])
