"""A command file with the snapshot's rows after its last line.

The rows are in the file's own format: the file's columns, plus the ones they need that the file lacks (`suspended`,
`cmd` ...), which the file's own rows read with the value that changes nothing (empty, or the default command). Their
line numbers follow the file's last line, so no line is two rows; the tryback holds them as a line of the file would
be written (its header then carries the added columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from toolsync_tui.engine.rows import LINE, PROBLEM, RAW
from toolsync_tui.engine.run.command_file import CommandFile, CsvTryback

END = r"(\r\n|\n|\r)$"


@dataclass
class SnapshotSource:
    """`inner`'s rows (with the `added` columns' values), then `rows` (the snapshot's, numbered from `first_line`)."""

    inner: CommandFile
    added: dict[str, str]  # column the file lacks -> the value its own rows read
    rows: pl.DataFrame  # the snapshot's rows: LINE, RAW, PROBLEM and every column
    first_line: int

    @classmethod
    def of(cls, inner: CommandFile, added: dict[str, str], cells: pl.DataFrame) -> SnapshotSource:
        """`cells`: the snapshot rows' values by column (any column of the file, or of `added`, may be missing)."""
        first = inner.physical_lines + 1
        columns = [*inner.columns, *added]
        full = cells.select(
            (pl.col(c).cast(pl.String) if c in cells.columns else pl.lit("", dtype=pl.String)).alias(c) for c in columns
        )
        lines = pl.int_range(first, first + full.height, dtype=pl.Int64, eager=True)
        raws = [_record(inner, added, row) for row in full.iter_rows(named=True)]
        rows = full.with_columns(
            lines.alias(LINE),
            pl.Series(RAW, raws, dtype=pl.String),
            pl.lit(None, dtype=pl.String).alias(PROBLEM),
        ).select(LINE, RAW, PROBLEM, *columns)
        return cls(inner, added, rows, first)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def columns(self) -> list[str]:
        return [*self.inner.columns, *self.added]

    @property
    def physical_lines(self) -> int:
        return self.inner.physical_lines + self.rows.height

    @property
    def last_line(self) -> int:
        return self.first_line + self.rows.height - 1

    def describe(self) -> str:
        read = self.inner.describe()
        return (
            f"{read}; snapshot mode: {_lines(self.first_line, self.last_line)} (after the file's last line) are the "
            "records toolsync manages in the file's scope that the file no longer names"
        )

    def batches(self, size: int) -> Iterator[pl.DataFrame]:
        for batch in self.inner.batches(size):
            yield self._widened(batch)
        for start in range(0, self.rows.height, size):
            yield self.rows.slice(start, size)

    def tryback(self, path: Path) -> CsvTryback:
        header = self.inner.header_raw
        if self.added:
            end = _end_of(header, self.inner)
            sep = self.inner.format.separator
            header = self.inner.format.ends.body(header) + sep + sep.join(_cell(n, sep) for n in self.added) + end
        return CsvTryback(path, self.inner.format, header)

    def _widened(self, batch: pl.DataFrame) -> pl.DataFrame:
        """A batch of the file with the added columns; its raw records carry their cells too (the tryback)."""
        if not self.added:
            return batch
        sep = self.inner.format.separator
        tail = sep + sep.join(_cell(v, sep) for v in self.added.values())
        raw = pl.col(RAW)
        end = raw.str.extract(END, 1).fill_null(self.inner.format.ends.end)
        return batch.with_columns(
            pl.concat_str(raw.str.replace(END, ""), pl.lit(tail), end).alias(RAW),
            *(pl.lit(value, dtype=pl.String).alias(name) for name, value in self.added.items()),
        )


def _record(inner: CommandFile, added: dict[str, str], row: dict[str, str]) -> str:
    """A snapshot row as the file would hold it: every header cell (an ignored column's empty), the added ones last."""
    sep = inner.format.separator
    cells = [row.get(name, "") if name in inner.columns else "" for name in inner.header_names]
    cells += [row[name] for name in added]
    return sep.join(_cell(value, sep) for value in cells) + _end_of(inner.header_raw, inner)


def _end_of(header: str, inner: CommandFile) -> str:
    return "\r\n" if header.endswith("\r\n") else inner.format.ends.end


def _cell(value: str, sep: str) -> str:
    if any(c in value for c in (sep, '"', "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"
