"""Before the undo of a run: the undo's dry run, then what it would do (conflicts included), and a question whose
default answer is No (enter answers the focused No; `y` or the Yes button undoes it).

The dry run is a real one (engine/changes/undo.py with dry_run), in a thread of its own as the run screen's runs: its
counts are the ones the undo would reach, its report is written like any dry run's.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from toolsync_tui.config import Config
from toolsync_tui.engine.changes.undo import undo_run
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.engine.run.thread import job_in_thread
from toolsync_tui.screens.run_confirm import DryRunQuestion
from toolsync_tui.views.formatting import short_path
from toolsync_tui.views.run_words import would_lines

NOTES_SHOWN = 4  # the dry run's notes (conflicts, what cannot be undone) in the question; the report has them all


class UndoConfirmScreen(DryRunQuestion):
    YES = "Yes, undo it"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, undo it"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, config: Config, run: str, described: str) -> None:
        super().__init__(config)
        self.run = run  # the run's id
        self.described = described  # "users, userimport.csv, 2026-01-05 08:30"
        self.result: RunResult | None = None

    def question_title(self) -> str:
        return f"Undo run {self.run[:8]}?"

    def waiting(self) -> str:
        return f"Dry run of the undo of {self.described} first: nothing is written…"

    async def dry_run(self) -> None:
        async def job(gateway: MoodleGateway) -> RunResult:
            return await undo_run(self.config, gateway, self.run, dry_run=True, cancel=self._cancel)

        self.result = await job_in_thread(self.config, job, self._cancel)

    def _show(self) -> None:
        result = self.result
        if self.problem is not None or result is None:
            self.tell(f"The undo of {self.described} cannot be done: {self.problem}\nNothing was written.")
            return
        lines = [f"Undo of {self.described}: a dry run says that", *would_lines(result.verdict)]
        lines += [f"  {note}" for note in result.notes[:NOTES_SHOWN]]
        if len(result.notes) > NOTES_SHOWN:
            lines.append(f"  … and {len(result.notes) - NOTES_SHOWN:,} more notes")
        if result.report_path is not None:
            lines.append(f"Its report: {short_path(result.report_path, self.config.data_dir)}")
        self.ask(lines, "Undo it for real?")
