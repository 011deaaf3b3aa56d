"""The data directory: inbox/ (command files), archive/, reports/ and tryback/, and the names runs give their files
there, written and read back in this module only (StoredName)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

from toolsync_tui.engine.datadir import privacy

STAMP_FORMAT = "%Y%m%d-%H%M%S"

Kind = Literal["report", "tryback", "archive"]
KINDS: tuple[Kind, ...] = ("report", "tryback", "archive")
FOLDERS: dict[Kind, str] = {"report": "reports", "tryback": "tryback", "archive": "archive"}  # what runs leave
SUBDIRS = ("inbox", *FOLDERS.values())


def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now()).strftime(STAMP_FORMAT)


def stamp_time(stamp: str) -> datetime:
    """The moment a stamp of `timestamp` stands for (to the second)."""
    return datetime.strptime(stamp, STAMP_FORMAT)


_STAMP = r"(?P<stamp>\d{8}-\d{6})"
_AGAIN = r"(?:-\d+)?"  # -2, -3 ...: a run of the same second had the name already (see _unused)
DRY_RUN_MARK = "_dryrun"
TRYBACK_MARK = "_tryback_"
# Matched against the name without its suffix (a report's .txt or .csv, a tryback's command file suffix).
_PATTERNS: dict[Kind, re.Pattern[str]] = {
    "report": re.compile(rf"{_STAMP}_(?P<operation>[a-z]+)_(?P<source>.*?)(?P<dry_run>{DRY_RUN_MARK})?{_AGAIN}"),
    "tryback": re.compile(rf"(?P<source>.+){TRYBACK_MARK}{_STAMP}{_AGAIN}"),  # the last mark: a tryback's tryback
    "archive": re.compile(rf"{_STAMP}_(?P<source>.+)"),
}


@dataclass(frozen=True)
class StoredName:
    """The name a run gives a file it leaves in the data directory, both ways: `format` when writing, `parse` when
    reading the folders back (the history, the report viewer, retention's tests).

    - report:  reports/<stamp>_<operation>_<file stem>[_dryrun].txt, and its .csv table twin
    - tryback: tryback/<file stem>_tryback_<stamp><file suffix>
    - archive: archive/<stamp>_<file name>

    `source` is the command file's name (a report's keeps its stem only). A name already taken in the same second
    gets -2, -3 ... before its suffix, which `parse` drops, but from an archived name: "20260105-090500_courses-2.csv"
    may be courses-2.csv itself, and the history matches it against the operations' file names as it is."""

    kind: Kind
    stamp: str
    source: str
    operation: str | None = None  # a report's
    dry_run: bool = False  # a report's

    def format(self, suffix: str = "") -> str:
        """The file name; `suffix` is a report's (.txt or .csv): a tryback keeps its command file's."""
        source = Path(self.source)
        if self.kind == "report":
            return f"{self.stamp}_{self.operation}_{source.stem}{DRY_RUN_MARK if self.dry_run else ''}{suffix}"
        if self.kind == "tryback":
            return f"{source.stem}{TRYBACK_MARK}{self.stamp}{source.suffix}"
        return f"{self.stamp}_{self.source}"

    @classmethod
    def parse(cls, kind: Kind, name: str) -> StoredName | None:
        """What a file name of that folder says; None when no run wrote it (a file put there by hand)."""
        # os.path rather than Path: the history parses every file of the data directory
        stem, suffix = (name, "") if kind == "archive" else os.path.splitext(name)
        found = _PATTERNS[kind].fullmatch(stem)
        if found is None:
            return None
        if kind == "report":
            return cls(kind, found["stamp"], found["source"], found["operation"], found["dry_run"] is not None)
        return cls(kind, found["stamp"], found["source"] + (suffix if kind == "tryback" else ""))

    @classmethod
    def of(cls, path: Path) -> StoredName | None:
        """`parse` with the kind of the folder the file is in (reports/, tryback/, archive/); None elsewhere."""
        kind = next((kind for kind, folder in FOLDERS.items() if path.parent.name == folder), None)
        return None if kind is None else cls.parse(kind, path.name)


