"""SVG snapshots (80x24) of the palette's own commands (issue 21, item 10) and of the files screen's paging, go-to-line,
dry-run progress and escaped values (issue 21, item 11; issue 20, item 14). Pinned as in test_snapshots.py.

Update with `pytest tests/tui/test_snapshots_palette_files.py --snapshot-update`, then look at the SVGs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.app import App
from textual.command import Command, CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tests.support.files_ui import cursor_line, highlight, open_files, users_file
from tests.support.snapshots import FILE_TIME, NOW, SnapCompare, site_loaded, then
from tests.support.ui import FrozenClock, columns_fit, text_of, touch_all, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.run.pipeline import Progress, RunResult
from toolsync_tui.screens import files
from toolsync_tui.screens.files import FilesScreen

SIZE = (80, 24)
GATHER = CommandPalette._GATHER_COMMANDS_GROUP


@pytest.fixture
def pinned_app(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> ToolsyncApp:
    users_file(sandbox, "large.csv", 2_021)
    (sandbox.data_dir / "inbox" / "hostile.csv").write_text(
        "username;firstname;lastname;email\njdoe;\x1b[31mRed\x1b[0m;Do\x07e;j\tdoe@example.edu\n"
    )
    touch_all(sandbox.data_dir / "inbox", FILE_TIME)

    async def halfway(*args: Any, on_progress: Callable[[Progress], None], **options: Any) -> RunResult:
        """A dry run half-way through a 200,000-row file, going on until the app closes (no thread to wait for)."""
        on_progress(Progress("users", 100_001, 200_001, {"created": 100_000}, 5_000.0, 2_000, 20.0))
        await asyncio.Event().wait()
        raise AssertionError("never reached")

    monkeypatch.setattr(files, "run_in_thread", halfway)
    monkeypatch.setattr(files, "SPINNER", "⠋")  # one frame, whenever the snapshot is taken
    return ToolsyncApp(sandbox, clock=FrozenClock(NOW))


def gathering(app: App[Any]) -> bool:
    """Whether the palette is still gathering hits (a search per key typed, each replacing the one before)."""
    return any(worker.group == GATHER and worker.is_running for worker in app.workers)


def palette_typed(query: str, expected: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def typed(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await pilot.press("ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*query)

        def texts() -> list[str]:
            options = app.screen.query_one(CommandList).options
            return [str(option.hit.text) for option in options if isinstance(option, Command)]

        await wait_until(lambda: expected in texts() and not gathering(app))
        await pilot.pause()

    return typed


def on_file(name: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def shown(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ToolsyncApp)
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, name)
        # Laid out before the next keys: DataTable sizes its columns only when its queue runs dry.
        await wait_until(lambda: all(columns_fit(table) for table in screen.query(DataTable)))
        await pilot.pause()

    return shown


def files_screen(pilot: Pilot[Any]) -> FilesScreen:
    screen = pilot.app.screen
    assert isinstance(screen, FilesScreen)
    return screen


async def at_the_end(pilot: Pilot[Any]) -> None:
    screen = files_screen(pilot)
    await pilot.press("end")
    await wait_until(lambda: screen.page is not None and screen.page.number == 40 and cursor_line(screen) == "2022")
    preview = screen.query_one("#preview", DataTable)
    await wait_until(lambda: preview.scroll_y == preview.max_scroll_y > 0)  # scrolled to the cursor, after a refresh
    await pilot.pause()


async def go_to_line_typed(pilot: Pilot[Any]) -> None:
    field = files_screen(pilot).query_one("#goto", Input)
    await pilot.press("g")
    await wait_until(lambda: field.has_focus)  # (a loaded machine: the keys after it went to the preview)
    await pilot.press(*"1234")
    await wait_until(lambda: field.value == "1234")
    await pilot.pause()


async def dry_run_going(pilot: Pilot[Any]) -> None:
    screen = files_screen(pilot)
    await pilot.press("v")
    await wait_until(lambda: "line 100,001 of 200,001" in text_of(screen, "#dry-run"))  # the spinner painted it
    await pilot.pause()


def test_palette_users(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, palette_typed("users", "History of users"))
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_palette_dry(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, palette_typed("dry", "Dry run users"))
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_files_preview_end(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, on_file("large.csv"), at_the_end)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_files_go_to_line(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, on_file("large.csv"), go_to_line_typed)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_files_dry_run_progress(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, on_file("large.csv"), dry_run_going)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_files_escaped_values(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, on_file("hostile.csv"))
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


async def help_open(pilot: Pilot[Any]) -> None:
    await pilot.press("question_mark")
    await pilot.pause()


def test_files_help(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    """Every key of the screen, go-to-line and Home/End included, fits 24 rows with the palette's."""
    steps = then(site_loaded, on_file("large.csv"), help_open)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)
