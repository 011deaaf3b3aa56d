"""Planning a round of course file rows (engine/operations/courses.py): which create a course, which update one, and
why the others fail, read in bulk before anything is written.

Checked per row, in this order: an identifier matching several courses, the front page, an existing course with
`forceupdate` off (left alone), a shortname or idnumber another course holds or an earlier row of the round claims,
a new course without fullname or shortname, an unknown template, and the category (id, idnumber or path of names,
whose missing categories the plan lists for creation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import CoursesSettings
from toolsync_tui.engine.courses.site import CourseSite
from toolsync_tui.engine.courses.values import CourseRow
from toolsync_tui.engine.courses.writes import new_course_record
from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.categories import Category, CategoryIndex, split_path
from toolsync_tui.engine.moodle.contexts import SITE_COURSE
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup, answers_by_value
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import Outcome, OutcomeRow

FORCEUPDATE = "[operations.courses] forceupdate"


@dataclass
class Plan:
    """What a round of rows does: its outcomes, and what the writes need."""

    outcomes: list[OutcomeRow] = field(default_factory=list)
    creates: list[tuple[CourseRow, dict[str, Any], Category]] = field(default_factory=list)
    updates: list[tuple[CourseRow, dict[str, Any], dict[str, Any], Category | None]] = field(default_factory=list)
    new_paths: dict[str, list[str]] = field(default_factory=dict)  # path's key -> names, categories to create


class CoursePlanner:
    def __init__(
        self,
        gateway: MoodleGateway,
        options: CoursesSettings,
        site: CourseSite,
        categories: CategoryIndex,
        bridge: MoodleBridge | None,
    ) -> None:
        self.gateway = gateway
        self.key = TextMatch(gateway.kind).given_text  # a shortname or idnumber as the site's lookups compare it
        self.options = options
        self.identifier = options.identifier
        self.site = site
        self.categories = categories
        self.bridge = bridge

    async def plan(self, conn: AsyncConnection, rows: list[CourseRow], now: int) -> Plan:
        """The plan of a round of rows, no two of which name the same course."""
        plan = Plan()
        existing = answers_by_value(await self._lookup(self.identifier).resolve(conn, pl.Series([r.key for r in rows])))
        taken = await self._taken(conn, rows)
        templates = await self._template_courses(conn, rows)
        claimed: dict[tuple[str, str], int] = {}  # (column, value's key) -> the line claiming it in this round
        for row in rows:
            self._plan_row(row, existing.get(row.key), taken, claimed, templates, plan, now)
        return plan

    async def _taken(self, conn: AsyncConnection, rows: list[CourseRow]) -> dict[str, dict[str, dict[str, Any]]]:
        """column -> value's key -> the course holding it, for the shortnames and idnumbers the rows give."""
        taken: dict[str, dict[str, dict[str, Any]]] = {}
        for column in ("shortname", "idnumber"):
            values = [str(r.values[column]) for r in rows if r.values.get(column)]
            found = answers_by_value(await self._lookup(column).resolve(conn, pl.Series(values, dtype=pl.String)))
            taken[column] = {self.key(k): v for k, v in found.items() if v.get("id") is not None}
        return taken

    def _lookup(self, column: str) -> KeyLookup:
        course = self.gateway.schema.course
        columns = ["id", "shortname", "idnumber", "category", "fullname", "startdate", "enddate"]
        return KeyLookup(self.gateway, course, column, columns)

    async def _template_courses(self, conn: AsyncConnection, rows: list[CourseRow]) -> dict[str, int]:
        """Shortname's key -> id of the template courses the rows name (a .mbz file is not a course)."""
        names = [r.template for r in rows if r.template and not is_backup(r.template)]
        if not names:
            return {}
        found = answers_by_value(await self._lookup("shortname").resolve(conn, pl.Series(names)))
        return {self.key(k): int(v["id"]) for k, v in found.items() if v.get("id") is not None}

    def _plan_row(
        self,
        row: CourseRow,
        course: dict[str, Any] | None,
        taken: dict[str, dict[str, dict[str, Any]]],
        claimed: dict[tuple[str, str], int],
        templates: dict[str, int],
        plan: Plan,
        now: int,
    ) -> None:
        found = course if course is not None and course.get("id") is not None else None
        if found is not None and int(found.get("matches") or 0) <= 1 and not self.options.forceupdate:
            message = f"already exists; not updated ({FORCEUPDATE} is off)"
            return plan.outcomes.append(row_outcome(row, Outcome.UNCHANGED, "exists", message))
        problem = self._problem(row, found, taken, claimed, templates)
        category, why = (None, None) if problem else self._category(row, found is not None, plan)
        if problem or why:
            plan.outcomes.append(failed(row, problem or why))
        elif found is not None:
            dates = {**found, **row.values}
            if (why := _dates_problem(int(dates["startdate"] or 0), int(dates["enddate"] or 0))) is not None:
                return plan.outcomes.append(failed(row, why))
            plan.updates.append((row, found, dict(row.values), category))
        elif category is not None:
            record = new_course_record(row.values, category, self.site, now)
            if (why := _dates_problem(record["startdate"], record["enddate"])) is not None:
                return plan.outcomes.append(failed(row, why))
            plan.creates.append((row, record, category))

    def _problem(
        self,
        row: CourseRow,
        found: dict[str, Any] | None,
        taken: dict[str, dict[str, dict[str, Any]]],
        claimed: dict[tuple[str, str], int],
        templates: dict[str, int],
    ) -> str | None:
        """Why the row can neither create nor update a course (its category aside); None when it can."""
        own = int(found["id"]) if found is not None else None
        if found is not None and int(found.get("matches") or 0) > 1:
            return f"{found['matches']} courses have the {self.identifier} '{row.key}'"
        if own == SITE_COURSE:
            return "this is the site's front page, which the course file cannot change"
        for column in ("shortname", "idnumber"):
            value = str(row.values.get(column) or "")
            holder = taken[column].get(self.key(value)) if value else None
            if holder is not None and int(holder["id"]) != own:
                return f"{column} '{value}' is taken by course id {holder['id']} ('{holder['shortname']}')"
            if value and claimed.setdefault((column, self.key(value)), row.line) != row.line:
                return f"{column} '{value}' is claimed by line {claimed[(column, self.key(value))]} of this file"
        if own is None and not (row.values.get("fullname") and row.values.get("shortname")):
            return "a new course needs a fullname and a shortname"
        return self._template_problem(row, own is not None, templates)

    def _template_problem(self, row: CourseRow, exists: bool, templates: dict[str, int]) -> str | None:
        if not row.template or (exists and self.options.template_mode == "none"):
            return None
        if is_backup(row.template):
            path = Path(row.template)
            if self.bridge is not None and not path.is_absolute():
                path = self.bridge.moodle_dir / path
            if self.bridge is not None and not self.bridge.run_as and not path.is_file():
                return f"template: the backup file {path} does not exist"
            return None
        if self.key(row.template) not in templates:
            return f"template: no course with shortname '{row.template}' to copy content from"
        return None

    def _category(self, row: CourseRow, exists: bool, plan: Plan) -> tuple[Category | None, str | None]:
        """The row's category (None: an existing course stays where it is); or why there is none."""
        text = row.category
        if not text or (exists and self.options.protect_category):
            if exists:
                return None, None
            default = self.categories.details.get(self.site.default_category) or (
                self.categories.details[min(self.categories.details)] if self.categories.details else None
            )
            return (default, None) if default else (None, "the site has no category to put the course in")
        if self.options.category_identifier == "idnumber":
            found = self.categories.by_idnumber(text)
            return (self.categories.details[found], None) if found else (None, f"no category has the idnumber '{text}'")
        if text.isdigit():
            found = self.categories.by_id(text)
            return (self.categories.details[found], None) if found else (None, f"no category has the id {text}")
        names = split_path(text)
        if names is None:
            return None, f"category '{text}' is not a path of names like Top/Sub (an empty or too long name)"
        found = self.categories.by_names(names)
        if found:
            return self.categories.details[found], None
        plan.new_paths.setdefault("/".join(map(self.categories.name_key, names)), names)
        # A category to create: id 0 until then, its names path where the context path will be (see _placed).
        return Category(0, len(names), "", self.options.new_categories_visible, "/".join(names)), None

    def placed(self, category: Category) -> Category:
        """A category planned by path (id 0) as created since."""
        if category.id:
            return category
        found = self.categories.by_names(category.context_path.split("/"))
        assert found is not None
        return self.categories.details[found]


def _dates_problem(start: int, end: int) -> str | None:
    """course_validate_dates(): a course cannot end before it starts (an end of 0 is no end)."""
    return "the course would end (enddate) before it starts (startdate)" if end and end < start else None


def is_backup(template: str) -> bool:
    return ".mbz" in template.lower()


def row_outcome(row: CourseRow, outcome: Outcome, action: str, message: str) -> OutcomeRow:
    return (row.line, None, outcome.value, action, row.key, message)


def failed(row: CourseRow, why: str | None) -> OutcomeRow:
    return row_outcome(row, Outcome.FAILED, "check", why or "failed")
