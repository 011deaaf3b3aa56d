"""Settings: the configuration file as a form, with a connection test and a bridge test before saving.

The form is generated from the pydantic models of config.py, so a setting added there shows up here. Nothing is
written until ctrl+s, and then only if every changed value is accepted: a half-applied configuration would be worse
than none. Tests use the edited values, saved or not, so that an administrator can try before committing to them.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, get_args, get_origin, runtime_checkable

from pydantic import BaseModel
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch, TabbedContent, TabPane
from textual.worker import Worker

from toolsync_tui.config import (
    BridgeSettings,
    Config,
    ConfigError,
    DatabaseSettings,
    FileSettings,
    OperationsSettings,
    RunSettings,
)
from toolsync_tui.engine.connect import bridge_from_config, open_gateway
from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.views.site_status import ready
from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

# Same limit as the header's own connection: an unreachable host must not leave the test hanging for minutes.
DATABASE_TEST_TIMEOUT = 15.0
# The bridge's `info` only boots Moodle; its usual 120 s limit is meant for deletions and restores.
BRIDGE_TEST_TIMEOUT = 30.0
# Edited elsewhere (the operation's command file and its schedule), or not a single value.
NOT_HERE = frozenset({"file", "schedule", "schedule_enabled"})

Kind = Literal["choice", "switch", "integer", "number", "text", "secret"]
Editor = Input | Select[object] | Switch

# What each setting means, from config.example.toml's comments (the file is not shipped with the package).
HELP: dict[str, str] = {
    "database.driver": '"mariadb" for the Moodle site\'s own database (MariaDB or MySQL), "sqlite" for a sandbox.',
    "database.host": "The MariaDB server ($CFG->dbhost).",
    "database.port": "Its TCP port, 3306 by default.",
    "database.socket": 'A Unix socket path (e.g. "/run/mysqld/mysqld.sock"); when set, host and port are not used.',
    "database.user": "The database user ($CFG->dbuser).",
    "database.password": "Better left empty: the variable named by password_env, when set, gives the password. "
    "Typed here, it is saved in the configuration file (keep it mode 600).",
    "database.password_env": "The environment variable that holds the password; it wins over password.",
    "database.name": "The database name ($CFG->dbname) of the Moodle site.",
    "database.prefix": "The table prefix ($CFG->prefix) of the Moodle site.",
    "database.sqlite_path": 'The SQLite file, for driver "sqlite" only.',
    "files.data_dir": 'Holds inbox/ (command files), archive/, reports/ and tryback/; e.g. "/var/lib/toolsync".',
    "files.encoding": '"auto" reads UTF-8 and falls back to Windows-1252 (then ISO-8859-1) for other files.',
    "files.separator": '"auto" detects it from the header line.',
    "files.ignore_unknown_columns": "Off: columns an operation does not know are an error. On: they are ignored.",
    "files.report": "Write a text report and its CSV twin to reports/ for every run.",
    "files.tryback": "Write the failed rows, in the source's own format, to tryback/ (ready to be run again).",
    "files.archive": "A processed command file is moved or copied to archive/, or left in place (off).",
    "run.batch_size": "Rows per batch; each batch is one transaction. Read-only operations use at least 10000.",
    "run.safety_threshold": "A run that would delete, unenrol or suspend more than this share (0 to 1) of the "
    "records it draws from stops before writing and asks for a confirmation. 0 disables the check.",
    "run.safety_min_rows": "... but only when it would remove at least this many records.",
    "bridge.php": 'The PHP command line, e.g. "php8.3" or "/usr/bin/php -d memory_limit=1G".',
    "bridge.moodle_dir": "The Moodle site's directory, holding config.php. Empty: no bridge.",
    "bridge.run_as": 'Run PHP as this user (through sudo -n -u), e.g. "www-data". Empty: as yourself.',
    "operations.courses.category_identifier": "idname: a numeric id or a /-path of names; idnumber: the idnumber.",
    "operations.courses.forceupdate": "Update existing courses, with the file's non-empty cells only.",
    "operations.courses.protect_category": "Updates never move a course to another category.",
    "operations.courses.new_categories_visible": "Categories created from paths are visible.",
    "operations.courses.template_mode": "Template content for existing courses: none, add or replace.",
    "operations.users.primary_identity": "Also used by deleteusers and suspendusers.",
    "operations.users.course_identity": "What the courseN values name.",
    "operations.users.allow_rename": "Accept the oldusername column (renames).",
    "operations.users.create_passwords": "An empty password on create: Moodle's cron generates and mails one.",
    "operations.users.protect_emails": "Never change the e-mail of an existing account.",
    "operations.users.password_rounds": "SHA-512 crypt rounds: 5000 as Moodle's upload tool, or 10000.",
    "operations.users.password_pepper_env": "The environment variable holding the site's latest password pepper "
    "($CFG->passwordpeppers), if it has one: a secret that does not belong in the configuration file.",
    "operations.enrols.default_cmd": "The command of a file without a cmd column.",
    "operations.enrols.enable_on_disabled": "Enrol through a disabled instance of the method (and enable it).",
    "operations.enrols.protect_groups": 'Memberships written by this file are tagged component "tool_sync": the UI '
    "cannot remove them, and gdel/greplace only remove such memberships.",
    "operations.groupmembers.purge_empty": "After the run, delete the empty groups (and groupings) of the file's "
    "courses only.",
    "operations.cohorts.cohort_identifier": "The key column is c<identifier>: cid, cidnumber or cname.",
    "operations.cohorts.autocreate": "add: create a missing cohort (else the row fails).",
    "operations.pictures.user_field": "hostedusername is username@mnethostid.",
    "operations.pictures.overwrite": "Replace pictures users already have (off: skip them).",
    "operations.pictures.moodle_data_dir": "The site's $CFG->dataroot (moodledata): pictures go to its filedir/.",
}

SECTION_HELP = {
    "database": "The Moodle database toolsync writes to. Test connection (ctrl+t) tries the values shown, "
    "saved or not.",
    "files": "Where command files are read from, how they are read, and what a run leaves behind.",
    "run": "How runs write, and when they stop to ask first.",
    "bridge": "The bridge runs Moodle's own PHP for course delete, reset and templates, and user delete. "
    "Test bridge (ctrl+t) asks the site for its release.",
    "operations": "Which field a file's values name: course id/idnumber/shortname, user id/idnumber/username/email, "
    "group or grouping id/idnumber/name. Command files and schedules are set elsewhere.",
}

SECTIONS: dict[str, tuple[str, type[BaseModel] | None]] = {
    "database": ("Database", DatabaseSettings),
    "files": ("Files", FileSettings),
    "run": ("Run", RunSettings),
    "bridge": ("Bridge", BridgeSettings),
    "operations": ("Operations", None),  # one model per operation: see operation_fields()
}
FIRST_SECTION = "database"

# Where a test's outcome goes, per section that has one.
TESTS = {"database": "Test connection", "bridge": "Test bridge"}


class FieldProblem(ValueError):
    """A value the form cannot even hand to the configuration (e.g. letters where a number goes)."""


@runtime_checkable
class SiteReloader(Protocol):
    """What the app offers to read the site again (ToolsyncApp.load_site), without importing the app."""

    def load_site(self) -> object: ...


@dataclass(frozen=True)
class FieldSpec:
    key: str  # dotted, as Config.set takes it
    kind: Kind
    choices: tuple[object, ...] = ()

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    @property
    def widget_id(self) -> str:
        return "f-" + self.key.replace(".", "--")

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]


def kind_of(annotation: object) -> tuple[Kind, tuple[object, ...]] | None:
    """The editor for a model field's type; None for types the form does not edit (lists)."""
    if get_origin(annotation) is Literal:
        return "choice", get_args(annotation)
    if annotation is bool:  # before int: a bool is an int to Python
        return "switch", ()
    if annotation is int:
        return "integer", ()
    if annotation is float:
        return "number", ()
    if annotation is str:
        return "text", ()
    return None


