"""Control characters in file values: which ones a value may not hold, and how a message shows any of them.

NUL, ESC and the other C0 and C1 controls (and DEL) have no place in a Moodle field, and an escape sequence written
to a terminal or a report can rewrite what an admin sees. TAB is ordinary text in a value; a line break is allowed
inside a quoted value (a description over several lines), which is how it can reach a message. Wherever a message
shows text from a file, every control character is written escaped (\\x1b), line breaks and TAB included, so that
one value cannot break a report line in two or drive the terminal.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

_CONTROLS: Final = [*range(0x20), *range(0x7F, 0xA0)]
_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# What a value may not hold: every control character but TAB, LF and CR (the reader handles line breaks itself).
REFUSED: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ANY_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape(character: str) -> str:
    """One control character as a message writes it: \\t, \\n, \\r, or \\xNN."""
    return _NAMED.get(character) or f"\\x{ord(character):02x}"


def escaped(text: str) -> str:
    """`text` with every control character escaped: safe on a terminal and on one line of a report."""
    return _ANY_CONTROL.sub(lambda found: escape(found.group()), text)


def escaped_expr(text: pl.Expr) -> pl.Expr:
    """escaped() for a column of text (nulls stay null)."""
    characters = [chr(code) for code in _CONTROLS]
    return text.str.replace_many(characters, [escape(c) for c in characters])


def quoted(text: str) -> str:
    """A file's text (a column name) as a message quotes it: between quotes, control characters escaped."""
    return f"'{escaped(text)}'"
