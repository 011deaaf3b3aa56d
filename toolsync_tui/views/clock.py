"""Where the interface reads the time: injectable, so that tests can pin ages and durations."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, for file ages."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for durations and rates."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now()

    def monotonic(self) -> float:
        return time.monotonic()
