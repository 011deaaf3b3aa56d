"""SVG snapshots of an unattended feed in the interface (issue 22 item 7), at 80x24: the dashboard with an operation
in snapshot mode, one with diff, a held run and the guard that held it; the held-runs screen with its detail pane.

Pinned: the clock, the files' times, the held run's id and time, and the run log's record of the guard (written as
the engine writes it, with a fixed start). Update with `--snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support.snapshots import FILE_TIME, NOW, SnapCompare, site_loaded, then
from tests.support.ui import FrozenClock, touch_all, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import HeldRun, HeldRuns
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.exits import EXIT_HELD
from toolsync_tui.engine.run.log import RunLog, RunRecord
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.held import HeldScreen

RUN_ID = "5e1d0c2a" + "0" * 24
HELD_AT = "2026-01-05T08:30:00"
REASON = "userimport.csv has 2 data rows, fewer than 50% of the previous file's 400 rows"
SAMPLE = [
    "line 2: suspend jdoe (not in the snapshot file)",
    "line 3: suspend asmith (not in the snapshot file)",
]


def hold_users_file(config: Config, tmp_path: Path) -> HeldRun:
    """A users file held as cron holds one a guard stopped: its record in held/, its guard in the run log."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    source = incoming / "userimport.csv"
    source.write_text("username;firstname;lastname;email\nnew1;N;One;n1@example.org\nnew2;N;Two;n2@example.org\n")
    run = HeldRun(
        id=RUN_ID,
        operation="users",
        file=source,
        original="userimport.csv",
        reason=REASON,
        held_at=HELD_AT,
        counts={"created": 2, "deleted": 398},
        sample=SAMPLE,
    )
    held = HeldRuns(config.data_dir).hold(run, source)
    problem = f"users: {REASON}. Held for approval: toolsync held approve {RUN_ID[:8]}."
    RunLog(config.data_dir).add(
        RunRecord(
            "users",
            "userimport.csv",
            HELD_AT,
            rows=400,
            counts={"created": 2, "deleted": 398},
            exit_code=EXIT_HELD,
            dry_run=True,
            problem=problem,
            run=RUN_ID,
        )
    )
    return held


@pytest.fixture
def feed_app(sandbox: Config, tmp_path: Path) -> ToolsyncApp:
    config = sandbox
    config.set("operations.users.mode", "snapshot")
    config.set("operations.enrols.diff", True)
    hold_users_file(config, tmp_path)
    touch_all(config.data_dir / "inbox", FILE_TIME)
    return ToolsyncApp(config, clock=FrozenClock(NOW))


async def users_chosen(pilot: Pilot[Any]) -> None:
    await pilot.press(*["down"] * list(OPERATIONS).index("users"))
    await pilot.pause()


async def held_open(pilot: Pilot[Any]) -> None:
    await pilot.press("a")
    await wait_until(lambda: isinstance(pilot.app.screen, HeldScreen))
    await pilot.pause()


def test_dashboard_with_modes_a_held_run_and_its_guard(snap_compare: SnapCompare, feed_app: ToolsyncApp) -> None:
    assert snap_compare(feed_app, terminal_size=(80, 24), run_before=then(site_loaded, users_chosen))


def test_held_runs_screen(snap_compare: SnapCompare, feed_app: ToolsyncApp) -> None:
    assert snap_compare(feed_app, terminal_size=(80, 24), run_before=then(site_loaded, held_open))


async def approve_asked(pilot: Pilot[Any]) -> None:
    await held_open(pilot)
    await pilot.press("a")
    await wait_until(lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.pause()


def test_held_run_approval_question(snap_compare: SnapCompare, feed_app: ToolsyncApp) -> None:
    assert snap_compare(feed_app, terminal_size=(80, 24), run_before=then(site_loaded, approve_asked))
