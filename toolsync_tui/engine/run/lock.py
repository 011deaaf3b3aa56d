"""One run at a time per data directory: an flock()ed file that the kernel releases if we crash."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path
from types import TracebackType

from toolsync_tui.engine.datadir.privacy import create_file


class LockBusy(Exception):
    """Another run holds the data directory (run_operation reports it as a RunProblem)."""


class RunLock:
    def __init__(self, data_dir: Path, operation: str, name: str = ".toolsync.lock") -> None:
        self.path = data_dir / name
        self.operation = operation
        self.stale_note: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = create_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise LockBusy(f"another run is in progress in {self.path.parent} ({holder})") from None
        previous = os.read(fd, 4096)
        if previous.strip():  # a holder that left its record behind never finished: it crashed
            self.stale_note = f"the previous run did not finish ({_describe(previous)}); its lock was cleared"
        started = datetime.now().isoformat(timespec="seconds")
        record = {"pid": os.getpid(), "operation": self.operation, "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(raw: bytes) -> str:
    try:
        record = json.loads(raw.decode())
        return f"{record['operation']}, pid {record['pid']}, started {record['started']}"
    except (ValueError, KeyError, UnicodeDecodeError):
        return "unknown holder"
