"""`?`: the keys of the screen underneath, built from its live bindings so it cannot drift from them."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

KeyHelp = tuple[str, str]


def keys_of(app: App[Any], screen: Screen[Any]) -> list[KeyHelp]:
    """The footer's bindings, then what a screen documents beyond them (e.g. keys its widgets handle)."""
    shown: list[KeyHelp] = []
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.show and binding.description and active.enabled:
            shown.append((app.get_key_display(binding), binding.description))
    extra: tuple[KeyHelp, ...] = getattr(screen, "KEY_HELP", ())
    return [*shown, *extra, (app.get_key_display(Binding("ctrl+p", "")), "Command palette")]


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "modals.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def __init__(self, keys: list[KeyHelp]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, description in self.keys:
            table.add_row(key, description)
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "Keys"
            yield Static(table)
            yield Static("esc, ? or q closes this help", classes="hint")
