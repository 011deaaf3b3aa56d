"""One operation's schedule, edited: a preset or a cron expression, checked as it is typed, with its next runs."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from toolsync_tui.views.cron_words import described, expression_problem, normalized

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


class CronExpression(Validator):
    """Marks the input invalid (red) as it is typed; the words come from check_expression."""

    def validate(self, value: str) -> ValidationResult:
        problem = expression_problem(value)
        return self.failure(problem) if problem is not None else self.success()


def preset_key(expression: str) -> str:
    return next((key for key, _, preset in PRESETS if preset == normalized(expression)), CUSTOM)


def preset_expression(key: str) -> str | None:
    return next((preset for preset_key, _, preset in PRESETS if preset_key == key), None)


class ScheduleEditor(ModalScreen[str | None]):
    """One operation's schedule: a preset or a cron expression. Dismissed with the expression to save ("" for
    off), or None when cancelled."""

    DEFAULT_CSS = """
    ScheduleEditor {
        align: center middle;
    }

    ScheduleEditor #editor {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }

    ScheduleEditor #editor-title {
        color: $text-muted;
    }

    ScheduleEditor #expression-label {
        margin-top: 1;
    }

    ScheduleEditor #verdict {
        height: auto;
        min-height: 2;
        padding: 0 1;
    }

    ScheduleEditor #verdict.-error {
        color: $text-error;
    }

    ScheduleEditor #editor-buttons {
        height: auto;
        align-horizontal: right;
    }

    ScheduleEditor #editor-buttons Button {
        margin-left: 2;
    }
    """
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
        problem = expression_problem(expression) if expression.strip() else None
        verdict.set_class(problem is not None, "-error")
        self.query_one("#save", Button).disabled = problem is not None
        if problem is not None:
            verdict.update(problem)
        elif not expression.strip():
            verdict.update("Not scheduled: toolsync cron will not run it.")
        else:
            verdict.update(described(normalized(expression), self.now, NEXT_RUNS))

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
