"""SVG snapshots of the schedules screen and its editor (pytest-textual-snapshot), at 80x24 and 120x40.

Pinned: the clock and the local zone, the schedules' zone, a stand-in crontab program (the real crontab is never
read), and what the crontab line says about this machine: the interpreter, where syslog's logger is, the folder of
the configuration, the name of the user. The screen itself is not changed: the masked line is the real one with
those parts replaced, and it is also the line the stand-in crontab holds.
Update with `pytest tests/test_snapshots_schedules.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.support.schedules import NOW, fake_crontab, local_zone, scheduled
from tests.support.ui import FrozenClock
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.unattended import crontab
from toolsync_tui.screens import schedules
from toolsync_tui.screens.schedules import SchedulesScreen
from toolsync_tui.widgets.schedule_editor import ScheduleEditor

SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
SITE = "/srv/toolsync"  # shown instead of the sandbox's folder under tmp_path

SnapCompare = Callable[..., bool]


def mask_machine(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crontab line and the owner note as on any machine: only what varies between machines is replaced."""
    monkeypatch.setattr(crontab, "sys", SimpleNamespace(executable="/opt/toolsync/bin/python"))
    monkeypatch.setattr(crontab, "shutil", SimpleNamespace(which=lambda name: f"/usr/bin/{name}"))
    real_line = crontab.cron_line
    site = str(config.path.resolve().parent)
    # Patched on the module: the screen shows it and install() writes it, so both agree.
    monkeypatch.setattr(crontab, "cron_line", lambda *args: real_line(*args).replace(site, SITE))
    monkeypatch.setattr(schedules, "owner_of", lambda path: "moodle")
    monkeypatch.setattr(schedules, "current_user", lambda: "moodle")


@pytest.fixture
def pinned_app(sandbox: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolsyncApp]:
    config = sandbox
    fake_crontab(config, tmp_path / "fake bin")
    scheduled(config)
    mask_machine(config, monkeypatch)
    crontab.install(config, schedules.EVERY_MINUTES)
    with local_zone("UTC"):
        yield ToolsyncApp(config, clock=FrozenClock(NOW))


async def schedules_open(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ToolsyncApp)
    assert app.site_loader is not None
    await app.site_loader.wait()
    await app.push_screen(SchedulesScreen(app.config, app.clock))
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, SchedulesScreen)
    assert screen.crontab_worker is not None
    await screen.crontab_worker.wait()
    await pilot.pause()
    assert screen.installed is not None  # the installed state, not "checking…"


async def editor_open(pilot: Pilot[Any]) -> None:
    await schedules_open(pilot)
    await pilot.press("e")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ScheduleEditor)


@SIZES
def test_schedules(snap_compare: SnapCompare, pinned_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(pinned_app, terminal_size=size, run_before=schedules_open)


@SIZES
def test_schedule_editor(snap_compare: SnapCompare, pinned_app: ToolsyncApp, size: tuple[int, int]) -> None:
    assert snap_compare(pinned_app, terminal_size=size, run_before=editor_open)


async def users_edited(pilot: Pilot[Any]) -> None:
    """users given a custom schedule in the editor and saved with enter: the table as it is painted again."""
    await schedules_open(pilot)
    await pilot.press(*["down"] * list(OPERATIONS).index("users"), "e")
    await pilot.pause()
    editor = pilot.app.screen
    assert isinstance(editor, ScheduleEditor)
    editor.query_one(Input).focus()
    await pilot.press("ctrl+u", *"30 2 * * *", "enter")
    await pilot.pause()
    assert isinstance(pilot.app.screen, SchedulesScreen)
    pilot.app.clear_notifications()  # the "Schedule saved" toast times out: a slow machine would snap it or not


def test_schedules_after_an_edit(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    """Issue 21 item 8: every column whole after saving an edit, at 80x24."""
    assert snap_compare(pinned_app, terminal_size=(80, 24), run_before=users_edited)


def test_schedules_mark_snapshot_operations(snap_compare: SnapCompare, pinned_app: ToolsyncApp) -> None:
    """Issue 22 item 7: the operations in snapshot mode marked, the mark said above the table, at 80x24."""
    pinned_app.config.set("operations.users.mode", "snapshot")
    pinned_app.config.set("operations.groupmembers.mode", "snapshot")
    assert snap_compare(pinned_app, terminal_size=(80, 24), run_before=schedules_open)
