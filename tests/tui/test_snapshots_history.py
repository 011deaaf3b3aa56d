"""SVG snapshots of the history and the report viewer (pytest-textual-snapshot), at 80x24 and 120x40.

The files come from real runs on the sandbox, with everything that changes between runs pinned: each run's stamp
(so its file names), the files' times (from those stamps), a frozen clock for their ages, and the report lines that
name the sandbox's tmp_path, the start time or the duration (which would also change the reports' sizes).
Update with `pytest tests/test_snapshots_history.py --snapshot-update`, then look at the SVGs before committing.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from tests.support.operation_files import date_by_stamp, run_operations
from tests.support.ui import FrozenClock, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.run import pipeline
from toolsync_tui.screens.history import HistoryScreen
from toolsync_tui.screens.report import ReportScreen

NOW = datetime(2026, 1, 5, 9, 5, 0)
# (operation, dry run, the stamp its files get): yesterday's cohorts, this morning's check, a dry run just before NOW.
RUNS = (
    ("cohorts", False, "20260104-171000"),
    ("check", False, "20260105-083000"),
    ("users", True, "20260105-085000"),
)
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])

SnapCompare = Callable[..., bool]


def pin_reports(config: Config) -> None:
    """The report lines that differ from one run to the next, made fixed."""
    for report in (config.data_dir / "reports").glob("*.txt"):
        stamp = datetime.strptime(report.name[:15], "%Y%m%d-%H%M%S")
        text = report.read_text().replace(str(config.base_dir), "/srv/toolsync")
        text = re.sub(r"^started: .*$", f"started: {stamp:%Y-%m-%d %H:%M:%S}", text, flags=re.MULTILINE)
        text = re.sub(r" processed in [\d.]+ s", " processed in 0.1 s", text)
        report.write_text(text)


def pinned_id(stamp: str) -> str:
    """A run id from its stamp, its time first: "085000" + "20260105" + zeros (distinct in its first 8 digits)."""
    day, time = stamp.split("-")
    return (time + day).ljust(32, "0")


@pytest.fixture
def history_app(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> ToolsyncApp:
    config = sandbox
    for name, dry_run, stamp in RUNS:
        # The engine stamps file names with datetime.now() and offers no clock of its own.
        monkeypatch.setattr(pipeline, "timestamp", lambda moment=None, stamp=stamp: stamp)
        # The run's id, which the history shows: from its stamp rather than random.
        monkeypatch.setattr(uuid, "uuid4", lambda stamp=stamp: uuid.UUID(hex=pinned_id(stamp)))
        asyncio.run(run_operations(config, (name, dry_run)))
    pin_reports(config)
    date_by_stamp(config.data_dir)
    return ToolsyncApp(config, clock=FrozenClock(NOW))


async def history_open(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ToolsyncApp)
    assert app.site_loader is not None
    await app.site_loader.wait()
    app.push_screen(HistoryScreen(app.config, app.clock))
    await wait_until(lambda: isinstance(app.screen, HistoryScreen))
    await pilot.pause()


async def report_open(pilot: Pilot[Any]) -> None:
    await history_open(pilot)
    await pilot.press("enter")  # the newest file: the users' dry-run report
    await wait_until(lambda: isinstance(pilot.app.screen, ReportScreen))
    await pilot.pause()


@SIZES
def test_history(snap_compare: SnapCompare, history_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(history_app, terminal_size=size, run_before=history_open)


@SIZES
def test_report(snap_compare: SnapCompare, history_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(history_app, terminal_size=size, run_before=report_open)


async def history_help(pilot: Pilot[Any]) -> None:
    await history_open(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


def test_history_help(snap_compare: SnapCompare, history_app: ToolsyncApp) -> None:
    """Issue 21, item 6: the history's keys fit 24 rows, nothing scrolled out."""
    assert snap_compare(history_app, terminal_size=(80, 24), run_before=history_help)


async def report_searched(pilot: Pilot[Any]) -> None:
    await report_open(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ReportScreen)
    await pilot.press("slash", *"bio")
    await wait_until(lambda: "holding 'bio'" in str(screen.query_one("#page", Static).content))
    await pilot.press("enter")  # to the table: its first record, a failed one, whole under it
    await pilot.pause()


def test_report_search_and_detail(snap_compare: SnapCompare, history_app: ToolsyncApp) -> None:
    """Issue 21, item 7: `/` narrows the outcome table; the highlighted record's message is read whole."""
    assert snap_compare(history_app, terminal_size=(80, 24), run_before=report_searched)
