"""What a run leaves behind: the text report and its CSV twin."""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl

from toolsync_tui.engine.datadir.store import private_file
from toolsync_tui.engine.rows import OUTCOME_SCHEMA
from toolsync_tui.engine.run.controls import escaped_expr

# A cell a spreadsheet would take for a formula (OWASP's CSV injection list), or one already starting with the mark:
# the CSV twin writes it after a leading apostrophe, and readers (history.py) take exactly one away.
FORMULA_STARTS = "=+-@\t\r'"
TEXT_COLUMNS = ("part", "key", "message")


def spreadsheet_safe() -> list[pl.Expr]:
    """The text columns of an outcome table as the CSV twin stores them."""
    return [
        pl.when(pl.col(name).str.contains(f"^[{re.escape(FORMULA_STARTS)}]"))
        .then(pl.concat_str(pl.lit("'"), pl.col(name)))
        .otherwise(pl.col(name))
        .alias(name)
        for name in TEXT_COLUMNS
    ]


def as_written() -> list[pl.Expr]:
    """The text columns of a CSV twin as the run gave them (spreadsheet_safe() undone)."""
    return [
        pl.when(pl.col(name).str.starts_with("'")).then(pl.col(name).str.slice(1)).otherwise(pl.col(name)).alias(name)
        for name in TEXT_COLUMNS
    ]


def report_lines() -> pl.Expr:
    """A report line: "line 12: created (create) ...", a detail "line 12, course2: failed (enrol) ..."."""
    where = (
        pl.when(pl.col("part").is_null())
        .then(pl.format("line {}", "line"))
        .otherwise(pl.format("line {}, {}", "line", "part"))
    )
    # A value quoted in a message is shown with its control characters escaped: a line break cannot fake a report
    # line, an escape sequence cannot drive the terminal that shows the report.
    return pl.format("{}: {} ({}) {}", where, "outcome", "action", escaped_expr(pl.col("message")))


class RunReport:
    """A readable report (one line per row, then a summary) and a CSV with one record per row."""

    def __init__(self, text_path: Path, table_path: Path, heading: list[str]) -> None:
        self.text_path = text_path
        self.table_path = table_path
        self._text = os.fdopen(private_file(text_path), "wb")
        self._table = os.fdopen(private_file(table_path), "wb")
        self._text.write(("\n".join(heading) + "\n\n").encode())
        self._table_has_header = False

    def add(self, outcomes: pl.DataFrame) -> None:
        if outcomes.is_empty():
            return
        # polars writes the lines itself: a million report lines never become Python strings.
        outcomes.select(report_lines()).write_csv(self._text, include_header=False, quote_style="never")
        outcomes.with_columns(spreadsheet_safe()).write_csv(self._table, include_header=not self._table_has_header)
        self._table_has_header = True
        # On disk batch by batch: a killed run's report holds every batch it recorded, and a full disk is met here,
        # before the next batch is written to the database (pipeline._Run._write).
        self._text.flush()
        self._table.flush()

    def close(self, summary: list[str]) -> None:
        try:
            with self._text:  # closed whatever happens: a full disk raises here, for the run to say so
                self._text.write(("\n" + "\n".join(summary) + "\nend of report\n").encode())
        finally:
            with self._table:
                if not self._table_has_header:  # a run of no rows: the header alone
                    self._table.write((",".join(OUTCOME_SCHEMA) + "\n").encode())
