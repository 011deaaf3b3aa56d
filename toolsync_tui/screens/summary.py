"""The words of a run's outcome: the live counters line and the closing summary with file paths."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..engine.outcomes import Outcome
from ..engine.pipeline import RunResult
from ..formatting import duration, rate, short_path


def outcome_line(counts: Mapping[str, int]) -> str:
    # Every outcome, zeros included: the columns stay put while the numbers change.
    return "   ".join(f"{outcome} {counts.get(outcome, 0):,}" for outcome in Outcome)


def summary_lines(result: RunResult, data_dir: Path, seconds: float) -> list[str]:
    """`seconds` is the interface's own measure, so that a test clock can pin it (not result.duration)."""
    verb = "would be" if result.dry_run else "were"
    lines = [f"{result.rows:,} rows {verb} processed in {duration(seconds)} ({rate(result.rows, seconds)})"]
    lines += [f"{label:<9}{short_path(path, data_dir)}" for label, path in result.files()]
    lines += [f"note: {note}" for note in result.notes]
    return lines
