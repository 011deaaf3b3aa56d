"""Choosing an operation's command file: the inbox's candidates, a preview of the highlighted one, a dry run.

Whatever reads a file runs in a worker thread (asyncio.to_thread), and the preview only ever holds one page: the
list stays responsive whatever the size of the file under the cursor. Nothing here writes but the configuration
(when a file is chosen) and the dry run's report.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from toolsync_tui.config import Config, ConfigError
from toolsync_tui.engine.datadir.catalog import Candidate, candidates, file_setting
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.controls import escaped
from toolsync_tui.engine.run.pipeline import Progress, RunProblem, RunResult
from toolsync_tui.engine.run.preview import (
    PAGE_ROWS,
    FilePreview,
    Page,
    PreviewRow,
    count_rows,
    is_archive_operation,
    open_preview,
)
from toolsync_tui.engine.run.thread import run_in_thread
from toolsync_tui.engine.run.verdict import parts_failed_text
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import file_age, file_size, short_path
from toolsync_tui.views.run_words import outcome_line
from toolsync_tui.widgets.entry_table import Cell, Column, EntryTable
from toolsync_tui.widgets.filter_input import FilterInput, filter_binding
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

MARK = "✔"  # the preselected file; for pictures, every archive a run would take
LAST_PAGE = 10**12  # asked for when the number of pages is not known yet: the reader gives the last
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPIN_EVERY = 0.1  # seconds
CELL_CHARS = 40  # a long value is cut in the preview: the columns after it stay in view
# Files come and go (scp, cron), and "2 minutes ago" ages: the list is looked at again this often.
RESCAN_SECONDS = 10
COLUMNS = (Column(" ", "mark"), Column("File", "file"), Column("Size", "size"), Column("Changed", "changed"))


class FileList(EntryTable[Candidate]):
    """The inbox's files. The list gets the room the lines under the preview leave (a dry run's summary, a row's
    problem): when it gets fewer rows, its highlighted one stays in sight."""

    def on_resize(self) -> None:
        if self.row_count:
            self.call_after_refresh(self.move_cursor, row=self.cursor_row, animate=False)


class FilesScreen(Screen[None]):
    CSS_PATH = "files.tcss"
    AUTO_FOCUS = "#files"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "choose", "Choose"),
        Binding("v", "dry_run", "Dry run"),
        filter_binding(),
        # Priority: the file list is a DataTable, which would otherwise take these keys to scroll itself.
        Binding("pagedown", "page(1)", "Page", key_display="PgDn", priority=True),
        Binding("pageup", "page(-1)", "Previous page", key_display="PgUp", priority=True, show=False),
        Binding("n", "page(1)", "Next page", show=False),
        Binding("p", "page(-1)", "Previous page", show=False),
        Binding("home", "edge(False)", "First row", priority=True, show=False),
        Binding("end", "edge(True)", "Last row", priority=True, show=False),
        Binding("g", "go_to_line", "Go to line", show=False),
        Binding("escape", "back", "Back"),
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("↑ ↓", "Highlight a file: its first rows show below"),
        ("enter", "Choose the highlighted file (as c)"),
        ("n / p, PgUp", "Next / previous page"),
        ("home / end", "First / last row of the file"),
        ("g", "Go to a line of the file"),
        ("tab", "Move between the file list and the preview"),
        ("enter / esc in the filter", "Back to the list: the filter kept / cleared"),
    )

    def __init__(self, config: Config, operation: str, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.operation = operation
        self.clock = clock
        self.title_text = OPERATIONS[operation].title
        self.archives = is_archive_operation(operation)
        self.store = DataStore(config.data_dir)
        self.candidates: list[Candidate] = []
        self.highlighted: Candidate | None = None
        self._shown_rows: list[tuple[str, list[Cell]]] = []  # the file list as last filled (key, cells)
        self.preview: FilePreview | None = None
        self.page: Page | None = None
        self.file_problem: str | None = None  # why the highlighted file cannot be read as the operation's input
        self.rows_counted: int | None = None
        self.counting = False
        self.dry_running = False
        self.dry_run_result: RunResult | None = None
        self.dry_run_error: str | None = None
        self._dry_run_file = ""  # what the dry run in progress reads, for its spinner
        self._spinner: Timer | None = None
        self._spin = 0
        self._dry_run_progress: Progress | None = None  # stored by the run's thread, painted by the spinner
        self._shown_once = False
        # Paging: the page asked for last (keys may arrive faster than pages are read: only the last one is read),
        # and which of its rows the cursor goes to (a row index, -1: the last).
        self._wanted: int | None = None
        self._wanted_row = 0
        self._paging_for: FilePreview | None = None  # the preview whose pages a reader is reading now
        self._first_line = 1  # the first row's line (after the header): where a line's page is guessed from

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(id="files-title", markup=False)
        yield FilterInput("Filter the files by name", list_selector="#files")
        yield FileList(id="files")
        yield Static(id="preview-title", markup=False)
        yield DataTable(id="preview", cursor_type="row")
        with Horizontal(id="goto-row"):
            yield Static("Go to line (esc: cancel):", id="goto-label")
            yield Input(placeholder="a line number of the file", id="goto", type="integer", compact=True)
        yield Static(id="file-problem", markup=False)
        yield Static(id="row-problem", markup=False)
        yield Static(id="dry-run", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#file-problem", Static).display = False
        self.query_one("#goto-row").display = False
        self._show_dry_run()
        self.set_interval(RESCAN_SECONDS, self._rescan_shown)

    def _rescan_shown(self) -> None:
        if self.is_current:  # not under the help or a run: it is looked at again when it shows
            self.rescan()

    def on_screen_resume(self) -> None:
        self.rescan()  # first display, and back from the help: files may have come or gone meanwhile

    def on_unmount(self) -> None:
        if self.preview is not None:
            # Closing waits for a page read still running in its thread: not on the event loop.
            asyncio.get_running_loop().run_in_executor(None, self.preview.close)
            self.preview = None

    # -- the file list ---------------------------------------------------------------------

    @property
    def table(self) -> FileList:
        return self.query_one("#files", FileList)

    def rescan(self) -> None:
        self.candidates = candidates(self.config, self.operation)
        self._show_title()
        self._fill_files()

    def _fill_files(self) -> None:
        wanted = self.highlighted.path if self.highlighted else self._preselected()
        field = self.query_one(FilterInput)
        marked = self._marked()
        now = self.clock.now()
        rows = [(str(c.path), c, _cells(c, c.path in marked, now)) for c in self.candidates if field.admits(c.shown)]
        shown = [(key, cells) for key, _, cells in rows]
        if shown == self._shown_rows and self.highlighted is not None:
            return  # the periodic look found nothing new: the list and its preview stay as they are
        self._shown_rows = shown
        self.table.fill(COLUMNS, rows, highlight=str(wanted))  # gone, or filtered out: the first row
        self._highlight(self.table.chosen)

    def _preselected(self) -> Path:
        return self.store.preselected(self.config.operation(self.operation).file)

    def _marked(self) -> set[Path]:
        setting = self.config.operation(self.operation).file
        if self.archives:  # a prefix: every archive it matches is run, in name order
            return set(self.store.inputs(setting, ".zip"))
        return {self.store.preselected(setting)}

    def _show_title(self) -> None:
        setting = self.config.operation(self.operation).file
        if self.archives:
            pattern = short_path(self.store.inputs_pattern(setting, ".zip"), self.config.data_dir)
            chosen = f"runs every {pattern}, in name order"
        else:
            preselected = self._preselected()
            missing = "" if preselected.is_file() else " (missing)"
            chosen = f"file: {short_path(preselected, self.config.data_dir)}{missing}"
        self.query_one("#files-title", Static).update(f"{self.operation} · {self.title_text} · {chosen}")

    @on(DataTable.RowHighlighted, "#files")
    def _file_highlighted(self, event: DataTable.RowHighlighted) -> None:
        candidate = self.table.entry(event.row_key)
        if candidate is not None:  # else a row filtered out since: the refill has highlighted another
            self._highlight(candidate)

    @on(DataTable.RowSelected, "#files")
    def _file_selected(self) -> None:  # enter, or a click on the highlighted row
        self.action_choose()

    def _highlight(self, candidate: Candidate | None) -> None:
        """Show `candidate` in the preview, unless it is shown already: the list is refilled as the filter changes,
        and a file changed since (size, time) is read again."""
        if candidate == self.highlighted and self._shown_once:
            return
        self._shown_once = True
        moved = candidate is None or self.highlighted is None or candidate.path != self.highlighted.path
        self.highlighted = candidate
        if moved and not self.dry_running:  # a dry run's summary belongs to its file
            self.dry_run_result, self.dry_run_error = None, None
            self._show_dry_run()
        self.rows_counted = None
        self._close_preview()
        if candidate is None:
            self._show_empty()
            return
        self.counting = True
        self._show_loading(candidate)
        self._open(candidate)
        self._count(candidate)

    # -- the filter ------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one(FilterInput).slash_pressed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._fill_files()

    # -- the preview -----------------------------------------------------------------------

    @work(exclusive=True, group="preview", exit_on_error=False)
    async def _open(self, candidate: Candidate) -> None:
        try:
            preview = await asyncio.to_thread(open_preview, self.config, self.operation, candidate.path)
            page = await asyncio.to_thread(preview.page, 0)
        except Exception as problem:  # shown as words, never raised into the app: see _problem_text
            if self._still(candidate):
                self._show_file_problem(_problem_text(problem))
            return
        if not self._still(candidate):
            asyncio.get_running_loop().run_in_executor(None, preview.close)
            return
        self.preview = preview
        self._show_page(page)

    def _still(self, candidate: Candidate) -> bool:
        """Whether `candidate` is still the highlighted file (a worker's result may come after the cursor moved on)."""
        return self.highlighted is not None and self.highlighted.path == candidate.path

    def _go_to_page(self, number: int, row: int = 0) -> None:
        """Show page `number` with the cursor on `row`: no reading here, a key returns at once. One reader works at a
        time and reads the page asked for last: PgDn held down skips the pages it passed over."""
        self._wanted, self._wanted_row = max(number, 0), row
        self._show_preview_title()
        if self.preview is not None and self._paging_for is not self.preview:
            self._paging_for = self.preview
            self._pager(self.preview)

    @work(group="page", exit_on_error=False)
    async def _pager(self, preview: FilePreview) -> None:
        try:
            while self._wanted is not None and preview is self.preview:
                number, row = self._wanted, self._wanted_row
                page = await asyncio.to_thread(preview.page, number)
                if preview is not self.preview:  # a page of a file highlighted before
                    return
                if (self._wanted, self._wanted_row) == (number, row):  # nothing else was asked meanwhile
                    self._wanted = None
                    self._show_page(page, row)
        except Exception as problem:  # e.g. the file was removed since it was opened
            if preview is self.preview:
                self._wanted = None
                self._show_file_problem(_problem_text(problem))
        finally:
            if self._paging_for is preview:
                self._paging_for = None

    def _close_preview(self) -> None:
        preview, self.preview = self.preview, None
        self.page, self.file_problem, self._wanted = None, None, None
        if preview is not None:
            asyncio.get_running_loop().run_in_executor(None, preview.close)

    def action_page(self, step: int) -> None:
        if self.preview is None or self.page is None:
            return
        if self._wanted is None:
            number = self.page.number + step
            if number < 0 or (step > 0 and self.page.last):
                self.app.bell()
                return
        else:  # pages asked for and not shown yet: on from the last one (past the end, the reader gives the last)
            number = max(self._wanted + step, 0)
        self._go_to_page(number)

    def action_edge(self, last: bool) -> None:
        """Home: the first row of the file; End: its last row."""
        if self.preview is None or self.page is None:
            return
        if not last:
            self._go_to_page(0)
        elif self.rows_counted is not None:
            self._go_to_page(max(0, -(-self.rows_counted // PAGE_ROWS) - 1), -1)
        else:
            self._go_to_page(LAST_PAGE, -1)  # past the end: the reader gives the last page

    # -- go to line ------------------------------------------------------------------------

    def action_go_to_line(self) -> None:
        if self.preview is None or self.page is None:
            return
        field = self.query_one("#goto", Input)
        field.value = ""
        self.query_one("#goto-row").display = True
        field.focus()

    @on(Input.Submitted, "#goto")
    def _line_entered(self, event: Input.Submitted) -> None:
        self._leave_goto()
        if event.value.strip().isdigit() and self.preview is not None:
            self._find_line(self.preview, int(event.value))

    def _leave_goto(self) -> None:
        self.query_one("#goto-row").display = False
        self.query_one("#preview", DataTable).focus()

    @work(exclusive=True, group="goto", exit_on_error=False)
    async def _find_line(self, preview: FilePreview, line: int) -> None:
        self.query_one("#preview-title", Static).update(f"{preview.path.name} · looking for line {line:,}…")
        try:
            number, row = await asyncio.to_thread(page_with_line, preview, line, self._first_line)
        except Exception as problem:
            if preview is self.preview:
                self._show_file_problem(_problem_text(problem))
            return
        if preview is self.preview:
            self._go_to_page(number, row)

    @on(DataTable.RowHighlighted, "#preview")
    def _preview_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.page is not None and 0 <= event.cursor_row < len(self.page.rows):
            self._show_row_problem(self.page.rows[event.cursor_row])

    def _show_loading(self, candidate: Candidate) -> None:
        self.query_one("#preview-title", Static).update(f"{candidate.shown} · reading…")
        self.query_one("#preview", DataTable).clear(columns=True)
        self._show_file_problem(None)
        self._set_row_problem("")

    def _show_empty(self) -> None:
        inbox = short_path(self.store.inbox, self.config.data_dir)
        kind = "zip archive" if self.archives else "file"
        filtered = " matches the filter" if self.query_one(FilterInput).words else f" in {inbox}/"
        self.query_one("#preview-title", Static).update(f"No {kind}{filtered}.")
        self.query_one("#preview", DataTable).clear(columns=True)
        self._show_file_problem(None)
        self._set_row_problem("")

    def _show_file_problem(self, text: str | None) -> None:
        self.file_problem = text
        problem = self.query_one("#file-problem", Static)
        problem.update(f"This file cannot be run as it is:\n{text}" if text else "")
        problem.display = text is not None
        self.query_one("#preview", DataTable).display = text is None
        if text is not None:
            self._set_row_problem("")
            self._show_preview_title()

    def _show_page(self, page: Page, cursor: int = 0) -> None:
        assert self.preview is not None
        self.page = page
        if page.number == 0 and page.rows:
            self._first_line = page.rows[0].line
        self._show_file_problem(None)
        table = self.query_one("#preview", DataTable)
        table.clear(columns=True)
        problem_style = f"bold {self.app.current_theme.error or 'red'}"
        rows: list[list[Text]] = []
        for row in page.rows:
            style = problem_style if row.problem else ""
            line = f"! {row.line}" if row.problem else str(row.line)  # the mark reads without colour too
            rows.append([Text(line, style), *(Text(_cell(value), style) for value in row.values)])
        # Each column as wide as its widest cell, given: DataTable measures them only once its queue runs dry, and a
        # page painted before that (a loaded machine) kept its columns cut to their headers until the cursor moved.
        headers = [Text("line"), *(Text(name) for name in self.preview.columns)]
        widths = [
            max([header.cell_len, *(row[i].cell_len for row in rows if i < len(row))])
            for i, header in enumerate(headers)
        ]
        table.add_column("line", key="line", width=widths[0])
        for name, width in zip(self.preview.columns, widths[1:], strict=True):
            table.add_column(name, width=width)
        table.add_rows(rows)
        if page.rows:
            table.move_cursor(row=cursor % len(page.rows))
        self._show_preview_title()
        self._show_page_problems(page)

    def _show_page_problems(self, page: Page) -> None:
        faulty = [row for row in page.rows if row.problem]
        if not faulty:
            self._set_row_problem("")
        elif len(faulty) == 1:
            self._show_row_problem(faulty[0])
        else:
            first = faulty[0]
            self._set_row_problem(
                f"{len(faulty)} rows of this page cannot be read; the first, line {first.line}: {first.problem}"
            )

    def _show_row_problem(self, row: PreviewRow) -> None:
        if row.problem:
            self._set_row_problem(f"line {row.line} cannot be read: {row.problem}")
        elif self.page is not None:  # back to what the page as a whole has
            self._show_page_problems(self.page)

    def _set_row_problem(self, text: str) -> None:
        widget = self.query_one("#row-problem", Static)
        widget.update(text)
        widget.display = bool(text)

    def _show_preview_title(self) -> None:
        candidate = self.highlighted
        if candidate is None:
            return
        parts = [candidate.shown]
        if self.rows_counted is not None:
            unit = "file" if self.archives else "data row"
            parts.append(f"{self.rows_counted:,} {unit}{'' if self.rows_counted == 1 else 's'}")
        elif self.counting:
            parts.append("counting rows…")
        if self.preview is not None and self.file_problem is None and not self.archives:  # an archive's: its count
            parts.append(self.preview.describe())
        if self.page is not None and self.file_problem is None:
            parts.append(self._page_label(self.page))
        self.query_one("#preview-title", Static).update(" · ".join(parts))

    def _page_label(self, page: Page) -> str:
        if self._wanted is not None and self._wanted != LAST_PAGE:  # keys ahead of the reader: where they lead
            number, last, reading = self._wanted, False, "…"
        else:
            number, last, reading = page.number, page.last, ""
        if self.rows_counted is not None:
            pages = max(1, -(-self.rows_counted // PAGE_ROWS))
            return f"page {min(number + 1, pages):,} of {pages:,}{reading}"
        return f"page {number + 1:,}" + (" (last)" if last else "") + reading

    # -- the row count ---------------------------------------------------------------------

    @work(exclusive=True, group="count", exit_on_error=False)
    async def _count(self, candidate: Candidate) -> None:
        self.counting = True
        try:
            counted: int | None = await asyncio.to_thread(count_rows, self.config, self.operation, candidate.path)
        except Exception:  # the preview says why the file cannot be read
            counted = None
        self.counting = False
        if self._still(candidate):
            self.rows_counted = counted
            self._show_preview_title()

    # -- the dry run -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "dry_run" and self.dry_running:
            return None  # shown, greyed: one dry run at a time
        # Home and end move in a field being typed in.
        return not (action == "edge" and isinstance(self.focused, Input))

    def action_dry_run(self) -> None:
        candidate = self.highlighted
        if candidate is None or self.dry_running:
            return
        self.dry_running = True
        self._dry_run_file = candidate.shown
        self.dry_run_result, self.dry_run_error = None, None
        self._dry_run_progress = None
        self._spinner = self.set_interval(SPIN_EVERY, self._spin_once)
        self._spin_once()
        self.refresh_bindings()
        self._dry_run(candidate)

    @work(exclusive=True, group="dry-run", exit_on_error=False)
    async def _dry_run(self, candidate: Candidate) -> None:
        try:
            result = await run_in_thread(
                self.config, self.operation, candidate.path, dry_run=True, on_progress=self._on_progress
            )
        except (RunProblem, DatabaseError) as problem:
            self._dry_run_done(None, f"{candidate.shown} cannot run: {problem}")
        except Exception as unexpected:  # a dry run must never take the interface down with it
            self.log.error(unexpected)
            text = f"Unexpected error (please report it): {type(unexpected).__name__}: {unexpected}"
            self._dry_run_done(None, text)
        else:
            self._dry_run_done(result, None)

    def _dry_run_done(self, result: RunResult | None, error: str | None) -> None:
        self.dry_running = False
        if self._spinner is not None:
            self._spinner.stop()
        self.refresh_bindings()
        # Shown even when another file is highlighted by now: the summary names its file.
        self.dry_run_result, self.dry_run_error = result, error
        self._show_dry_run()
        if error is not None:
            self.notify(error, title="Dry run", severity="error", markup=False)

    def _on_progress(self, progress: Progress) -> None:
        self._dry_run_progress = progress  # in the run's thread: only stored, the spinner paints it

    def _spin_once(self) -> None:
        self._spin = (self._spin + 1) % len(SPINNER)
        text = f"{SPINNER[self._spin]} Dry run of {self._dry_run_file}: nothing is written…"
        progress = self._dry_run_progress
        if progress is not None and progress.lines_total:
            share = min(100, 100 * progress.lines_done // progress.lines_total)
            text += f"\n  line {progress.lines_done:,} of {progress.lines_total:,} ({share} %)"
        self._set_dry_run(text, "")

    def _show_dry_run(self) -> None:
        result, error = self.dry_run_result, self.dry_run_error
        if error is not None:
            self._set_dry_run(error, "-error")
        elif result is not None:
            self._set_dry_run("\n".join(self._result_lines(result)), "-warning" if result.exit_code else "-success")
        elif self.highlighted is not None:
            self._set_dry_run("v: dry run of this file against the site, nothing is written", "-hint")
        else:
            self._set_dry_run("", "")

    def _result_lines(self, result: RunResult) -> list[str]:
        rows = f"{result.rows:,} row{'' if result.rows == 1 else 's'}"
        lines = [f"Dry run of {result.source.name}, {rows}, nothing was written. A run would give:"]
        details = f"   ({parts_failed_text(result.failed_details)})" if result.failed_details else ""
        lines.append(outcome_line(result.counts) + details)
        if result.report_path is not None:
            lines.append(f"report: {short_path(result.report_path, self.config.data_dir)}")
        return lines

    def _set_dry_run(self, text: str, kind: str) -> None:
        widget = self.query_one("#dry-run", Static)
        widget.update(text)
        for name in ("-error", "-warning", "-success", "-hint"):
            widget.set_class(name == kind, name)

    # -- choosing, leaving -----------------------------------------------------------------

    def action_choose(self) -> None:
        candidate = self.highlighted
        if candidate is None:
            return
        if self.archives:
            self._explain_archives()
            return
        old = self.config.operation(self.operation).file
        value = file_setting(candidate.path, self.store.inbox)
        key = f"operations.{self.operation}.file"
        try:
            self.config.set(key, value)
            self.config.save()
        except (ConfigError, OSError) as problem:
            self.config.set(key, old)  # as on disk: the interface never shows a setting that was not saved
            self.notify(f"{key} was not saved: {problem}", title="Not saved", severity="error", markup=False)
            return
        self.notify(f"{self.operation} will run {value}", title="File chosen", markup=False)
        self.rescan()

    def _explain_archives(self) -> None:
        setting = self.config.operation(self.operation).file
        pattern = short_path(self.store.inputs_pattern(setting, ".zip"), self.config.data_dir)
        self.notify(
            f"{self.operation} has no single file to choose: a run takes every archive named {pattern}, one after "
            f"the other (the archives marked {MARK}). Rename an archive to match, or change {self.operation}'s file "
            "prefix in the configuration.",
            title="Nothing to choose",
            markup=False,
        )

    def action_back(self) -> None:
        if self.query_one("#goto-row").display:  # esc in the go-to-line field: only the field goes
            self._leave_goto()
            return
        self.app.pop_screen()


def _cells(candidate: Candidate, marked: bool, now: datetime) -> list[Cell]:
    return [MARK if marked else "", Text(candidate.shown), file_size(candidate.size), file_age(candidate.modified, now)]


def _cell(value: str) -> str:
    """A value on one line of a table cell: line breaks of a quoted value shown, every other control character
    escaped (an ESC would drive the terminal), a long value cut."""
    flat = escaped(value.replace("\r\n", "↵").replace("\n", "↵"))
    return flat if len(flat) <= CELL_CHARS else flat[: CELL_CHARS - 1] + "…"


def page_with_line(preview: FilePreview, line: int, first_line: int) -> tuple[int, int]:
    """The page and row of the record holding file line `line` (the last record starting at or before it); past the
    end, the last row. Blocking.

    Each record takes one line at least, so the page is at most the one a file without comments or multi-line
    values would have it on: that page is read first, and it is the one in the common case; else the pages before it
    are read in order (one pass of the stream)."""
    page = preview.page(max(0, (line - first_line) // PAGE_ROWS))
    if page.rows and page.rows[0].line > line and page.number > 0:
        number = 0
        while True:
            page = preview.page(number)
            if page.last or not page.rows or page.rows[-1].line >= line:
                break
            number += 1
    before = [index for index, row in enumerate(page.rows) if row.line <= line]
    return page.number, before[-1] if before else 0


def _problem_text(problem: Exception) -> str:
    """A problem reading a file in the administrator's words, never a traceback."""
    if isinstance(problem, FileProblem):
        return str(problem)
    if isinstance(problem, OSError):
        return f"cannot be read: {problem.strerror or problem}"
    return f"unexpected error (please report it): {type(problem).__name__}: {problem}"
