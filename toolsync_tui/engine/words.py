"""How counts, durations and sizes read, once for every message: the command line, reports, cron's lines, the
notifications and the interface (views/ builds on these)."""

from __future__ import annotations

import humanize


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """ "1 row", "2 rows", "1,200 rows"; `nouns` when the plural is not noun + s ("1 entry", "2 entries")."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def duration_text(seconds: float) -> str:
    """A run's duration, rounded once, before its form is chosen: "0.4 s" under a minute (tenths), else "2 minutes and
    5 seconds" (whole seconds), so that 59.96 s reads "1 minute", never "60.0 s"."""
    tenths = round(seconds, 1)
    if tenths < 60:
        return f"{tenths:.1f} s"
    return humanize.precisedelta(round(seconds), minimum_unit="seconds")


def size_text(size: int) -> str:
    """A size in bytes, in decimal (SI) units as humanize counts them by default: "361 Bytes", "9.7 kB", "30.0 MB".
    Limits are set in the same units (pictures/archive.py), so that a limit reads as the round number it is."""
    return humanize.naturalsize(size)
