"""Schedules: when `toolsync cron` runs each operation, pausing them, and the crontab line that calls it.

Schedules live in the configuration (operations.<name>.schedule and schedule_enabled) and are saved at once. The
crontab is read and written by the `crontab` program (cron.crontab_command) in a worker thread, so a slow or hung
command never freezes the screen.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import ModalScreen, Screen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, DataTable, Input, Label, Select, Static
from textual.worker import Worker

from toolsync_tui.config import Config, ConfigError
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.unattended import crontab
from toolsync_tui.engine.unattended.crontab import CrontabProblem
from toolsync_tui.engine.unattended.schedules import ScheduleProblem, check_expression, next_runs, schedule_zone
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.views.clock import Clock
from toolsync_tui.views.formatting import short_path
from toolsync_tui.widgets.filter_input import FilterInput, filter_binding
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

# From this width on the operation's title gets a column (80 columns fit without it).
WIDE = 100
# Next runs move on with time; a minute is the finest a cron schedule gets.
REFRESH_SECONDS = 60
# How often the installed crontab line calls `toolsync cron` (what `toolsync crontab install` does by default).
EVERY_MINUTES = 5
NEXT_RUNS = 3
CUSTOM = "custom"
# The editor's presets: (key, label, expression); "" is no schedule.
PRESETS: tuple[tuple[str, str, str], ...] = (
    ("off", "Off: not scheduled", ""),
    ("quarter", "Every 15 minutes", "*/15 * * * *"),
    ("hourly", "Hourly", "0 * * * *"),
    ("six_hours", "Every 6 hours", "0 */6 * * *"),
    ("nightly", "Nightly at 02:00", "0 2 * * *"),
    ("weekly", "Weekly, Sunday 03:00", "0 3 * * 0"),
)
DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].lower(): index for index, name in enumerate(DAYS)}
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0"}
_ALIASES |= {"@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


# -- plain readings ------------------------------------------------------------------------------------------------


def normalized(expression: str) -> str:
    """One space between fields: what is saved, and what presets are recognised by."""
    return " ".join(expression.split())


def reading(expression: str) -> str:
    """The common shapes in plain words ("nightly 02:00", "every 6 hours"); "" for the others."""
    fields = _ALIASES.get(expression.strip(), expression).split()
    if len(fields) != 5 or fields[3] != "*":  # five fields, every month
        return ""
    minute, hour, day, _, weekday = fields
    if (hour, day, weekday) == ("*", "*", "*"):
        return _minutes(minute)
    if not minute.isdigit():
        return ""
    if (day, weekday) == ("*", "*"):
        return _hours(hour, int(minute))
    if not hour.isdigit():
        return ""
    at = f"{int(hour):02d}:{int(minute):02d}"
    if day == "*":
        return _weekdays(weekday, at)
    return f"monthly, day {int(day)} at {at}" if weekday == "*" and day.isdigit() else ""


def _step(field: str) -> int | None:
    """N of "*/N", else None."""
    return int(field[2:]) if field.startswith("*/") and field[2:].isdigit() else None


def _minutes(minute: str) -> str:
    step = _step(minute)
    if minute == "*" or step == 1:
        return "every minute"
    if step is not None:
        return f"every {step} minutes"
    if minute.isdigit():
        return "hourly" if int(minute) == 0 else f"hourly at :{int(minute):02d}"
    return ""


def _hours(hour: str, minute: int) -> str:
    step = _step(hour)
    if step is not None:
        every = "every hour" if step == 1 else f"every {step} hours"
        return every if minute == 0 else f"{every} at :{minute:02d}"
    if hour.isdigit():
        # Imports run at night, when nobody works on the site: say so for those hours.
        word = "nightly" if int(hour) < 6 or int(hour) >= 22 else "daily"
        return f"{word} {int(hour):02d}:{minute:02d}"
    return ""


def _weekdays(weekday: str, at: str) -> str:
    if weekday in ("1-5", "mon-fri"):
        return f"weekdays {at}"
    day = int(weekday) % 7 if weekday.isdigit() and int(weekday) <= 7 else _DAY_NAMES.get(weekday.lower())
    return f"weekly, {DAYS[day]} {at}" if day is not None else ""


def moment(when: datetime) -> str:
    return f"{when:%a %d %b %H:%M}"


def upcoming(expression: str, now: datetime, count: int) -> list[datetime]:
    """The next slots, or [] for an expression no date matches (croniter accepts "31 February" but finds none)."""
    try:
        return next_runs(expression, now, count)
    except ValueError:
        return []


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


# -- the editor --------------------------------------------------------------------------------------------------


class CronExpression(Validator):
    """Marks the input invalid (red) as it is typed; the words come from check_expression."""

    def validate(self, value: str) -> ValidationResult:
        try:
            check_expression(normalized(value))
        except ScheduleProblem as problem:
            return self.failure(str(problem))
        return self.success()


def preset_key(expression: str) -> str:
    return next((key for key, _, preset in PRESETS if preset == normalized(expression)), CUSTOM)


def preset_expression(key: str) -> str | None:
    return next((preset for preset_key, _, preset in PRESETS if preset_key == key), None)


class ScheduleEditor(ModalScreen[str | None]):
    """One operation's schedule: a preset or a cron expression. Dismissed with the expression to save ("" for
    off), or None when cancelled."""

    CSS_PATH = "schedules.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, operation: str, title: str, expression: str, now: datetime | None) -> None:
        super().__init__()
        self.operation = operation
        self.operation_title = title
        self.expression = expression
        self.now = now  # in the schedules' zone; None when cron.timezone is not a zone

    def compose(self) -> ComposeResult:
        options = [(label, key) for key, label, _ in PRESETS] + [("Custom expression", CUSTOM)]
        with Vertical(id="editor") as editor:
            editor.border_title = f"Schedule of {self.operation}"
            yield Static(self.operation_title, id="editor-title", markup=False)
            yield Label("Preset")
            yield Select(options, value=preset_key(self.expression), allow_blank=False, id="preset")
            yield Label("Cron expression: minute hour day month weekday", id="expression-label")
            yield Input(
                self.expression,
                placeholder="e.g. 30 2 * * * (empty: not scheduled)",
                validators=[CronExpression()],
                valid_empty=True,
                id="expression",
            )
            yield Static(id="verdict", markup=False)
            with Horizontal(id="editor-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self._judge(self.expression)
        custom = preset_key(self.expression) == CUSTOM
        self.query_one("#expression" if custom else "#preset").focus()

    @on(Select.Changed, "#preset")
    def _preset_chosen(self, event: Select.Changed) -> None:
        expression = preset_expression(str(event.value))
        field = self.query_one("#expression", Input)
        if expression is None:  # custom: the expression is typed next
            field.focus()
        elif normalized(field.value) != expression:  # unchanged when typing led here
            field.value = expression

    @on(Input.Changed, "#expression")
    def _typed(self, event: Input.Changed) -> None:
        self._judge(event.value)
        self.query_one("#preset", Select).value = preset_key(event.value)

    def _judge(self, expression: str) -> None:
        """Say when the expression would run, or what is wrong with it; Save only for a valid one."""
        verdict = self.query_one("#verdict", Static)
        problem = CronExpression().validate(expression).failure_descriptions if expression.strip() else []
        verdict.set_class(bool(problem), "-error")
        self.query_one("#save", Button).disabled = bool(problem)
        if problem:
            verdict.update(problem[0])
        elif not expression.strip():
            verdict.update("Not scheduled: toolsync cron will not run it.")
        else:
            verdict.update(self._next_runs(normalized(expression)))

    def _next_runs(self, expression: str) -> str:
        plain = reading(expression)
        said = f"{plain[:1].upper()}{plain[1:]}. " if plain else ""
        if self.now is None:
            return f"{said}Next runs unknown: cron.timezone is not a time zone."
        runs = upcoming(expression, self.now, NEXT_RUNS)
        if not runs:
            return f"{said}No date matches this expression: it would never run."
        return f"{said}Next runs ({self.now.tzinfo}): " + ", ".join(moment(run) for run in runs)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save":
            return not self.query_one("#save", Button).disabled
        return True

    def action_save(self) -> None:
        self.dismiss(normalized(self.query_one("#expression", Input).value))

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#expression")
    def _submitted(self) -> None:
        if not self.query_one("#save", Button).disabled:
            self.action_save()

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()


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
        self._wide: bool | None = None

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(id="zone", markup=False)
        yield FilterInput("Filter the operations by name or title", list_selector="#schedules")
        yield DataTable(id="schedules", cursor_type="row", zebra_stripes=True)
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
        if (event.size.width >= WIDE) != self._wide:
            self.refresh_table()

    # -- the table --

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        self._wide = self.size.width >= WIDE
        cursor = table.cursor_row
        now = self._now()
        table.clear(columns=True)
        table.add_column("Operation", key="name")
        if self._wide:
            table.add_column("Title", key="title")
        for label in ("Schedule", "State", "Next run"):
            table.add_column(label, key=label.lower())
        field = self.query_one(FilterInput)
        for name, info in OPERATIONS.items():
            if not field.admits(name, info.title):
                continue
            title = [Text(info.title)] if self._wide else []
            table.add_row(Text(name), *title, *self._cells(name, now), key=name)
        table.move_cursor(row=cursor)

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
        zone_line.update(f"When toolsync cron runs each operation; times in {now.tzinfo}{whose}")
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

    def _chosen(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

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
        name = self._chosen()
        if name is None:
            return
        try:
            now = schedules_now(self.config, self.clock)
        except ScheduleProblem:
            now = None  # the editor says next runs are unknown; the zone line says why
        editor = ScheduleEditor(name, OPERATIONS[name].title, self.config.operation(name).schedule, now)
        self.app.push_screen(editor, lambda expression: self._save_schedule(name, expression))

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
        name = self._chosen()
        if name is None:
            return
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
