"""ColumnRows: rows held column by column, still read as rows."""

from __future__ import annotations

import polars as pl
import pytest

from toolsync_tui.engine.moodle.column_rows import ColumnRows

NAMES = ("a", "b", "c")


def made() -> ColumnRows:
    return ColumnRows(NAMES, {"a": [1, 2, 3], "c": ["x", None, "z"]}, {"b": 7}, 3)


def test_rows_read_back_in_column_order_with_the_shared_values() -> None:
    rows = made()
    assert list(rows) == [{"a": 1, "b": 7, "c": "x"}, {"a": 2, "b": 7, "c": None}, {"a": 3, "b": 7, "c": "z"}]
    assert [list(row) for row in rows] == [list(NAMES)] * 3
    assert rows[-1] == {"a": 3, "b": 7, "c": "z"}
    assert rows.column("b") == [7, 7, 7]
    assert rows.column("c") == ["x", None, "z"]
    with pytest.raises(IndexError):
        rows[3]


def test_a_slice_is_column_rows_of_those_rows() -> None:
    part = made()[1:]
    assert isinstance(part, ColumnRows)
    assert len(part) == 2
    assert list(part) == [{"a": 2, "b": 7, "c": None}, {"a": 3, "b": 7, "c": "z"}]
    assert len(made()[5:]) == 0


def test_of_dict_rows_and_empty() -> None:
    given = [{"a": 1, "b": "p"}, {"a": 2, "b": "q"}]
    rows = ColumnRows.of(given)
    assert list(rows) == given
    assert rows.varying == {"a": [1, 2], "b": ["p", "q"]}
    assert not rows.shared
    assert len(ColumnRows.of([])) == 0


def test_of_a_frame_are_its_rows_as_to_dicts_gives_them() -> None:
    frame = pl.DataFrame({"id": [3, 1], "name": ["é", None], "at": [7, 7]})
    rows = ColumnRows.of_frame(frame)
    assert list(rows) == frame.to_dicts()
    assert rows.names == ("id", "name", "at")
    assert len(ColumnRows.of_frame(frame.clear())) == 0


def test_columns_must_be_each_named_once_and_full() -> None:
    with pytest.raises(ValueError, match="either varying or shared"):
        ColumnRows(NAMES, {"a": [1]}, {"b": 1}, 1)
    with pytest.raises(ValueError, match="either varying or shared"):
        ColumnRows(("a",), {"a": [1]}, {"a": 1}, 1)
    with pytest.raises(ValueError, match="without 2 values"):
        ColumnRows(("a",), {"a": [1]}, {}, 2)
