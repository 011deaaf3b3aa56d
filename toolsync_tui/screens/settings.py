"""Settings: the configuration file as a form, with a connection test and a bridge test before saving.

The form (widgets/settings_form.py) is generated from the pydantic models of config.py, so a setting added there
shows up here, with the help written on it. Nothing is
written until ctrl+s, and then only if every changed value is accepted: a half-applied configuration would be worse
than none. Tests use the edited values, saved or not, so that an administrator can try before committing to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Select, Static, Switch, TabbedContent, TabPane
from textual.worker import Worker

from toolsync_tui.config import (
    BridgeSettings,
    Config,
    DatabaseSettings,
    FileSettings,
    OperationsSettings,
    RunSettings,
    section_help,
)
from toolsync_tui.engine.connect import bridge_from_config, open_gateway
from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.views.site_status import ready
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.settings_form import (
    FieldRow,
    FieldSpec,
    edited_config,
    field_rows,
    fields_of,
    operation_fields,
    value_at,
)
from toolsync_tui.widgets.site_bar import SiteBar

# Same limit as the header's own connection: an unreachable host must not leave the test hanging for minutes.
DATABASE_TEST_TIMEOUT = 15.0
# The bridge's `info` only boots Moodle; its usual 120 s limit is meant for deletions and restores.
BRIDGE_TEST_TIMEOUT = 30.0
# What the screen adds to a section's help (the rest is the model's).
SCREEN_NOTES = {
    "database": "Test connection (ctrl+t) tries the values shown, saved or not.",
    "bridge": "Test bridge (ctrl+t) asks the site for its release.",
    "operations": "Command files and schedules are set elsewhere.",
}

SECTIONS: dict[str, tuple[str, type[BaseModel]]] = {
    "database": ("Database", DatabaseSettings),
    "files": ("Files", FileSettings),
    "run": ("Run", RunSettings),
    "bridge": ("Bridge", BridgeSettings),
    "operations": ("Operations", OperationsSettings),  # one model per operation: see operation_fields()
}
FIRST_SECTION = "database"

# Where a test's outcome goes, per section that has one.
TESTS = {"database": "Test connection", "bridge": "Test bridge"}


@runtime_checkable
class SiteReloader(Protocol):
    """What the app offers to read the site again (ToolsyncApp.load_site), without importing the app."""

    def load_site(self) -> object: ...


def plain_database_error(message: str) -> str:
    """The driver's words, with what to check for the failures administrators meet most."""
    hints = (
        (
            ("Can't connect", "Connect call failed"),
            "nothing answers there: check host and port (or socket), and that the database server runs",
        ),
        (
            ("Access denied", "password authentication failed"),
            "check user, and the password (password_env names the variable that holds it)",
        ),
        (("Unknown database", "does not exist"), "check name: no such database on this server"),
    )
    for markers, hint in hints:
        if any(marker in message for marker in markers):
            return f"{message} ({hint})"
    return message


def bridge_summary(info: dict[str, Any]) -> str:
    parts = [f"Moodle {info['release']}" if info.get("release") else ""]
    parts += [str(info.get("wwwroot") or ""), f"PHP {info['php']}" if info.get("php") else ""]
    described = " · ".join(part for part in parts if part)
    return f"The bridge works: {described}" if described else "The bridge works"