def fields_of(model: type[BaseModel], prefix: str) -> list[FieldSpec]:
    specs = []
    for name, info in model.model_fields.items():
        kind = kind_of(info.annotation)
        if name in NOT_HERE or kind is None:
            continue
        secret = prefix == "database." and name == "password"
        specs.append(FieldSpec(prefix + name, "secret" if secret else kind[0], kind[1]))
    return specs


def operation_fields() -> Iterator[tuple[str, list[FieldSpec]]]:
    for name, info in OperationsSettings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            yield name, fields_of(model, f"operations.{name}.")


def value_at(config: Config, key: str) -> object:
    node: object = config.settings
    for part in key.split("."):
        node = getattr(node, part)
    return node


def choice_label(value: object) -> str:
    return "tab" if value == "\t" else str(value)


# Pydantic's phrases, in the form's words.
REWORDED = (
    ("String should match pattern '^[A-Za-z0-9_]*$'", "only letters, digits and _ are allowed"),
    ("String should match pattern", "must match the pattern"),
    ("Input should be", "must be"),
)


def plain_refusal(error: ConfigError, config: Config, key: str) -> str:
    """ConfigError's message without the file and key (the field shows those), in the form's words."""
    message = str(error).removeprefix(f"{config.path}: ").removeprefix(f"{key}: ")
    for phrase, plain in REWORDED:
        message = message.replace(phrase, plain)
    return message


