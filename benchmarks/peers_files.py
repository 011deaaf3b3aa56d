"""The files `benchmarks.peers` gives both Moodle's own upload tools and toolsync: one file per case, read by both.

Every file is ';'-separated UTF-8 with a header, in columns both tools know (the users files of
`benchmarks.generate.write_users_file`, users 0..N-1 in a shuffled order; courses by `generate.course_shortname(i)`
...). The column names Moodle 4.5's tools accept are listed here (tool_uploaduser's standard fields and its
courseN/roleN columns, tool_uploadcourse's valid fields) so that a test can hold the generators to them.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path

from benchmarks.enrolments import STUDENT_ROLE, write_lines
from benchmarks.generate import (
    Expected,
    GeneratedFile,
    course_fullname,
    course_idnumber,
    course_shortname,
    user_row,
    write_users_file,
)

# tool_uploaduser 4.5: its standard fields (classes/process.php, find_standard_fields(), with the name fields) and
# its numbered columns (locallib.php, uu_validate_user_upload_columns()).
MOODLE_USER_COLUMNS = frozenset(
    {
        "id", "username", "email", "emailstop", "city", "country", "lang", "timezone", "mailformat", "maildisplay",
        "maildigest", "htmleditor", "autosubscribe", "institution", "department", "idnumber", "phone1", "phone2",
        "address", "description", "descriptionformat", "password", "auth", "oldusername", "suspended", "theme",
        "deleted", "mnethostid", "interests", "firstname", "lastname", "middlename", "firstnamephonetic",
        "lastnamephonetic", "alternatename",
    }
)  # fmt: skip
MOODLE_USER_NUMBERED_COLUMN = re.compile(
    r"(category|categoryrole|cohort|course|enrolperiod|enrolstatus|enroltimestart|group|role|sysrole|type)\d+"
)
# tool_uploadcourse 4.5: its course fields (classes/course.php, $validfields) and the category's other spellings
# (classes/helper.php, resolve_category()).
MOODLE_COURSE_COLUMNS = frozenset(
    {
        "fullname", "shortname", "idnumber", "category", "visible", "startdate", "enddate", "summary", "format",
        "theme", "lang", "newsitems", "showgrades", "showreports", "legacyfiles", "maxbytes", "groupmode",
        "groupmodeforce", "enablecompletion", "downloadcontent", "showactivitydates", "category_idnumber",
        "category_path",
    }
)  # fmt: skip
COURSES_HEADER = ("shortname", "fullname", "idnumber", "category", "summary", "startdate")
COURSE_START = "2026-09-01"


def moodle_accepts_users_header(header: list[str]) -> bool:
    return all(c in MOODLE_USER_COLUMNS or MOODLE_USER_NUMBERED_COLUMN.fullmatch(c) for c in header)


def header_of(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as data:
        return data.readline().rstrip("\n").split(";")


def write_new_users(path: Path, count: int, *, passwords: bool, seed: int) -> GeneratedFile:
    """Users 0..count-1, new to the site, with a password column (distinct 12-character passwords) or none."""
    return write_users_file(path, count, passwords=passwords, outcome="created", seed=seed)


def write_courses(path: Path, count: int, *, category: int = 1, first: int = 0) -> GeneratedFile:
    """Courses first..first+count-1 (`generate.course_shortname(i)` ...) in the existing category `category` (by id:
    Moodle's upload tool never creates categories)."""
    clock = time.monotonic()
    lines = (
        f"{course_shortname(i)};{course_fullname(i)};{course_idnumber(i)};{category};"
        f"Summary of {course_shortname(i)};{COURSE_START}\n"
        for i in range(first, first + count)
    )
    write_lines(path, COURSES_HEADER, lines)
    expected = Expected(count, Counter({"created": count}), Counter({"create": count}))
    return GeneratedFile(path, count, path.stat().st_size, time.monotonic() - clock, expected)


def enrolment_course(user: int, courses: int) -> int:
    """The course (0..courses-1) user `user` is enrolled into: spread evenly."""
    return (user * 7) % courses


def write_enrolling_users(path: Path, count: int, courses: int, *, seed: int) -> GeneratedFile:
    """Users 0..count-1 as `generate.user_row` (the site holds them already, as a create leaves them), each with a
    `course1;role1` pair: one student enrolment per row into course `enrolment_course(i)` of 0..courses-1, through
    the users file's course columns. The users are unchanged; every row adds one enrolment."""
    clock = time.monotonic()
    order = list(range(count))
    random.Random(seed).shuffle(order)
    header = (*user_row(0), "course1", "role1")
    lines = (
        ";".join([*user_row(i).values(), course_shortname(enrolment_course(i, courses)), STUDENT_ROLE]) + "\n"
        for i in order
    )
    write_lines(path, header, lines)
    expected = Expected(count, Counter({"unchanged": count}), Counter())
    return GeneratedFile(path, count, path.stat().st_size, time.monotonic() - clock, expected)
