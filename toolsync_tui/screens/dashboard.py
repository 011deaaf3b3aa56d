"""The home screen: every operation with its command file; r runs one, d dry-runs it."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..catalog import OperationEntry, operation_entries
from ..clock import Clock
from ..config import Config
from ..formatting import file_age, file_size, short_path
from ..widgets.site_bar import SiteBar
from .run import RunScreen

# From this width on the title gets a column; below it, it is shown under the table (80 columns fit).
WIDE = 100
# Files land in the inbox by scp or cron: look again now and then, not only when coming back.
RESCAN_SECONDS = 10


class DashboardScreen(Screen[None]):
    CSS_PATH = "dashboard.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run(False)", "Run"),
        Binding("d", "run(True)", "Dry run"),
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("↑ ↓", "Choose an operation"),
        ("enter", "Run the chosen operation"),
    )

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.entries: dict[str, OperationEntry] = {}
        self._wide: bool | None = None

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield DataTable(id="operations", cursor_type="row", zebra_stripes=True)
        yield Static(id="detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(RESCAN_SECONDS, self.rescan)

    def on_screen_resume(self) -> None:
        self.rescan()  # first display, and back from a run (its file was archived)

    def on_resize(self, event: Resize) -> None:
        if (event.size.width >= WIDE) != self._wide:
            self.rescan()

    def rescan(self) -> None:
        table = self.query_one(DataTable)
        self._wide = self.size.width >= WIDE
        cursor = table.cursor_row
        self.entries = {entry.name: entry for entry in operation_entries(self.config)}
        table.clear(columns=True)
        table.add_column("Operation", key="name")
        if self._wide:
            table.add_column("Title", key="title")
        table.add_column("Command file", key="file")
        table.add_column("Size", key="size")
        table.add_column("Changed", key="changed")
        for entry in self.entries.values():
            table.add_row(*self._cells(entry), key=entry.name)
        table.move_cursor(row=cursor)
        self._describe(self._chosen())

    def _cells(self, entry: OperationEntry) -> list[Text]:
        if entry.size is None or entry.modified is None:
            file, size, changed = entry.file.name, "missing", ""
        else:
            file, size = entry.file.name, file_size(entry.size)
            if entry.files != (entry.file,):  # picture archives: how many there are
                file = f"{file} ({len(entry.files)})"
            changed = file_age(entry.modified, self.clock.now())
        cells = [entry.name, *([entry.title] if self._wide else []), file, size, changed]
        return [Text(cell) for cell in cells]

    def _chosen(self) -> OperationEntry | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.entries.get(str(row_key.value))

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
        self.query_one("#detail", Static).update(f"{entry.title}: {state}")

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(self.entries.get(str(event.row_key.value)))

    @on(DataTable.RowSelected)
    def _selected(self) -> None:  # enter, or a click on the highlighted row
        self.action_run(False)

    def action_run(self, dry_run: bool) -> None:
        chosen = self._chosen()
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
