"""Shared by the interface tests: a clock that stands still and a way to wait without wait_for_complete."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

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


def touch_all(directory: Path, moment: datetime) -> None:
    stamp = moment.timestamp()
    for path in directory.iterdir():
        os.utime(path, (stamp, stamp))
