"""What the dashboard lists: every operation with its preselected command file, as found on disk."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.registry import OPERATIONS


@dataclass(frozen=True)
class OperationEntry:
    name: str
    title: str
    file: Path  # the preselected file, or what the operation looks for (inbox/userpictures_*.zip)
    files: tuple[Path, ...] = ()  # what a run would process now: the file, or every picture archive found
    size: int | None = None  # of all the files; None: nothing to process
    modified: datetime | None = None  # of the newest

    @property
    def present(self) -> bool:
        return self.size is not None

    def refusal(self) -> str | None:
        """Why this operation cannot be started now, in the administrator's words; None if it can."""
        if not self.present:
            return f"{self.name}: its command file {self.file.name} is missing; put it in {self.file.parent}"
        return None


def _entry(name: str, title: str, file: Path, inputs: list[Path]) -> OperationEntry:
    found: list[tuple[Path, os.stat_result]] = []
    for path in inputs:
        try:
            status = path.stat()
        except OSError:  # missing, or unreadable: either way there is nothing to run
            continue
        if stat.S_ISREG(status.st_mode):  # not e.g. a directory where the file should be
            found.append((path, status))
    if not found:
        return OperationEntry(name, title, file)
    return OperationEntry(
        name,
        title,
        file,
        tuple(path for path, _ in found),
        sum(status.st_size for _, status in found),
        datetime.fromtimestamp(max(status.st_mtime for _, status in found)),
    )


def operation_entries(config: Config) -> list[OperationEntry]:
    store = DataStore(config.data_dir)
    entries = []
    for info in OPERATIONS.values():
        setting = config.operation(info.name).file
        suffix = info.implementation.inputs_suffix
        entries.append(
            _entry(info.name, info.title, store.inputs_pattern(setting, suffix), store.inputs(setting, suffix))
        )
    return entries
