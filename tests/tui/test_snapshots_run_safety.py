"""80x24 snapshots of issue 21 items 1-4: the dashboard with a run going on, the question before a removal with its
dry run's counts, the cancel question, a cancelled run's summary and the safety threshold's question.
Update with --snapshot-update, then look at the SVGs."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button

from tests.support.snapshots import FILE_TIME, NOW, SnapCompare, site_loaded, then
from tests.support.ui import FrozenClock, touch_all, wait_until
from tests.tui.test_run_safety import held_run, tripping
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run import pipeline
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.operation import OperationScreen
from toolsync_tui.screens.run import RunScreen
from toolsync_tui.screens.run_confirm import RunConfirmScreen

SIZE = (80, 24)


@pytest.fixture
def pinned_app(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> ToolsyncApp:
    touch_all(sandbox.data_dir / "inbox", FILE_TIME)
    monkeypatch.setattr(pipeline, "timestamp", lambda moment=None: "20260105-090500")
    return ToolsyncApp(sandbox, clock=FrozenClock(NOW))


async def run_started(pilot: Pilot[Any]) -> None:
    await pilot.press("r")
    await wait_until(lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen._progress is not None)
    await pilot.pause(0.3)


async def left_running(pilot: Pilot[Any]) -> None:
    await pilot.press("escape")
    await wait_until(lambda: isinstance(pilot.app.screen, DashboardScreen))
    await pilot.pause(0.7)  # the dashboard's progress timer


async def cancel_asked(pilot: Pilot[Any]) -> None:
    await pilot.press("c")
    await wait_until(lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.pause()


async def cancelled(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    await pilot.press("c", "y")
    assert screen.worker is not None
    await screen.worker.wait()
    await pilot.pause()


def chosen(name: str) -> Any:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.press(*["down"] * list(OPERATIONS).index(name))
        await pilot.pause()

    return step


async def removal_asked(pilot: Pilot[Any]) -> None:
    await pilot.press("r")
    app = pilot.app
    await wait_until(
        lambda: isinstance(app.screen, RunConfirmScreen) and not app.screen.query_one("#yes", Button).disabled
    )
    await pilot.pause()


async def threshold_asked(pilot: Pilot[Any]) -> None:
    await removal_asked(pilot)
    await pilot.press("y")
    await wait_until(lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.pause()


async def operation_opened(pilot: Pilot[Any]) -> None:
    await pilot.press("enter")
    await wait_until(lambda: isinstance(pilot.app.screen, OperationScreen))
    await pilot.pause()


def test_enter_opens_the_operation(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, chosen("suspendusers"), operation_opened)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_dashboard_with_a_run_going_on(
    snap_compare: SnapCompare, pinned_app: ToolsyncApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    held_run(monkeypatch)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=then(site_loaded, run_started, left_running))


def test_cancel_question(snap_compare: SnapCompare, pinned_app: ToolsyncApp, monkeypatch: pytest.MonkeyPatch) -> None:
    held_run(monkeypatch)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=then(site_loaded, run_started, cancel_asked))


def test_cancelled_run(snap_compare: SnapCompare, pinned_app: ToolsyncApp, monkeypatch: pytest.MonkeyPatch) -> None:
    held_run(monkeypatch)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=then(site_loaded, run_started, cancelled))


def test_removal_question_with_dry_run_counts(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    steps = then(site_loaded, chosen("deleteusers"), removal_asked)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)


def test_safety_threshold_question(
    snap_compare: SnapCompare, pinned_app: ToolsyncApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    tripping(monkeypatch, "deleteusers", 1, 5)
    steps = then(site_loaded, chosen("deleteusers"), threshold_asked)
    assert snap_compare(pinned_app, terminal_size=SIZE, run_before=steps)
