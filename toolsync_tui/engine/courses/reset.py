"""Course reset file (resetcourses.csv, tool_sync-reference §2.1.3): a header with the course column named after
`[operations.resetcourses] identifier` (shortname, idnumber or id; the original always read shortname), the reset
columns (engine/reset_options.py), one course per row. Each course goes through Moodle's own reset_course_userdata()
on the bridge; its status lines (`component: item: OK`) are the row's message.

Every cell is checked first (a bad value, an unknown role or module fails the row and resets nothing); unknown and
front-page courses fail their row; a course named again in the run fails (it is in the tryback, to reset it again);
a dry run shows the options each course would be reset with and runs no PHP (it needs no bridge: bridged.py; the
`modules` cells are then checked against the site's modules table, as the bridge's `info` lists them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import polars as pl
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.courses.bridged import BridgedCourses, Course
from toolsync_tui.engine.courses.reset_options import OPTIONAL, REQUIRED, ResetSite, describe, row_reset
from toolsync_tui.engine.moodle.bridge.client import BridgeError, CourseReset
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, Outcome, OutcomeRow
from toolsync_tui.engine.run.command_file import ColumnSpec, FileProblem

IDENTIFIERS = ("shortname", "idnumber", "id")
MESSAGE_CHARS = 400  # the status lines of a reset are cut to this many characters in its message


class ResetCourses(BridgedCourses):
    name = "resetcourses"
    title = "Reset courses"
    # The course column depends on the identifier setting: prepare() checks that the file has that one.
    columns = ColumnSpec(required=REQUIRED, optional=(*IDENTIFIERS, *OPTIONAL))
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"reset"})
    doing = "resetting courses"
    done_verb = "reset"
    verb = "resets"

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        others = [c for c in IDENTIFIERS if c in columns and c != self.identifier]
        if self.identifier not in columns:
            named = f" (the file has {', '.join(others)})" if others else ""
            raise FileProblem(
                f"required column '{self.identifier}' missing{named}: courses are named by {self.identifier} "
                "([operations.resetcourses] identifier)"
            )
        if others:
            raise FileProblem(
                f"column '{others[0]}' is not used: courses are named by {self.identifier} "
                "([operations.resetcourses] identifier); remove the column or change the setting"
            )
        await super().prepare(conn, columns)
        role = self.schema.role
        key = TextMatch(self.gateway.kind).stored_text
        roles = {key(str(name)): int(i) for i, name in await conn.execute(select(role.c.id, role.c.shortname))}
        self.site = ResetSite(roles, frozenset(str(m) for m in await self._modules(conn)), key)
        self.logs_asked = False
        self.options: dict[int, dict[str, Any]] = {}  # line -> its reset options, for a row of the batch

    async def _modules(self, conn: AsyncConnection) -> list[Any]:
        """The installed activity modules a row's `modules` may name: the bridge's (those with their code on disk), else
        (a dry run without one) the modules table's."""
        if self.bridge is not None:
            return list(self.info.get("modules") or [])
        modules = self.schema.modules
        return list((await conn.execute(select(modules.c.name))).scalars())

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        outcomes, found = await self.find(conn, rows, self.identifier, dry_run)
        resets = []
        for course in found:
            options = self.options.pop(course.line)
            if options:
                resets.append((course, options))
            else:  # every cell empty or no: Moodle would only log a reset
                outcomes.append(self._row(course, Outcome.UNCHANGED, "none", f"{course.label}: the row resets nothing"))
        if dry_run:
            for course, options in resets:
                message = f"{course.label} would be reset through the Moodle bridge: {describe(options, self.site)}"
                outcomes.append(self._row(course, Outcome.UPDATED, "reset", message))
        else:
            answers = await self._reset(resets)
            for course, _ in resets:
                outcomes.append(self._outcome(course, answers[course.id]))
                if answers[course.id].error is not None:
                    self.release(course)
        return pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row").sort("line")

    def check(self, course: Course) -> str | None:
        wanted = row_reset(course.row, self.site)
        self.logs_asked |= wanted.logs
        if wanted.problems:
            return "; ".join(wanted.problems)
        self.options[course.line] = wanted.options
        return None

    async def _reset(self, resets: list[tuple[Course, dict[str, Any]]]) -> dict[int, CourseReset]:
        if not resets:
            return {}
        assert self.bridge is not None  # prepare() refuses a run without one
        self.sent = True
        try:
            return await self.bridge.reset_courses([(course.id, options) for course, options in resets])
        except BridgeError as exc:  # the courses answered before the failure were reset; the rest were not
            answered = {int(line["item"]): CourseReset.from_line(line) for line in exc.items}
            failed = CourseReset(f"not reset: the Moodle bridge failed: {exc}", ())
            return {course.id: answered.get(course.id, failed) for course, _ in resets}

    def _outcome(self, course: Course, reset: CourseReset) -> OutcomeRow:
        if reset.error is not None:
            return self._row(course, Outcome.FAILED, "reset", reset.error)
        statuses = "; ".join(reset.statuses) or "Moodle reported nothing to reset"
        if len(statuses) > MESSAGE_CHARS:
            statuses = statuses[:MESSAGE_CHARS] + "..."
        return self._row(course, Outcome.UPDATED, "reset", f"{course.label} reset: {statuses}")

    @staticmethod
    def _row(course: Course, outcome: Outcome, action: str, message: str) -> OutcomeRow:
        return (course.line, None, outcome.value, action, course.key, message)

    def again(self, line: int, key: str, what: str, earlier: int) -> OutcomeRow:
        # Failed, so that it is in the tryback: running that resets the course once more, with this row's options.
        message = (
            f"{what} is already named by line {earlier}: one reset per course and run (this row goes to the "
            "tryback, to be run afterwards)"
        )
        return (line, None, Outcome.FAILED.value, "check", key, message)

    async def finish(self, dry_run: bool) -> list[str]:
        notes = []
        if getattr(self, "logs_asked", False):
            notes.append("logs: Moodle 4.5 has no reset of course logs; the logs were kept")
        if self.sent:
            notes.append("courses are reset through the Moodle bridge by Moodle's own reset_course_userdata()")
        return [*notes, *self.dry_notes()]
