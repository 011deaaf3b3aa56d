"""A picture archive as a run's input: its entries in batches, and the tryback, a zip of the pictures that failed."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl

from toolsync_tui.engine.datadir.store import private_file
from toolsync_tui.engine.moodle.text_match import TextMatch, user_rule
from toolsync_tui.engine.pictures.archive import Archive, ArchiveProblem, BadEntry, Limits, value_of
from toolsync_tui.engine.rows import LINE, PROBLEM
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.words import plural

NAME = "name"  # the entry's path inside the archive
VALUE = "value"  # its file name without extension: what names the user
DATA = "data"  # its bytes (null for an entry that could not be read)
LATER = "later"  # the name of a later entry for the same value, which wins (null when none)
COLUMNS = [NAME, VALUE, DATA, LATER]
# A batch holds at most this much picture data (plus one picture): enough pictures to keep every core busy, while the
# main process holds a batch's bytes a few times over (read, planned, sent to the workers) and reads the next one.
BATCH_BYTES = max(16, 4 * (os.cpu_count() or 1)) * 1024 * 1024


@dataclass
class ArchiveSource:
    path: Path
    limits: Limits = field(default_factory=Limits)
    physical_lines: int = 0
    # An entry's value as the owner lookup compares it (owners.py): two entries of one key are one user's.
    owner_key: Callable[[str], str] = str.lower

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def columns(self) -> list[str]:
        return COLUMNS

    @classmethod
    def open(
        cls, path: Path, limits: Limits | None = None, owner_key: Callable[[str], str] = str.lower
    ) -> ArchiveSource:
        """Check the archive as a whole (a zip, not too many entries, not too large) before any picture is used.
        `owner_key`: owner_key() of the run's user_field."""
        if not path.is_file():
            raise FileProblem(f"{path}: file not found")
        source = cls(path, limits or Limits(), owner_key=owner_key)
        try:
            with Archive(path, source.limits) as archive:
                source.physical_lines = len(archive.members)
        except ArchiveProblem as problem:
            raise FileProblem(str(problem)) from None
        return source

    def describe(self) -> str:
        return f"zip archive, {plural(self.physical_lines, 'file')}"

    def batches(self, size: int) -> Iterator[pl.DataFrame]:
        with Archive(self.path, self.limits) as archive:
            later = _later_entries([info.filename for info in archive.members], self.owner_key)
            rows: list[tuple[int, str | None, str, str, bytes | None, str | None]] = []
            held = 0
            for line, entry in enumerate(archive.entries(), start=1):
                if isinstance(entry, BadEntry):
                    rows.append(
                        (line, f"{entry.name}: {entry.problem}", entry.name, entry.value, None, later.get(line))
                    )
                else:
                    rows.append((line, None, entry.name, entry.value, entry.data, later.get(line)))
                    held += len(entry.data)
                if len(rows) >= size or held >= BATCH_BYTES:
                    yield _frame(rows)
                    rows, held = [], 0
            if rows:
                yield _frame(rows)

    def tryback(self, path: Path) -> ZipTryback:
        return ZipTryback(path)


def owner_key(kind: str, field: str) -> Callable[[str], str]:
    """How the owner lookup by `field` (user_field) on a database of `kind` compares a value: two values of one key
    name one account. A hostedusername ('name@host') compares as its username (the host is digits)."""
    if field == "id":
        return str  # as given: '5' and '05' are one account by the owners found (operation.py, within a batch)
    return TextMatch(kind, user_rule("username" if field == "hostedusername" else field)).given_text


def _later_entries(names: list[str], key: Callable[[str], str]) -> dict[int, str]:
    """Line -> the name of the last entry with the same value (compared by `key`, as the owner lookup compares), for
    each entry that is not that last one: a user's picture is the archive's last one for them, as if applied in
    order."""
    keys = [key(value_of(name)) for name in names]
    last: dict[str, tuple[int, str]] = {}
    for line, (name, value) in enumerate(zip(names, keys, strict=True), start=1):
        last[value] = (line, name)
    return {line: last[value][1] for line, value in enumerate(keys, start=1) if last[value][0] != line}


def _frame(rows: list[tuple[int, str | None, str, str, bytes | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            LINE: pl.Int64,
            PROBLEM: pl.String,
            NAME: pl.String,
            VALUE: pl.String,
            DATA: pl.Binary,
            LATER: pl.String,
        },
        orient="row",
    )


class ZipTryback:
    """The failed pictures, under their names in the archive, so that the tryback can be run as a picture archive.

    Entries that could not be read (a link, a bomb, a damaged entry) have no content to copy: only the report names
    them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._zip: zipfile.ZipFile | None = None
        self.rows = 0

    def add(self, rows: pl.DataFrame) -> None:
        readable = rows.filter(pl.col(DATA).is_not_null())
        if readable.is_empty():
            return
        if self._zip is None:
            self._file = os.fdopen(private_file(self.path), "wb")
            self._zip = zipfile.ZipFile(self._file, "w")
        for name, data in readable.sort(LINE).select(NAME, DATA).iter_rows():
            # Pictures hardly compress: stored as they are.
            self._zip.writestr(name, data, compress_type=zipfile.ZIP_STORED)
        self.rows += readable.height

    def close(self) -> Path | None:
        if self._zip is None or self._file is None:
            return None
        self._zip.close()  # a ZipFile given an open file leaves closing it to the caller
        self._file.close()
        return self.path
