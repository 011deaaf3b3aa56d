"""SVG snapshots of the settings screen (pytest-textual-snapshot), at 80x24 and 120x40.

The sandbox's paths are relative to its configuration, so tmp_path never shows; the clock and file times are
pinned as in tests/test_snapshots.py. Update with `pytest tests/test_snapshots_settings.py --snapshot-update`,
then look at the SVGs before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TabbedContent

from tests.support.ui import FrozenClock, touch_all, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.screens.settings import SettingsScreen

FILE_TIME = datetime(2026, 1, 5, 9, 0, 0)
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])

SnapCompare = Callable[..., bool]


@pytest.fixture
def pinned_app(sandbox: Config) -> ToolsyncApp:
    config = sandbox
    touch_all(config.data_dir / "inbox", FILE_TIME)
    return ToolsyncApp(config, clock=FrozenClock(FILE_TIME))


async def settings_shown(pilot: Pilot[Any]) -> SettingsScreen:
    """The header's site loaded, then the settings pushed over the dashboard (as its key will)."""
    app = pilot.app
    assert isinstance(app, ToolsyncApp)
    assert app.site_loader is not None
    await app.site_loader.wait()
    screen = SettingsScreen(app.config)
    await app.push_screen(screen)
    await pilot.pause()
    return screen


async def database_section(pilot: Pilot[Any]) -> None:
    await settings_shown(pilot)


async def operations_section(pilot: Pilot[Any]) -> None:
    screen = await settings_shown(pilot)
    await pilot.press("right", "right", "right", "right")  # the section tabs have the focus
    await wait_until(lambda: screen.query_one(TabbedContent).active == "operations")
    await wait_until(lambda: bool(screen.query("#form-operations .field Select")))
    await pilot.pause()


@SIZES
def test_settings_database(snap_compare: SnapCompare, pinned_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(pinned_app, terminal_size=size, run_before=database_section)


@SIZES
def test_settings_operations(snap_compare: SnapCompare, pinned_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(pinned_app, terminal_size=size, run_before=operations_section)


async def refused_key(pilot: Pilot[Any]) -> None:
    """The Run section, batch_size focused, a letter typed into it."""
    screen = await settings_shown(pilot)
    screen.query_one(TabbedContent).active = "run"
    await wait_until(lambda: bool(screen.query("#form-run .field Input")))
    field = screen.query_one("#f-run--batch_size", Input)
    field.cursor_blink = False  # the cursor always shown: a blink would make the snapshot depend on timing
    field.focus()
    await pilot.press("end", "k")
    await wait_until(lambda: bool(screen.query("#form-run .field-error")))
    await pilot.pause()


def test_settings_refused_key(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    """Issue 21 item 12: the focused setting stands out, and a key a number field refuses is said under it."""
    assert snap_compare(pinned_app, terminal_size=(80, 24), run_before=refused_key)
