"""What the screens say about an unattended feed (no Textual): an operation's mode (snapshot, diff), the last guard or
threshold that stopped it, and the runs waiting for approval."""

from __future__ import annotations

from collections.abc import Iterable

from toolsync_tui.config import Config
from toolsync_tui.engine.run.exits import EXIT_HELD, EXIT_SAFETY
from toolsync_tui.engine.run.log import RunRecord
from toolsync_tui.engine.words import plural

STOPPED = frozenset({EXIT_SAFETY, EXIT_HELD})

# In snapshot mode, what becomes of what the file no longer names, by the operation's snapshot_action.
SNAPSHOT_ACTIONS = {
    "suspend": "get suspended",
    "delete": "get deleted",
    "nothing": "are left alone",
    "unenrol": "get unenrolled",
    "remove_role": "lose their role",
}


def is_snapshot(config: Config, name: str) -> bool:
    return getattr(config.operation(name), "mode", "update") == "snapshot"


def mode_cell(config: Config, name: str) -> str:
    """The Mode column: "snapshot", "diff", both, or nothing for the plain update mode."""
    words = ["snapshot"] if is_snapshot(config, name) else []
    if getattr(config.operation(name), "diff", False):
        words.append("diff")
    return "+".join(words)


def mode_line(config: Config, name: str) -> str | None:
    """The mode in a detail line within 80 columns: "snapshot mode: toolsync's records the file omits get
    suspended"; None for the plain update mode."""
    snapshot, diff = is_snapshot(config, name), getattr(config.operation(name), "diff", False)
    if not snapshot:
        return "diff mode: rows unchanged since the last applied file are skipped" if diff else None
    action = getattr(config.operation(name), "snapshot_action", "")
    done = SNAPSHOT_ACTIONS.get(action, "get removed")  # memberships have no choice: removed
    return f"{'snapshot + diff' if diff else 'snapshot mode'}: toolsync's records the file omits {done}"


def last_stops(records: Iterable[RunRecord]) -> dict[str, RunRecord]:
    """Each operation's latest run that a guard or a threshold stopped (exit code 3) or held (4), from runs newest
    first."""
    found: dict[str, RunRecord] = {}
    for record in records:
        if record.exit_code in STOPPED and record.problem:
            found.setdefault(record.operation, record)
    return found


def stop_line(record: RunRecord, width: int) -> str:
    """ "held 01-05 08:30: the file has no data rows", its first sentence only, cut to `width`."""
    kind = "held" if record.exit_code == EXIT_HELD else "stopped"
    problem = (record.problem or "").removeprefix(f"{record.operation}: ")
    first = problem.split(". ", 1)[0].rstrip(".")
    line = f"{kind} {record.started_at:%m-%d %H:%M}: {first}"
    return line if len(line) <= width else line[: width - 1] + "…"


def waiting_words(count: int) -> str:
    """ "1 run waiting for approval", "3 runs waiting for approval"."""
    return f"{plural(count, 'run')} waiting for approval"
