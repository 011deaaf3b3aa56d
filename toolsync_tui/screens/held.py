"""Held runs: the unattended runs a source guard or a threshold stopped, waiting for approval, newest first.

The list says which operation and file, when, and why; the pane under it what the held run's dry run found and a
sample of what it would remove. Approving asks first (No by default, as every removal the interface starts does),
then the dashboard runs it on the run screen (screens/run.py), live as any run; discarding asks too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Static

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import HeldProblem, HeldRun, HeldRuns
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import short_path
from toolsync_tui.views.held_words import held_at, held_facts, would_words
from toolsync_tui.widgets.entry_table import SCROLLBAR, Column, EntryTable, shortened
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

# Operation (cohortscourses), the file (cut in its middle), the time held ("01-05 08:30"); the reason gets the rest.
OPERATION_WIDTH, FILE_WIDTH, WHEN_WIDTH, MIN_REASON = 14, 16, 11, 12
COLUMNS = (
    Column("Operation", "operation", width=OPERATION_WIDTH),
    Column("File", "file", width=FILE_WIDTH),
    Column("Held", "when", width=WHEN_WIDTH),
    Column("Reason", "reason", flexible=MIN_REASON),
)


class HeldScreen(Screen[None]):
    CSS_PATH = "held.tcss"
    AUTO_FOCUS = "#held-runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("a", "approve", "Approve"),
        Binding("x", "discard", "Discard"),
        Binding("delete", "discard", "Discard", show=False),
        Binding("r", "refresh", "Refresh", show=False),
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("↑ ↓", "Choose a held run: the pane under the list shows its dry run"),
        ("a", "Approve: after a question (no by default) the run goes ahead, live on the run screen"),
        ("x / del", "Discard: after a question, its file goes to archive/discarded/ unrun"),
        ("r", "Read the held runs again"),
    )

    def __init__(self, config: Config, clock: Clock, on_approved: Callable[[HeldRun], None]) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.on_approved = on_approved  # the dashboard, which runs it and follows it as any run
        self.held = HeldRuns(config.data_dir)

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static("Held runs · stopped by a guard or a threshold, waiting for approval", id="view-title")
        yield EntryTable[HeldRun](id="held-runs")
        with VerticalScroll(id="held-detail"):
            yield Static(id="held-facts", markup=False)
        yield KeyFooter()

    def on_screen_resume(self) -> None:
        self.rescan()  # first display, and back from an approved run (no longer held)

    def on_resize(self, event: Resize) -> None:
        if not self.table.fits(event.size.width):
            self.rescan()

    @property
    def table(self) -> EntryTable[HeldRun]:
        return self.query_one("#held-runs", EntryTable)

    def rescan(self) -> None:
        # The reason cut at its end to the room left, rather than in its middle as a flexible column cuts a name.
        fixed = OPERATION_WIDTH + FILE_WIDTH + WHEN_WIDTH + 2 * self.table.cell_padding * len(COLUMNS) + SCROLLBAR
        room = max(self.size.width - fixed, MIN_REASON)
        rows = [(run.id, run, self._cells(run, room)) for run in self.held.list()]
        self.table.fill(COLUMNS, rows)
        self._describe(self.table.chosen)

    def _cells(self, run: HeldRun, room: int) -> list[Text]:
        reason = run.reason if len(run.reason) <= room else run.reason[: room - 1] + "…"
        cells = (run.operation, shortened(run.original, FILE_WIDTH), held_at(run), reason)
        return [Text(cell, no_wrap=True) for cell in cells]

    def _describe(self, run: HeldRun | None) -> None:
        detail = self.query_one("#held-facts", Static)
        if run is None:
            detail.update("No run is waiting for approval: runs that cron holds come here")
            return
        detail.update("\n".join(held_facts(run)))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(self.table.entry(event.row_key))

    def action_refresh(self) -> None:
        self.rescan()

    def action_back(self) -> None:
        self.app.pop_screen()

    def _chosen(self) -> HeldRun | None:
        """The held run under the cursor, if it is still held (approved or discarded elsewhere: said, and gone)."""
        chosen = self.table.chosen
        if chosen is None:
            return None
        try:
            still = self.held.get(chosen.id)
        except HeldProblem:  # ids are whole here: cannot match several
            still = None
        if still is None:
            self.notify(f"The held run of {chosen.original} is no longer held", severity="warning", markup=False)
            self.rescan()
            return None
        return chosen

    def action_approve(self) -> None:
        run = self._chosen()
        if run is None:
            return
        title = OPERATIONS[run.operation].title if run.operation in OPERATIONS else run.operation
        question = "\n".join(
            [
                f"Run {run.operation} ({title}) on {run.original}, held {held_at(run)}?",
                f"It was held: {run.reason}",
                f"Its dry run said: {would_words(run.counts)}.",
            ]
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.on_approved(run)

        self.app.push_screen(ConfirmScreen("Approve the held run", question, yes="Yes, run it"), answered)

    def action_discard(self) -> None:
        run = self._chosen()
        if run is None:
            return
        question = (
            f"Discard the held run of {run.operation} on {run.original}, held {held_at(run)}?\n"
            "Nothing of it is written; its file goes to archive/discarded/."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._discard(run)

        self.app.push_screen(ConfirmScreen("Discard the held run", question, yes="Yes, discard it"), answered)

    def _discard(self, run: HeldRun) -> None:
        try:
            kept = self.held.discard(run.id)
        except (OSError, HeldProblem) as problem:
            self.notify(f"Not discarded: {problem}", severity="error", markup=False)
        else:
            where = short_path(kept, self.config.data_dir)
            self.notify(f"Discarded the held run of {run.operation}: its file is now {where}", markup=False)
        self.rescan()
