"""The home screen: every operation with its command file; enter opens one, r runs it, d dry-runs it.

Each operation's mode (snapshot, diff) has a column once any operation has one; the detail lines say it in words,
and the last guard or threshold that stopped the chosen operation. Runs held for approval are announced in a line
above the keys; `a` opens them (screens/held.py).

A run goes on when its screen is left (esc): the dashboard keeps its screen (installed, so Textual does not remove it
and cancel its worker), shows its progress in the Last run column, and shows the screen again for r, enter or d on
that operation. A real run that can remove or suspend anything first shows its dry run's counts and asks (No by
default: screens/run_confirm.py).
"""

from __future__ import annotations

import asyncio
import threading
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
from toolsync_tui.engine.datadir.held import HeldRun, HeldRuns
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.rows import counts_text
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.destroys import can_destroy, may_destroy
from toolsync_tui.engine.run.hold import approve_held
from toolsync_tui.engine.run.log import KEEP, RunLog, RunRecord
from toolsync_tui.engine.run.pipeline import ProgressCallback, RunResult
from toolsync_tui.engine.run.preview import count_rows
from toolsync_tui.engine.run.thread import job_in_thread
from toolsync_tui.engine.unattended.schedules import ScheduleProblem, next_runs, schedule_zone
from toolsync_tui.engine.words import duration_text
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.files import FilesScreen
from toolsync_tui.screens.held import HeldScreen
from toolsync_tui.screens.history import HistoryScreen
from toolsync_tui.screens.operation import OperationScreen
from toolsync_tui.screens.run import RunScreen
from toolsync_tui.screens.run_confirm import RunConfirmScreen
from toolsync_tui.screens.schedules import SchedulesScreen
from toolsync_tui.screens.settings import SettingsScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.feed_words import last_stops, mode_cell, mode_line, stop_line, waiting_words
from toolsync_tui.views.formatting import file_age, file_size, short_path
from toolsync_tui.widgets.entry_table import Column, EntryTable
from toolsync_tui.widgets.filter_input import FilterInput, filter_binding
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

# From this width on the size, the rows and the next run get columns (the title and the file's age are always in the
# detail lines under the table): every cell is shown whole, at 80 columns as at 120.
WIDE = 116
# Files land in the inbox by scp or cron: look again now and then, not only when coming back.
RESCAN_SECONDS = 10
# The detail pane's lines at 80 columns (its padding aside): a guard's reason is cut to it.
DETAIL_WIDTH = 78
# The Last run column of a run going on, this often (its screen paints itself ten times a second).
RUNNING_EVERY = 0.5
# Only once an operation has a mode other than the plain update: the 80-column table otherwise keeps its room.
MODE_COLUMN = Column("Mode", "mode")
COLUMNS = (
    Column("Operation", "name"),
    MODE_COLUMN,
    Column("Command file", "file"),
    Column("Size", "size", wide=True),
    Column("Rows", "rows", wide=True),
    Column("Last run", "last"),
    Column("Next run", "next", wide=True),
)


def ago(when: datetime, now: datetime) -> str:
    """A short age for a narrow column: "now", "5 min ago", "3 h ago", "2 d ago"."""
    minutes = round(max((now - when).total_seconds(), 0) / 60)
    if minutes < 1:
        return "now"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{round(minutes / 60)} h ago"
    return f"{round(minutes / (24 * 60))} d ago"


def last_run_text(record: RunRecord | None, now: datetime) -> str:
    """The last run for the table: whether it went well, and when ("could not run (dry), 5 min ago")."""
    if record is None:
        return "never"
    return f"{record.verdict.word()}, {ago(record.started_at, now)}"


