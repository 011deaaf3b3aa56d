"""What a run leaves behind: the text report and its CSV twin."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from toolsync_tui.engine.datadir.store import private_file
from toolsync_tui.engine.rows import OUTCOME_SCHEMA


def report_lines() -> pl.Expr:
    """A report line: "line 12: created (create) ...", a detail "line 12, course2: failed (enrol) ..."."""
    where = (
        pl.when(pl.col("part").is_null())
        .then(pl.format("line {}", "line"))
        .otherwise(pl.format("line {}, {}", "line", "part"))
    )
    return pl.format("{}: {} ({}) {}", where, "outcome", "action", "message")


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
        outcomes.write_csv(self._table, include_header=not self._table_has_header)
        self._table_has_header = True

    def close(self, summary: list[str]) -> None:
        self._text.write(("\n" + "\n".join(summary) + "\nend of report\n").encode())
        self._text.close()
        if not self._table_has_header:
            self._table.write((",".join(OUTCOME_SCHEMA) + "\n").encode())  # a run of no rows: the header alone
        self._table.close()
