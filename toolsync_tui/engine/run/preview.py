"""Looking at an operation's input without running it: a page of rows at a time, and how many data rows it has.

A page comes from the file's own record stream (CommandFile.batches), read only as far as that page: a 200,000-row
file costs one page's work to show. Opening a preview checks the file as a run would (encoding, separator, header,
or the archive as a whole) and raises FileProblem with the engine's own words. Nothing here writes anything.

Every method that reads the disk blocks: the interface calls them in a worker thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import polars as pl

from toolsync_tui.config import Config, FileSettings
from toolsync_tui.engine.pictures.archive import Archive, ArchiveProblem
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.rows import LINE, PROBLEM
from toolsync_tui.engine.run.command_file import ColumnSpec, CommandFile, FileProblem
from toolsync_tui.engine.words import plural

PAGE_ROWS = 50
# Pages kept once read, so that paging back and forth does not read the file from the start again.
KEPT_PAGES = 32
ENTRY_COLUMNS = ("entry", "bytes")


@dataclass(frozen=True)
class PreviewRow:
    line: int  # the record's first physical line, or the entry's position in an archive (as in the run's report)
    values: tuple[str, ...]  # one per column of the preview
    problem: str | None = None  # why a run would fail the row before looking at it (malformed record)


@dataclass(frozen=True)
class Page:
    number: int  # from 0
    rows: tuple[PreviewRow, ...]
    last: bool  # no page after this one


class FilePreview(Protocol):
    """An opened input, read page by page."""

    @property
    def path(self) -> Path: ...

    @property
    def columns(self) -> tuple[str, ...]: ...

    def describe(self) -> str:
        """How the input was read: "utf-8, separator ';'", "zip archive, 4 files"."""
        ...

    def page(self, number: int) -> Page:
        """Page `number` (from 0); past the end, the last page. Blocking."""
        ...

    def close(self) -> None: ...


def is_archive_operation(operation: str) -> bool:
    """Whether the operation's input is a zip archive (pictures), not a command file."""
    return OPERATIONS[operation].implementation.inputs_suffix == ".zip"


def open_preview(config: Config, operation: str, path: Path, page_rows: int = PAGE_ROWS) -> FilePreview:
    """`path` as `operation` would read it, checked as a whole; raises FileProblem. Blocking."""
    if is_archive_operation(operation):
        return ArchivePreview.open(path, page_rows)
    spec = OPERATIONS[operation].implementation.columns
    return CommandFilePreview(CommandFile.open(path, spec, config.settings.files), page_rows)


class CommandFilePreview:
    """A command file's records, a page at a time, with their line numbers and problems."""

    def __init__(self, source: CommandFile, page_rows: int = PAGE_ROWS) -> None:
        self.source = source
        self.page_rows = page_rows
        # The interface may ask for the next page while a cancelled read still runs in its thread: one at a time.
        self._lock = threading.Lock()
        self._stream: Iterator[pl.DataFrame] | None = None
        self._next = 0  # the number of the page the stream yields next
        self._end: int | None = None  # how many pages there are, once the stream has ended
        self._kept: OrderedDict[int, tuple[PreviewRow, ...]] = OrderedDict()

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.source.columns)

    def describe(self) -> str:
        ignored = self.source.ignored_columns
        return self.source.describe() + (f", ignored columns: {', '.join(ignored)}" if ignored else "")

    def page(self, number: int) -> Page:
        with self._lock:
            number = max(number, 0)
            rows = self._rows(number)
            if rows is None:  # past the end (the end is known now): the last page, or an empty first one
                number = max((self._end or 1) - 1, 0)
                rows = self._rows(number) or ()
            # Reading one page ahead tells whether this one is the last (a full page may be followed by nothing).
            return Page(number, rows, self._rows(number + 1) is None)

    def close(self) -> None:
        with self._lock:
            self._restart(None)

    def _rows(self, number: int) -> tuple[PreviewRow, ...] | None:
        """The page's rows, None past the end of the file."""
        if number in self._kept:
            self._kept.move_to_end(number)
            return self._kept[number]
        if self._end is not None and number >= self._end:
            return None
        if self._stream is None or number < self._next:  # behind the stream: read again from the start
            self._restart(self.source.batches(self.page_rows))
        assert self._stream is not None
        while True:
            frame = next(self._stream, None)
            if frame is None:
                self._end = self._next
                return None
            reached = self._next
            self._next += 1
            if reached == number:
                return self._keep(number, _preview_rows(frame, self.columns))

    def _restart(self, stream: Iterator[pl.DataFrame] | None) -> None:
        if isinstance(self._stream, Generator):
            self._stream.close()  # the record reader's file is closed now, not when the garbage is collected
        self._stream = stream
        self._next = 0

    def _keep(self, number: int, rows: tuple[PreviewRow, ...]) -> tuple[PreviewRow, ...]:
        self._kept[number] = rows
        while len(self._kept) > KEPT_PAGES:
            self._kept.popitem(last=False)
        return rows


