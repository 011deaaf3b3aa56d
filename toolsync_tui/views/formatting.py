"""How numbers, times and paths read on screen (humanize, and paths short enough for 80 columns)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import humanize

from toolsync_tui.engine.words import size_text


def short_path(path: Path, base: Path) -> str:
    """`path` relative to `base` when it lies inside it: the data dir is known, the rest is noise."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def file_size(size: int) -> str:
    return size_text(size)


def file_age(modified: datetime, now: datetime) -> str:
    # A file stamped in the future (clock skew, copied with -p) reads as "now", not as a negative age.
    return humanize.naturaltime(max(now - modified, timedelta(0)))


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "— rows/s"


def time_left(done: int, total: int, seconds: float) -> str:
    """What is left at the pace so far: "about 2 minutes left"; nothing until there is a pace to go by."""
    if done <= 0 or seconds <= 0 or total <= done:
        return ""
    return f"about {humanize.naturaldelta(timedelta(seconds=(total - done) * seconds / done))} left"
