"""What the course delete and course reset files share: one course per row, named by the operation's `identifier`
setting and resolved in bulk, then handed to Moodle's own PHP through the bridge (deleting or resetting a course
cascades through every plugin's tables). Without a working bridge a run is refused before any row; a dry run resolves
the courses all the same and says what Moodle would be asked to do (it runs no PHP either way), its report noting that a
real run needs the bridge.

Rows are taken a few at a time (each course costs Moodle seconds), and a course named again by a later row of the
run is not handed to Moodle twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import NO_BRIDGE, BridgeLink
from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup, answers_by_value, lookup_problem
from toolsync_tui.engine.rows import LINE, Outcome, OutcomeRow
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.operation import Operation


@dataclass(frozen=True)
class Course:
    """A row's course, found."""

    line: int
    key: str  # the file's value
    id: int
    shortname: str
    row: dict[str, Any]

    @property
    def label(self) -> str:
        return f"course '{self.shortname}' (id {self.id})"


def bridge_missing(link: BridgeLink, doing: str) -> str | None:
    """Why `doing` cannot go through the run's bridge (none configured, or not working), or None when it can."""
    if link.problem is not None:
        return f"{doing} needs the Moodle bridge, which does not work: {link.problem}"
    if link.bridge is None:
        return (
            f"{doing} runs Moodle's own code through the Moodle bridge, and none is configured: set [bridge] "
            "moodle_dir to the site's directory (the one holding config.php)"
        )
    return None


def require_bridge(link: BridgeLink, doing: str) -> tuple[MoodleBridge, Mapping[str, Any]]:
    """The run's bridge and its site's `info`, checked to serve toolsync's database; FileProblem otherwise."""
    missing = bridge_missing(link, doing)
    if missing is not None or link.bridge is None:
        raise FileProblem(f"{missing}; nothing was done")
    return link.bridge, link.info


class BridgedCourses(Operation):
    """Rows naming a course in `column`; subclasses hand the found courses to the bridge."""

    batch_limit: ClassVar[int | None] = 50
    uses_bridge = True
    doing: ClassVar[str]  # "deleting courses", for the refusal without a bridge
    done_verb: ClassVar[str]  # "deleted", for messages
    verb: ClassVar[str]  # "deletes"

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.identifier: str = getattr(self.settings, "identifier", "shortname")  # both operations' settings have one
        self.link = NO_BRIDGE
        self.info: Mapping[str, Any] = {}
        self.taken: dict[int, int] = {}  # course id -> the line of this pass that deletes or resets it
        self.taken_keys: dict[str, int] = {}  # the same, by the file's value as the site's lookup compares it
        self.writing: bool | None = None  # the pass under way: the safety pre-pass (dry) or the run
        self.sent = False  # courses went to the bridge (for the report's note)
        self.without_bridge: str | None = None  # a dry run without a working bridge: why a real run would stop
        self.courses = KeyLookup(gateway, self.schema.course, self.identifier, ["id", "category", "shortname"])

    def take_bridge(self, link: BridgeLink) -> None:
        self.link = link  # refused in prepare(), after the header's own problems

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        if self.dry_run:  # resolves and plans only: the bridge is not called, a real run needs it
            self.bridge, self.info = self.link.bridge, self.link.info
            self.without_bridge = bridge_missing(self.link, self.doing)
        else:
            self.bridge, self.info = require_bridge(self.link, self.doing)

    def dry_notes(self) -> list[str]:
        """The report's note of a dry run without a working bridge: what a real run would do."""
        if self.without_bridge is None:
            return []
        return [f"{self.without_bridge}: a real run stops before any row until it works; this dry run ran no PHP"]

    async def safety_base(self, conn: AsyncConnection) -> int:
        """The site's courses, its front page left out."""
        course = self.schema.course
        query = select(func.count()).select_from(course).where(course.c.category != 0)
        return int((await conn.execute(query)).scalar_one())

    async def find(
        self, conn: AsyncConnection, rows: pl.DataFrame, column: str, dry_run: bool
    ) -> tuple[list[OutcomeRow], list[Course]]:
        """The outcomes of rows naming no course this run may take, and the courses of the others (each once)."""
        if self.writing is not None and self.writing == dry_run:
            # The run after the safety pre-pass (which planned every row without writing): it starts afresh.
            self.taken.clear()
            self.taken_keys.clear()
        self.writing = not dry_run
        rows = rows.with_columns(pl.col(column).fill_null("").str.strip_chars())
        answers = answers_by_value(await self.courses.resolve(conn, rows[column]))
        outcomes: list[OutcomeRow] = []
        found: list[Course] = []
        for row in rows.iter_rows(named=True):
            line, value = int(row[LINE]), str(row[column])

            def fail(why: str, line: int = line, value: str = value) -> None:
                outcomes.append((line, None, Outcome.FAILED.value, "check", value, why))

            earlier = self.taken_keys.get(self.courses.match.given_text(value))
            answer = answers.get(value)
            if value == "":
                fail(f"empty course identifier ({self.identifier})")
            elif earlier is not None and (answer is None or answer.get("id") is None):
                outcomes.append(self.again(line, value, f"course '{value}'", earlier))
            elif (why := lookup_problem(answer, value, "course", "identifier", self.identifier)) is not None:
                fail(why)
            elif answer is not None and int(answer["category"] or 0) == 0:
                fail(f"course '{value}' is the site's front page, which cannot be {self.done_verb}")
            elif answer is not None:
                course = Course(line, value, int(answer["id"]), str(answer["shortname"]), row)
                if course.id in self.taken:
                    outcomes.append(self.again(line, value, course.label, self.taken[course.id]))
                elif (why := self.check(course)) is not None:
                    fail(why)
                else:
                    self.taken[course.id] = line
                    self.taken_keys[self.courses.match.given_text(value)] = line
                    found.append(course)
        return outcomes, found

    def check(self, course: Course) -> str | None:
        """Why the row cannot have its course (its other cells are wrong), or None."""
        return None

    def again(self, line: int, key: str, what: str, earlier: int) -> OutcomeRow:
        """The outcome of a row naming a course that an earlier row of the run takes."""
        message = f"{what} is named by line {earlier}, which {self.verb} it"
        return (line, None, Outcome.UNCHANGED.value, "none", key, message)

    def release(self, course: Course) -> None:
        """The course was not taken after all (its row failed): a later row may take it."""
        self.taken.pop(course.id, None)
        self.taken_keys.pop(self.courses.match.given_text(course.key), None)
