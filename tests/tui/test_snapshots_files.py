"""SVG snapshots of the file preselection screen (pytest-textual-snapshot), pinned as in test_snapshots.py.

Update with `pytest tests/test_snapshots_files.py --snapshot-update`, then look at the SVGs before committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.support.snapshots import FILE_TIME, NOW, SIZES, SnapCompare, site_loaded, then
from tests.support.ui import FrozenClock, touch_all, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.screens.files import FilesScreen

BROKEN = "broken.csv"


@pytest.fixture
def files_app(sandbox: Config) -> ToolsyncApp:
    config = sandbox
    inbox = config.data_dir / "inbox"
    (inbox / BROKEN).write_text(
        "username;firstname;lastname;email\njdoe;John;Doe;john.doe@example.edu\nasmith;Alice\nbprof;Bob;Prof;b@x;y\n"
    )
    touch_all(inbox, FILE_TIME)
    return ToolsyncApp(config, clock=FrozenClock(NOW))


async def shown(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, FilesScreen)
    await wait_until(lambda: screen.page is not None and not screen.counting)
    await pilot.pause()


def files_open(operation: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def push(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ToolsyncApp)
        app.push_screen(FilesScreen(app.config, operation, app.clock))
        await wait_until(lambda: isinstance(app.screen, FilesScreen))
        await shown(pilot)

    return push


async def broken_highlighted(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, FilesScreen)
    table = screen.query_one("#files", DataTable)
    table.move_cursor(row=table.get_row_index(str(screen.store.inbox / BROKEN)))
    await wait_until(lambda: screen.highlighted is not None and screen.highlighted.shown == BROKEN)
    await shown(pilot)


@SIZES
def test_files_screen(snap_compare: SnapCompare, files_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(files_app, terminal_size=size, run_before=then(site_loaded, files_open("users")))


def test_files_screen_rows_with_problems(snap_compare: SnapCompare, files_app: ToolsyncApp) -> None:
    steps = then(site_loaded, files_open("users"), broken_highlighted)
    assert snap_compare(files_app, terminal_size=(80, 24), run_before=steps)


def test_files_screen_pictures(snap_compare: SnapCompare, files_app: ToolsyncApp) -> None:
    assert snap_compare(files_app, terminal_size=(80, 24), run_before=then(site_loaded, files_open("pictures")))


async def filtered(pilot: Pilot[Any]) -> None:
    await pilot.press("slash", *"user")
    await shown(pilot)


def test_files_screen_filtered(snap_compare: SnapCompare, files_app: ToolsyncApp) -> None:
    steps = then(site_loaded, files_open("users"), filtered)
    assert snap_compare(files_app, terminal_size=(80, 24), run_before=steps)
