"""Held runs: command files a source guard or a threshold stopped in an unattended run, waiting for approval.

Each waits in held/<id>/ (the id is the run's own, as runs.jsonl has it): the command file as it came (its .sha256
beside it when it had one) and held.json, what the run's dry run found. Approving runs the file (engine/run/hold.py)
and removes the hold; discarding moves the file to archive/discarded/, its record beside it, and removes the hold.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from toolsync_tui.engine.datadir import privacy
from toolsync_tui.engine.datadir.store import DataStore, timestamp

FOLDER = "held"
RECORD = "held.json"
DISCARDED = "discarded"  # archive/discarded/: what was held and never run
CHECKSUM = ".sha256"  # a sender's checksum beside its file (engine/run/guards.py)
SAMPLE = 20  # report lines of what a held run would remove, kept in its record
SHORT_ID = 8  # the characters of an id the command line shows (any unique prefix is taken)


class HeldProblem(Exception):
    """No held run has that id (or several start with it)."""


@dataclass(frozen=True)
class HeldRun:
    id: str  # the run's id (runs.jsonl): one hold per run
    operation: str
    file: Path  # the held copy of the command file
    original: str  # the command file's name as it came
    reason: str  # why the run was held: the guard's or the threshold's words
    held_at: str  # ISO 8601, local time
    counts: dict[str, int] = field(default_factory=dict)  # the dry run's outcomes (removals only: of the held rows)
    sample: list[str] = field(default_factory=list)  # up to SAMPLE report lines of what it would remove
    removals_only: bool = False  # the run went on with its creates and updates: only these rows wait
    report: str | None = None  # the report of the run that held it (its dry run's, when it was held whole)

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]

    def approve_command(self) -> str:
        return f"toolsync held approve {self.short_id}"

    def discard_command(self) -> str:
        return f"toolsync held discard {self.short_id}"


class HeldRuns:
    """The held runs of a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / FOLDER

    def list(self) -> list[HeldRun]:
        """Every held run, newest first; a folder without a readable record (half made, by hand) is passed over."""
        try:
            folders = [entry for entry in self.root.iterdir() if entry.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        held = [run for folder in folders if (run := _read(folder)) is not None]
        return sorted(held, key=lambda run: (run.held_at, run.id), reverse=True)

    def get(self, id: str) -> HeldRun | None:
        """The held run of that id, or of the one id that starts with it; None when none does. HeldProblem when
        several do."""
        wanted = id.strip().lower()
        if not wanted:
            return None
        found = [run for run in self.list() if run.id == wanted] or [
            run for run in self.list() if run.id.startswith(wanted)
        ]
        if len(found) > 1:
            ids = ", ".join(run.short_id for run in found)
            raise HeldProblem(f"{id}: several held runs start with it ({ids}); give more of the id")
        return found[0] if found else None

    def find(self, id: str) -> HeldRun:
        """`get`, or HeldProblem naming the held runs there are."""
        run = self.get(id)
        if run is None:
            waiting = ", ".join(f"{held.short_id} ({held.operation})" for held in self.list()) or "none"
            raise HeldProblem(f"{id}: no held run has this id; held runs: {waiting}")
        return run

    def for_operation(self, operation: str) -> builtins.list[HeldRun]:
        return [run for run in self.list() if run.operation == operation]

    def folder(self, id: str) -> Path:
        """A held run's folder, made private (the file is written or moved into it next)."""
        folder = self.root / id
        group = privacy.folder_mode(self.data_dir) == privacy.GROUP_READABLE[0]
        privacy.make_folder(folder, group)
        return folder

    def hold(self, run: HeldRun, source: Path) -> HeldRun:
        """Hold `source` as `run` says (run.file is ignored): moved into the run's folder, with its .sha256 when it has
        one (a file already in the folder, a removals-only hold's, stays where it is), and its record written."""
        folder = self.folder(run.id)
        target = folder / source.name
        if source.resolve() != target.resolve():
            _move(source, target)
            checksum = source.with_name(source.name + CHECKSUM)
            if checksum.is_file():
                _move(checksum, target.with_name(target.name + CHECKSUM))
        held = _replace(run, file=target)
        _write_record(folder / RECORD, held)
        return held

    def release(self, id: str) -> None:
        """Remove a hold once its file has run (and gone to the archive, when files.archive moves)."""
        shutil.rmtree(self.root / self.find(id).id, ignore_errors=True)

    def discard(self, id: str) -> Path:
        """The held file to archive/discarded/<stamp>_<name>, its record beside it (<...>.held.json); the hold removed.
        Returns where the file went."""
        run = self.find(id)
        discarded = DataStore(self.data_dir).archive / DISCARDED
        group = privacy.folder_mode(self.data_dir) == privacy.GROUP_READABLE[0]
        privacy.make_folder(discarded, group)
        target = _unused(discarded / f"{timestamp()}_{run.file.name}")
        if run.file.is_file():
            _move(run.file, target)
        _write_record(target.with_name(target.name + ".held.json"), run)
        shutil.rmtree(self.root / run.id, ignore_errors=True)
        return target


def held_record(
    run_id: str,
    operation: str,
    original: str,
    reason: str,
    counts: dict[str, int],
    sample: list[str],
    *,
    removals_only: bool = False,
    report: str | None = None,
) -> HeldRun:
    """A held run's record, held now (its file is set when it is held)."""
    return HeldRun(
        id=run_id,
        operation=operation,
        file=Path(original),
        original=original,
        reason=reason,
        held_at=datetime.now().isoformat(timespec="seconds"),
        counts=dict(counts),
        sample=list(sample[:SAMPLE]),
        removals_only=removals_only,
        report=report,
    )


def _replace(run: HeldRun, **changes: Any) -> HeldRun:
    return HeldRun(**{**_fields(run), **changes})


def _fields(run: HeldRun) -> dict[str, Any]:
    return {name: getattr(run, name) for name in HeldRun.__dataclass_fields__}


def _read(folder: Path) -> HeldRun | None:
    try:
        raw: dict[str, Any] = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        raw["file"] = folder / Path(raw["file"]).name  # where it is now, whatever folder it was written from
        return HeldRun(**raw)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_record(path: Path, run: HeldRun) -> None:
    """The record, whole or not at all (written aside, then renamed)."""
    data = asdict(run)
    data["file"] = str(run.file)
    partial = path.with_name(f".{path.name}.tmp")
    with os.fdopen(privacy.create_file(partial), "w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False, indent=1)
    partial.replace(path)


def _move(source: Path, target: Path) -> None:
    """Rename (or copy across file systems, then remove), private in its new folder whatever its mode was."""
    try:
        os.chmod(source, privacy.file_mode(target.parent))
        os.rename(source, target)
    except OSError:
        with source.open("rb") as data, os.fdopen(privacy.create_file(target), "wb") as out:
            shutil.copyfileobj(data, out)
        source.unlink()


def _unused(path: Path) -> Path:
    number = 1
    candidate = path
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate
