"""SQL literals of a whole column at once, for the multi-row INSERTs written on MariaDB (gateway._insert_statements).

The driver escapes one value at a time in Python (PyMySQL's escape_string: a str.translate, then the quotes), and a
batch of 5,000 new users has ~40,000 text values. Here polars escapes a column of text in one pass (replace_many:
the characters the driver escapes, replaced as it replaces them), and writes integers as digits.

The replacements are the ones that give the driver's own escape() of a probe holding every character it escapes:
backslash escapes, or, on a server in NO_BACKSLASH_ESCAPES mode, doubled quotes only. Where neither fits, and for
values of other types or integers beyond 64 bits, the driver's escape() value by value. Every literal has its %
doubled: the statement goes through the driver's %-formatting (with no parameter).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

_PROBE = "\\\0\n\r\x1a\"'%é"
_BACKSLASHES = {"\\": "\\\\", "\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", '"': '\\"', "'": "\\'", "%": "%%"}
_QUOTES = {"'": "''", "%": "%%"}


class ColumnLiterals:
    """The literals the driver's `escape` would write, a column at a time."""

    def __init__(self, escape: Callable[[Any], str]) -> None:
        self._escape = escape
        expected = self.one(_PROBE)
        self._mapping = next((m for m in (_BACKSLASHES, _QUOTES) if _quoted(_PROBE, m) == expected), None)

    def one(self, value: Any) -> str:
        return self._escape(value).replace("%", "%%")

    def column(self, values: Sequence[Any]) -> pl.Series:
        """Each value's literal ('NULL' for None)."""
        types = set(map(type, values)) - {type(None)}
        try:
            if types <= {int}:
                return pl.Series(values, dtype=pl.Int64).cast(pl.String).fill_null("NULL")
            if types <= {str} and self._mapping is not None:
                text = pl.Series(values, dtype=pl.String).str.replace_many(self._mapping)
                return ("'" + text + "'").fill_null("NULL")
        except TypeError:  # an integer beyond Int64
            pass
        return pl.Series([self.one(value) for value in values], dtype=pl.String)


def _quoted(text: str, mapping: dict[str, str]) -> str:
    return "'" + "".join(mapping.get(c, c) for c in text) + "'"
