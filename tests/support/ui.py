"""Shared by the interface tests: a clock that stands still, a way to wait without wait_for_complete (and for a table
to size its columns, and for a run screen's run to end), the toasts a screen would have shown, and a Static's text."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from toolsync_tui.screens.run import RunScreen

WAIT_LIMIT, STEP = 20.0, 0.01  # seconds


@dataclass
class FrozenClock:
    """Wall time fixed, monotonic time fixed: ages, durations and rates render the same on every run."""

    wall: datetime
    seconds: float = 0.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.seconds


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll with short sleeps: unlike pilot.pause(), does not wait for the CPU to go idle."""
    for _ in range(int(WAIT_LIMIT / STEP)):
        if condition():
            return
        await asyncio.sleep(STEP)
    raise AssertionError(f"condition not met within {WAIT_LIMIT} s")


async def finished_run(app: App[Any], pilot: Pilot[Any]) -> RunScreen:
    """The run screen a key just pushed, once its run (or undo, or approval) has ended and been shown."""
    await wait_until(lambda: isinstance(app.screen, RunScreen))
    run = app.screen
    assert isinstance(run, RunScreen)
    assert run.worker is not None
    await run.worker.wait()
    await pilot.pause()
    return run


def columns_fit(table: DataTable[Any]) -> bool:
    """Whether `table` has sized its columns to the rows added: DataTable measures them when its message queue runs
    dry, which a loaded machine may not reach before a snapshot is taken."""
    for row_key in table.rows:
        for column, cell in zip(table.ordered_columns, table.get_row(row_key), strict=False):
            width = cell.cell_len if isinstance(cell, Text) else len(str(cell))
            if column.content_width < width:
                return False
    return True


def touch_all(directory: Path, moment: datetime) -> None:
    stamp = moment.timestamp()
    for path in directory.iterdir():
        os.utime(path, (stamp, stamp))


Notes = list[tuple[str, dict[str, Any]]]


def record_notifications(app: App[Any], monkeypatch: pytest.MonkeyPatch) -> Notes:
    """Toasts are off under run_test; record what would have been shown instead."""
    notes: Notes = []
    original = app.notify

    def spy(message: str, **options: Any) -> None:
        notes.append((message, options))
        original(message, **options)

    monkeypatch.setattr(app, "notify", spy)
    return notes


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)
