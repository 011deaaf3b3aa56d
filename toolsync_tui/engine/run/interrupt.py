"""Why a run stopped mid-way, and the event a headless run's signals set.

A run told to stop (SIGINT, SIGTERM) finishes the batch in progress, so that every committed row is accounted for,
reports the rows it did, puts the rest in the tryback and ends with the signal's exit code. A run whose report can
no longer be written (a full disk) stops the same way, before writing anything it could not report.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass

from toolsync_tui.engine.words import plural


@dataclass(frozen=True)
class Stop:
    reason: str  # "SIGINT", "SIGTERM", "the report could not be written (No space left on device)"
    exit_code: int


class Interruption(threading.Event):
    """A cancel event that says why; the pipeline stops at the next batch boundary when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stop: Stop | None = None

    def interrupt(self, stop: Stop) -> None:
        if self.stop is None:
            self.stop = stop
        self.set()


# The headless commands' interruption (cli/signals.py), seen by every run they start, cron's included.
INTERRUPTION: ContextVar[Interruption | None] = ContextVar("toolsync_interruption", default=None)


def interrupted_words(reason: str, rows: int, last_line: int | None) -> str:
    """The report's closing line of a run stopped mid-way, and the run log's words for it."""
    if not rows or last_line is None:
        return f"interrupted before any row was processed ({reason})"
    return f"interrupted after {plural(rows, 'row')} ({reason}); rows after line {last_line} were not processed"
