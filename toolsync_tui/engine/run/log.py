"""The run log: one JSON line per run (from the command line, the interface or cron) in the data directory, which
the dashboard and the history read: when, which file, how long, the outcome counts, or why it could not run."""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from toolsync_tui.engine.rows import Outcome
from toolsync_tui.engine.run.exits import EXIT_ROWS_FAILED
from toolsync_tui.engine.run.verdict import Verdict

LOG_NAME = "runs.jsonl"
KEEP = 2_000  # runs kept when the log is trimmed
TRIM_ABOVE = 1_000_000  # bytes: the log is trimmed to its last KEEP runs past this size


@dataclass(frozen=True)
class RunRecord:
    operation: str
    file: str  # the command file's name
    started: str  # ISO 8601, local time
    duration: float = 0.0
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    dry_run: bool = False
    cancelled: bool = False
    report: str | None = None
    problem: str | None = None  # why the run could not happen (then exit_code is 2 or 3)

    @property
    def started_at(self) -> datetime:
        return datetime.fromisoformat(self.started)

    @property
    def verdict(self) -> Verdict:
        # No count of failed parts is kept: a run that went through, no row failed, yet exit code 1, had some.
        went_through = not self.problem and not self.cancelled
        some_parts = went_through and self.exit_code == EXIT_ROWS_FAILED and not self.counts.get(Outcome.FAILED, 0)
        return Verdict(
            self.rows,
            self.counts,
            self.duration,
            self.dry_run,
            self.cancelled,
            some_parts_failed=some_parts,
            problem=self.problem,
        )


class RunLog:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOG_NAME

    def add(self, record: RunRecord) -> None:
        line = (json.dumps(asdict(record), ensure_ascii=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of concurrent writers never interleave
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > TRIM_ABOVE:
            self._trim()

    def recent(self, limit: int = 200) -> list[RunRecord]:
        """The latest runs, newest first."""
        try:
            with self.path.open(encoding="utf-8") as lines:
                tail = deque(lines, maxlen=limit)
        except FileNotFoundError:
            return []
        return [record for line in reversed(tail) if (record := _parsed(line)) is not None]

    def last_by_operation(self) -> dict[str, RunRecord]:
        """Each operation's latest run (among the runs the log keeps)."""
        latest: dict[str, RunRecord] = {}
        for record in self.recent(KEEP):
            latest.setdefault(record.operation, record)
        return latest

    def _trim(self) -> None:
        kept = list(reversed(self.recent(KEEP)))
        temporary = self.path.with_name(f".{LOG_NAME}.tmp")
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.writelines(json.dumps(asdict(record), ensure_ascii=False) + "\n" for record in kept)
        temporary.replace(self.path)


def _parsed(line: str) -> RunRecord | None:
    try:
        raw: dict[str, Any] = json.loads(line)
        return RunRecord(**raw)
    except (ValueError, TypeError):  # a line cut short by a full disk, or from another version
        return None
