"""Courses chosen on the command line: by category (with or without its subcategories), by a name pattern, or both.

One read of the category tree and one of the courses (a statement per thousand categories); the pattern is matched
here, with shell glob rules (`*`, `?`, `[...]`), on the shortname, fullname or idnumber, case-insensitively. The
site's front page (category 0) is never selected.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from toolsync_tui.engine.moodle.categories import CategoryIndex
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks


class SelectionProblem(Exception):
    """The selection cannot be made as given (nothing selected, a bad pattern)."""


@dataclass(frozen=True)
class CourseSelection:
    categories: Sequence[str] = ()  # ids, idnumbers or paths of names; several add up
    recursive: bool = False  # the categories' subcategories too
    pattern: str | None = None  # shell glob on shortname, fullname or idnumber
    every_course: bool = False  # no filter at all: must be asked for explicitly

    def check(self) -> None:
        filtered = bool(self.categories) or self.pattern is not None
        if self.every_course and filtered:
            raise SelectionProblem("--all selects every course: leave out --category and --pattern")
        if not self.every_course and not filtered:
            raise SelectionProblem(
                "no selection: give --category and/or --pattern, or --all to select every course of the site"
            )
        if self.recursive and not self.categories:
            raise SelectionProblem("--recursive goes with --category")
        if self.pattern is not None and not self.pattern.strip():
            raise SelectionProblem("--pattern is empty")

    def matcher(self) -> re.Pattern[str] | None:
        return None if self.pattern is None else re.compile(fnmatch.translate(self.pattern.strip()), re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SelectedCourse:
    id: int
    shortname: str
    fullname: str
    idnumber: str
    category: int

    def identifier(self, field: str) -> str:
        """The value that names this course for an identifier setting (id, idnumber or shortname); may be empty."""
        return str(self.id) if field == "id" else str(getattr(self, field)).strip()


async def select_courses(gateway: MoodleGateway, selection: CourseSelection) -> list[SelectedCourse]:
    """The selected courses, by id. An unknown or ambiguous category raises CategoryProblem, naming it."""
    selection.check()
    course = gateway.schema.course
    query = select(course.c.id, course.c.shortname, course.c.fullname, course.c.idnumber, course.c.category).where(
        course.c.category != 0
    )
    rows: list[Any] = []
    async with gateway.reading() as conn:
        if not selection.categories:
            rows.extend(await conn.execute(query))
        else:
            tree = await CategoryIndex.read(gateway, conn)
            wanted: set[int] = set()
            for text in selection.categories:
                category = tree.resolve(text)
                wanted.add(category)
                if selection.recursive:
                    wanted.update(tree.below(category))
            for part in chunks(sorted(wanted)):
                rows.extend(await conn.execute(query.where(course.c.category.in_(part))))
    courses = [SelectedCourse(int(i), str(s), str(f), str(n or ""), int(c)) for i, s, f, n, c in rows]
    matcher = selection.matcher()
    if matcher is not None:
        courses = [c for c in courses if any(matcher.match(v) for v in (c.shortname, c.fullname, c.idnumber))]
    return sorted(courses, key=lambda c: c.id)
