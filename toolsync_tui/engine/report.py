"""What a run leaves behind: the text report, its CSV twin, and the tryback of failed rows."""

from __future__ import annotations

import codecs
import io
import os
from pathlib import Path
from typing import BinaryIO

import polars as pl

from .command_file import LINE, RAW, SourceFormat
from .store import private_file


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
            self._table.write(b"line,part,outcome,action,key,message\n")
        self._table.close()


class Tryback:
    """Failed rows in the source's own format: header and records exactly as read, same encoding."""

    def __init__(self, path: Path, source: SourceFormat, header_raw: str) -> None:
        self.path = path
        self._encoding = source.encoding
        self._prefix = (codecs.BOM_UTF8 if source.bom else b"") + header_raw.encode(source.encoding)
        self._out: BinaryIO | None = None
        self.rows = 0

    def add(self, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        if self._out is None:
            self._out = os.fdopen(private_file(self.path), "wb")
            self._out.write(self._prefix)
        buffer = io.StringIO()
        buffer.writelines(rows.sort(LINE)[RAW].to_list())
        self._out.write(buffer.getvalue().encode(self._encoding))
        self.rows += rows.height

    def close(self) -> Path | None:
        if self._out is None:
            return None
        self._out.close()
        return self.path