def last_run_detail(record: RunRecord | None, file: str | None = None) -> str:
    """The last run for the detail line: when, how long, what it came to, and its file when it was not `file`."""
    if record is None:
        return "never run"
    kind = "dry run" if record.dry_run else "run"
    other = f" of {record.file}" if file is not None and record.file != file else ""
    when = f"{record.started_at:%Y-%m-%d %H:%M}"
    if record.verdict.held:  # short: the reason follows on its own line
        said = counts_text(record.counts)
        return f"last run{other} {when}: held" + (f" (dry run: {said})" if said else "")
    return f"last {kind}{other} {when} ({duration_text(record.duration)}): {record.verdict.brief()}"


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
        Binding("a", "held", "Held runs", show=False),  # the line announcing them names the key
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("↑ ↓", "Choose an operation"),
        ("a", "Held runs: approve or discard them"),
        ("enter", "Open the chosen operation: its file, its runs, what can be done"),
        ("/", "Filter the operations by name or title (enter: keep it, esc: clear it)"),
    )

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.entries: dict[str, OperationEntry] = {}
        self.last_runs: dict[str, RunRecord] = {}
        self.stops: dict[str, RunRecord] = {}  # the last run a guard or threshold stopped, per operation
        self.held_count = 0
        self.row_counts: dict[str, str] = {}  # counted in a worker, shown when ready
        self.runs: dict[str, RunScreen] = {}  # runs started here, going on or shown (kept installed meanwhile)
        self._quitting = False

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield FilterInput("Filter the operations by name or title", list_selector="#operations")
        yield EntryTable[OperationEntry](id="operations", wide_from=WIDE, follow="row")
        yield Static(id="detail", markup=False)
        yield Static(id="held", markup=False)
        # Every key hint fits in 80 columns; ctrl+p still opens the palette, and ? lists it.
        yield KeyFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.set_interval(RESCAN_SECONDS, self.rescan)
        self.set_interval(RUNNING_EVERY, self._show_runs)

    def on_screen_resume(self) -> None:
        self._forget_finished()
        self.rescan()  # first display, and back from a run (its file was archived)

    @property
    def table(self) -> EntryTable[OperationEntry]:
        return self.query_one("#operations", EntryTable)

    def on_resize(self, event: Resize) -> None:
        if not self.table.fits(event.size.width):
            self.rescan()

    def rescan(self) -> None:
        self.entries = {entry.name: entry for entry in operation_entries(self.config)}
        records = RunLog(self.config.data_dir).recent(KEEP)
        self.last_runs = {}
        for record in records:
            self.last_runs.setdefault(record.operation, record)
        self.stops = last_stops(records)
        field = self.query_one(FilterInput)
        shown = [entry for entry in self.entries.values() if field.admits(entry.name, entry.title)]
        modes = any(mode_cell(self.config, name) for name in self.entries)
        columns = [column for column in COLUMNS if modes or column is not MODE_COLUMN]
        self.table.fill(columns, [(entry.name, entry, self._cells(entry, modes)) for entry in shown])
        self._show_held()
        self._show_runs()
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

    def _cells(self, entry: OperationEntry, modes: bool) -> list[Text]:
        """A cell for each of COLUMNS, the mode's only when `modes` (the table keeps those a narrow screen shows)."""
        file, size, _ = self._file_facts(entry)
        last = last_run_text(self.last_runs.get(entry.name), self.clock.now())
        rows = self.row_counts.get(entry.name, "") if entry.files else ""
        mode = [mode_cell(self.config, entry.name)] if modes else []
        cells = (entry.name, *mode, file, size, rows, last, self._next_run(entry.name))
        return [Text(cell) for cell in cells]

    def _show_held(self) -> None:
        """The line above the keys, while runs wait for approval."""
        self.held_count = len(HeldRuns(self.config.data_dir).list())
        line = self.query_one("#held", Static)
        line.update(f"{waiting_words(self.held_count)}: a shows them" if self.held_count else "")
        line.display = bool(self.held_count)

    def _file_facts(self, entry: OperationEntry) -> tuple[str, str, str]:
        """The file column (with the number of archives for pictures), its size and its age."""
        if entry.size is None or entry.modified is None:  # said in the file's cell: the size is a wide column
            return f"{entry.file.name} (missing)", "", ""
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
        if entry is not None:
            self.query_one("#detail", Static).update("\n".join(self._facts(entry)))

    def _facts(self, entry: OperationEntry) -> list[str]:
        """The detail lines, each within 80 columns: the file; its rows, size and age and the next run; the last run
        (or the one going on)."""
        where = short_path(entry.file, self.config.data_dir)
        if entry.size is None:
            missing = [
                f"{entry.title}: {where} is missing",
                f"next run: {self._next_run(entry.name)}",
                self._last(entry),
            ]
            return [*missing, *self._feed_facts(entry.name)]
        if entry.files != (entry.file,):
            where += ": " + ", ".join(path.name for path in entry.files)
        facts = []
        if entry.name in self.row_counts:
            count = self.row_counts[entry.name]
            facts.append(f"{count} row" if count == "1" else f"{count} rows")
        facts.append(file_size(entry.size))
        if entry.modified is not None:
            facts.append(f"changed {file_age(entry.modified, self.clock.now())}")
        facts.append(f"next run: {self._next_run(entry.name)}")
        return [f"{entry.title}: {where}", " · ".join(facts), self._last(entry), *self._feed_facts(entry.name)]

    def _feed_facts(self, name: str) -> list[str]:
        """The operation's mode and the last guard or threshold that stopped it, when there are."""
        facts = []
        if (mode := mode_line(self.config, name)) is not None:
            facts.append(mode)
        if (stop := self.stops.get(name)) is not None:
            facts.append(stop_line(stop, DETAIL_WIDTH))
        return facts

    def _last(self, entry: OperationEntry) -> str:
        run = self.runs.get(entry.name)
        if run is not None and run.running:
            return f"now {run.progress_words()} (enter shows it)"
        return last_run_detail(self.last_runs.get(entry.name), entry.file.name)

    def action_filter(self) -> None:
        self.query_one(FilterInput).slash_pressed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.rescan()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(self.table.entry(event.row_key))

    @on(DataTable.RowSelected)
    def _selected(self) -> None:  # enter, or a click on the highlighted row: opens, never runs
        self.action_open()

    def action_open(self) -> None:
        """The chosen operation on a screen of its own; the key pressed there comes back here (run, files ...)."""
        chosen = self.table.chosen
        if chosen is None:
            return
        run = self.runs.get(chosen.name)
        if run is not None and run.running:
            self.app.push_screen(run)
            return
        self.app.push_screen(OperationScreen(chosen.name, chosen.title, self._facts(chosen)), self._chosen_action)

    def _chosen_action(self, action: str | None) -> None:
        if action == "run":
            self.action_run(False)
        elif action == "dry_run":
            self.action_run(True)
        elif action == "files":
            self.action_files()
        elif action == "history":
            self.action_history()

    def action_run(self, dry_run: bool) -> None:
        chosen = self.table.chosen
        if chosen is None:
            return
        run = self.runs.get(chosen.name)
        if run is not None and run.running:  # one run of an operation at a time: show the one going on
            self.app.push_screen(run)
            return
        # Look at the disk again: the file may have come or gone since the last scan.
        entry = next(e for e in operation_entries(self.config) if e.name == chosen.name)
        refusal = entry.refusal()
        if refusal is not None:
            self.notify(refusal, title="Cannot run", severity="warning", markup=False)
            self.rescan()
            return
        if dry_run or not can_destroy(entry.name):
            self._start(entry, dry_run)
        else:
            self._ask_then_run(entry)

    @work(exclusive=True, group="ask", exit_on_error=False)
    async def _ask_then_run(self, entry: OperationEntry) -> None:
        """A run whose files can remove or suspend: the dry run's counts and a question first (No by default)."""
        if await asyncio.to_thread(may_destroy, self.config, entry.name, entry.files):
            confirmed = await self.app.push_screen_wait(RunConfirmScreen(self.config, entry))
            if not confirmed:
                self.notify(f"{entry.name} was not run", markup=False)
                self.rescan()  # the dry run is its last run now
                return
        self._start(entry, dry_run=False)

    def _start_held(self, held: HeldRun) -> None:
        """An approved held run, on the run screen and followed here as the operation's run."""
        run = self.runs.get(held.operation)
        if run is not None and run.running:  # one run of an operation at a time
            self.notify(f"{held.operation} is running: approve once it ended", severity="warning", markup=False)
            return
        try:
            status = held.file.stat()
        except OSError:
            self.notify(f"The held copy {held.file} is gone", severity="error", markup=False)
            return
        modified = datetime.fromtimestamp(status.st_mtime)
        title = f"{OPERATIONS[held.operation].title}, held run approved"
        entry = OperationEntry(held.operation, title, held.file, (held.file,), status.st_size, modified)

        async def approve(on_progress: ProgressCallback, cancel: threading.Event) -> list[RunResult]:
            async def job(gateway: MoodleGateway) -> list[RunResult]:
                return await approve_held(self.config, gateway, held.id, on_progress=on_progress, cancel=cancel)

            return await job_in_thread(self.config, job, cancel)

        self._forget_finished()
        run = RunScreen(
            self.config, entry, dry_run=False, clock=self.clock, on_finished=self._run_finished, job=approve
        )
        self.runs[held.operation] = run
        self.app.push_screen(run)

    def _start(self, entry: OperationEntry, dry_run: bool) -> None:
        self._forget_finished()
        run = RunScreen(self.config, entry, dry_run=dry_run, clock=self.clock, on_finished=self._run_finished)
        self.runs[entry.name] = run  # esc leaves it running (it keeps itself installed until it is over)
        self.app.push_screen(run)

    # -- runs going on ---------------------------------------------------------------------

    def runs_going(self) -> list[RunScreen]:
        return [run for run in self.runs.values() if run.running]

    def _show_runs(self) -> None:
        """The Last run cell of each run going on: its progress."""
        for name, run in self.runs.items():
            if run.running and name in self.table.entries:
                self.table.update_cell(name, "last", Text(run.progress_cell()))
        chosen = self.table.chosen
        if chosen is not None and chosen.name in self.runs:
            self._describe(chosen)

    def _run_finished(self, run: RunScreen) -> None:
        if self._quitting and not self.runs_going():
            self.app.exit()
            return
        if run not in self.app.screen_stack:  # finished out of view: say so
            self.notify(run.finished_words(), title=f"{run.entry.name} finished", markup=False)
        self._forget_finished()
        if self.is_attached:
            self.rescan()

    def _forget_finished(self) -> None:
        """The runs that ended (their screens remove themselves once they are left)."""
        for name, run in list(self.runs.items()):
            if not run.running:
                del self.runs[name]

    def quit_asking(self) -> bool:
        """q or ctrl+q with runs going on: ask, No by default; yes cancels them and quits once they have stopped.
        False when nothing runs (quit at once)."""
        going = self.runs_going()
        if not going:
            return False
        if self._quitting or isinstance(self.app.screen, ConfirmScreen):  # q pressed again while asked
            return True
        question = "\n".join(run.cancel_question() for run in going)

        def answered(yes: bool | None) -> None:
            if yes and self.runs_going():
                self._quitting = True
                for run in self.runs_going():
                    run.cancel()
                self.notify("Quitting once the run has stopped", markup=False)
            elif yes:
                self.app.exit()

        self.app.push_screen(
            ConfirmScreen("Quit toolsync?", f"{question}\n\nQuit once it has stopped?", yes="Yes, cancel and quit"),
            answered,
        )
        return True

    def action_held(self) -> None:
        """The runs waiting for approval (an empty list says there are none)."""
        self.app.push_screen(HeldScreen(self.config, self.clock, on_approved=self._start_held))

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
