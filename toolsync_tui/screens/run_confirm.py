"""Before a run that can remove or suspend anything: its dry run, then what it would do, and a question whose default
answer is No (enter answers the focused No; `y` or the Yes button runs it).

The dry run is a real one (engine/run/thread.py, as the run screen runs): its counts are the ones the run would
reach, its report is written like any dry run's.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.catalog import OperationEntry
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.rows import Outcome
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult
from toolsync_tui.engine.run.thread import run_in_thread
from toolsync_tui.engine.run.verdict import Verdict, combined
from toolsync_tui.engine.words import plural

# The dry run's outcomes as the question words them.
WOULD = {
    Outcome.CREATED: "created",
    Outcome.UPDATED: "updated",
    Outcome.DELETED: "deleted or removed",
    Outcome.UNCHANGED: "left unchanged",
    Outcome.SKIPPED: "skipped",
    Outcome.FAILED: "failed",
}


def would_lines(verdict: Verdict) -> list[str]:
    """ "  3 would be created", one line per outcome the dry run found."""
    return [
        f"  {plural(verdict.counts[outcome], 'row')} would be {words}"
        for outcome, words in WOULD.items()
        if verdict.counts.get(outcome)
    ] or ["  the file has no data rows"]


class RunConfirmScreen(ModalScreen[bool]):
    CSS_PATH = "modals.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, run it"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, config: Config, entry: OperationEntry) -> None:
        super().__init__()
        self.config = config
        self.entry = entry
        self.results: list[RunResult] = []
        self.problem: str | None = None
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = f"Run {self.entry.name}? It can remove or suspend"
            yield Static(f"Dry run of {self._files()} first: nothing is written…", id="message", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Yes, run it (y)", id="yes", variant="error", disabled=True)
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        self._dry_run()

    def _files(self) -> str:
        files = self.entry.files
        return files[0].name if len(files) == 1 else f"{len(files)} files"

    @work(exclusive=True, group="dry-run", exit_on_error=False)
    async def _dry_run(self) -> None:
        try:
            for path in self.entry.files:
                self.results.append(
                    await run_in_thread(self.config, self.entry.name, path, dry_run=True, cancel=self._cancel)
                )
        except (RunProblem, DatabaseError) as problem:
            self.problem = str(problem)
        except Exception as unexpected:  # the question must never take the interface down
            self.problem = f"unexpected error (please report it): {type(unexpected).__name__}: {unexpected}"
        if self._cancel.is_set() or not self.is_attached:
            return
        self._show()

    def _show(self) -> None:
        message = self.query_one("#message", Static)
        if self.problem is not None or not self.results:
            message.update(f"The dry run of {self._files()} could not run: {self.problem}\nNothing was written.")
            return
        verdict = combined([result.verdict for result in self.results])
        lines = [f"{self.entry.title}: a dry run of {self._files()} says that", *would_lines(verdict)]
        message.update("\n".join([*lines, "", "Run it for real? Enter or n: no; y: yes."]))
        self.query_one("#yes", Button).disabled = False

    def action_answer(self, answer: bool) -> None:
        if answer and self.query_one("#yes", Button).disabled:
            return  # not before the dry run has said what the run would do
        self._cancel.set()  # a dry run still going stops after its batch
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "yes")
