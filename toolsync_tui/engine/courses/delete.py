"""Course delete file (deletecourses.csv, tool_sync-reference §2.1.2): no header, one course per line, named by
`[operations.deletecourses] identifier`. Each course goes through Moodle's own delete_course() on the bridge (its
recycle bin, when the site enables it, keeps a backup), then one fix_course_sortorder() per batch.

Unknown, ambiguous and front-page courses fail their row (the original put the wrong line in its tryback); a course
named again is `unchanged`; a dry run resolves every line and runs no PHP (it needs no bridge: bridged.py).
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.courses.bridged import BridgedCourses, Course
from toolsync_tui.engine.moodle.bridge.client import BridgeError
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, Outcome
from toolsync_tui.engine.run.command_file import ColumnSpec


class DeleteCourses(BridgedCourses):
    name = "deletecourses"
    title = "Delete courses"
    columns = ColumnSpec(required=("identifier",), headerless=("identifier",))
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"delete"})
    doing = "deleting courses"
    done_verb = "deleted"
    verb = "deletes"

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.problems: list[str] = []  # failures of a bridge call that no row's outcome tells

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        outcomes, courses = await self.find(conn, rows, "identifier", dry_run)
        errors = {} if dry_run else await self._delete(courses)
        done = "would be deleted through the Moodle bridge" if dry_run else "deleted"
        for course in courses:
            error = errors.get(course.id)
            if error is None:
                message = f"Course '{course.shortname}' (id {course.id}) {done}"
                outcomes.append((course.line, None, Outcome.DELETED.value, "delete", course.key, message))
            else:
                outcomes.append((course.line, None, Outcome.FAILED.value, "delete", course.key, error))
                self.release(course)
        return pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row").sort("line")

    async def _delete(self, courses: list[Course]) -> dict[int, str | None]:
        """Course id -> why it was not deleted (None: deleted), from the bridge's answer for each course."""
        if not courses:
            return {}
        assert self.bridge is not None  # prepare() refuses a run without one
        ids = [course.id for course in courses]
        self.sent = True
        try:
            return await self.bridge.delete_courses(ids)
        except BridgeError as exc:  # the courses answered before the failure were done; the rest were not
            if all(i in exc.done for i in ids):  # failed after the last course: fix_course_sortorder()
                self.problems.append(f"after deleting the courses of a batch, {exc}")
            return {**dict.fromkeys(ids, f"not deleted: the Moodle bridge failed: {exc}"), **exc.done}

    async def finish(self, dry_run: bool) -> list[str]:
        if not self.sent:
            return self.dry_notes()
        return [
            "courses are deleted through the Moodle bridge by Moodle's own delete_course() (with a backup in the "
            "site's recycle bin when it is enabled), then fix_course_sortorder() recounts the categories",
            *self.problems,
        ]
