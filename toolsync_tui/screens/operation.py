"""Enter on the dashboard: one operation, its file, its last and next run, and what can be done with it. Nothing
runs from here without its own key (r, d); the screen closes with the action chosen, which the dashboard carries out
(so that a run started here is one the dashboard follows like any other)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from toolsync_tui.widgets.key_footer import KeyFooter
from toolsync_tui.widgets.site_bar import SiteBar

ACTIONS = (
    ("r", "run", "Run it: writes to the site (asks first when it can remove or suspend)"),
    ("d", "dry_run", "Dry run: what it would do, nothing written"),
    ("f", "files", "Files: choose its command file, preview and check it"),
    ("h", "history", "History: its reports, trybacks and archives"),
    ("esc", "", "Back to the operations"),
)


class OperationScreen(Screen[str | None]):
    CSS_PATH = "operation.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "choose('run')", "Run"),
        Binding("d", "choose('dry_run')", "Dry run"),
        Binding("f", "choose('files')", "Files"),
        Binding("h", "choose('history')", "History"),
        Binding("escape", "choose('')", "Back"),
    ]

    def __init__(self, name: str, title: str, facts: list[str]) -> None:
        super().__init__()
        self.operation = name
        self.heading = f"{name} · {title}"
        self.facts = facts  # the dashboard's detail lines

    def compose(self) -> ComposeResult:
        yield SiteBar(id="site")
        yield Static(self.heading, id="operation-title", markup=False)
        with VerticalScroll(id="operation-body"):
            yield Static("\n".join(self.facts), id="facts", markup=False)
            keys = "\n".join(f"{key:<5}{words}" for key, _, words in ACTIONS)
            yield Static(keys, id="actions", markup=False)
        yield KeyFooter()

    def action_choose(self, action: str) -> None:
        self.dismiss(action or None)
