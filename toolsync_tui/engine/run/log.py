"""The run log: JSON lines per run (from the command line, the interface or cron) in the data directory, which the
dashboard and the history read: when, which file, how long, the outcome counts, or why it could not run.

A run writes a "started" line as it begins and its last line as it ends; in between, what it has committed so far
(rows, counts, its report, the last line of the file it accounted for) is rewritten in place, batch after batch, in
a progress page the run allocated at its start (a full disk cannot refuse a rewrite). A run that never wrote its
last line (kill -9, a crash, a power cut) thus reads as interrupted with the rows it had committed, and the next
run, holding the lock, writes that last line for it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from toolsync_tui.engine.datadir.privacy import create_file
from toolsync_tui.engine.rows import Outcome
from toolsync_tui.engine.run.exits import EXIT_HELD, EXIT_KILLED, EXIT_ROWS_FAILED
from toolsync_tui.engine.run.interrupt import interrupted_words
from toolsync_tui.engine.run.verdict import Verdict

LOG_NAME = "runs.jsonl"
PROGRESS_NAME = ".runs-progress.json"  # the run in progress (one at a time per data directory: the run lock)
PROGRESS_BYTES = 4096  # one page: a rewrite is never cut in two by a kill
KEEP = 2_000  # runs kept when the log is trimmed
TRIM_ABOVE = 1_000_000  # bytes: the log is trimmed to its last KEEP runs past this size
STARTED = "started"  # a run's first line
DONE = "done"  # its last line
KILLED = "the run ended without closing (killed, crashed or the machine stopped)"


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
    problem: str | None = None  # why the run could not happen or go on (then exit_code is 2 or 3)
    run: str | None = None  # the run's id, shared by its first and last lines (none in older logs)
    state: str = DONE
    interrupted: str | None = None  # why it stopped mid-way: "SIGINT", "SIGTERM", KILLED, a full disk ...
    last_line: int | None = None  # the last line of the file the run accounted for
    pid: int | None = None
    writing: list[int] | None = None  # the first and last lines of the batch being written (progress page only)
    file_rows: int | None = None  # the file's data rows as delivered (not a snapshot's added rows): the row guards'

    @property
    def started_at(self) -> datetime:
        return datetime.fromisoformat(self.started)

    @property
    def verdict(self) -> Verdict:
        # No count of failed parts is kept: a run that went through, no row failed, yet exit code 1, had some.
        went_through = not self.problem and not self.cancelled and not self.interrupted
        some_parts = went_through and self.exit_code == EXIT_ROWS_FAILED and not self.counts.get(Outcome.FAILED, 0)
        return Verdict(
            self.rows,
            self.counts,
            self.duration,
            self.dry_run,
            self.cancelled,
            some_parts_failed=some_parts,
            problem=self.problem,
            interrupted=self.interrupted,
            held=self.exit_code == EXIT_HELD,
        )

    def interrupted_words(self) -> str:
        """ "interrupted after 12,000 rows (SIGINT); rows after line 12001 were not processed"."""
        words = interrupted_words(self.interrupted or KILLED, self.rows, self.last_line)
        if self.writing:  # its transaction may have committed in the instant before the end
            first, last = self.writing
            words += f"; lines {first}-{last} were being written: they may have been committed"
        return words


class RunLog:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOG_NAME
        self.progress_path = data_dir / PROGRESS_NAME

    def add(self, record: RunRecord) -> None:
        line = (json.dumps(asdict(record), ensure_ascii=False) + "\n").encode()
        fd = create_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of concurrent writers never interleave
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > TRIM_ABOVE:
            self._trim()

    def begin(self, record: RunRecord) -> Journal:
        """A run's first line and its progress page; raises OSError when the data directory cannot take them."""
        return Journal(self, replace(record, run=uuid.uuid4().hex, state=STARTED, pid=os.getpid()))

    def recent(self, limit: int = 200, *, running: bool = False) -> list[RunRecord]:
        """The latest runs, newest first: each run once, a run still in progress left out (`running`: its first line
        kept), a run that ended without its last line read as interrupted with what it had committed."""
        try:
            with self.path.open(encoding="utf-8") as lines:
                tail = deque(lines, maxlen=2 * limit)  # a run has two lines
        except (FileNotFoundError, NotADirectoryError):  # no run yet, or a data dir that is not one
            return []
        runs = _runs(record for line in tail if (record := _parsed(line)) is not None)
        progress = self.progress()
        found = []
        for record in reversed(runs):
            if record.state == STARTED:
                if record.pid is not None and _alive(record.pid):
                    if running:
                        found.append(record)
                    continue  # in progress
                record = unfinished(record, progress)
            found.append(record)
        return found[:limit]

    def last_by_operation(self) -> dict[str, RunRecord]:
        """Each operation's latest run (among the runs the log keeps)."""
        latest: dict[str, RunRecord] = {}
        for record in self.recent(KEEP):
            latest.setdefault(record.operation, record)
        return latest

    def close_unfinished(self) -> list[RunRecord]:
        """Write the last line of every run that ended without it, and close its report; only a run holding the lock
        may call this (no other run of this data directory is alive then). Returns those runs."""
        try:
            with self.path.open(encoding="utf-8") as lines:
                tail = deque(lines, maxlen=2 * KEEP)
        except FileNotFoundError:
            return []
        progress = self.progress()
        closed = []
        for record in _runs(record for line in tail if (record := _parsed(line)) is not None):
            if record.state == STARTED:
                final = unfinished(record, progress)
                self.add(final)
                if final.interrupted:
                    close_report(final)
                closed.append(final)
        self.progress_path.unlink(missing_ok=True)
        return closed

    def progress(self) -> RunRecord | None:
        """The progress page: what the run in progress (or the last one that never closed) had accounted for."""
        try:
            return _parsed(self.progress_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None

    def _trim(self) -> None:
        kept = list(reversed(self.recent(KEEP, running=True)))  # a run in progress keeps its first line
        temporary = self.path.with_name(f".{LOG_NAME}.tmp")
        with os.fdopen(create_file(temporary), "w") as out:
            out.writelines(json.dumps(asdict(record), ensure_ascii=False) + "\n" for record in kept)
        temporary.replace(self.path)


class Journal:
    """One run's lines in the log: the first at once, its progress per batch, its last at the end."""

    def __init__(self, log: RunLog, record: RunRecord) -> None:
        self.log = log
        self.record = record
        log.add(record)
        self._fd: int | None = create_file(log.progress_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        try:
            if hasattr(os, "posix_fallocate"):  # the page is the disk's before the run writes a row
                os.posix_fallocate(self._fd, 0, PROGRESS_BYTES)
            self._write(record)  # a full page: allocated where fallocate is missing
        except BaseException:
            self._close()
            raise

    def progress(self, **changes: Any) -> None:
        """What the run has accounted for so far (rows, counts, report, last_line)."""
        self.record = replace(self.record, **changes)
        self._write(self.record)

    def end(self, record: RunRecord) -> None:
        """The run's last line. When the log cannot take it (a full disk), the progress page keeps it, marked done,
        and the next run writes it; the OSError goes on to the caller."""
        final = replace(record, run=self.record.run, state=DONE, pid=self.record.pid)
        try:
            self._write(final)
            self.log.add(final)
            self.log.progress_path.unlink(missing_ok=True)
        finally:
            self._close()

    def _write(self, record: RunRecord) -> None:
        if self._fd is None:
            return
        data = json.dumps(asdict(record), ensure_ascii=False).encode()
        if len(data) >= PROGRESS_BYTES:  # an unusually long path or problem: the counts matter more
            data = json.dumps(asdict(replace(record, report=None, problem=None)), ensure_ascii=False).encode()
        os.pwrite(self._fd, data.ljust(PROGRESS_BYTES - 1) + b"\n", 0)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def unfinished(record: RunRecord, progress: RunRecord | None) -> RunRecord:
    """A run whose last line is missing, as it ended: its progress page's last word when there is one (the final
    record itself when only the log's last line failed), else its first line; interrupted unless it had ended."""
    if progress is not None and progress.run == record.run:
        record = progress
    if record.state == DONE:
        return record
    return replace(record, state=DONE, interrupted=record.interrupted or KILLED, exit_code=EXIT_KILLED)


def close_report(record: RunRecord) -> None:
    """End the report of a run that never closed it with the words of its interruption."""
    if not record.report:
        return
    path = Path(record.report)
    try:
        with path.open("rb+") as report:
            size = report.seek(0, os.SEEK_END)
            report.seek(max(size - 64, 0))
            if report.read().endswith(b"end of report\n"):
                return
            report.write(f"\n{record.interrupted_words()}\nend of report\n".encode())
    except OSError:  # removed meanwhile, or a full disk still: the run log says it
        return


def _runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Each run once, in the order of its last line: a run's last line replaces its first."""
    ordered: dict[str | int, RunRecord] = {}
    for index, record in enumerate(records):
        key = record.run if record.run is not None else index  # older lines have no id: each stands alone
        ordered.pop(key, None)
        ordered[key] = record
    return list(ordered.values())


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, killed but not yet reaped, does not)."""
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as status:
            return status.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _parsed(line: str) -> RunRecord | None:
    try:
        raw: dict[str, Any] = json.loads(line)
        return RunRecord(**raw)
    except (ValueError, TypeError):  # a line cut short by a full disk, or from another version
        return None
