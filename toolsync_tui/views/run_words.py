"""The words of a run on screen: the live counters line and the closing summary with file paths. What a run came to
is worded once, in the engine (engine/run/verdict.py), for the command line, cron and notifications too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from toolsync_tui.engine.rows import Outcome
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.engine.run.verdict import Verdict
from toolsync_tui.engine.words import plural
from toolsync_tui.views.formatting import rate, short_path

# The dry run's outcomes as the question words them.
WOULD = {
    Outcome.CREATED: "created",
    Outcome.UPDATED: "updated",
    Outcome.DELETED: "deleted or removed",
    Outcome.UNCHANGED: "left unchanged",
    Outcome.SKIPPED: "skipped",
    Outcome.FAILED: "failed",
}


def would_lines(verdict: Verdict) -> list[str]:
    """ "  3 would be created", one line per outcome the dry run found."""
    return [
        f"  {plural(verdict.counts[outcome], 'row')} would be {words}"
        for outcome, words in WOULD.items()
        if verdict.counts.get(outcome)
    ] or ["  the file has no data rows"]


def outcome_line(counts: Mapping[str, int]) -> str:
    # Every outcome, zeros included: the columns stay put while the numbers change.
    return "   ".join(f"{outcome} {counts.get(outcome, 0):,}" for outcome in Outcome)


def summary_lines(result: RunResult, data_dir: Path, seconds: float) -> list[str]:
    """`seconds` is the interface's own measure, so that a test clock can pin it (not result.duration)."""
    return [f"{result.verdict.processed(seconds)} ({rate(result.rows, seconds)})", *_written(result, data_dir)]


def series_lines(results: Sequence[RunResult], data_dir: Path, seconds: float) -> list[str]:
    """The summary of one input's run, or of each picture archive's in turn under its name."""
    if len(results) == 1:
        return summary_lines(results[0], data_dir, seconds)
    lines: list[str] = []
    for result in results:
        lines.append(f"{result.source.name}: {result.verdict.summary()}")
        lines += [f"  {line}" for line in _written(result, data_dir)]
    return lines


def _written(result: RunResult, data_dir: Path) -> list[str]:
    """Where the run's files went, and its notes."""
    lines = [f"{label:<9}{short_path(path, data_dir)}" for label, path in result.files()]
    return lines + [f"note: {note}" for note in result.notes]
