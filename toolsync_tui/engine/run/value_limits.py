"""Values the database cannot take, failed row by row before an operation sees its batch.

A value longer than its column (VARCHAR(n) counts characters) is refused by a strict MariaDB, which rolls back the
whole batch with it, and cut silently by a lax one; a row larger than the server's max_allowed_packet cannot be sent
at all (the server drops the connection, and every run of the file stopped there). Each operation names which file
columns are stored where (Operation.value_columns); every value of every row counts against the packet, whether it
is stored or only looked up. A dry run goes through the same check, so it predicts these failures too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from toolsync_tui.engine.moodle.column_limits import ColumnLimit, column_limit, statement_bytes, value_room
from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.rows import LINE, PROBLEM, RAW

StoredColumns = Mapping[str, tuple[str, str]]  # file column regex (whole name) -> (table, column) of the schema


@dataclass(frozen=True)
class ValueLimits:
    chars: Mapping[str, ColumnLimit]  # file column -> its database column, VARCHAR ones only
    values: Sequence[str]  # every file column (the packet counts them all)
    packet: int

    @classmethod
    def of(cls, columns: Sequence[str], stored: StoredColumns, schema: MoodleSchema, packet: int) -> ValueLimits:
        patterns = [(re.compile(regex), where) for regex, where in stored.items()]
        chars: dict[str, ColumnLimit] = {}
        for name in columns:
            where = next((where for regex, where in patterns if regex.fullmatch(name)), None)
            if where is not None:
                limit = column_limit(getattr(schema, where[0]), where[1], schema.prefix)
                if limit.chars is not None:
                    chars[name] = limit
        return cls(chars, [c for c in columns if c not in (LINE, RAW, PROBLEM)], packet)

    def check(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The batch with PROBLEM set on the rows (still well formed) that hold a value the database cannot take."""
        types = batch.schema  # built at each use: once here, not once a column
        text = [n for n in self.values if types.get(n) == pl.String]  # a picture archive's entries are bytes
        problems = self._char_problems(batch) | self._packet_problems(batch, text)
        if not problems:
            return batch
        lines = batch[LINE].to_list()
        found = pl.Series([problems.get(line) for line in lines], dtype=pl.String)
        return batch.with_columns(pl.coalesce(pl.col(PROBLEM), found).alias(PROBLEM))

    def _char_problems(self, batch: pl.DataFrame) -> dict[int, str]:
        if not self.chars:
            return {}
        lengths = batch.select(LINE, *(pl.col(n).str.len_chars().fill_null(0).alias(n) for n in self.chars))
        over = lengths.filter(pl.any_horizontal(pl.col(n) > limit.chars for n, limit in self.chars.items()))
        problems: dict[int, str] = {}
        for row in over.iter_rows(named=True):
            # The file's first column over its limit; the value itself is never quoted (it may be anything).
            name, limit = next((n, lim) for n, lim in self.chars.items() if row[n] > (lim.chars or 0))
            where = f"{limit.table}.{limit.column}"
            problems[row[LINE]] = f"column '{name}': {row[name]:,} characters, at most {limit.chars:,} ({where})"
        return problems

    def _packet_problems(self, batch: pl.DataFrame, values: Sequence[str]) -> dict[int, str]:
        room = value_room(self.packet)
        if not values:
            return {}
        # A value takes at most twice its bytes and its quotes in a statement: only rows that might pass are measured.
        rough = pl.sum_horizontal(pl.col(n).str.len_bytes().fill_null(0) * 2 + 2 for n in values)
        large = batch.filter(rough > room)
        if large.is_empty():
            return {}
        sizes = large.select(LINE, *(statement_bytes(pl.col(n)).fill_null(0).alias(n) for n in values))
        problems: dict[int, str] = {}
        for row in sizes.iter_rows(named=True):
            total = sum(row[n] for n in values)
            if total <= room:
                continue
            name = max(values, key=lambda n: row[n])
            what = f"column '{name}': {row[name]:,} bytes" if row[name] > room else f"the row's values: {total:,} bytes"
            problems[row[LINE]] = (
                f"{what}, more than one statement to the database may carry ({room:,} bytes of the server's "
                f"max_allowed_packet of {self.packet:,})"
            )
        return problems
