"""What a snapshot file names: its key columns read in full before any snapshot row is decided.

Every row counts, also one that will fail (a typo in another cell, an unknown course): a record is never removed
because its row could not be applied. A row that cannot be read at all (broken quotes, too many values) names
nothing anyone can tell, so such a file removes nothing (`unreadable`: its lines, for the run's note).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from toolsync_tui.engine.rows import LINE, PROBLEM
from toolsync_tui.engine.run.operation import Source

PASS_ROWS = 50_000  # rows a pre-pass batch holds: only a few columns are kept of each


@dataclass(frozen=True)
class Named:
    """The file's key cells (trimmed, as the run reads them; "" when empty or absent from the file), one row per
    readable data row, with its LINE. Compared with stored values as the operation's lookups compare: matching.py."""

    cells: pl.DataFrame
    unreadable: list[int]


def read_named(source: Source, columns: Sequence[str]) -> Named:
    """The `columns` of every data row of `source` (a fresh reading of the whole file)."""
    wanted = list(dict.fromkeys(columns))
    parts: list[pl.DataFrame] = []
    unreadable: list[int] = []
    for batch in source.batches(PASS_ROWS):
        unreadable += batch.filter(pl.col(PROBLEM).is_not_null())[LINE].to_list()
        readable = batch.filter(pl.col(PROBLEM).is_null())
        parts.append(readable.select(LINE, *(_cell(name, readable.columns) for name in wanted)))
    cells = pl.concat(parts) if parts else pl.DataFrame(schema={LINE: pl.Int64, **dict.fromkeys(wanted, pl.String)})
    return Named(cells, unreadable)


def _cell(name: str, present: list[str]) -> pl.Expr:
    if name not in present:
        return pl.lit("", dtype=pl.String).alias(name)
    return pl.col(name).cast(pl.String).fill_null("").str.strip_chars()
