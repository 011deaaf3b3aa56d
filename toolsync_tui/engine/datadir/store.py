"""The data directory: inbox/ (command files), archive/, reports/ and tryback/."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SUBDIRS = ("inbox", "archive", "reports", "tryback")


def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now()).strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class DataStore:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def tryback(self) -> Path:
        return self.root / "tryback"

    def ensure(self) -> None:
        for name in SUBDIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.reports, 0o700)
        os.chmod(self.tryback, 0o700)

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
        base = f"{stamp}_{operation}_{source.stem}" + ("_dryrun" if dry_run else "")
        text = _unused(self.reports / f"{base}.txt", self.reports / f"{base}.csv")
        return text, text.with_suffix(".csv")

    def tryback_path(self, stamp: str, source: Path) -> Path:
        return _unused(self.tryback / f"{source.stem}_tryback_{stamp}{source.suffix}")

    def archive_file(self, source: Path, stamp: str, mode: str) -> Path | None:
        """Move or copy the processed file into archive/ with a timestamp prefix."""
        if mode == "off":
            return None
        target = _unused(self.archive / f"{stamp}_{source.name}")
        if mode == "copy":
            shutil.copy2(source, target)
        else:
            shutil.move(source, target)
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
    """Open a new file readable by its owner only (reports and trybacks may hold personal data)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
