"""Course existence check (courses.csv): one course identifier per line, found or not found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.lookup import KeyLookup
from toolsync_tui.engine.rows import LINE, Outcome, Rule, first_match
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
        ambiguity = (
            pl.when(pl.col("matches") > 1)
            .then(pl.format("; {} courses match, the one with the lowest id is shown", "matches"))
            .otherwise(pl.lit(""))
        )
        rules = [
            Rule(key == "", Outcome.FAILED, "check", "empty course identifier"),
            Rule(pl.col("problem").is_not_null(), Outcome.FAILED, "check", pl.col("problem")),
            Rule(
                pl.col("id").is_not_null(),
                Outcome.UNCHANGED,
                "found",
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
            Rule(pl.lit(True), Outcome.FAILED, "not found", pl.format("{} not found", label)),
        ]
        return first_match(looked_up, rules, key)[0].sort("line")
