"""The words of a run's outcome: the live counters line and the closing summary with file paths."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolsync_tui.engine.rows import Outcome
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.views.formatting import duration, rate, short_path


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


def series_lines(results: Sequence[RunResult], data_dir: Path, seconds: float) -> list[str]:
    """The summary of one input's run, or of each picture archive's in turn under its name."""
    if len(results) == 1:
        return summary_lines(results[0], data_dir, seconds)
    lines: list[str] = []
    for result in results:
        lines.append(f"{result.source.name}: {result.summary()}")
        lines += [f"  {line}" for line in summary_lines(result, data_dir, result.duration)[1:]]
    return lines


def combined(results: Sequence[RunResult]) -> RunResult:
    """The runs of a series as one, for the counters and the verdict."""
    counts: Counter[str] = Counter()
    for result in results:
        counts.update(result.counts)
    last = results[-1]
    return RunResult(
        last.operation,
        last.source,
        last.dry_run,
        dict(counts),
        sum(result.rows for result in results),
        sum(result.duration for result in results),
        cancelled=last.cancelled,
        failed_details=sum(result.failed_details for result in results),
    )