class SettingsScreen(Screen[None]):
    CSS_PATH = "settings.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "leave", "Back"),
        # ctrl+t works in a text field too; t everywhere else (in a text field it is just a letter).
        Binding("ctrl+t", "test_database", "Test connection"),
        Binding("ctrl+t", "test_bridge", "Test bridge"),
        Binding("t", "test_database", "Test connection", show=False),
        Binding("t", "test_bridge", "Test bridge", show=False),
        Binding("q", "quit", "Quit"),
    ]
    KEY_HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("← →", "On the section tabs: change section"),
        ("tab / shift+tab", "Next / previous setting"),
        ("enter / space", "Open a list of choices, flip a switch"),
        ("t", "Outside a text field: test the connection (Database) or the bridge (Bridge)"),
        ("*", "Marks a changed setting, not saved yet"),
    )

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.database_test: Worker[None] | None = None
        self.bridge_test: Worker[None] | None = None
        self.rows: dict[str, FieldRow] = {}  # by dotted key, of the sections filled so far
        self._filled: set[str] = set()

    # -- the form --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        with TabbedContent(id="sections", initial=FIRST_SECTION):
            for section, (title, _model) in SECTIONS.items():
                with TabPane(title, id=section), VerticalScroll(id=f"form-{section}", classes="form", can_focus=False):
                    yield from self._section_top(section)
                    if section == FIRST_SECTION:
                        yield from self._section_rows(section)
        yield Static("", id="status", markup=False)
        yield KeyFooter()

    def _section_top(self, section: str) -> Iterator[Widget]:
        help_text = " ".join(filter(None, (section_help(SECTIONS[section][1]), SCREEN_NOTES.get(section))))
        yield Static(help_text, classes="section-help", markup=False)
        if section in TESTS:
            with Horizontal(classes="test-row"):
                yield Button(TESTS[section], id=f"test-{section}", classes="test-button", compact=True)
                yield Static("", id=f"{section}-result", classes="test-result", markup=False)

    def _section_rows(self, section: str) -> Iterator[Widget]:
        """A section's settings. Made when the section is first shown: the whole form at once is some 600
        widgets, which takes a noticeable second to open."""
        self._filled.add(section)
        model = SECTIONS[section][1]
        if model is not OperationsSettings:
            yield from self._rows(fields_of(model, f"{section}."))
            return
        for name, specs in operation_fields():
            yield from self._operation(name, specs)

    def _rows(self, specs: Iterable[FieldSpec]) -> Iterator[FieldRow]:
        for row in field_rows(self.config, specs):
            self.rows[row.spec.key] = row
            yield row

    def _operation(self, name: str, specs: list[FieldSpec]) -> Iterator[Widget]:
        info = OPERATIONS.get(name)
        yield Static(f"{name} · {info.title}" if info else name, classes="operation-heading", markup=False)
        if not specs:
            yield Static("No settings of its own.", classes="section-help", markup=False)
        yield from self._rows(specs)

    def on_mount(self) -> None:
        self._show_status()

    def row(self, key: str) -> FieldRow:
        return self.rows[key]

    def changed_keys(self) -> list[str]:
        return [key for key, row in self.rows.items() if row.changed]

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _edited(self, event: Input.Changed | Select.Changed | Switch.Changed) -> None:
        row = next((node for node in event.control.ancestors if isinstance(node, FieldRow)), None)
        if row is not None:
            row.edited()
            self._show_status()

    def _show_status(self) -> None:
        changed = self.changed_keys()
        if not changed:
            text = "No unsaved changes."
        else:
            noun = "change" if len(changed) == 1 else "changes"
            text = f"{len(changed)} unsaved {noun} (marked *): ctrl+s saves, esc asks before leaving."
        self.query_one("#status", Static).update(text)

    @on(TabbedContent.TabActivated)
    async def _section_shown(self, event: TabbedContent.TabActivated) -> None:
        section = event.pane.id or ""
        if section in SECTIONS and section not in self._filled:
            await self.query_one(f"#form-{section}").mount_all(list(self._section_rows(section)))
        self.refresh_bindings()  # the footer offers the test of the section on screen

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("test_database", "test_bridge"):
            return self.query_one(TabbedContent).active == action.removeprefix("test_")
        return True

    # -- applying the edits ----------------------------------------------------------------

    def _trial(self, sections: Iterable[str] | None = None) -> tuple[Config, dict[str, str]]:
        """The edits (those of `sections` only, if given) tried on a copy of the configuration, and the refusals."""
        wanted = None if sections is None else set(sections)
        rows = [row for row in self.rows.values() if wanted is None or row.spec.section in wanted]
        return edited_config(self.config, rows)

    def _report_problems(self, problems: dict[str, str], keys: Iterable[str], what: str) -> bool:
        """Show each refusal next to its field (clearing the others of `keys`); True when there were some."""
        for key in keys:
            self.row(key).show_problem(problems.get(key))
        if not problems:
            return False
        first = next(iter(problems))
        count = "1 value was" if len(problems) == 1 else f"{len(problems)} values were"
        self.notify(f"{what}: {count} refused. {first}: {problems[first]}", severity="error", markup=False)
        self._reveal(first)
        return True

    def _reveal(self, key: str) -> None:
        row = self.row(key)
        self.query_one(TabbedContent).active = row.spec.section
        self.call_after_refresh(row.editor.focus)

    def action_save(self) -> None:
        changed = self.changed_keys()
        if not changed:
            self.notify("Nothing to save: no setting was changed.", markup=False)
            return
        trial, problems = self._trial()
        if self._report_problems(problems, self.rows, "Nothing saved"):
            return
        try:
            trial.save()
        except OSError as error:
            self.notify(f"Could not write {trial.path}: {error.strerror or error}", severity="error", markup=False)
            return
        # The app and the other screens share this object: they see the saved settings from now on.
        self.config.settings, self.config.raw = trial.settings, trial.raw
        for key in changed:
            self.row(key).accept(value_at(self.config, key))
        self._show_status()
        noun = "setting" if len(changed) == 1 else "settings"
        self.notify(f"Saved {len(changed)} {noun} to {self.config.path}", title="Settings", markup=False)
        if any(key.startswith("database.") for key in changed) and isinstance(self.app, SiteReloader):
            self.app.load_site()  # the header shows the site these settings name

    # -- leaving ---------------------------------------------------------------------------

    def action_leave(self) -> None:
        self._unless_unsaved("Leave the settings?", self.dismiss)

    def action_quit(self) -> None:
        self._unless_unsaved("Quit toolsync?", self.app.exit)

    def _unless_unsaved(self, question: str, then: Callable[[], object]) -> None:
        changed = self.changed_keys()
        if not changed:
            then()
            return
        listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        message = f"{len(changed)} unsaved change(s) will be lost: {listed}."

        def answered(discard: bool | None) -> None:
            if discard:
                then()

        self.app.push_screen(ConfirmScreen(question, message, yes="Discard them"), answered)

    # -- tests -----------------------------------------------------------------------------

    @on(Button.Pressed, ".test-button")
    def _test_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "test-database":
            self.action_test_database()
        else:
            self.action_test_bridge()

    def action_test_database(self) -> None:
        trial, problems = self._trial(["database"])
        database_keys = [key for key in self.rows if key.startswith("database.")]
        if self._report_problems(problems, database_keys, "Not tested"):
            return
        where = trial.settings.database
        target = where.sqlite_path if where.driver == "sqlite" else where.socket or f"{where.host}:{where.port}"
        self._result("database", f"Connecting to {target}…", "busy")
        self.database_test = self._test_database(trial)

    @work(exclusive=True, group="test-database", exit_on_error=False)
    async def _test_database(self, trial: Config) -> None:
        # Every failure becomes words on the screen: the worker never raises into the app.
        try:
            gateway = open_gateway(trial)
            try:
                info = await asyncio.wait_for(gateway.site_info(), DATABASE_TEST_TIMEOUT)
            finally:
                await gateway.close()
        except DatabaseError as problem:
            self._failed("database", plain_database_error(str(problem)))
        except TimeoutError:
            self._failed("database", f"no answer within {DATABASE_TEST_TIMEOUT:.0f} s: check host and port")
        except Exception as unexpected:  # e.g. a driver error the gateway does not translate
            self._failed("database", f"cannot use the database: {type(unexpected).__name__}: {unexpected}")
        else:
            self._result("database", f"Connected: {ready(info, trial.base_dir).detail}", "ok")

    def action_test_bridge(self) -> None:
        trial, problems = self._trial(["bridge", "database"])
        keys = [key for key in self.rows if key.startswith(("bridge.", "database."))]
        if self._report_problems(problems, keys, "Not tested"):
            return
        bridge = bridge_from_config(trial)
        if bridge is None:
            self._failed("bridge", "no bridge: set moodle_dir to the Moodle site's directory (the one with config.php)")
            return
        bridge.timeout = BRIDGE_TEST_TIMEOUT
        self._result("bridge", f"Asking {bridge.moodle_dir} for its release…", "busy")
        self.bridge_test = self._test_bridge(bridge, trial.settings.database)

    @work(exclusive=True, group="test-bridge", exit_on_error=False)
    async def _test_bridge(self, bridge: MoodleBridge, database: DatabaseSettings) -> None:
        try:
            if database.driver != "sqlite":  # also proves the bridge's site is the database toolsync writes to
                info = await bridge.verify_database(database)
            else:
                info = await bridge.info()
        except BridgeError as problem:
            self._failed("bridge", str(problem))
        except Exception as unexpected:
            self._failed("bridge", f"cannot run the bridge: {type(unexpected).__name__}: {unexpected}")
        else:
            note = " (the sandbox itself never uses the bridge)" if database.driver == "sqlite" else ""
            self._result("bridge", bridge_summary(info) + note, "ok")

    def _result(self, section: str, text: str, state: Literal["busy", "ok", "failed"]) -> None:
        result = self.query_one(f"#{section}-result", Static)
        result.update(text)
        for each in ("busy", "ok", "failed"):
            result.set_class(state == each, f"-{each}")

    def _failed(self, section: str, problem: str) -> None:
        self._result(section, f"Failed: {problem}", "failed")
        self.notify(problem, title=TESTS[section], severity="error", markup=False)
