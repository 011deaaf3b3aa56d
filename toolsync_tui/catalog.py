"""What the dashboard lists: every operation with its preselected command file, as found on disk."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .config import Config
from .engine.operations import OPERATIONS
from .engine.store import DataStore


@dataclass(frozen=True)
class OperationEntry:
    name: str
    title: str
    available: bool  # False: listed for completeness, not implemented in this version
    file: Path
    size: int | None = None  # None: the file is missing
    modified: datetime | None = None

    @property
    def present(self) -> bool:
        return self.size is not None

    def refusal(self) -> str | None:
        """Why this operation cannot be started now, in the administrator's words; None if it can."""
        if not self.available:
            return f"{self.name} ({self.title}) is not available in this version yet"
        if not self.present:
            return f"{self.name}: its command file {self.file.name} is missing; put it in {self.file.parent}"
        return None


def _entry(name: str, title: str, available: bool, file: Path) -> OperationEntry:
    try:
        found = file.stat()
    except OSError:  # missing, or unreadable: either way there is nothing to run
        return OperationEntry(name, title, available, file)
    if not stat.S_ISREG(found.st_mode):  # e.g. a directory where the file should be
        return OperationEntry(name, title, available, file)
    return OperationEntry(name, title, available, file, found.st_size, datetime.fromtimestamp(found.st_mtime))


def operation_entries(config: Config) -> list[OperationEntry]:
    store = DataStore(config.data_dir)
    return [
        _entry(
            info.name, info.title, info.implementation is not None, store.preselected(config.operation(info.name).file)
        )
        for info in OPERATIONS.values()
    ]
