"""The command palette's own commands (ctrl+p): run, dry-run, files and history of every operation, found by typing
part of the operation's name or of the verb ("users", "dry"); and the runs held for approval ("held").

A run or a dry run goes through the dashboard's own action, as its key would: the palette starts nothing itself, so
whatever the dashboard asks before a run (a confirmation, a refusal of a missing file) it asks here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from textual.command import Hit, Hits, Provider

from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.files import FilesScreen
from toolsync_tui.screens.history import HistoryScreen
from toolsync_tui.widgets.filter_input import FilterInput


@dataclass(frozen=True)
class Verb:
    words: str  # the command's text before the operation's name
    help: str  # before the operation's title


VERBS: dict[str, Verb] = {
    "run": Verb("Run", "Run its command file"),
    "dry_run": Verb("Dry run", "What a run would do, nothing written"),
    "files": Verb("Files of", "Choose its command file, preview it"),
    "history": Verb("History of", "Its reports, trybacks and archives"),
}


HELD = "Held runs"
HELD_HELP = "Runs a guard or a threshold stopped, waiting for approval: approve or discard them"


def command_text(verb: str, operation: str) -> str:
    return f"{VERBS[verb].words} {operation}"


class OperationCommands(Provider):
    """Four commands for each operation; shown when typed for (the palette's first list keeps Textual's own)."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        if (score := matcher.match(HELD)) > 0:
            yield Hit(
                score, matcher.highlight(HELD), partial(open_held, self.app.screen_stack), text=HELD, help=HELD_HELP
            )
        for name, info in OPERATIONS.items():
            for verb in VERBS:
                text = command_text(verb, name)
                score = matcher.match(text)
                if score > 0:
                    help_text = f"{VERBS[verb].help}: {info.title}"
                    yield Hit(score, matcher.highlight(text), self._command(verb, name), text=text, help=help_text)

    def _command(self, verb: str, operation: str) -> Callable[[], None]:
        return partial(perform, self.app.screen_stack, verb, operation)


def perform(stack: Sequence[object], verb: str, operation: str) -> None:
    """Do `verb` for `operation` from whatever screen the palette was opened on (the dashboard is always at the
    bottom of the stack); the screen it opens comes on top of that one."""
    dashboard = next(screen for screen in stack if isinstance(screen, DashboardScreen))
    if verb in ("run", "dry_run"):
        choose(dashboard, operation)
        dashboard.action_run(verb == "dry_run")
    elif verb == "files":
        dashboard.app.push_screen(FilesScreen(dashboard.config, operation, dashboard.clock))
    else:
        dashboard.app.push_screen(HistoryScreen(dashboard.config, dashboard.clock, operation))


def open_held(stack: Sequence[object]) -> None:
    """The held runs, approved from there through the dashboard (which follows the runs it starts)."""
    dashboard = next(screen for screen in stack if isinstance(screen, DashboardScreen))
    dashboard.action_held()


def choose(dashboard: DashboardScreen, operation: str) -> None:
    """Put the dashboard's cursor on `operation`, its filter cleared when it hides it: the dashboard's action runs the
    operation under its cursor, and coming back shows the one that ran."""
    table = dashboard.table
    if operation not in table.entries:
        field = dashboard.query_one(FilterInput)
        field.value, field.display = "", False
        dashboard.rescan()
    table.move_cursor(row=table.get_row_index(operation))
