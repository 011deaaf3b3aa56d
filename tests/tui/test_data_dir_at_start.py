"""The interface makes the data directory private when it starts, not only when a run does (issue 20, item 1): a
passwords file dropped in the inbox is 0600 while the interface merely lists it; an unusable directory is a message."""

from __future__ import annotations

import os
import stat

import pytest

from tests.support.ui import record_notifications, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.privacy import PRIVATE
from toolsync_tui.screens.dashboard import DashboardScreen

SIZE = (80, 24)


def mode(path: os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_a_file_dropped_in_the_inbox_is_made_private_at_start(sandbox: Config) -> None:
    dropped = sandbox.data_dir / "inbox" / "newcomers.csv"
    dropped.write_text("username;password\njdoe;Secret-1\n")
    os.chmod(dropped, 0o644)  # as scp leaves it
    os.chmod(sandbox.data_dir / "inbox", 0o755)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert mode(dropped) == PRIVATE[1]
        assert mode(sandbox.data_dir / "inbox") == PRIVATE[0]


async def test_group_readable_is_followed_at_start(sandbox: Config) -> None:
    sandbox.set("files.group_readable", True)
    dropped = sandbox.data_dir / "inbox" / "userimport.csv"
    os.chmod(dropped, 0o644)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert mode(dropped) == 0o640


async def test_an_unusable_data_directory_is_a_message_not_a_crash(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = sandbox.data_dir
    archive = data_dir / "archive"
    for path in archive.iterdir():
        path.unlink()
    archive.rmdir()
    archive.symlink_to(data_dir / "gone")  # a folder that cannot be made: ensure() raises
    app = ToolsyncApp(sandbox)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
        await pilot.pause()
        problems = [(text, options) for text, options in notes if options.get("title") == "Data directory"]
        assert problems, notes
        text, options = problems[0]
        assert text.startswith(f"{data_dir} cannot be used: ")
        assert options["severity"] == "warning"
        assert app.is_running
