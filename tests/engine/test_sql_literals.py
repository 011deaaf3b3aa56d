"""ColumnLiterals: a column's literals are the driver's own escape() of each value, % doubled, whatever the values."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from pymysql.converters import escape_item, escape_string

from toolsync_tui.engine.moodle.sql_literals import ColumnLiterals


def backslashes(value: Any) -> str:
    """What aiomysql's Connection.escape() writes on a server in its default mode."""
    return "'" + escape_string(value) + "'" if isinstance(value, str) else escape_item(value, "utf8mb4")


def quotes_doubled(value: Any) -> str:
    """... and on a server in NO_BACKSLASH_ESCAPES mode."""
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else escape_item(value, "utf8mb4")


def expected(escape: Any, values: list[Any]) -> list[str]:
    return [escape(value).replace("%", "%%") for value in values]


def test_text_columns_are_escaped_as_the_driver_escapes_each_value_in_either_mode() -> None:
    alphabet = "ab'\"\\\0\n\r\x1a%{}é日😀 \t"
    draw = random.Random(20261207)
    values: list[Any] = ["".join(draw.choices(alphabet, k=draw.randrange(12))) for _ in range(2000)] + [None, ""]
    for escape in (backslashes, quotes_doubled):
        assert ColumnLiterals(escape).column(values).to_list() == expected(escape, values)


def test_integers_nulls_and_every_other_type_are_written_as_the_driver_writes_them() -> None:
    literals = ColumnLiterals(backslashes)
    columns: list[list[Any]] = [
        [1, None, -7, 2**63 - 1],
        [2**70, 1],  # beyond 64 bits
        [True, 1, False],  # booleans as the driver writes them, not taken for integers
        [1.5, Decimal("2.50"), None],
        [b"\x00'bin", "text"],
    ]
    for values in columns:
        assert literals.column(values).to_list() == expected(backslashes, values)


def test_an_escape_it_does_not_recognise_is_applied_value_by_value() -> None:
    def doubled_backslashes_only(value: Any) -> str:
        return "'" + str(value).replace("\\", "\\\\") + "'"

    values = ["it's", "a\\b", "%"]
    assert ColumnLiterals(doubled_backslashes_only).column(values).to_list() == expected(
        doubled_backslashes_only, values
    )
