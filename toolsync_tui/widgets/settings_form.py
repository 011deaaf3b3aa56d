"""The settings form: one row per setting, made from the pydantic models of config.py.

A setting added to a model shows up with the editor its type calls for and the help its Field describes. Edited values
are read back as the configuration takes them and tried on a copy of the configuration, never on the one in use.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args, get_origin

from pydantic import BaseModel
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from toolsync_tui.config import Config, ConfigError, OperationsSettings
from toolsync_tui.engine.run.controls import quoted

# Edited elsewhere (the operation's command file and its schedule), or not a single value.
NOT_HERE = frozenset({"file", "schedule", "schedule_enabled"})

Kind = Literal["choice", "switch", "integer", "number", "text", "secret"]
Editor = Input | Select[object] | Switch

# Pydantic's phrases, in the form's words.
REWORDED = (
    ("String should match pattern '^[A-Za-z0-9_]*$'", "only letters, digits and _ are allowed"),
    ("String should match pattern", "must match the pattern"),
    ("Input should be", "must be"),
)


# What a number field takes, said when a key is refused (Input's own check drops it with a bell only).
NUMBER_WORDS = {
    "integer": "a whole number: digits only, e.g. 5000",
    "number": "a number: digits and one decimal point, e.g. 0.1",
}
SHOWN_REFUSED = 20  # characters of a refused paste shown


class FieldProblem(ValueError):
    """A value the form cannot even hand to the configuration (e.g. letters where a number goes)."""


class NumberInput(Input):
    """A number field that says why a key typed, or a text pasted, was refused, instead of dropping it silently."""

    class Refused(Message):
        def __init__(self, why: str) -> None:
            super().__init__()
            self.why = why

    _inserted = ""  # the text of the edit being checked

    def replace(self, text: str, start: int, end: int) -> None:
        self._inserted = text
        super().replace(text, start, end)

    def restricted(self) -> None:
        super().restricted()  # the bell
        self.post_message(self.Refused(refusal(self._inserted, self.type)))


def refusal(text: str, kind: str) -> str:
    """ "'x' cannot go in a whole number: digits only, e.g. 5000"; control characters escaped."""
    shown = text if len(text) <= SHOWN_REFUSED else text[: SHOWN_REFUSED - 1] + "…"
    return f"{quoted(shown)} cannot go in {NUMBER_WORDS.get(kind, 'this field')}"


@dataclass(frozen=True)
class FieldSpec:
    key: str  # dotted, as Config.set takes it
    kind: Kind
    choices: tuple[object, ...] = ()
    help: str = ""  # the model field's description

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
        specs.append(FieldSpec(prefix + name, "secret" if secret else kind[0], kind[1], info.description or ""))
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


def plain_refusal(error: ConfigError, config: Config, key: str) -> str:
    """ConfigError's message without the file and key (the field shows those), in the form's words."""
    message = str(error).removeprefix(f"{config.path}: ").removeprefix(f"{key}: ")
    for phrase, plain in REWORDED:
        message = message.replace(phrase, plain)
    return message


class FieldRow(Vertical):
    """One setting: its key (docked on the left), its editor, what it means, and why a value was refused.

    Kept to few widgets: the operations alone make some 40 rows, and every widget costs time to mount.
    """

    # One line per setting (compact editors) so that 80x24 shows a useful part of the form. Focus and changes are
    # shown with reverse video and words (*, "Refused:"), never by colour alone. The row's own :focus-within rule is
    # what makes Textual restyle the label when the focus comes or goes: it only looks at the focused widget's
    # ancestors for such rules, and the label is the editor's sibling.
    DEFAULT_CSS = """
    FieldRow {
        height: auto;

        &:focus-within {
            background: $boost;
        }
        & > .field-label {
            dock: left;
            width: 25;
            padding: 0 1 0 0;
        }
        &:focus-within > .field-label {
            text-style: bold reverse;
        }
        &.-changed > .field-label {
            text-style: bold;
        }
        & > Input, & > Select {
            width: 1fr;
            max-width: 60;
        }
        .switch-line {
            height: 1;
        }
        .switch-state {
            width: auto;
            margin-left: 1;
        }
        Switch {
            border: none;
            padding: 0;
            height: 1;
        }
        Switch:focus {
            border: none;
            text-style: reverse;
        }
        .field-help {
            color: $text-muted;
        }
        .field-error {
            color: $text-error;
            text-style: bold;
        }
    }
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
        if self.spec.help:
            yield Static(self.spec.help, classes="field-help", markup=False)

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
        if spec.kind in ("integer", "number"):
            number_type: Literal["integer", "number"] = "integer" if spec.kind == "integer" else "number"
            return NumberInput(str(value), type=number_type, compact=True, id=widget_id)
        return Input(str(value), compact=True, id=widget_id)

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

    def on_number_input_refused(self, message: NumberInput.Refused) -> None:
        message.stop()
        self.show_problem(message.why)

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


def field_rows(config: Config, specs: Iterable[FieldSpec]) -> Iterator[FieldRow]:
    """A row per setting, showing the configuration's current value."""
    for spec in specs:
        yield FieldRow(spec, value_at(config, spec.key))


def edited_config(config: Config, rows: Iterable[FieldRow]) -> tuple[Config, dict[str, str]]:
    """A copy of the configuration with the rows' edits applied, and the refusals by key. The configuration itself is
    left alone: it only changes once everything is accepted (a half-applied one would be worse than none)."""
    trial = Config(config.path, config.settings, copy.deepcopy(config.raw))
    problems: dict[str, str] = {}
    for row in rows:
        if not row.changed:
            continue
        key = row.spec.key
        try:
            trial.set(key, row.value())
        except FieldProblem as problem:
            problems[key] = str(problem)
        except ConfigError as error:
            problems[key] = plain_refusal(error, trial, key)
    return trial, problems
