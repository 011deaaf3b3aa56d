"""Schedules: when `toolsync cron` runs each operation, pausing them, and the crontab line that calls it.

An operation in snapshot mode (the file is the whole truth: what it no longer names is suspended, unenrolled or
removed) is marked next to its name, since a scheduled snapshot acts on absences too; the line above says the mark.

Schedules live in the configuration (operations.<name>.schedule and schedule_enabled) and are saved at once. The
crontab is read and written by the `crontab` program (cron.crontab_command) in a worker thread, so a slow or hung
command never freezes the screen.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import Worker

from toolsync_tui.config import Config, ConfigError
from toolsync_tui.engine.registry import OPERATIONS, OperationInfo
from toolsync_tui.engine.unattended import crontab
from toolsync_tui.engine.unattended.crontab import CrontabProblem
from toolsync_tui.engine.unattended.schedules import ScheduleProblem, schedule_zone
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.cron_words import moment, reading, upcoming
from toolsync_tui.views.feed_words import is_snapshot
from toolsync_tui.views.formatting import short_path
from toolsync_tui.widgets.entry_table import Column, EntryTable
from toolsync_tui.widgets.filter_input import FilterInput, filter_binding
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.schedule_editor import ScheduleEditor
from toolsync_tui.widgets.site_bar import SiteBar

# From this width on the operation's title gets a column (80 columns fit without it).
WIDE = 100
SNAPSHOT_MARK = "◆"
# Only while an operation runs in snapshot mode: three cells the 80-column table otherwise keeps.
MARK_COLUMN = Column(" ", "snapshot")
COLUMNS = (
    Column("Operation", "name"),
    MARK_COLUMN,
    Column("Title", "title", wide=True),
    Column("Schedule", "schedule"),
    Column("State", "state"),
    Column("Next run", "next run"),
)
# Next runs move on with time; a minute is the finest a cron schedule gets.
REFRESH_SECONDS = 60
# How often the installed crontab line calls `toolsync cron` (what `toolsync crontab install` does by default).
EVERY_MINUTES = 5


def sized(columns: Sequence[Column], rows: Sequence[Sequence[Text]]) -> list[Column]:
    """Each column as wide as its label and longest cell. A DataTable sizes a column without a width only when idle,
    and keeps the lines it painted before that: a table filled again after an edit, and painted as its editor
    closed, stayed cut to its labels (`deletecou  off`) until a resize."""
    return [
        replace(column, width=max([len(column.label), *(cells[index].cell_len for cells in rows)]))
        for index, column in enumerate(columns)
    ]


# -- the schedules' clock ----------------------------------------------------------------------------------------


def schedules_now(config: Config, clock: Clock) -> datetime:
    """The clock's now in the schedules' zone; ScheduleProblem when cron.timezone is not a zone."""
    zone = schedule_zone(config.settings.cron.timezone)
    # The clock gives naive local time, which astimezone() reads as the system's zone.
    return clock.now().astimezone(zone)


# -- who runs cron ---------------------------------------------------------------------------------------------------


def current_user() -> str:
    """Who toolsync runs as now (the effective user: sudo's target, not LOGNAME)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def owner_of(path: Path) -> str | None:
    try:
        return path.owner()
    except (OSError, KeyError):  # missing, or a uid without a name
        return None


def site_folder(config: Config) -> Path:
    """The folder whose owner is the site's file owner: moodledata when known, else toolsync's data folder."""
    moodle_data = config.settings.operations.pictures.moodle_data_dir
    return config.resolve(moodle_data) if moodle_data else config.data_dir


def owner_note(config: Config) -> tuple[str, bool]:
    """What to say about the crontab's user, and whether it is a warning."""
    folder = site_folder(config)
    note = "cron must run toolsync as the site's file owner"
    owner = owner_of(folder)
    if owner is None:
        return f"{note} (the owner of moodledata)", False
    note = f"{note}: {owner} owns {short_path(folder, config.base_dir)}"
    me = current_user()
    if owner != me and not _names_a_user(config.settings.cron.crontab_command):
        return f"{note}; you are {me}: install it from {owner}'s session, or use crontab -u {owner}", True
    return note, False


def _names_a_user(command: str) -> bool:
    """Whether the crontab command picks its user (`crontab -u www-data`, `sudo -u www-data crontab`)."""
    try:
        return "-u" in shlex.split(command)
    except ValueError:  # unbalanced quotes: the crontab calls will say so
        return False


# -- crontab tasks, run in a worker thread: (the line installed afterwards, what to say) --------------------------

CrontabTask = Callable[[Config], tuple[str | None, str]]


def _read(config: Config) -> tuple[str | None, str]:
    return crontab.show(config), ""


def _install(config: Config) -> tuple[str | None, str]:
    line = crontab.install(config, EVERY_MINUTES)
    return line, f"Installed: toolsync cron runs every {EVERY_MINUTES} minutes"


def _remove(config: Config) -> tuple[str | None, str]:
    found = crontab.remove(config)
    return None, "Removed the toolsync line" if found else "There was no toolsync line to remove"


# -- the screen ------------------------------------------------------------------------------------------------------


class SchedulesScreen(Screen[None]):
    CSS_PATH = "schedules.tcss"
    AUTO_FOCUS = "#schedules"  # the filter field is hidden until `/`
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "edit", "Edit"),
        Binding("space", "pause", "Pause/resume"),
        Binding("i", "install_crontab", "Install cron"),
        Binding("u", "remove_crontab", "Remove cron"),
        Binding("x", "remove_crontab", "Remove cron", show=False),
        Binding("escape", "back", "Back"),
        filter_binding(show=False),  # the footer is full at 80 columns
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("↑ ↓", "Choose an operation"),
        ("/", "Filter the operations by name or title (enter: keep it, esc: clear it)"),
        ("enter", "Edit the chosen operation's schedule"),
        ("x", "Remove the crontab line, like u"),
    )

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.crontab_worker: Worker[None] | None = None
        self.installed: str | None = None  # the managed line found in the crontab
        self.crontab_read = False  # whether `installed` is known

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(id="zone", markup=False)
        yield FilterInput("Filter the operations by name or title", list_selector="#schedules")
        # A fixed list of operations, which only the filter narrows: the cursor keeps its row.
        yield EntryTable[OperationInfo](id="schedules", wide_from=WIDE, follow="row")
        with Vertical(id="crontab"):
            yield Static("Crontab: checking…", id="crontab-state", markup=False)
            yield Static(id="crontab-line", markup=False)
            yield Static(id="crontab-owner", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_table()
        self._show_line()
        self.set_interval(REFRESH_SECONDS, self.refresh_table)
        self.crontab_worker = self.crontab_task(_read, "checking…")

    def on_resize(self, event: Resize) -> None:
        if not self.table.fits(event.size.width):
            self.refresh_table()

    # -- the table --

    @property
    def table(self) -> EntryTable[OperationInfo]:
        return self.query_one("#schedules", EntryTable)

    def refresh_table(self) -> None:
        now = self._now()
        field = self.query_one(FilterInput)
        marked = any(is_snapshot(self.config, name) for name in OPERATIONS)
        rows = [
            (name, info, [Text(name), *self._mark(name, marked), Text(info.title), *self._cells(name, now)])
            for name, info in OPERATIONS.items()
            if field.admits(name, info.title)
        ]
        columns = [column for column in COLUMNS if marked or column is not MARK_COLUMN]
        self.table.fill(sized(columns, [cells for *_, cells in rows]), rows)

    def _mark(self, name: str, marked: bool) -> list[Text]:
        """The snapshot mark's cell, when the column is shown."""
        if not marked:
            return []
        return [Text(SNAPSHOT_MARK if is_snapshot(self.config, name) else "", style="bold")]

    def _now(self) -> datetime | None:
        """Now in the schedules' zone, the zone said above the table; None (and the problem said) without one."""
        zone_line = self.query_one("#zone", Static)
        try:
            now = schedules_now(self.config, self.clock)
        except ScheduleProblem as problem:
            zone_line.update(f"{problem}: next runs cannot be shown")
            zone_line.add_class("-error")
            return None
        whose = "" if self.config.settings.cron.timezone else ", the system's zone (cron.timezone chooses one)"
        mark = any(is_snapshot(self.config, name) for name in OPERATIONS)
        legend = f"; {SNAPSHOT_MARK} snapshot mode" if mark else ""
        zone_line.update(f"When toolsync cron runs each operation; times in {now.tzinfo}{whose}{legend}")
        zone_line.remove_class("-error")
        return now

    def _cells(self, name: str, now: datetime | None) -> list[Text]:
        settings = self.config.operation(name)
        expression, enabled = settings.schedule, settings.schedule_enabled
        state = Text("enabled") if enabled else Text("paused", style="bold")
        if not expression:
            return [Text("off", style="dim"), state if not enabled else Text("—"), Text("—")]
        plain = reading(expression)
        schedule = Text.assemble(expression, (f"  {plain}" if plain else "", "dim"))
        runs = upcoming(expression, now, 1) if now is not None and enabled else []
        return [schedule, state, Text(moment(runs[0]) if runs else "—")]

    def action_filter(self) -> None:
        self.query_one(FilterInput).slash_pressed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.refresh_table()

    # -- editing and pausing --

    @on(DataTable.RowSelected)
    def _selected(self) -> None:  # enter, or a click on the highlighted row
        self.action_edit()

    def action_edit(self) -> None:
        info = self.table.chosen
        if info is None:
            return
        try:
            now = schedules_now(self.config, self.clock)
        except ScheduleProblem:
            now = None  # the editor says next runs are unknown; the zone line says why
        editor = ScheduleEditor(info.name, info.title, self.config.operation(info.name).schedule, now)
        self.app.push_screen(editor, lambda expression: self._save_schedule(info.name, expression))

    def _save_schedule(self, name: str, expression: str | None) -> None:
        if expression is None or expression == self.config.operation(name).schedule:
            return
        if self._apply(f"operations.{name}.schedule", expression):
            plain = reading(expression) or expression
            said = f"{name} runs {plain}" if expression else f"{name} is no longer scheduled"
            if expression and not self.config.operation(name).schedule_enabled:
                said += " once resumed (space)"
            self.notify(said, title="Schedule saved", markup=False)

    def action_pause(self) -> None:
        info = self.table.chosen
        if info is None:
            return
        name = info.name
        settings = self.config.operation(name)
        if not settings.schedule and settings.schedule_enabled:
            self.notify(f"{name} has no schedule to pause: e sets one", title="Schedules", markup=False)
            return
        pausing = settings.schedule_enabled
        if self._apply(f"operations.{name}.schedule_enabled", not pausing):
            said = "paused: toolsync cron skips it until resumed" if pausing else "resumed"
            self.notify(f"{name} {said}", title="Schedules", markup=False)

    def _apply(self, key: str, value: Any) -> bool:
        """Set and save one setting; on failure nothing changes, not even in memory, and a toast says why."""
        before = self.config.settings, self.config.raw
        try:
            self.config.set(key, value)
            self.config.save()
        except (ConfigError, OSError) as problem:
            self.config.settings, self.config.raw = before
            detail = problem if isinstance(problem, ConfigError) else f"{self.config.path}: {problem}"
            self.notify(f"Not saved: {detail}", title="Configuration", severity="error", markup=False)
            return False
        self.refresh_table()
        return True

    # -- the crontab --

    def _show_line(self) -> None:
        line = self.query_one("#crontab-line", Static)
        try:
            line.update(crontab.cron_line(self.config, EVERY_MINUTES))
        except CrontabProblem as problem:
            line.update(str(problem))
        note, warning = owner_note(self.config)
        owner = self.query_one("#crontab-owner", Static)
        owner.update(note)
        owner.set_class(warning, "-warning")

    def _show_state(self, text: str, state: str) -> None:
        shown = self.query_one("#crontab-state", Static)
        shown.update(f"Crontab: {text}")
        for each in ("installed", "missing", "differs", "error"):
            shown.set_class(each == state, f"-{each}")

    def _show_installed(self, installed: str | None) -> None:
        self.installed = installed
        every = f"toolsync cron every {EVERY_MINUTES} min"
        if installed is None:
            self._show_state(f"not installed: i installs this line ({every})", "missing")
        elif installed == crontab.cron_line(self.config, EVERY_MINUTES):
            self._show_state(f"installed: this line runs {every}", "installed")
        else:
            self._show_state("another toolsync line is installed: i replaces it with this one", "differs")

    def _crontab_busy(self) -> bool:
        if self.crontab_worker is not None and not self.crontab_worker.is_finished:
            self.notify("The crontab is being read or changed: try again in a moment", title="Crontab")
            return True
        return False

    @work(group="crontab", exit_on_error=False)
    async def crontab_task(self, task: CrontabTask, doing: str) -> None:
        """Run a crontab task in a thread (the command may be slow); show what it leaves, or what went wrong."""
        self._show_state(doing, "")
        try:
            installed, said = await asyncio.to_thread(task, self.config)
        except (CrontabProblem, OSError) as problem:
            self.crontab_read = False
            self._show_state(f"cannot be read or changed: {problem}", "error")
            self.notify(str(problem), title="Crontab", severity="error", markup=False)
            return
        self.crontab_read = True
        self._show_installed(installed)
        if said:
            self.notify(said, title="Crontab", markup=False)

    def action_install_crontab(self) -> None:
        if not self._crontab_busy():
            self.crontab_worker = self.crontab_task(_install, "installing…")

    def action_remove_crontab(self) -> None:
        if self._crontab_busy():
            return
        if self.crontab_read and self.installed is None:
            self.notify("There is no toolsync line in the crontab to remove", title="Crontab")
            return
        question = ConfirmScreen(
            "Remove the crontab line",
            "Remove the toolsync line from the crontab? Scheduled operations stop running until it is installed "
            "again (their schedules are kept).",
            yes="Yes, remove it",
        )
        self.app.push_screen(question, self._removal_confirmed)

    def _removal_confirmed(self, answer: bool | None) -> None:
        if answer and not self._crontab_busy():
            self.crontab_worker = self.crontab_task(_remove, "removing…")

    def action_back(self) -> None:
        self.app.pop_screen()