def _preview_rows(frame: pl.DataFrame, columns: tuple[str, ...]) -> tuple[PreviewRow, ...]:
    lines = frame[LINE].to_list()
    problems = frame[PROBLEM].to_list()
    values = frame.select(columns).rows() if columns else [()] * frame.height
    return tuple(
        PreviewRow(line, tuple(row), problem) for line, row, problem in zip(lines, values, problems, strict=True)
    )


@dataclass(frozen=True)
class ArchivePreview:
    """A picture archive's entries (name and size), as a run would take them: folders and hidden files left out."""

    path: Path
    entries: tuple[tuple[str, int], ...]
    page_rows: int = PAGE_ROWS

    @classmethod
    def open(cls, path: Path, page_rows: int = PAGE_ROWS) -> ArchivePreview:
        """Only the archive's directory is read, never an entry's content."""
        if not path.is_file():
            raise FileProblem(f"{path}: file not found")
        try:
            with Archive(path) as archive:
                entries = tuple((info.filename, info.file_size) for info in archive.members)
        except ArchiveProblem as problem:
            raise FileProblem(str(problem)) from None
        return cls(path, entries, page_rows)

    @property
    def columns(self) -> tuple[str, ...]:
        return ENTRY_COLUMNS

    def describe(self) -> str:
        return f"zip archive, {plural(len(self.entries), 'file')}"

    def page(self, number: int) -> Page:
        pages = max(1, -(-len(self.entries) // self.page_rows))
        number = min(max(number, 0), pages - 1)
        start = number * self.page_rows
        chosen = self.entries[start : start + self.page_rows]
        rows = tuple(
            PreviewRow(position, (name, f"{size:,}")) for position, (name, size) in enumerate(chosen, start=start + 1)
        )
        return Page(number, rows, number == pages - 1)

    def close(self) -> None:
        """Nothing stays open: the directory was read when the preview opened."""


def count_rows(config: Config, operation: str, path: Path) -> int:
    """How many data rows a run of `operation` would process in `path`: records, without the header, blank lines and
    comments, a quoted record over several lines counted once; for a picture archive, its pictures.

    Cached by path, modification time, size and file settings: asking again for an unchanged file is free. Raises
    FileProblem when the file cannot be read as the operation's input. Blocking: for a large file, call it in a
    thread.
    """
    try:
        status = path.stat()
    except OSError:
        raise FileProblem(f"{path}: file not found") from None
    spec = OPERATIONS[operation].implementation.columns
    files = config.settings.files.model_dump_json()
    return _counted(path, status.st_mtime_ns, status.st_size, is_archive_operation(operation), spec, files)


@lru_cache(maxsize=256)
def _counted(path: Path, mtime_ns: int, size: int, archive: bool, spec: ColumnSpec, files: str) -> int:
    # mtime_ns and size are not used here: they are part of the cache key, so that a changed file is counted again.
    if archive:
        return len(ArchivePreview.open(path).entries)
    return CommandFile.open(path, spec, FileSettings.model_validate_json(files)).count_records()
