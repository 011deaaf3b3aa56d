"""The home screen: every operation with its command file; r runs one, d dry-runs it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.catalog import OperationEntry, operation_entries
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.log import RunLog, RunRecord
from toolsync_tui.engine.run.preview import count_rows
from toolsync_tui.engine.run.verdict import duration_text
from toolsync_tui.engine.unattended.schedules import ScheduleProblem, next_runs, schedule_zone
from toolsync_tui.screens.files import FilesScreen
from toolsync_tui.screens.history import HistoryScreen
from toolsync_tui.screens.run import RunScreen
from toolsync_tui.screens.schedules import SchedulesScreen
from toolsync_tui.screens.settings import SettingsScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import file_age, file_size, short_path
from toolsync_tui.widgets.entry_table import Column, EntryTable
from toolsync_tui.widgets.filter_input import FilterInput, filter_binding
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

# From this width on the title gets a column; below it, it is shown under the table (80 columns fit).
WIDE = 100
# Files land in the inbox by scp or cron: look again now and then, not only when coming back.
RESCAN_SECONDS = 10
COLUMNS = (
    Column("Operation", "name"),
    Column("Title", "title", wide=True),
    Column("Command file", "file"),
    Column("Size", "size"),
    Column("Rows", "rows", wide=True),
    Column("Changed", "changed", wide=True),
    Column("Last run", "last"),
    Column("Next run", "next", wide=True),
)


def last_run_text(record: RunRecord | None, now: datetime) -> str:
    """The last run for the table: when, and whether it went well."""
    if record is None:
        return "never"
    return f"{file_age(record.started_at, now)}, {record.verdict.word()}"


def last_run_detail(record: RunRecord | None) -> str:
    """The last run for the detail line: when, how long, and what it came to."""
    if record is None:
        return "never run"
    return f"last run {record.started_at:%Y-%m-%d %H:%M} ({duration_text(record.duration)}): {record.verdict.brief()}"


class DashboardScreen(Screen[None]):
    CSS_PATH = "dashboard.tcss"
    AUTO_FOCUS = "#operations"  # the filter field is hidden until `/`
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run(False)", "Run"),
        Binding("d", "run(True)", "Dry run"),
        Binding("f", "files", "Files"),
        Binding("h", "history", "History"),
        Binding("s", "schedules", "Schedules"),
        Binding("c", "settings", "Settings"),
        filter_binding(show=False),  # the footer is full at 80 columns
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("↑ ↓", "Choose an operation"),
        ("enter", "Run the chosen operation"),
        ("/", "Filter the operations by name or title (enter: keep it, esc: clear it)"),
    )

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.entries: dict[str, OperationEntry] = {}
        self.last_runs: dict[str, RunRecord] = {}
        self.row_counts: dict[str, str] = {}  # counted in a worker, shown when ready

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield FilterInput("Filter the operations by name or title", list_selector="#operations")
        yield EntryTable[OperationEntry](id="operations", wide_from=WIDE, follow="row")
        yield Static(id="detail", markup=False)
        # Every key hint fits in 80 columns; ctrl+p still opens the palette, and ? lists it.
        yield KeyFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.set_interval(RESCAN_SECONDS, self.rescan)

    def on_screen_resume(self) -> None:
        self.rescan()  # first display, and back from a run (its file was archived)

    @property
    def table(self) -> EntryTable[OperationEntry]:
        return self.query_one("#operations", EntryTable)

    def on_resize(self, event: Resize) -> None:
        if not self.table.fits(event.size.width):
            self.rescan()

    def rescan(self) -> None:
        self.entries = {entry.name: entry for entry in operation_entries(self.config)}
        self.last_runs = RunLog(self.config.data_dir).last_by_operation()
        field = self.query_one(FilterInput)
        shown = [entry for entry in self.entries.values() if field.admits(entry.name, entry.title)]
        self.table.fill(COLUMNS, [(entry.name, entry, self._cells(entry)) for entry in shown])
        self._describe(self.table.chosen)
        self._count_rows()

    @work(exclusive=True, group="rows", exit_on_error=False)
    async def _count_rows(self) -> None:
        """Data rows of every present file, counted off the UI thread (cached while a file is unchanged)."""
        for entry in list(self.entries.values()):
            if not entry.files:
                continue
            try:
                counts = [await asyncio.to_thread(count_rows, self.config, entry.name, path) for path in entry.files]
                text = f"{sum(counts):,}"
            except FileProblem:
                text = "unreadable"
            if self.row_counts.get(entry.name) != text:
                self.row_counts[entry.name] = text
                if "rows" in self.table.columns:  # a wide screen's column
                    self.table.update_cell(entry.name, "rows", text)
        self._describe(self.table.chosen)

    def _cells(self, entry: OperationEntry) -> list[Text]:
        """A cell for each of COLUMNS (the table keeps those a narrow screen shows)."""
        file, size, changed = self._file_facts(entry)
        last = last_run_text(self.last_runs.get(entry.name), self.clock.now())
        rows = self.row_counts.get(entry.name, "") if entry.files else ""
        cells = (entry.name, entry.title, file, size, rows, changed, last, self._next_run(entry.name))
        return [Text(cell) for cell in cells]

    def _file_facts(self, entry: OperationEntry) -> tuple[str, str, str]:
        """The file column (with the number of archives for pictures), its size and its age."""
        if entry.size is None or entry.modified is None:
            return entry.file.name, "missing", ""
        file = entry.file.name
        if entry.files != (entry.file,):
            file = f"{file} ({len(entry.files)})"
        return file, file_size(entry.size), file_age(entry.modified, self.clock.now())

    def _next_run(self, name: str) -> str:
        settings = self.config.operation(name)
        if not settings.schedule:
            return "not scheduled"
        if not settings.schedule_enabled:
            return "paused"
        try:
            zone = schedule_zone(self.config.settings.cron.timezone)
        except ScheduleProblem:
            return "bad time zone"
        now = self.clock.now().astimezone(zone)
        [slot] = next_runs(settings.schedule, now, 1)
        return slot.strftime("%a %H:%M" if slot - now < timedelta(days=6) else "%Y-%m-%d %H:%M")

    def _describe(self, entry: OperationEntry | None) -> None:
        if entry is None:
            return
        where = short_path(entry.file, self.config.data_dir)
        if entry.size is None:
            state = f"{where} is missing"
        elif entry.files != (entry.file,):
            state = f"{where}: " + ", ".join(path.name for path in entry.files)
        else:
            state = where
        if entry.files and entry.name in self.row_counts:
            state += f" · {self.row_counts[entry.name]} rows"
        if entry.modified is not None:
            state += f" · changed {file_age(entry.modified, self.clock.now())}"
        facts = [last_run_detail(self.last_runs.get(entry.name)), f"next run: {self._next_run(entry.name)}"]
        self.query_one("#detail", Static).update(f"{entry.title}: {state}\n" + " · ".join(facts))

    def action_filter(self) -> None:
        self.query_one(FilterInput).slash_pressed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.rescan()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(self.table.entry(event.row_key))

    @on(DataTable.RowSelected)
    def _selected(self) -> None:  # enter, or a click on the highlighted row
        self.action_run(False)

    def action_run(self, dry_run: bool) -> None:
        chosen = self.table.chosen
        if chosen is None:
            return
        # Look at the disk again: the file may have come or gone since the last scan.
        entry = next(e for e in operation_entries(self.config) if e.name == chosen.name)
        refusal = entry.refusal()
        if refusal is not None:
            self.notify(refusal, title="Cannot run", severity="warning", markup=False)
            self.rescan()
            return
        self.app.push_screen(RunScreen(self.config, entry, dry_run=dry_run, clock=self.clock))

    def action_history(self) -> None:
        """Reports, trybacks and archives of the chosen operation."""
        chosen = self.table.chosen
        self.app.push_screen(HistoryScreen(self.config, self.clock, chosen.name if chosen else None))

    def action_settings(self) -> None:
        self.app.push_screen(SettingsScreen(self.config))

    def action_schedules(self) -> None:
        self.app.push_screen(SchedulesScreen(self.config, self.clock))

    def action_files(self) -> None:
        """Choose the operation's command file, with a preview that validates it."""
        chosen = self.table.chosen
        if chosen is not None:
            self.app.push_screen(FilesScreen(self.config, chosen.name, self.clock))
