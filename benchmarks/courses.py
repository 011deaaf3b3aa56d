"""Course benchmark data: a course file creating courses in new categories three levels deep, and the counts a run
must leave.

Course k goes to leaf category k % leaves; the leaves are `Faculty f/Department d/Programme p`, so that every level
is created by the file. Every row reports `created`, action `create`.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from benchmarks.enrolments import write_lines
from benchmarks.generate import Expected, GeneratedFile

COURSES_HEADER = ("shortname", "fullname", "idnumber", "category", "summary", "startdate")
SHORTNAME_PREFIX = "BENCH-"


def category_paths(categories: int) -> list[str]:
    """Paths of `categories` categories in all, 3 levels: a few faculties, departments under them, leaves below."""
    faculties = max(1, round(categories / 40))
    departments = max(faculties, round(categories / 8))
    leaves = categories - faculties - departments
    if leaves < departments:
        raise ValueError(f"{categories} categories are too few for three levels")
    return [
        f"Faculty {leaf % departments % faculties:02d}/Department {leaf % departments:03d}/Programme {leaf:04d}"
        for leaf in range(leaves)
    ]


def write_courses_file(path: Path, courses: int, categories: int) -> GeneratedFile:
    clock = time.monotonic()
    leaves = category_paths(categories)
    lines = [
        f"{SHORTNAME_PREFIX}{k:06d};Benchmark course {k};BIDN-{k:06d};{leaves[k % len(leaves)]};"
        f"Summary of course {k};2026-09-01\n"
        for k in range(courses)
    ]
    write_lines(path, COURSES_HEADER, lines)
    expected = Expected(courses, Counter({"created": courses}), Counter({"create": courses}))
    return GeneratedFile(path, courses, path.stat().st_size, time.monotonic() - clock, expected)


def course_counts_sql(prefix: str) -> str:
    """One row: the benchmark's courses, their contexts, sections, enrol methods, and the categories made."""
    courses = f"SELECT id FROM {prefix}course WHERE shortname LIKE '{SHORTNAME_PREFIX}%'"
    return (
        f"SELECT (SELECT COUNT(*) FROM {prefix}course WHERE shortname LIKE '{SHORTNAME_PREFIX}%'), "
        f"(SELECT COUNT(*) FROM {prefix}context WHERE contextlevel = 50 AND instanceid IN ({courses})), "
        f"(SELECT COUNT(*) FROM {prefix}course_sections WHERE course IN ({courses})), "
        f"(SELECT COUNT(*) FROM {prefix}enrol WHERE courseid IN ({courses})), "
        f"(SELECT COUNT(*) FROM {prefix}course_categories WHERE name LIKE 'Faculty %' OR name LIKE 'Department %' "
        "OR name LIKE 'Programme %'), "
        f"(SELECT COUNT(*) FROM {prefix}course_categories cc WHERE coursecount <> "
        f"(SELECT COUNT(*) FROM {prefix}course c WHERE c.category = cc.id))"
    )
