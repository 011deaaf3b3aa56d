"""Reading what a run left: a report (its text and its outcome table), a tryback or an archived command file.

Everything shown is bounded: the first lines of a text (and a report's last ones, where its summary is), one page of
the outcome table. A report of a million lines never reaches a widget whole.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import polars as pl
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Input, Log, Select, Static

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.history import (
    HistoryProblem,
    TextView,
    operation_of_report,
    operation_of_stored,
    outcome_count,
    outcome_page,
    outcome_totals,
    text_view,
    zip_members,
)
from toolsync_tui.engine.datadir.store import StoredName
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, Outcome
from toolsync_tui.engine.words import plural
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import file_age, file_size, short_path
from toolsync_tui.widgets.filter_input import FilterInput
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.row_detail import RowDetail
from toolsync_tui.widgets.site_bar import SiteBar

REPORT_LINES = 5_000  # of a report's text, from its start
TAIL_LINES = 20  # of its end, when the start is not all of it: the summary
FILE_LINES = 1_000  # of a tryback or an archived command file
ZIP_MEMBERS = 1_000  # entries of a picture archive listed
PAGE_ROWS = 500  # records of the outcome table at a time
ALL = "all"
# What goes wrong first, then what was done, in the engine's order.
OUTCOME_CHOICES: tuple[str, ...] = (
    ALL,
    Outcome.FAILED,
    Outcome.SKIPPED,
    Outcome.CREATED,
    Outcome.UPDATED,
    Outcome.DELETED,
    Outcome.UNCHANGED,
)

PAGE_KEYS = Binding.Group("Page", compact=True)


class ReportScreen(Screen[None]):
    """A report: its text on top, its outcome table (the CSV twin) below, filterable by outcome, page by page."""

    CSS_PATH = "history.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("o", "next_outcome", "Outcome"),
        # The table shows PAGE_ROWS records at a time: a million-record table never fills a widget.
        Binding("left_square_bracket", "page(-1)", "Previous page", key_display="[", group=PAGE_KEYS),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", group=PAGE_KEYS),
        # As filter_binding, a priority binding (keys typed over SSH right after `/`), worded for a search.
        Binding("slash", "filter", "Search", key_display="/", priority=True),
        Binding("d", "detail", "Detail"),
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("tab", "Move between the report's text, the outcome choice and the table"),
        ("o", "(Outcome) all, then failed only, skipped only ... in turn"),
        ("/", "Search the table's records (in any column)"),
        ("d", "Hide or show the highlighted record, whole"),
        ("↑ ↓ pgup pgdn", "Scroll what has the focus"),
    )

    def __init__(self, config: Config, path: Path, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.text_path = path.with_suffix(".txt")
        self.table_path = path.with_suffix(".csv")
        self.clock = clock
        self.outcome: str | None = None  # None: every outcome
        self.first = 0
        self.totals: dict[str, int] = {}
        self.search = ""  # what `/` looks for in the records ("": every record)
        self.records: pl.DataFrame | None = None  # the page shown
        self.matching = 0  # records of the outcome holding the search

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(self._title(), id="view-title", markup=False)
        yield Log(auto_scroll=False, id="report-text")
        with Horizontal(id="outcome-bar"):
            yield Static("Outcomes", id="outcome-label")
            yield Select(self._choices(), allow_blank=False, value=ALL, compact=True, id="outcome")
            yield Static(id="page", markup=False)
        yield FilterInput("Search: part of a key, a message, a line number", list_selector="#outcomes", id="search")
        yield DataTable(id="outcomes", cursor_type="row", zebra_stripes=True)
        yield RowDetail(id="row-detail")  # the message the table cuts at 80 columns, whole
        yield KeyFooter()

    def on_mount(self) -> None:
        log = self.query_one(Log)
        log.border_title = short_path(self.text_path, self.config.data_dir)
        if self.text_path.exists():
            show_text(log, self.text_path, REPORT_LINES, TAIL_LINES, self)
        else:
            log.write_line("The text of this report is gone: only its outcome table is left.")
        table = self.query_one(DataTable)
        for name in OUTCOME_SCHEMA:
            table.add_column(name, key=name)
        self.show_page()

    def _title(self) -> str:
        operation = operation_of_report(self.text_path.name)
        title = f"{operation} · {OPERATIONS[operation].title}" if operation else "report"
        stored = StoredName.parse("report", self.text_path.name)
        dry = " · DRY RUN" if stored is not None and stored.dry_run else ""
        for written in (self.text_path, self.table_path):
            try:
                return f"{title}{dry} · {file_age(modified(written), self.clock.now())}"
            except OSError:  # this half of the report is gone: the other may be left
                continue
        return f"{title}{dry}"

    def _choices(self) -> list[tuple[str, str]]:
        """The outcome choices with their numbers of records: read before the Select is made, whose label would not
        follow a later change of options to the same value."""
        try:
            self.totals = outcome_totals(self.table_path) if self.table_path.exists() else {}
        except HistoryProblem as problem:
            self.notify(str(problem), title="Outcome table", severity="error", markup=False)
        counts = {ALL: sum(self.totals.values()), **self.totals}
        return [(f"{choice} ({counts.get(choice, 0):,})", choice) for choice in OUTCOME_CHOICES]

    # -- the outcome table ------------------------------------------------------------------------

    def show_outcome(self, outcome: str | None) -> None:
        """Only the records of `outcome` (None: all of them), from the first."""
        self.outcome, self.first = outcome, 0
        select: Select[str] = self.query_one("#outcome", Select)
        if select.value != (outcome or ALL):
            select.value = outcome or ALL  # its Changed message comes back here, with the same outcome
        self.show_page()

    def _total(self) -> int:
        return self.totals.get(self.outcome, 0) if self.outcome else sum(self.totals.values())

    def _query(self) -> tuple[pl.DataFrame, int]:
        """The page of records to show, and how many the outcome and the search choose (counted once per search)."""
        records = outcome_page(self.table_path, self.outcome, self.first, PAGE_ROWS, self.search)
        total = outcome_count(self.table_path, self.outcome, self.search) if self.search.strip() else self._total()
        return records, total

    def show_page(self) -> None:
        if not self.table_path.exists():
            self._fill(None, 0)
            return
        try:
            records, total = self._query()
        except HistoryProblem as problem:
            self._unreadable(problem)
            return
        self._fill(records, total)

    @work(exclusive=True, group="search", exit_on_error=False)
    async def _show_page_soon(self) -> None:
        """show_page off the interface's loop, for a search typed in a large table; a newer keystroke cancels it."""
        if not self.table_path.exists():
            self._fill(None, 0)
            return
        try:
            records, total = await asyncio.to_thread(self._query)
        except HistoryProblem as problem:
            self._unreadable(problem)
            return
        self._fill(records, total)

    def _unreadable(self, problem: HistoryProblem) -> None:
        self.query_one(DataTable).clear()
        self.query_one("#page", Static).update("the outcome table cannot be read")
        self.notify(str(problem), title="Outcome table", severity="error", markup=False)

    def _fill(self, records: pl.DataFrame | None, total: int) -> None:
        table = self.query_one(DataTable)
        table.clear()
        page = self.query_one("#page", Static)
        self.records, self.matching = records, total
        if records is None:
            page.update("no outcome table next to this report")
            self._show_detail()
            return
        for values in records.iter_rows():
            table.add_row(*(Text("" if value is None else str(value), no_wrap=True) for value in values))
        which = f"{self.outcome} " if self.outcome else ""
        holding = f" holding '{self.search.strip()}'" if self.search.strip() else ""
        if not total:
            page.update(f"no {which}records{holding}")
        else:
            last = self.first + records.height
            page.update(f"{which}records {self.first + 1:,} to {last:,} of {total:,}{holding}")
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.query_one(DataTable)
        records = self.records
        chosen = table.cursor_row if table.row_count else -1
        record = records.row(chosen, named=True) if records is not None and 0 <= chosen < records.height else None
        self.query_one(RowDetail).show(record)

    @on(DataTable.RowHighlighted, "#outcomes")
    def _highlighted(self) -> None:
        self._show_detail()

    def action_detail(self) -> None:
        detail = self.query_one(RowDetail)
        detail.display = not detail.display

    def action_filter(self) -> None:
        self.query_one("#search", FilterInput).slash_pressed()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search, self.first = event.value, 0
        self._show_page_soon()

    @on(Select.Changed, "#outcome")
    def _outcome_chosen(self, event: Select.Changed) -> None:
        chosen = None if event.value in (ALL, Select.NULL) else str(event.value)
        if chosen != self.outcome:
            self.show_outcome(chosen)

    def action_next_outcome(self) -> None:
        current = OUTCOME_CHOICES.index(self.outcome or ALL)
        following = OUTCOME_CHOICES[(current + 1) % len(OUTCOME_CHOICES)]
        self.show_outcome(None if following == ALL else following)

    def action_page(self, step: int) -> None:
        offset = self.first + step * PAGE_ROWS
        if 0 <= offset < self.matching:
            self.first = offset
            self.show_page()

    def action_back(self) -> None:
        self.app.pop_screen()


