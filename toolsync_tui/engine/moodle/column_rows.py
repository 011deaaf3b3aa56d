"""Rows held column by column, for the multi-row INSERTs a batch writes (gateway.written_insert).

A batch's log rows are built this way (event_log.py): 20 columns, most of them one value for every row, so that
neither the 20-key dict of each row nor the reading of each column back out of those dicts is ever made. They are
still a sequence of rows for whoever wants rows (SQLite's executemany, the run's recorder): a row's dict is made
when it is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import polars as pl


class ColumnRows(Sequence[Mapping[str, Any]]):
    """`size` rows of the columns `names`: those in `varying` give each row's value in a sequence, the others one
    value every row shares (`shared`)."""

    def __init__(
        self, names: Sequence[str], varying: Mapping[str, Sequence[Any]], shared: Mapping[str, Any], size: int
    ) -> None:
        if set(varying) | set(shared) != set(names) or set(varying) & set(shared):
            raise ValueError("each column is either varying or shared")
        if any(len(values) != size for values in varying.values()):
            raise ValueError(f"a varying column without {size} values")
        self.names, self.varying, self.shared, self.size = tuple(names), dict(varying), dict(shared), size

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> ColumnRows:
        """Rows of the same columns (those of the first), each column read out of them."""
        names = list(rows[0]) if rows else []
        return cls(names, {name: [row[name] for row in rows] for name in names}, {}, len(rows))

    @classmethod
    def of_frame(cls, frame: pl.DataFrame) -> ColumnRows:
        """A frame's rows, each column read out of it at once (no dict of each row made)."""
        return cls(frame.columns, {name: frame[name].to_list() for name in frame.columns}, {}, frame.height)

    def column(self, name: str) -> Sequence[Any]:
        """Each row's value of the column."""
        return self.varying[name] if name in self.varying else [self.shared[name]] * self.size

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> ColumnRows: ...

    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | ColumnRows:
        if isinstance(index, slice):
            size = len(range(self.size)[index])
            return ColumnRows(self.names, {n: v[index] for n, v in self.varying.items()}, self.shared, size)
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return {name: self.varying[name][index] if name in self.varying else self.shared[name] for name in self.names}
