"""SVG snapshots of the interface (pytest-textual-snapshot), at 80x24 and 120x40.

Everything that changes between runs is pinned: a frozen clock (file ages, durations, rates), fixed file
times, a fixed report stamp, and paths shown relative to the sandbox, whose tmp_path never appears.
Update with `pytest tests/test_snapshots.py --snapshot-update`, then look at the SVGs before committing.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support.snapshots import FILE_TIME, NOW, SIZES, SnapCompare, site_loaded, then
from tests.support.ui import FrozenClock, touch_all, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.run import pipeline
from toolsync_tui.screens.run import RunScreen

STAMP = "20260105-090500"  # what the engine's report/tryback/archive names would carry


@pytest.fixture
def pinned_app(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> ToolsyncApp:
    config = sandbox
    touch_all(config.data_dir / "inbox", FILE_TIME)
    # The engine stamps file names with datetime.now() and offers no clock of its own (yet).
    monkeypatch.setattr(pipeline, "timestamp", lambda moment=None: STAMP)
    return ToolsyncApp(config, clock=FrozenClock(NOW))


async def finished_check(pilot: Pilot[Any]) -> None:
    await pilot.press("r")
    await wait_until(lambda: isinstance(pilot.app.screen, RunScreen))
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    assert screen.worker is not None
    await screen.worker.wait()
    await pilot.pause()
    assert screen.result is not None


async def help_open(pilot: Pilot[Any]) -> None:
    await pilot.press("question_mark")
    await pilot.pause()


@SIZES
def test_dashboard(snap_compare: SnapCompare, pinned_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(pinned_app, terminal_size=size, run_before=site_loaded)


@SIZES
def test_run_screen_after_check(snap_compare: SnapCompare, pinned_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(pinned_app, terminal_size=size, run_before=then(site_loaded, finished_check))


def test_help(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    assert snap_compare(pinned_app, terminal_size=(80, 24), run_before=then(site_loaded, help_open))