@dataclass(frozen=True)
class DataStore:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / FOLDERS["archive"]

    @property
    def reports(self) -> Path:
        return self.root / FOLDERS["report"]

    @property
    def tryback(self) -> Path:
        return self.root / FOLDERS["tryback"]

    def ensure(self, *, group_readable: bool = False) -> list[str]:
        """Create the folders, and give the whole directory its modes (privacy.py): what an older version left wider
        is narrowed. The entries that could not be changed, as sentences (a file of another owner ...)."""
        for name in SUBDIRS:
            privacy.make_folder(self.root / name, group_readable)
        return privacy.narrow_once(self.root, group_readable, dropped=self.inbox)

    def preselected(self, file_setting: str) -> Path:
        """An operation's command file: a relative setting is relative to the inbox."""
        candidate = Path(file_setting).expanduser()
        return candidate if candidate.is_absolute() else self.inbox / candidate

    def inputs(self, file_setting: str, suffix: str | None = None) -> list[Path]:
        """An operation's command files: its preselected file; with `suffix`, the setting is a plain name prefix and
        the inputs are the files of that folder named <prefix>...<suffix>, in name order (picture archives)."""
        preselected = self.preselected(file_setting)
        if suffix is None:
            return [preselected]
        try:
            candidates = list(preselected.parent.iterdir())
        except OSError:  # no such folder: no inputs
            return []
        prefix = preselected.name
        return sorted(p for p in candidates if p.name.startswith(prefix) and p.name.endswith(suffix) and p.is_file())

    def inputs_pattern(self, file_setting: str, suffix: str | None = None) -> Path:
        """What `inputs` looks for, as an administrator reads it: inbox/userpictures_*.zip."""
        preselected = self.preselected(file_setting)
        return preselected if suffix is None else preselected.with_name(f"{preselected.name}*{suffix}")

    def report_paths(self, stamp: str, operation: str, source: Path, dry_run: bool) -> tuple[Path, Path]:
        name = StoredName("report", stamp, source.name, operation, dry_run)
        text = _unused(self.reports / name.format(".txt"), self.reports / name.format(".csv"))
        return text, text.with_suffix(".csv")

    def tryback_path(self, stamp: str, source: Path) -> Path:
        return _unused(self.tryback / StoredName("tryback", stamp, source.name).format())

    def archive_file(
        self, source: Path, stamp: str, mode: str, rewrite: Callable[[BinaryIO], None] | None = None
    ) -> Path | None:
        """Move or copy the processed file into archive/ with a timestamp prefix, private whatever the source's mode.
        `rewrite`, when given, writes the archived copy in the source's place (its passwords blanked); "move" then
        removes the source."""
        if mode == "off":
            return None
        target = _unused(self.archive / StoredName("archive", stamp, source.name).format())
        if rewrite is None and mode == "move" and _moved(source, target):
            return target
        _write_new(target, rewrite or (lambda out: _copy_bytes(source, out)), source)
        if mode == "move":
            source.unlink()
        return target


def _unused(path: Path, twin: Path | None = None) -> Path:
    """`path`, or `name-2.ext`, `name-3.ext` ... when a run of the same second already wrote it (and its twin)."""
    number = 1
    candidate, other = path, twin
    while candidate.exists() or (other is not None and other.exists()):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        other = twin.with_name(f"{twin.stem}-{number}{twin.suffix}") if twin is not None else None
    return candidate


def private_file(path: Path) -> int:
    """Open a new file readable by its owner only (reports and trybacks may hold personal data): privacy.create_file."""
    return privacy.create_file(path)


def _moved(source: Path, target: Path) -> bool:
    """Rename the source into the archive, made private first (the inode keeps its mode); False when it cannot be
    (another owner's file, another file system): the caller copies it."""
    try:
        os.chmod(source, privacy.file_mode(target.parent))
        os.rename(source, target)
    except OSError:
        return False
    return True


def _write_new(target: Path, write: Callable[[BinaryIO], None], source: Path) -> None:
    """A new private file written by `write`, with the source's times (an archive ages from the file's own time, as
    a moved file does); removed again if writing fails."""
    descriptor = privacy.create_file(target, privacy.NEW_FILE | os.O_EXCL)
    try:
        with os.fdopen(descriptor, "wb") as out:
            write(out)
        times = os.stat(source)
        os.utime(target, ns=(times.st_atime_ns, times.st_mtime_ns))
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _copy_bytes(source: Path, out: BinaryIO) -> None:
    with source.open("rb") as data:
        shutil.copyfileobj(data, out)
