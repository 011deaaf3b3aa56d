"""One run of one operation, live: progress, counters, recent report lines, then where the files went.

The engine runs on an event loop of its own in another thread (engine/run_thread.py); this screen's worker only
waits for it. The engine's progress callback, called in that thread, only stores; a timer paints ten times a
second, so a fast engine cannot flood the terminal.

A run other than an operation on its files (a held run approved, an undo) comes as a `job`: the screen shows it alike.

Esc leaves the run going (the dashboard keeps this screen and shows its progress); cancelling it, or quitting,
asks first, No by default.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ProgressBar, Static
from textual.worker import Worker

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.catalog import OperationEntry
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.run.pipeline import (
    Progress,
    ProgressCallback,
    RunProblem,
    RunResult,
    SafetyStop,
    run_series,
)
from toolsync_tui.engine.run.thread import run_in_thread
from toolsync_tui.engine.run.verdict import combined, counters_text
from toolsync_tui.engine.words import plural
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import rate, short_path, time_left
from toolsync_tui.views.run_words import series_lines
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.report_lines import ReportLines
from toolsync_tui.widgets.site_bar import SiteBar

# A run of another kind than an operation on its files: given where to report progress and what cancels it.
Job = Callable[[ProgressCallback, threading.Event], Awaitable[list[RunResult]]]
LOG_LINES = 1000
PAINT_EVERY = 0.1  # seconds


class RunScreen(Screen[None]):
    CSS_PATH = "run.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_run", "Cancel"),  # while it runs (see check_action); asks first
        Binding("escape", "back", "Back"),  # the run goes on
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("esc", "Back to the operations; a run goes on, its progress shown there (enter or r comes back here)"),
        ("c", "Cancel the run, after a question (no by default): the rows not reached are reported as not processed"),
    )

    def __init__(
        self,
        config: Config,
        entry: OperationEntry,
        *,
        dry_run: bool,
        clock: Clock,
        on_finished: Callable[[RunScreen], None] | None = None,
        job: Job | None = None,
    ) -> None:
        super().__init__()
        self.job = job  # None: the operation's run on entry.files
        self.on_finished = on_finished  # the dashboard, which follows its runs also while they are not shown
        self.config = config
        self.entry = entry
        self.dry_run = dry_run
        self.clock = clock
        self.running = False
        self.results: list[RunResult] = []  # one per input: a command file, or each picture archive in turn
        self.error: str | None = None
        self.worker: Worker[None] | None = None
        self._cancel = threading.Event()
        self._progress: Progress | None = None
        self._pending: deque[str] = deque(maxlen=LOG_LINES)
        self._started = 0.0
        self._elapsed = 0.0
        self._painter: Timer | None = None

    @property
    def result(self) -> RunResult | None:
        """The latest input's result."""
        return self.results[-1] if self.results else None

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        mode = " · DRY RUN: nothing will be written" if self.dry_run else ""
        yield Static(f"{self.entry.name} · {self.entry.title}{mode}", id="run-title", markup=False)
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="bar")
            yield Static("", id="lines")
            yield Static("", id="rate")
        yield Static(counters_text({}), id="counters", markup=False)
        yield Static("", id="state", markup=False)
        yield ReportLines(max_lines=LOG_LINES, id="log")
        yield Static("", id="summary", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        # Installed, Textual keeps the screen (and its worker, the run) when esc pops it; uninstalled once it is over.
        if not self.app.is_screen_installed(self):
            self.app.install_screen(self, f"run-{id(self)}")
        log = self.query_one(ReportLines)
        log.border_title = "Report lines, latest last"
        log.write_line(f"{self.entry.name}: {self._short(self.entry.file)}")
        if len(self.entry.files) > 1:
            log.write_line(f"{len(self.entry.files)} archives, each with its own report, tryback and archive")
        self._started = self.clock.monotonic()
        self._painter = self.set_interval(PAINT_EVERY, self._paint)
        self.running = True
        self._state("Running…")
        self.worker = self._run()

    # -- the run ---------------------------------------------------------------------------

    @work(exclusive=True, group="run", exit_on_error=False)
    async def _run(self) -> None:
        # Every failure ends as a message on this screen: the worker never raises into the app.
        # A CancelledError (the app is closing) is a BaseException and passes through untouched.
        try:
            if self.job is not None:
                self.results.extend(await self.job(self._on_progress, self._cancel))
            else:
                await run_series(
                    self.entry.files,
                    self._run_input,
                    confirm=self._confirm_past_threshold,
                    on_result=self.results.append,
                )
        except SafetyStop as stop:
            self.error = f"Stopped by the safety threshold, not confirmed: {stop}"
        except (RunProblem, DatabaseError) as problem:
            self.error = f"Could not run: {problem}"
        except Exception as unexpected:  # a run must never take the interface down with it
            self.log.error(unexpected)  # devtools console: the screen shows a message, not a traceback
            self.error = f"Unexpected error (please report it): {type(unexpected).__name__}: {unexpected}"
        self._finish()

    async def _run_input(self, path: Path, force: bool) -> RunResult:
        """One input's run, in a thread of its own (engine/run/thread.py)."""
        files = self.entry.files
        if len(files) > 1 and not force:  # a run again past the threshold goes on under the same heading
            self._pending.append(f"-- {path.name} ({files.index(path) + 1} of {len(files)})")
            self._progress = None
        return await run_in_thread(
            self.config,
            self.entry.name,
            path,
            dry_run=self.dry_run,
            force=force,
            on_progress=self._on_progress,
            cancel=self._cancel,
        )

    async def _confirm_past_threshold(self, stop: SafetyStop) -> bool:
        self._paint()
        self._state("Waiting for confirmation: the safety threshold was reached.")
        if self not in self.app.screen_stack:  # left with esc: the question comes with its run
            await self.app.push_screen(self)
        words = stop.question  # a removal threshold's, an update threshold's or a source guard's (engine/run/stops.py)
        question = ConfirmScreen("Safety threshold reached", words, yes="Yes, run it anyway")
        confirmed = await self.app.push_screen_wait(question)
        if confirmed and not self._cancel.is_set():
            self.query_one(ReportLines).write_line("confirmed past the safety threshold: running again")
            self._state("Running past the safety threshold…")
            return True
        return False

    def _on_progress(self, progress: Progress) -> None:
        # The engine's thread: a plain assignment and a deque's extend are safe without a lock.
        self._progress = progress
        self._pending.extend(progress.recent)

    # -- painting --------------------------------------------------------------------------

    def _paint(self) -> None:
        if self.running:
            self._elapsed = self.clock.monotonic() - self._started
        progress = self._progress
        if progress is not None:
            done = sum(progress.counts.values())
            self.query_one(ProgressBar).update(total=max(progress.lines_total, 1), progress=progress.lines_done)
            self.query_one("#lines", Static).update(f"line {progress.lines_done:,} of {progress.lines_total:,}")
            left = time_left(progress.lines_done, progress.lines_total, self._elapsed)
            self.query_one("#rate", Static).update(" · ".join(filter(None, [rate(done, self._elapsed), left])))
            self.query_one("#counters", Static).update(counters_text(progress.counts))
        if self._pending:
            # popleft, not list() then clear(): a line the engine adds meanwhile is kept for the next paint.
            pending = self._pending
            self.query_one(ReportLines).write_lines([pending.popleft() for _ in range(len(pending))])

    def _state(self, text: str, kind: str = "") -> None:
        state = self.query_one("#state", Static)
        state.update(text)
        for name in ("-error", "-warning", "-success"):
            state.set_class(name == kind, name)

    def _finish(self) -> None:
        self._paint()
        self.running = False
        if self._painter is not None:
            self._painter.stop()
        if self.results:
            verdict = combined([result.verdict for result in self.results])
            bar = self.query_one(ProgressBar)
            if verdict.cancelled:  # as far as it got, not 100 %
                bar.update(total=max(verdict.rows, 1), progress=verdict.rows - verdict.not_processed)
            else:
                bar.update(total=bar.total or 1, progress=bar.total or 1)  # trailing comments count as read
            self.query_one("#counters", Static).update(counters_text(verdict.done))
            headline, tone = verdict.headline()
            self._state(headline, f"-{tone}")
            summary = self.query_one("#summary", Static)
            summary.update("\n".join(series_lines(self.results, self.config.data_dir, self._elapsed)))
            summary.display = True
        if self.error is not None:
            if self._progress is None:
                self.query_one(ProgressBar).update(total=1, progress=0)  # not a spinning "--%" forever
            self._state(self.error, "-error")
            self.notify(self.error, title=f"{self.entry.name} did not run", severity="error", markup=False)
        self.refresh_bindings()
        if self.on_finished is not None:
            self.on_finished(self)
        if self not in self.app.screen_stack:  # it ended out of view: nothing keeps it now
            self.app.uninstall_screen(self)
            self.app.call_later(self.remove)

    def _short(self, path: Path) -> str:
        return short_path(path, self.config.data_dir)

    # -- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_run":
            return self.running and not self._cancel.is_set()
        return True

    def action_cancel_run(self) -> None:
        """Asks first (No by default): a cancelled run leaves its file half applied."""
        if not self.running or self._cancel.is_set():
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel()

        self.app.push_screen(ConfirmScreen("Cancel the run?", self.cancel_question(), yes="Yes, cancel it"), answered)

    def cancel(self) -> None:
        if not self.running or self._cancel.is_set():
            return
        self._cancel.set()
        self._state("Cancelling: the batch in progress finishes, the rows after it are not processed…", "-warning")
        self.refresh_bindings()

    def action_back(self) -> None:
        self.app.pop_screen()  # off the stack at once; Textual then removes it unless it is installed
        if not self.running:
            self.app.uninstall_screen(self)

    # -- words for the dashboard and the questions -------------------------------------------

    def _done(self) -> tuple[int, int]:
        """Rows done and rows in all, as far as the engine has said."""
        progress = self._progress
        if progress is None:
            return 0, 0
        return sum(progress.counts.values()), progress.lines_total

    def cancel_question(self) -> str:
        """ "Cancel the run of users? 1,200 rows applied so far, the rest will be reported as not processed." """
        done, _ = self._done()
        kind = "dry run" if self.dry_run else "run"
        verb = "checked" if self.dry_run else "applied"
        return (
            f"Cancel the {kind} of {self.entry.name}? {plural(done, 'row')} {verb} so far, the rest will be "
            "reported as not processed."
        )

    def progress_cell(self) -> str:
        """The dashboard's Last run cell while it runs: "running 45 %", "dry run 45 %"."""
        done, total = self._done()
        kind = "dry run" if self.dry_run else "running"
        if self._cancel.is_set():
            kind = "cancelling"
        return f"{kind} {done * 100 // total} %" if total else f"{kind}…"

    def progress_words(self) -> str:
        """The dashboard's detail line while it runs: "running: line 1,200 of 5,000"."""
        kind = "dry run" if self.dry_run else "running"
        if self._cancel.is_set():
            kind = "cancelling"
        progress = self._progress
        if progress is None:
            return f"{kind}: starting"
        return f"{kind}: line {progress.lines_done:,} of {progress.lines_total:,}"

    def finished_words(self) -> str:
        if self.error is not None:
            return self.error
        if not self.results:
            return "nothing was run"
        return combined([result.verdict for result in self.results]).headline()[0]
