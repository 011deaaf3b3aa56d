"""Each operation's inputs on disk: what the dashboard lists (every operation with its preselected command file) and
the files the files screen offers to choose from."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.registry import OPERATIONS

ARCHIVE_SUFFIX = ".zip"  # a picture archive: never a command file


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


# -- the files an operation could take ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A file the operation could run on."""

    path: Path
    shown: str  # as its `file` setting would name it: its name in the inbox; elsewhere, its path
    size: int
    modified: datetime


def candidates(config: Config, operation: str) -> list[Candidate]:
    """The files an operation can take, in name order, from the inbox and the folders of `files.browse_dirs`: its
    inputs' kind for an operation of many inputs (zip archives for pictures), any other file but an archive for the
    rest, plus the preselected file when it lies elsewhere (an absolute setting)."""
    store = DataStore(config.data_dir)
    suffix = OPERATIONS[operation].implementation.inputs_suffix
    paths: list[Path] = []
    for folder in [store.inbox, *(config.resolve(name) for name in config.settings.files.browse_dirs)]:
        try:
            paths += [path for path in folder.iterdir() if not path.name.startswith(".")]
        except OSError:  # no such folder (yet): nothing to choose from there
            continue
    if suffix is not None:
        paths = [path for path in paths if path.suffix.lower() == suffix]
    else:
        paths = [path for path in paths if path.suffix.lower() != ARCHIVE_SUFFIX]
        preselected = store.preselected(config.operation(operation).file)
        if preselected not in paths:
            paths.append(preselected)
    found = [candidate for path in paths if (candidate := _candidate(path, store.inbox)) is not None]
    return sorted(found, key=lambda candidate: candidate.shown.lower())


def _candidate(path: Path, inbox: Path) -> Candidate | None:
    try:
        status = path.stat()
    except OSError:  # gone since the listing, or unreadable: not a candidate
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return Candidate(path, file_setting(path, inbox), status.st_size, datetime.fromtimestamp(status.st_mtime))


def file_setting(path: Path, inbox: Path) -> str:
    """The `file` setting naming `path`: relative to the inbox when it lies there (the configuration then survives a
    move of the data directory), else absolute. The inverse of DataStore.preselected."""
    return str(path.relative_to(inbox)) if path.is_relative_to(inbox) else str(path)