class FileScreen(Screen[None]):
    """A tryback or an archived file as a command file reads: its first lines, or a zip's entries."""

    CSS_PATH = "history.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (("↑ ↓ pgup pgdn", "Scroll"),)

    def __init__(self, config: Config, path: Path, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.path = path
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(self._title(), id="view-title", markup=False)
        yield Log(auto_scroll=False, id="file-text")
        yield KeyFooter()

    def on_mount(self) -> None:
        log = self.query_one(Log)
        log.border_title = short_path(self.path, self.config.data_dir)
        if self.path.suffix.lower() == ".zip":
            self._show_members(log)
        else:
            show_text(log, self.path, FILE_LINES, 0, self)
        log.focus()

    def _title(self) -> str:
        kind = "tryback" if self.path.parent.name == "tryback" else "archived file"
        operation = operation_of_stored(self.config, self.path)  # its run's, whatever the settings say today
        what = f"{operation} · {OPERATIONS[operation].title}" if operation else "no known operation"
        try:
            size, age = file_size(self.path.stat().st_size), file_age(modified(self.path), self.clock.now())
        except OSError:
            return f"{kind} · {what}"
        return f"{kind} · {what} · {size} · {age}"

    def _show_members(self, log: Log) -> None:
        try:
            members, total = zip_members(self.path, ZIP_MEMBERS)
        except HistoryProblem as problem:
            log.write_line(str(problem))
            return
        listed = f", the first {len(members):,} listed" if total > len(members) else ""
        log.write_line(plural(total, "entry", "entries") + listed)
        log.write_lines(f"{file_size(member.size):>10}  {member.name}" for member in members)

    def action_back(self) -> None:
        self.app.pop_screen()


def show_text(log: Log, path: Path, head: int, tail: int, screen: Screen[None]) -> None:
    """A bounded view of a text file into `log`: its start, a note when lines are left out, then its end."""
    try:
        view: TextView = text_view(path, head, tail)
    except HistoryProblem as problem:
        log.write_line(str(problem))
        screen.notify(str(problem), severity="error", markup=False)
        return
    write_text(log, view.head)
    if view.complete:
        return
    if view.tail:
        log.write_line(f"… only the first {head:,} lines and the last ones are shown; {path.name} holds all of it …")
        write_text(log, view.tail)
    else:
        log.write_line(f"… only the first {head:,} lines are shown; {path.name} holds all of it")


def write_text(log: Log, lines: list[str]) -> None:
    # Log.write_lines drops empty lines: a space keeps a report's blank lines between its heading and its rows.
    log.write_lines(line or " " for line in lines)


def modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime)
