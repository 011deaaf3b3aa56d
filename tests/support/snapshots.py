"""Shared by the snapshot tests: the pinned file time and clock, the sizes, and waiting for the dashboard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from textual.pilot import Pilot

from toolsync_tui.app import ToolsyncApp

FILE_TIME = datetime(2026, 1, 5, 9, 0, 0)


NOW = FILE_TIME + timedelta(minutes=5)


SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


SnapCompare = Callable[..., bool]


async def site_loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ToolsyncApp)
    assert app.site_loader is not None
    await app.site_loader.wait()
    await pilot.pause()


def then(*steps: Callable[[Pilot[Any]], Awaitable[None]]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_all(pilot: Pilot[Any]) -> None:
        for step in steps:
            await step(pilot)

    return run_all
