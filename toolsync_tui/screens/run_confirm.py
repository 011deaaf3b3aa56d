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
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult
from toolsync_tui.engine.run.thread import run_in_thread
from toolsync_tui.engine.run.verdict import combined
from toolsync_tui.views.run_words import would_lines


class DryRunQuestion(ModalScreen[bool]):
    """A real dry run first (`dry_run`), then what it says (`_show`, through `ask`) and a question whose default
    answer is No; Yes is refused until the dry run has spoken. Its subclasses give its words."""

    CSS_PATH = "modals.tcss"
    YES = "Yes, run it"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.problem: str | None = None
        self._cancel = threading.Event()

    def question_title(self) -> str:
        raise NotImplementedError

    def waiting(self) -> str:
        """The message while the dry run goes on."""
        raise NotImplementedError

    async def dry_run(self) -> None:
        raise NotImplementedError

    def _show(self) -> None:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self.question_title()
            yield Static(self.waiting(), id="message", markup=False)
            with Horizontal(id="buttons"):
                yield Button(f"{self.YES} (y)", id="yes", variant="error", disabled=True)
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        self._dry_run()

    @work(exclusive=True, group="dry-run", exit_on_error=False)
    async def _dry_run(self) -> None:
        try:
            await self.dry_run()
        except (RunProblem, DatabaseError) as problem:
            self.problem = str(problem)
        except Exception as unexpected:  # the question must never take the interface down
            self.problem = f"unexpected error (please report it): {type(unexpected).__name__}: {unexpected}"
        if self._cancel.is_set() or not self.is_attached:
            return
        self._show()

    def tell(self, text: str) -> None:
        self.query_one("#message", Static).update(text)

    def ask(self, lines: list[str], question: str) -> None:
        """What the dry run says, and the question: now Yes can be answered."""
        self.tell("\n".join([*lines, "", f"{question} Enter or n: no; y: yes."]))
        self.query_one("#yes", Button).disabled = False

    def action_answer(self, answer: bool) -> None:
        if answer and self.query_one("#yes", Button).disabled:
            return  # not before the dry run has said what would be done
        self._cancel.set()  # a dry run still going stops after its batch
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "yes")


class RunConfirmScreen(DryRunQuestion):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, run it"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, config: Config, entry: OperationEntry) -> None:
        super().__init__(config)
        self.entry = entry
        self.results: list[RunResult] = []

    def question_title(self) -> str:
        return f"Run {self.entry.name}? It can remove or suspend"

    def waiting(self) -> str:
        return f"Dry run of {self._files()} first: nothing is written…"

    def _files(self) -> str:
        files = self.entry.files
        return files[0].name if len(files) == 1 else f"{len(files)} files"

    async def dry_run(self) -> None:
        for path in self.entry.files:
            self.results.append(
                await run_in_thread(self.config, self.entry.name, path, dry_run=True, cancel=self._cancel)
            )

    def _show(self) -> None:
        if self.problem is not None or not self.results:
            self.tell(f"The dry run of {self._files()} could not run: {self.problem}\nNothing was written.")
            return
        verdict = combined([result.verdict for result in self.results])
        lines = [f"{self.entry.title}: a dry run of {self._files()} says that", *would_lines(verdict)]
        self.ask(lines, "Run it for real?")
