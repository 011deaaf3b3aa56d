"""The run screen's latest report lines, wrapped: at 80 columns a row's message is read whole, never cut at the edge."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog


class ReportLines(RichLog):
    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, highlight=False, id=id)
        self.written: deque[str] = deque(maxlen=max_lines)  # each line as written, before wrapping

    def write_line(self, line: str) -> None:
        self.written.append(line)
        self.write(Text(line, no_wrap=False))  # Text: a value from a file is never read as markup

    def write_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write_line(line)
