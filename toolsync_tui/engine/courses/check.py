"""Course existence check (courses.csv): one course identifier per line, found or not found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.lookup import KeyLookup
from toolsync_tui.engine.rows import LINE, Outcome, outcome_rows
from toolsync_tui.engine.run.command_file import ColumnSpec
from toolsync_tui.engine.run.operation import Operation


class CourseExistenceCheck(Operation):
    name = "check"
    title = "Course existence check"
    columns = ColumnSpec(required=("identifier",), headerless=("identifier", "description"))
    read_only: ClassVar[bool] = True

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        course = self.schema.course
        self.courses = KeyLookup(
            self.gateway,
            course,
            self.config.settings.operations.check.identifier,
            columns=["id", "shortname", "fullname", "idnumber"],
            where=course.c.category != 0,  # the front page is not a course of the site's catalogue
            remember=True,  # a check writes nothing: a course found once stays found for the run
        )

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        field = self.courses.field
        matches = await self.courses.resolve(conn, rows["identifier"])
        looked_up = rows.select(LINE, "identifier").join(matches, on="identifier", how="left")
        key = pl.col("identifier")
        label = pl.format(f"Course with {field} '{{}}'", key)
        empty = looked_up.filter(key == "")
        bad_id = looked_up.filter((key != "") & pl.col("problem").is_not_null())
        found = looked_up.filter(pl.col("id").is_not_null())
        missing = looked_up.filter((key != "") & pl.col("problem").is_null() & pl.col("id").is_null())
        ambiguity = (
            pl.when(pl.col("matches") > 1)
            .then(pl.format("; {} courses match, the one with the lowest id is shown", "matches"))
            .otherwise(pl.lit(""))
        )
        return pl.concat(
            [
                outcome_rows(empty, Outcome.FAILED, "check", key, "empty course identifier"),
                outcome_rows(bad_id, Outcome.FAILED, "check", key, pl.col("problem")),
                outcome_rows(
                    found,
                    Outcome.UNCHANGED,
                    "found",
                    key,
                    pl.format(
                        "{} found: id {}, shortname '{}', fullname '{}', idnumber '{}'{}",
                        label,
                        "id",
                        "shortname",
                        "fullname",
                        pl.col("idnumber").fill_null(""),
                        ambiguity,
                    ),
                ),
                outcome_rows(missing, Outcome.FAILED, "not found", key, pl.format("{} not found", label)),
            ]
        ).sort("line")
