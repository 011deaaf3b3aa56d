"""The command palette (ctrl+p) carries toolsync's own actions, found by what is typed (issue 21, item 10)."""

from __future__ import annotations

from typing import Any

from textual.command import Command, CommandList, CommandPalette
from textual.widgets import Button

from tests.support.ui import finished_run, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.files import FilesScreen
from toolsync_tui.screens.history import HistoryScreen
from toolsync_tui.screens.run_confirm import RunConfirmScreen

SIZE = (80, 24)
GATHER = CommandPalette._GATHER_COMMANDS_GROUP


def gathering(app: ToolsyncApp) -> bool:
    """Whether the palette is still gathering hits (a search per key typed, each replacing the one before)."""
    return any(worker.group == GATHER and worker.is_running for worker in app.workers)


def hits(app: ToolsyncApp) -> list[str]:
    options = app.screen.query_one(CommandList).options
    return [str(option.hit.text) for option in options if isinstance(option, Command)]


async def typed(app: ToolsyncApp, pilot: Any, query: str, expected: str) -> list[str]:
    """The palette opened and `query` typed, once its hits include `expected`."""
    await pilot.press("ctrl+p")
    await wait_until(lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*query)
    await wait_until(lambda: expected in hits(app) and not gathering(app))
    await pilot.pause()
    return hits(app)


async def chosen(app: ToolsyncApp, pilot: Any, text: str) -> None:
    """The hit `text` highlighted and entered."""
    commands = app.screen.query_one(CommandList)
    commands.highlighted = hits(app).index(text)
    await pilot.press("enter")
    await wait_until(lambda: not isinstance(app.screen, CommandPalette))


async def test_typing_an_operation_finds_its_run_dry_run_files_and_history(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        found = await typed(app, pilot, "users", "History of users")
        assert {"Run users", "Dry run users", "Files of users", "History of users"} <= set(found)
        assert found[0] in {"Run users", "Dry run users", "Files of users", "History of users"}


async def test_typing_dry_finds_the_dry_run_of_every_operation(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        found = await typed(app, pilot, "dry", "Dry run users")
        assert {f"Dry run {name}" for name in OPERATIONS} <= set(found)


async def test_the_screens_and_reconnect_are_found_too(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        for query, expected in (("sched", "Schedules"), ("sett", "Settings"), ("reconn", "Reconnect")):
            found = await typed(app, pilot, query, expected)
            assert found[0] == expected
            await pilot.press("escape")
            await wait_until(lambda: not isinstance(app.screen, CommandPalette))


async def test_a_dry_run_from_the_palette_is_the_dashboards_own(sandbox: Config) -> None:
    """The palette goes through the dashboard's action: its cursor is on the operation that runs, even when the
    dashboard's filter hid it."""
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"course")  # users is filtered out of the dashboard
        await pilot.press("enter")
        dashboard = app.screen
        assert isinstance(dashboard, DashboardScreen)
        assert "users" not in dashboard.table.entries
        await typed(app, pilot, "dry users", "Dry run users")
        await chosen(app, pilot, "Dry run users")
        run = await finished_run(app, pilot)
        assert run.dry_run
        assert run.entry.name == "users"
        assert dashboard.table.chosen is not None
        assert dashboard.table.chosen.name == "users"


async def test_a_run_from_the_palette_on_another_screen_opens_over_it(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        await wait_until(lambda: isinstance(app.screen, HistoryScreen))
        await typed(app, pilot, "run check", "Run check")
        await chosen(app, pilot, "Run check")
        run = await finished_run(app, pilot)
        assert (run.entry.name, run.dry_run) == ("check", False)


async def test_files_and_history_of_an_operation(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await typed(app, pilot, "files enrols", "Files of enrols")
        await chosen(app, pilot, "Files of enrols")
        await wait_until(lambda: isinstance(app.screen, FilesScreen))
        assert getattr(app.screen, "operation", None) == "enrols"
        await typed(app, pilot, "history cohorts", "History of cohorts")
        await chosen(app, pilot, "History of cohorts")
        await wait_until(lambda: isinstance(app.screen, HistoryScreen))
        assert getattr(app.screen, "operation", None) == "cohorts"


async def test_a_removal_run_from_the_palette_asks_first(sandbox: Config) -> None:
    """The palette's Run is the dashboard's `r`: a file that can remove accounts shows its dry run and asks."""
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await typed(app, pilot, "run deleteusers", "Run deleteusers")
        await chosen(app, pilot, "Run deleteusers")
        await wait_until(lambda: isinstance(app.screen, RunConfirmScreen))
        confirm = app.screen
        await wait_until(lambda: not confirm.query_one("#yes", Button).disabled)
        await pilot.press("enter")  # No, by default
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
    assert [(record.operation, record.dry_run) for record in RunLog(sandbox.data_dir).recent()] == [
        ("deleteusers", True)
    ]
