"""The cells of a course file row, checked and typed (tool_sync-reference §2.1.4, with CONTRACT §3's fixes).

A bad value fails its row with the column, the value and what was expected (the original stored NULL and went on).
Empty cells are absent: a new course takes the site default, an existing one keeps its value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from toolsync_tui.engine.courses.site import CourseSite
from toolsync_tui.engine.parts.course_enrolments import DATE_EXPECTED, timestamp
from toolsync_tui.engine.rows import LINE, SHOWN_CHARS

TOPIC: Final = re.compile(r"topic([0-9]|[1-4][0-9]|5[0-2])")
TEACHER: Final = re.compile(r"teacher([1-9]\d*)_(account|role)")
LANG: Final = re.compile(r"[a-z]{2,3}(_[a-z0-9]+)*")
TRUE, FALSE = ("1", "yes", "true", "y"), ("0", "no", "false", "n")
SECTION_NAME_MAX: Final = 255


@dataclass(frozen=True)
class Rule:
    kind: str  # text, int, flag, date, choice
    high: int = 0  # int: the highest value; text: the most characters (0: no limit)
    low: int = 0


# File column -> rule. The course columns are written to the course row under the same name, except those listed
# in NOT_COURSE_COLUMNS.
RULES: Final[dict[str, Rule]] = {
    "fullname": Rule("text", 254),
    "shortname": Rule("text", 255),
    "idnumber": Rule("text", 100),
    "summary": Rule("text"),
    "format": Rule("choice"),
    "showgrades": Rule("flag"),
    "newsitems": Rule("int", 10),
    "startdate": Rule("date"),
    "enddate": Rule("date"),
    "marker": Rule("int", 52),
    "maxbytes": Rule("int", 2**62),
    "legacyfiles": Rule("int", 2),
    "showreports": Rule("flag"),
    "visible": Rule("flag"),
    "visibleold": Rule("flag"),
    "coursedisplay": Rule("int", 1),
    "groupmode": Rule("int", 2),
    "groupmodeforce": Rule("flag"),
    "defaultgroupingid": Rule("int", 2**62),
    "enablecompletion": Rule("flag"),
    "showactivitydates": Rule("flag"),
    "lang": Rule("text", 30),
    "theme": Rule("choice"),
    "timecreated": Rule("date"),
    "timemodified": Rule("date"),
    "sortorder": Rule("int", 4294967295),
    "self": Rule("flag"),
    "guest": Rule("flag"),
    "template": Rule("text"),
    "category": Rule("text"),
}
# Accepted for the original's files, but not written as given: Moodle places courses itself (newest first), keeps
# visibleold = visible and sets timemodified; coursedisplay is a format option; the rest have their own handling.
NOT_COURSE_COLUMNS: Final = frozenset(
    {"sortorder", "visibleold", "timemodified", "coursedisplay", "self", "guest", "template", "category"}
)
OPTIONAL: Final = tuple(name for name in RULES if name not in ("fullname", "shortname"))
PATTERNS: Final = (
    (TOPIC.pattern, "topicN"),
    (TEACHER.pattern, "teacherN_account, teacherN_role"),
)


@dataclass
class CourseRow:
    line: int
    key: str  # the identifier's value
    values: dict[str, Any] = field(default_factory=dict)  # course column -> typed value, for non-empty cells
    category: str = ""
    template: str = ""
    coursedisplay: int | None = None
    enrol_status: dict[str, int] = field(default_factory=dict)  # guest/self -> the status the file asks for
    topics: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # section -> name, summary (None: keep)
    teachers: list[tuple[str, str, str]] = field(default_factory=list)  # part, account, role
    problem: str | None = None


def parse_rows(rows: pl.DataFrame, identifier: str, site: CourseSite) -> list[CourseRow]:
    """One CourseRow per row of a batch, with `problem` set on the first bad cell."""
    columns = [c for c in rows.columns if c != LINE and not c.startswith("__")]
    dates = [c for c in columns if c in RULES and RULES[c].kind == "date"]
    stamps = rows.select(
        pl.col(LINE),
        *(
            timestamp(pl.col(c).fill_null("").str.strip_chars().str.strip_prefix("@"), site.timezone).alias(c)
            for c in dates
        ),
    )
    parsed = []
    for row, stamp in zip(rows.iter_rows(named=True), stamps.iter_rows(named=True), strict=True):
        parsed.append(_parse(row, stamp, columns, identifier, site))
    return parsed


def _parse(
    row: dict[str, Any], stamps: dict[str, Any], columns: Sequence[str], identifier: str, site: CourseSite
) -> CourseRow:
    cells = {c: str(row[c] or "").strip() for c in columns}
    parsed = CourseRow(int(row[LINE]), cells.get(identifier, ""))
    teachers: dict[int, dict[str, str]] = {}
    for column in columns:
        text = cells[column]
        if topic := TOPIC.fullmatch(column):
            if text:
                name, _, summary = text.partition("|")
                if len(name.strip()) > SECTION_NAME_MAX:
                    return _bad(parsed, column, text, f"a section name of at most {SECTION_NAME_MAX} characters")
                parsed.topics[int(topic.group(1))] = (name.strip(), summary.strip() if "|" in text else None)
            continue
        if teacher := TEACHER.fullmatch(column):
            teachers.setdefault(int(teacher.group(1)), {})[teacher.group(2)] = text
            continue
        if not text:
            continue
        value = _value(column, text, stamps.get(column), site)
        if isinstance(value, Problem):
            return _bad(parsed, column, text, value.expected)
        if column == "category":
            parsed.category = text
        elif column == "template":
            parsed.template = text
        elif column == "coursedisplay":
            parsed.coursedisplay = int(value)
        elif column in ("self", "guest"):
            parsed.enrol_status[column] = 0 if value else 1
        elif column not in NOT_COURSE_COLUMNS:
            parsed.values[column] = value
    for number, cells_of in sorted(teachers.items()):
        if cells_of.get("account"):
            parsed.teachers.append((f"teacher{number}", cells_of["account"], cells_of.get("role", "")))
    if not parsed.key:
        return _bad(parsed, identifier, "", f"the course's {identifier}, which identifies it")
    return parsed


@dataclass(frozen=True)
class Problem:
    expected: str


def _value(column: str, text: str, stamp: Any, site: CourseSite) -> Any:
    rule = RULES[column]
    if rule.kind == "text":
        if rule.high and len(text) > rule.high:
            return Problem(f"at most {rule.high} characters ({len(text)} given)")
        if column == "lang" and not LANG.fullmatch(text):
            return Problem("a language code such as en, fr or pt_br")
        return text
    if rule.kind == "flag":
        lowered = text.lower()
        return Problem("0 or 1") if lowered not in TRUE + FALSE else int(lowered in TRUE)
    if rule.kind == "int":
        if not text.isdigit() or not rule.low <= int(text) <= rule.high:
            return Problem(f"a whole number from {rule.low} to {rule.high}")
        return int(text)
    if rule.kind == "date":
        return Problem(DATE_EXPECTED) if stamp is None else int(stamp)
    choices = site.formats if column == "format" else site.themes
    if text.lower() not in choices:
        return Problem(f"one of the site's installed {column}s: {', '.join(sorted(choices))}")
    return text.lower()


def _bad(parsed: CourseRow, column: str, text: str, expected: str) -> CourseRow:
    shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    parsed.problem = (
        f"column {column}: '{shown}': expected {expected}" if text else f"column {column} is empty: give {expected}"
    )
    return parsed
