"""The list-screen skeleton: a table of entries (files, operations ...) that the `/` filter (FilterInput) narrows.

What the history, schedules and files screens share: one keyed row per entry and the entry under the cursor; the
cursor kept when the rows are filled again (a rescan, a filter typed, a resize); columns shown on a wide terminal
only, and a flexible column that takes the room the others leave. The screen chooses the entries (its filter, its
kinds) and their cells; the table never reads the disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

E = TypeVar("E")
Cell = str | Text
# A vertical scroll bar's width, kept free for a flexible column whether or not the bar shows.
SCROLLBAR = 2


@dataclass(frozen=True)
class Column:
    label: str
    key: str
    width: int | None = None  # cells; None: as wide as its content
    wide: bool = False  # shown only on a screen at least the table's `wide_from` wide
    # A flexible column: the room the other (fixed-width) columns leave, at least this wide and no wider than its
    # longest text; a longer text is cut in its middle.
    flexible: int | None = None


class EntryTable(DataTable[Cell], Generic[E]):
    """A list screen's table: `fill` shows the rows, `chosen` is the entry under the cursor.

    follow: where the cursor goes when the rows are filled again. "entry": back to the entry it was on, while it is
    still shown (else the first row); "row": the same row, whatever it shows now (a fixed list that only the filter
    narrows)."""

    def __init__(self, *, id: str, wide_from: int | None = None, follow: Literal["entry", "row"] = "entry") -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.wide_from = wide_from
        self.follow = follow
        self.entries: dict[str, E] = {}  # row key -> entry, in table order
        self._filled_width: int | None = None  # the screen's width when the columns were made
        self._flexible = False

    # -- what is shown --

    @property
    def chosen(self) -> E | None:
        """The entry under the cursor; None in an empty table."""
        key = self._chosen_key()
        return None if key is None else self.entries.get(key)

    def entry(self, row_key: RowKey) -> E | None:
        """The entry of a row (of a RowHighlighted message ...); None for a row filled over since."""
        return self.entries.get(str(row_key.value))

    def _chosen_key(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    # -- filling --

    def fill(
        self, columns: Sequence[Column], rows: Iterable[tuple[str, E, Sequence[Cell]]], *, highlight: str | None = None
    ) -> None:
        """Show `rows`, each (key, entry, a cell for every one of `columns`); the columns of a wide screen, and their
        cells, only when the screen is wide. With follow="entry" the cursor goes to the row of `highlight` (a row key),
        by default of the entry it is on now, when that row is shown."""
        width = self.screen.size.width  # these tables span their screen
        shown = [index for index, column in enumerate(columns) if self._is_wide(width) or not column.wide]
        made = [columns[index] for index in shown]
        picked = [(key, entry, [cells[index] for index in shown]) for key, entry, cells in rows]
        sizes = self._sizes(made, [cells for *_, cells in picked], width)
        wanted = highlight if highlight is not None else self._chosen_key()
        row = self.cursor_row
        self.clear(columns=True)
        for column, size in zip(made, sizes, strict=True):
            self.add_column(column.label, key=column.key, width=size)
        self.entries = {}
        for key, entry, cells in picked:
            self.entries[key] = entry
            self.add_row(
                *(_cut(cell, column, size) for cell, column, size in zip(cells, made, sizes, strict=True)), key=key
            )
        self._filled_width = width
        self._flexible = any(column.flexible is not None for column in made)
        if self.follow == "row":
            self.move_cursor(row=row)
        elif wanted in self.entries:
            self.move_cursor(row=self.get_row_index(wanted))

    def fits(self, width: int) -> bool:
        """Whether the columns made last still suit a screen `width` wide: not when the wide columns would come or
        go, nor when a flexible column would get another room."""
        if self._filled_width is None:
            return False
        if self._flexible:
            return width == self._filled_width
        return self._is_wide(width) == self._is_wide(self._filled_width)

    def _is_wide(self, width: int) -> bool:
        return self.wide_from is not None and width >= self.wide_from

    def _sizes(self, columns: list[Column], rows: list[list[Cell]], width: int) -> list[int | None]:
        """Each column's width: its own, or for the flexible one what the others leave of `width` (each column has
        its padding on either side, and a scroll bar may come)."""
        fixed = sum(column.width or 0 for column in columns if column.flexible is None)
        room = width - fixed - 2 * self.cell_padding * len(columns) - SCROLLBAR
        sizes: list[int | None] = []
        for index, column in enumerate(columns):
            if column.flexible is None:
                sizes.append(column.width)
                continue
            longest = max((len(_plain(cells[index])) for cells in rows), default=column.flexible)
            sizes.append(max(column.flexible, min(longest, room)))
        return sizes


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _cut(cell: Cell, column: Column, width: int | None) -> Cell:
    """A flexible column's cell cut to its width; the other columns' as they are."""
    text = _plain(cell)
    if column.flexible is None or width is None or len(text) <= width:
        return cell
    if isinstance(cell, Text):
        return Text(shortened(text, width), style=cell.style, no_wrap=cell.no_wrap)
    return shortened(text, width)


def shortened(text: str, width: int) -> str:
    """`text` cut in its middle to fit `width`: a file name's stamp and its end both stay readable."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2 :]
