"""What the command line prints, line by line: whole (never wrapped to the terminal's width, so that a path can be
copied as it is) and with every control character escaped, since a line may hold a file's name, a path or an error's
words that came from a file (an ESC in a file name would otherwise drive the terminal: engine/run/controls.py).

A live display (the progress bar) is taken off the terminal before each line and comes back with the next update.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from toolsync_tui.engine.run.controls import escaped

_pauses: list[Callable[[], None]] = []


@contextmanager
def live_display(pause: Callable[[], None]) -> Iterator[None]:
    """While a live display is shown: `pause` takes it off the terminal before a line is printed."""
    _pauses.append(pause)
    try:
        yield
    finally:
        _pauses.remove(pause)


def _write(text: str, stream: TextIO) -> None:
    for pause in _pauses:
        pause()
    stream.write(escaped(text) + "\n")
    stream.flush()


def say(text: str) -> None:
    """One line of what the command did, on standard output."""
    _write(text, sys.stdout)


def note(text: str) -> None:
    """One line on standard error, as it is: what a run is doing (its progress, where no bar can show)."""
    _write(text, sys.stderr)


def complain(text: str) -> None:
    """One line about a problem (or a warning, a signal received), on standard error, after "toolsync: "."""
    note(f"toolsync: {text}")
