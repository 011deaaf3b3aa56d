"""The highlighted record of an outcome table, whole: at 80 columns the table cuts its message, this pane wraps it.

A record is what the report's CSV twin holds (engine/rows.py OUTCOME_SCHEMA: line, part, outcome, action, key,
message); the report viewer shows the one under its table's cursor, and any screen with such a table can.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.widgets import Static

Record = Mapping[str, object]


class RowDetail(Static):
    DEFAULT_CSS = """
    RowDetail {
        height: auto;
        max-height: 4;  /* its place and outcome, then three lines of message: a cell of 60 characters quoted twice */
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)

    def show(self, record: Record | None) -> None:
        """Show `record` (None: no row is highlighted)."""
        self.update("" if record is None else record_words(record))


def record_words(record: Record) -> str:
    """ "line 2, course1: failed (enrol) · BIO101" and the message under it, as the report's text words a row."""

    def text(name: str) -> str:
        value = record.get(name)
        return "" if value is None else str(value)

    where = f"line {text('line')}" + (f", {text('part')}" if text("part") else "")
    head = f"{where}: {text('outcome')}" + (f" ({text('action')})" if text("action") else "")
    if text("key"):
        head += f" · {text('key')}"
    return f"{head}\n{text('message')}" if text("message") else head
