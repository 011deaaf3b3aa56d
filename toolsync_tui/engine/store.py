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

    def report_paths(self, stamp: str, operation: str, source: Path, dry_run: bool) -> tuple[Path, Path]:
        base = f"{stamp}_{operation}_{source.stem}" + ("_dryrun" if dry_run else "")
        return self.reports / f"{base}.txt", self.reports / f"{base}.csv"

    def tryback_path(self, stamp: str, source: Path) -> Path:
        return self.tryback / f"{source.stem}_tryback_{stamp}{source.suffix}"

    def archive_file(self, source: Path, stamp: str, mode: str) -> Path | None:
        """Move or copy the processed file into archive/ with a timestamp prefix."""
        if mode == "off":
            return None
        target = self.archive / f"{stamp}_{source.name}"
        if mode == "copy":
            shutil.copy2(source, target)
        else:
            shutil.move(source, target)
        return target


def private_file(path: Path) -> int:
    """Open a new file readable by its owner only (reports and trybacks may hold personal data)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
