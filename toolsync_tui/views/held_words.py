"""What the held-runs screen says of a held run (no Textual): when, why, what its dry run found and would remove."""

from __future__ import annotations

from datetime import datetime

from toolsync_tui.engine.datadir.held import HeldRun
from toolsync_tui.engine.words import plural
from toolsync_tui.views.run_words import WOULD


def held_time(run: HeldRun) -> datetime | None:
    try:
        return datetime.fromisoformat(run.held_at)
    except ValueError:  # written by hand, or by a later version: shown as it is
        return None


def held_at(run: HeldRun) -> str:
    """When it was held, short: "01-05 08:30"."""
    moment = held_time(run)
    return run.held_at if moment is None else f"{moment:%m-%d %H:%M}"


def would_words(counts: dict[str, int]) -> str:
    """ "3 rows would be created, 40 would be deleted or removed"; what a dry run without rows says."""
    parts = [f"{counts[outcome]:,} would be {words}" for outcome, words in WOULD.items() if counts.get(outcome)]
    if not parts:
        return "the file has no data rows"
    total = sum(counts.get(outcome, 0) for outcome in WOULD)
    return f"of {plural(total, 'row')}, " + ", ".join(parts)


def held_facts(run: HeldRun) -> list[str]:
    """The detail pane's lines: the file, why it was held, its dry run's outcome and its sample of removals."""
    moment = held_time(run)
    when = run.held_at if moment is None else f"{moment:%Y-%m-%d %H:%M}"
    lines = [
        f"{run.operation} · {run.original} · held {when} · id {run.short_id}",  # as `toolsync held` takes it
        f"why: {run.reason}",
        f"its dry run: {would_words(run.counts)}",
    ]
    if run.removals_only:
        lines.append("its creates and updates went ahead: only its removals wait")
    if run.sample:
        lines.append(f"what it would remove ({plural(len(run.sample), 'line')} of the report):")
        lines += [f"  {line}" for line in run.sample]
    else:
        lines.append("it would remove nothing")
    return lines