def plain_database_error(message: str) -> str:
    """The driver's words, with what to check for the failures administrators meet most."""
    hints = (
        ("Can't connect", "nothing answers there: check host and port (or socket), and that MariaDB runs"),
        ("Access denied", "check user, and the password (password_env names the variable that holds it)"),
        ("Unknown database", "check name: no such database on this server"),
    )
    for marker, hint in hints:
        if marker in message:
            return f"{message} ({hint})"
    return message


def bridge_summary(info: dict[str, Any]) -> str:
    parts = [f"Moodle {info['release']}" if info.get("release") else ""]
    parts += [str(info.get("wwwroot") or ""), f"PHP {info['php']}" if info.get("php") else ""]
    described = " · ".join(part for part in parts if part)
    return f"The bridge works: {described}" if described else "The bridge works"


class FieldRow(Vertical):
    """One setting: its key (docked on the left), its editor, what it means, and why a value was refused.

    Kept to few widgets: the operations alone make some 40 rows, and every widget costs time to mount.
    """

    def __init__(self, spec: FieldSpec, value: object) -> None:
        super().__init__(classes="field", id="row-" + spec.widget_id.removeprefix("f-"))
        self.spec = spec
        self.original = value
        self.problem: str | None = None  # why the last value was refused
        self._refused: object | None = None  # the editor's value when it was refused
        self._editor_widget: Editor | None = None  # kept: the form reads every editor on each change
        self._line: Widget | None = None  # the editor's line, under which a refusal is shown

    def compose(self) -> ComposeResult:
        yield Label(self.spec.name, classes="field-label", markup=False)
        if self.spec.kind == "switch":
            # A switch is drawn in colours only: the word says it on a monochrome terminal too.
            with Horizontal(classes="switch-line") as self._line:
                yield self._editor()
                yield Static(self._switch_word(bool(self.original)), classes="switch-state")
        else:
            yield self._editor()
            self._line = self._editor_widget
        help_text = HELP.get(self.spec.key, "")
        if help_text:
            yield Static(help_text, classes="field-help", markup=False)

    def _editor(self) -> Editor:
        self._editor_widget = self._make_editor()
        return self._editor_widget

    def _make_editor(self) -> Editor:
        spec, value, widget_id = self.spec, self.original, self.spec.widget_id
        if spec.kind == "choice":
            options = [(choice_label(choice), choice) for choice in spec.choices]
            return Select[object](options, value=value, allow_blank=False, compact=True, id=widget_id)
        if spec.kind == "switch":
            return Switch(bool(value), id=widget_id)
        if spec.kind == "secret":
            hint = "empty: from the variable named by password_env"
            return Input(str(value), placeholder=hint, password=True, compact=True, id=widget_id)
        input_type: Literal["integer", "number", "text"] = "text"
        if spec.kind in ("integer", "number"):
            input_type = "integer" if spec.kind == "integer" else "number"
        return Input(str(value), type=input_type, compact=True, id=widget_id)

    @property
    def editor(self) -> Editor:
        if self._editor_widget is None:
            raise RuntimeError(f"{self.spec.key}: the row is not composed yet")
        return self._editor_widget

    def value(self) -> object:
        """The edited value, as the configuration takes it; FieldProblem when it cannot be one."""
        editor = self.editor
        if isinstance(editor, Switch | Select):
            return editor.value
        text = editor.value
        if self.spec.kind == "integer":
            try:
                return int(text)
            except ValueError:
                raise FieldProblem(f"a whole number is needed (got {text!r})") from None
        if self.spec.kind == "number":
            try:
                return float(text)
            except ValueError:
                raise FieldProblem(f"a number is needed, e.g. 0.1 (got {text!r})") from None
        # A password is taken as typed; elsewhere stray spaces around a path or a name are a mistake.
        return text if self.spec.kind == "secret" else text.strip()

    @property
    def changed(self) -> bool:
        if self._editor_widget is None:  # not composed yet: nothing can have been edited
            return False
        try:
            return self.value() != self.original
        except FieldProblem:
            return True

    @staticmethod
    def _switch_word(on: bool) -> str:
        return "on" if on else "off"

    def refresh_mark(self) -> None:
        editor = self.editor
        if isinstance(editor, Switch):
            self.query_one(".switch-state", Static).update(self._switch_word(editor.value))
        changed = self.changed
        self.query_one(".field-label", Label).update(f"{self.spec.name} *" if changed else self.spec.name)
        self.set_class(changed, "-changed")

    def show_problem(self, problem: str | None) -> None:
        """Show why the value was refused, right under it (None: take the refusal away)."""
        self.problem = problem
        self.set_class(problem is not None, "-refused")
        self._refused = self.editor.value if problem else None
        shown = self.query(".field-error")
        if problem is None:
            shown.remove()
        elif shown:
            shown.first(Static).update(f"Refused: {problem}")
        else:
            self.mount(Static(f"Refused: {problem}", classes="field-error", markup=False), after=self._line)

    def edited(self) -> None:
        # Change events arrive late: only a value other than the refused one clears the refusal.
        if self._refused is not None and self.editor.value != self._refused:
            self.show_problem(None)
        self.refresh_mark()

    def accept(self, value: object) -> None:
        """After a save: the saved value is the new reference."""
        self.original = value
        self.show_problem(None)
        self.refresh_mark()


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
        yield Static(SECTION_HELP[section], classes="section-help", markup=False)
        if section in TESTS:
            with Horizontal(classes="test-row"):
                yield Button(TESTS[section], id=f"test-{section}", classes="test-button", compact=True)
                yield Static("", id=f"{section}-result", classes="test-result", markup=False)

    def _section_rows(self, section: str) -> Iterator[Widget]:
        """A section's settings. Made when the section is first shown: the whole form at once is some 600
        widgets, which takes a noticeable second to open."""
        self._filled.add(section)
        model = SECTIONS[section][1]
        if model is not None:
            yield from self._rows(fields_of(model, f"{section}."))
            return
        for name, specs in operation_fields():
            yield from self._operation(name, specs)

    def _rows(self, specs: Iterable[FieldSpec]) -> Iterator[FieldRow]:
        for spec in specs:
            row = FieldRow(spec, value_at(self.config, spec.key))
            self.rows[spec.key] = row
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
        """A copy of the configuration with the edits applied (those of `sections` only, if given), and the
        refusals by key. The real configuration is left alone: it only changes once everything is accepted."""
        trial = Config(self.config.path, self.config.settings, copy.deepcopy(self.config.raw))
        wanted = None if sections is None else set(sections)
        problems: dict[str, str] = {}
        for key, row in self.rows.items():
            if (wanted is not None and row.spec.section not in wanted) or not row.changed:
                continue
            try:
                trial.set(key, row.value())
            except FieldProblem as problem:
                problems[key] = str(problem)
            except ConfigError as error:
                problems[key] = plain_refusal(error, trial, key)
        return trial, problems

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
            if database.driver == "mariadb":  # also proves the bridge's site is the database toolsync writes to
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
