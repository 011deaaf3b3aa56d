"""The history: reports, trybacks and archived command files, newest first; open, re-run a tryback, delete, undo.

Each file's run is named by its id (as runs.jsonl has it, the first 8 characters: what `toolsync undo` takes). `u`
undoes the chosen file's run: why it cannot be undone when it cannot; else a dry run of the undo, a question (No by
default), then the undo on the run screen, a run of its own that the history lists like any other.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from toolsync_tui.config import Config
from toolsync_tui.engine.changes.undo import undo_refusal, undo_run
from toolsync_tui.engine.datadir.catalog import OperationEntry
from toolsync_tui.engine.datadir.history import (
    KINDS,
    HistoryEntry,
    HistoryProblem,
    Kind,
    delete_entries,
    file_count,
    list_history,
    report_results,
    total_size,
    tryback_rows,
)
from toolsync_tui.engine.datadir.store import StoredName
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.log import KEEP, RunLog, RunRecord
from toolsync_tui.engine.run.pipeline import ProgressCallback, RunResult
from toolsync_tui.engine.run.thread import job_in_thread
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.report import FileScreen, ReportScreen
from toolsync_tui.screens.run import RunScreen
from toolsync_tui.screens.undo_confirm import UndoConfirmScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import file_age, file_size, short_path
from toolsync_tui.widgets.entry_table import Column, EntryTable, shortened
from toolsync_tui.widgets.filter_input import FilterInput, filter_binding
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

# From this width on, the size gets a column; below, the line under the table says it.
WIDE = 120
# A data directory years old can hold tens of thousands of files: the table shows the newest ones.
MAX_ROWS = 1_000
MARK = "●"
SHOWN_IN_CONFIRM = 5  # file names listed in the delete question
# Column widths at 80 columns: kind, operation (cohortscourses), age ("15 min", "2 days"), the run log's counts
# ("dry run: 3 created"); the file, the command file's name, gets the rest (16). Wide, the size too ("999.9 kB").
KIND_WIDTH, OPERATION_WIDTH, AGE_WIDTH, RESULT_WIDTH, SIZE_WIDTH = 7, 14, 10, 18, 9
MIN_FILE_WIDTH = 12
COLUMNS = (
    Column(" ", "mark", width=1),
    Column("Kind", "kind", width=KIND_WIDTH),
    Column("Operation", "operation", width=OPERATION_WIDTH),
    Column("File", "file", flexible=MIN_FILE_WIDTH),  # the room the others leave
    Column("Size", "size", width=SIZE_WIDTH, wide=True),
    Column("Age", "age", width=AGE_WIDTH),
    Column("Result", "result", width=RESULT_WIDTH),
)
# humanize's words, shortened for the Age column (the line under the table says the age whole).
SHORT_AGE = ((" minutes", " min"), (" minute", " min"), (" hours", " h"), (" hour", " h"), (" seconds", " s"))

KIND_KEYS = Binding.Group("Show", compact=True)
# What becomes of a re-run tryback, by files.archive: the run treats it as any command file.
AFTERWARDS = {
    "move": "Afterwards it is moved to archive/, as a command file is.",
    "copy": "Afterwards a copy goes to archive/ and the tryback stays (files.archive is copy).",
    "off": "Afterwards the tryback stays where it is (files.archive is off).",
}


class HistoryScreen(Screen[None]):
    CSS_PATH = "history.tcss"
    AUTO_FOCUS = "#history"  # the filter field is hidden until `/`
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("space", "mark", "Mark", show=False),  # in the help: the footer keeps room for q and ?
        Binding("delete", "delete", "Delete", key_display="del"),
        Binding("ctrl+d", "delete", "Delete", show=False),
        Binding("t", "rerun", "Re-run"),
        Binding("u", "undo", "Undo"),
        filter_binding(show=False),  # in the help: the footer keeps room for u
        Binding("1", "kind('')", "All", group=KIND_KEYS),
        Binding("2", "kind('report')", "Reports", group=KIND_KEYS),
        Binding("3", "kind('tryback')", "Trybacks", group=KIND_KEYS),
        Binding("4", "kind('archive')", "Archives", group=KIND_KEYS),
        Binding("a", "mark_all", "Mark all shown", show=False),
        Binding("r", "refresh", "Refresh", show=False),
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        # One line each, no more than fit 24 rows with the footer's keys: the help must not scroll.
        ("enter", "Open the file (a report with its outcome table)"),
        ("/", "Filter (in it, enter keeps it and esc clears it)"),
        ("space", "Mark the file: del then deletes the marked ones"),
        ("a", "Mark every file shown (again: unmark them)"),
        ("ctrl+d", "Delete, as del does"),
        ("r", "Read the folders again"),
    )

    def __init__(self, config: Config, clock: Clock, operation: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.operation = operation  # None: every operation's files
        self.kind: Kind | None = None
        self.entries: list[HistoryEntry] = []  # what the folders hold (of `operation`)
        self.marked: set[Path] = set()
        self.counts: dict[str, str] = {}  # a report's run, in the run log's words (interrupted ones say so)
        self.runs: dict[str, RunRecord] = {}  # a report's name, and a run's stamp, -> its run in the run log

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(self._title(), id="view-title", markup=False)
        yield FilterInput("Filter: part of a name, an operation or a kind", list_selector="#history")
        yield EntryTable[HistoryEntry](id="history", wide_from=WIDE)
        yield Static(id="detail", markup=False)
        yield Static(id="status", markup=False)
        yield KeyFooter()

    def _title(self) -> str:
        if self.operation is None:
            return "History · reports, trybacks and archived files of every operation"
        return f"History · {self.operation} · {OPERATIONS[self.operation].title}"

    def on_screen_resume(self) -> None:
        self.rescan()  # first display, and back from a run (the tryback was archived, new files came)

    def on_resize(self, event: Resize) -> None:
        if not self.table.fits(event.size.width):
            self.show_entries()

    @property
    def table(self) -> EntryTable[HistoryEntry]:
        return self.query_one("#history", EntryTable)

    @property
    def shown(self) -> dict[str, HistoryEntry]:
        """Row key -> entry, in table order."""
        return self.table.entries

    # -- listing ----------------------------------------------------------------------------------

    def rescan(self) -> None:
        listed = list_history(self.config)
        if self.operation is not None:
            listed = [entry for entry in listed if entry.operation == self.operation]
        self.entries = listed
        self.counts = report_results(self.config.data_dir)
        self.runs = runs_by_file(RunLog(self.config.data_dir).recent(KEEP))
        present = {path for entry in listed for path in entry.files}
        self.marked &= present  # marks of files gone meanwhile
        self.show_entries()

    def _visible(self) -> list[HistoryEntry]:
        field = self.query_one(FilterInput)
        return [
            entry
            for entry in self.entries
            if (self.kind is None or entry.kind == self.kind) and field.admits(*searched(entry))
        ]

    def show_entries(self) -> None:
        matching = self._visible()
        now = self.clock.now()
        self.table.fill(COLUMNS, [(str(entry.path), entry, self._cells(entry, now)) for entry in matching[:MAX_ROWS]])
        self._describe(self.table.chosen)
        self._show_status(matching)

    def _cells(self, entry: HistoryEntry, now: datetime) -> list[Text]:
        cells = [
            MARK if entry.path in self.marked else "",
            entry.kind,
            self._operation(entry) or "—",
            entry.shown,
            file_size(entry.size),
            short_age(file_age(entry.modified, now)),
            shortened(self._result(entry), RESULT_WIDTH),
        ]
        return [Text(cell, no_wrap=True) for cell in cells]

    def _result(self, entry: HistoryEntry) -> str:
        result = (self.counts.get(entry.name) or "") if entry.kind == "report" else ""
        if entry.dry_run:
            return f"dry run: {result}" if result else "dry run"
        return result

    def _operation(self, entry: HistoryEntry) -> str | None:
        """The entry's operation; for an undo's report (no operation's file), the run log's word: "undo"."""
        if entry.operation is not None:
            return entry.operation
        record = run_of(entry, self.runs)
        return record.operation if record is not None else None

    def _describe(self, entry: HistoryEntry | None) -> None:
        detail = self.query_one("#detail", Static)
        if entry is None:
            empty = "No file matches" if self.entries else "Nothing here yet: runs leave their files here"
            detail.update(empty)
            return
        # What the table's columns leave out or cut: the stored file whole, its size and age, the whole result.
        parts = [short_path(entry.path, self.config.data_dir) + (" + .csv" if entry.twin is not None else "")]
        parts += [file_size(entry.size), file_age(entry.modified, self.clock.now())]
        record = run_of(entry, self.runs)
        if record is not None and record.run is not None:
            parts.append(f"run {record.run[:8]}")  # the id `toolsync undo` and `u` take
        parts.append(self._operation(entry) or "no known operation")
        if result := self._result(entry):
            parts.append(result)
        detail.update(" · ".join(parts))

    def _show_status(self, visible: list[HistoryEntry]) -> None:
        which = "All" if self.kind is None else f"{self.kind.capitalize()}s"
        shown = f"{len(visible):,}" if len(visible) <= MAX_ROWS else f"the newest {MAX_ROWS:,} of {len(visible):,}"
        parts = [f"{which}: {shown} shown ({file_size(total_size(visible))})"]
        if self.operation is not None:
            parts.append(f"{self.operation} only")
        marked = self._marked_entries()
        if marked:
            parts.append(f"{len(marked):,} marked ({file_size(total_size(marked))})")
        self.query_one("#status", Static).update(" · ".join(parts))

    def _marked_entries(self) -> list[HistoryEntry]:
        return [entry for entry in self.entries if entry.path in self.marked]

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(self.table.entry(event.row_key))

    # -- filtering --------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one(FilterInput).slash_pressed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.show_entries()

    def action_kind(self, kind: str) -> None:
        self.kind = next((known for known in KINDS if known == kind), None)
        self.show_entries()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.rescan()

    # -- opening ----------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _selected(self) -> None:  # enter, or a click on the highlighted row
        entry = self.table.chosen
        if entry is None:
            return
        if not entry.path.exists():
            self.notify(f"{entry.name} is gone (removed meanwhile)", severity="warning", markup=False)
            self.rescan()
        elif entry.kind == "report":
            self.app.push_screen(ReportScreen(self.config, entry.path, self.clock))
        else:
            self.app.push_screen(FileScreen(self.config, entry.path, self.clock))

    # -- marking and deleting ---------------------------------------------------------------------

    def action_mark(self) -> None:
        entry = self.table.chosen
        if entry is None:
            return
        self.marked ^= {entry.path}
        self.table.update_cell(str(entry.path), "mark", Text(MARK if entry.path in self.marked else ""))
        self.table.action_cursor_down()  # as in htop and k9s: space, space, space marks a run of rows
        self._show_status(self._visible())

    def action_mark_all(self) -> None:
        shown = {entry.path for entry in self.shown.values()}
        self.marked = self.marked - shown if shown <= self.marked else self.marked | shown
        self.show_entries()

    def action_delete(self) -> None:
        chosen = self.table.chosen
        doomed = self._marked_entries() or ([chosen] if chosen is not None else [])
        if not doomed:
            return
        count, size = file_count(doomed), file_size(total_size(doomed))
        names = [entry.name + (" (and its .csv)" if entry.twin else "") for entry in doomed]
        listed = names[:SHOWN_IN_CONFIRM]
        if len(names) > SHOWN_IN_CONFIRM:
            listed.append(f"… and {len(names) - SHOWN_IN_CONFIRM:,} more")
        plural = "file" if count == 1 else "files"
        question = f"Delete {count:,} {plural} ({size})?\n" + "\n".join(listed) + "\nThey cannot be recovered."

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._delete(doomed)

        self.app.push_screen(ConfirmScreen("Delete", question, yes="Yes, delete"), answered)

    def _delete(self, doomed: list[HistoryEntry]) -> None:
        done = delete_entries(self.config, doomed)
        self.marked -= {path for entry in doomed for path in entry.files}
        if done.removed:
            plural = "file" if len(done.removed) == 1 else "files"
            self.notify(f"Deleted {len(done.removed):,} {plural} ({file_size(done.freed)})", markup=False)
        for problem in done.problems:
            self.notify(problem, title="Not deleted", severity="error", markup=False)
        self.rescan()

    # -- undoing a run ----------------------------------------------------------------------------

    def action_undo(self) -> None:
        entry = self.table.chosen
        if entry is None:
            return
        record = run_of(entry, self.runs)
        if record is None or record.run is None:
            self.notify(
                f"u undoes a run: the run log no longer knows the run of {entry.name}",
                title="Cannot undo",
                severity="warning",
                markup=False,
            )
            return
        self._undo(entry, record, record.run)

    @work(exclusive=True, group="undo", exit_on_error=False)
    async def _undo(self, entry: HistoryEntry, record: RunRecord, run: str) -> None:
        """Why not, when it cannot be undone; else the undo's dry run and a question, then the undo itself."""
        try:
            refusal = await asyncio.to_thread(undo_refusal, self.config.data_dir, run)
        except Exception as unexpected:  # a worker's error would pass unseen: say it
            refusal = f"{type(unexpected).__name__}: {unexpected}"
        if refusal is not None:
            self.notify(refusal, title=f"Run {run[:8]} cannot be undone", severity="warning", markup=False)
            return
        described = f"{record.operation} on {record.file}, {record.started_at:%Y-%m-%d %H:%M}"
        if not await self.app.push_screen_wait(UndoConfirmScreen(self.config, run, described)):
            self.notify(f"Run {run[:8]} was not undone", markup=False)
            self.rescan()  # the undo's dry run left its report
            return

        async def undo(on_progress: ProgressCallback, cancel: threading.Event) -> list[RunResult]:
            async def job(gateway: MoodleGateway) -> RunResult:
                return await undo_run(self.config, gateway, run, on_progress=on_progress, cancel=cancel)

            return [await job_in_thread(self.config, job, cancel)]

        title = f"Undo of run {run[:8]} ({described})"
        shown = OperationEntry("undo", title, entry.path, (entry.path,), entry.size, entry.modified)
        self.app.push_screen(RunScreen(self.config, shown, dry_run=False, clock=self.clock, job=undo))

    # -- re-running a tryback ---------------------------------------------------------------------

    def action_rerun(self) -> None:
        entry = self.table.chosen
        if entry is None:
            return
        if entry.kind != "tryback":
            self.notify(f"t runs a tryback again; {entry.name} is a {entry.kind}", severity="warning", markup=False)
        elif entry.operation is None:
            self.notify(
                f"No operation's command file is named like {entry.name}: cannot tell which operation runs it",
                severity="warning",
                markup=False,
            )
        else:
            self._confirm_rerun(entry, entry.operation)

    @work(exclusive=True, group="rerun", exit_on_error=False)
    async def _confirm_rerun(self, entry: HistoryEntry, operation: str) -> None:
        try:
            # A tryback of a million rows takes a moment to count: not on the interface's loop.
            rows = await asyncio.to_thread(tryback_rows, self.config, operation, entry.path)
        except HistoryProblem as problem:
            self.notify(str(problem), title="Cannot run", severity="error", markup=False)
            return
        except Exception as unexpected:  # a worker's error would pass unseen: say it
            problem_text = f"{type(unexpected).__name__}: {unexpected}"
            self.notify(problem_text, title="Cannot run", severity="error", markup=False)
            return
        info = OPERATIONS[operation]
        singular, plural = ("entry", "entries") if entry.path.suffix.lower() == ".zip" else ("row", "rows")
        question = (
            f"Run {info.name} ({info.title}) on {entry.name}: {rows:,} {singular if rows == 1 else plural}?\n"
            + AFTERWARDS[self.config.settings.files.archive]
        )
        if not await self.app.push_screen_wait(ConfirmScreen("Run the tryback again", question, yes="Yes, run it")):
            return
        run = OperationEntry(info.name, info.title, entry.path, (entry.path,), entry.size, entry.modified)
        self.app.push_screen(RunScreen(self.config, run, dry_run=False, clock=self.clock))


def searched(entry: HistoryEntry) -> tuple[str, ...]:
    """What the `/` filter looks in: the file's names (stored and read), its operation and its kind."""
    return entry.name, entry.source, entry.operation or "", entry.kind


def short_age(age: str) -> str:
    """ "15 minutes ago" as the Age column shows it: "15 min"."""
    for long, short in SHORT_AGE:
        age = age.replace(long, short)
    return age.removesuffix(" ago")


def runs_by_file(records: list[RunRecord]) -> dict[str, RunRecord]:
    """A report's name -> its run, and a run's stamp -> its run (the tryback and archive of a run share its stamp)."""
    found: dict[str, RunRecord] = {}
    for record in records:
        if record.report is None or record.run is None:
            continue
        name = Path(record.report).name
        found.setdefault(name, record)
        stored = StoredName.parse("report", name)
        if stored is not None:
            found.setdefault(stored.stamp, record)
    return found


def run_of(entry: HistoryEntry, runs: dict[str, RunRecord]) -> RunRecord | None:
    """The run that left `entry`, when the run log still has it."""
    if entry.kind == "report":
        return runs.get(entry.name)
    stored = StoredName.parse(entry.kind, entry.name)
    record = runs.get(stored.stamp) if stored is not None else None
    return record if record is not None and record.operation == entry.operation else None
