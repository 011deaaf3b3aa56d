"""Taking complete command files from the drop directory into the inbox (the original's tool_sync_capture_input_files).

A student information system drops command files into the drop directory (over SFTP) and may hold a write lock such
as alock.txt while it writes; nothing is taken while a lock is there. A file is taken once it has been left unchanged
for `settle_seconds` and did not change while it was being read. A file is either wholly in the inbox under its name
or still wholly in the drop directory: never half of it under its final name, never in neither place.

Feeders that cannot hold a lock should upload under a name starting with "." or "_" and rename when done: those
names are never taken, and a rename is instant.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import humanize

from toolsync_tui.engine.datadir import privacy

STALE_LOCK_SECONDS = 3 * 3600  # the original warns about a write lock older than 3 hours
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Captured:
    source: Path  # where it was in the drop directory
    target: Path  # where it is now, in the inbox
    size: int
    sha1: str
    replaced: bool  # an inbox file of the same name was replaced (the newer drop wins, as in the original)


@dataclass(frozen=True)
class Capture:
    captured: list[Captured]
    waiting: list[tuple[str, str]]  # (file name, why it is left for next time)
    locked_by: str | None  # the lock file's name when the feeder held the drop directory (nothing taken)
    notes: list[str]  # plain sentences for the cron log


class FileChanged(Exception):
    """The file changed while it was being read: its writer is still at it."""


class _Signature(NamedTuple):
    size: int
    mtime_ns: int
    inode: int


def _signature(status: os.stat_result) -> _Signature:
    return _Signature(status.st_size, status.st_mtime_ns, status.st_ino)


def capture(
    drop_dir: Path,
    inbox: Path,
    *,
    settle_seconds: int,
    lock_files: Sequence[str],
    record: Path,
    now: float | None = None,
) -> Capture:
    """Move the complete files of `drop_dir` into `inbox`, appending one JSON line per file to `record`."""
    clock = time.time() if now is None else now
    try:
        names = sorted(os.listdir(drop_dir))
    except FileNotFoundError:
        return Capture([], [], None, [f"The drop directory {drop_dir} does not exist: nothing to take."])
    except OSError as exc:
        return Capture([], [], None, [f"The drop directory {drop_dir} cannot be read ({_reason(exc)})."])
    if drop_dir.resolve() == inbox.resolve():
        return Capture([], [], None, [f"The drop directory {drop_dir} is the inbox itself: nothing to move."])
    holder = _lock_holder(drop_dir, lock_files)
    if holder is not None:
        return Capture([], [], holder, _stale_lock_notes(drop_dir / holder, clock))
    inbox.mkdir(mode=privacy.PRIVATE[0], parents=True, exist_ok=True)  # ensure() made it already, in a run
    captured: list[Captured] = []
    waiting: list[tuple[str, str]] = []
    notes: list[str] = []
    for name in names:
        if name.startswith((".", "_")) or name in lock_files:
            continue
        late_lock = _lock_holder(drop_dir, lock_files)
        if late_lock is not None:  # the feeder started writing during this run: leave it the rest
            waiting.append((name, f"the feeder put its lock {late_lock} during this run"))
            continue
        outcome = _take(drop_dir / name, inbox / name, settle_seconds, clock, notes)
        if isinstance(outcome, Captured):
            captured.append(outcome)
            _write_record(record, outcome, clock, notes)
        elif outcome is not None:
            waiting.append((name, outcome))
    return Capture(captured, waiting, None, notes)


def _lock_holder(drop_dir: Path, lock_files: Sequence[str]) -> str | None:
    for name in lock_files:
        if os.path.lexists(drop_dir / name):
            return name
    return None


def _stale_lock_notes(lock: Path, clock: float) -> list[str]:
    try:
        age = clock - os.lstat(lock).st_mtime
    except OSError:  # removed since: the next run will take the files
        return []
    if age < STALE_LOCK_SECONDS:
        return []
    since = humanize.precisedelta(age, minimum_unit="minutes", format="%0.0f")
    return [
        f"The feeder's lock {lock} has been there for {since}: the feeder may have died while writing. "
        "Nothing is taken while it is there; check the feeder, then delete the lock."
    ]


def _take(source: Path, target: Path, settle_seconds: int, clock: float, notes: list[str]) -> Captured | str | None:
    """The file taken, or why it waits (a str), or None when it is not ours to take (notes say why if it matters)."""
    try:
        before = os.lstat(source)
    except FileNotFoundError:  # gone since the listing (the feeder renamed it)
        return None
    except OSError as exc:
        notes.append(f"{source} could not be examined ({_reason(exc)}); it stays in the drop directory.")
        return None
    if stat.S_ISDIR(before.st_mode):  # flat storage, as in the original: sub-folders are not looked into
        return None
    if not stat.S_ISREG(before.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(before.st_mode) else "not a plain file"
        notes.append(f"{source} is {kind}; it is left alone (only plain files are taken).")
        return None
    age = clock - before.st_mtime
    if age < settle_seconds:
        return _why_waiting(age, settle_seconds)
    try:
        return _move(source, target, before, notes)
    except FileChanged:
        return "still being written (it changed while it was being read)"
    except OSError as exc:
        notes.append(f"{source} could not be moved to the inbox ({_reason(exc)}); it stays in the drop directory.")
        return None


def _why_waiting(age: float, settle_seconds: int) -> str:
    if age < 0:
        return f"its modification time is in the future; it is taken {settle_seconds} s after that time"
    return f"still being written (last changed {age:.0f} s ago; taken once unchanged for {settle_seconds} s)"


def _move(source: Path, target: Path, before: os.stat_result, notes: list[str]) -> Captured:
    replaced = os.path.lexists(target)
    if os.stat(target.parent).st_dev != before.st_dev:
        digest = copy_across(source, target, before)
    else:
        try:
            digest = _rename(source, target, before)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # same device number yet another mount (a bind mount): copy instead
                raise
            digest = copy_across(source, target, before)
        _narrow_mode(target, before.st_mode, notes)
    _sync_folder(target.parent)
    return Captured(source=source, target=target, size=before.st_size, sha1=digest, replaced=replaced)


def _rename(source: Path, target: Path, before: os.stat_result) -> str:
    """Same filesystem: hash, check nothing changed meanwhile, then one atomic rename."""
    digest = _hash_file(source)
    if _signature(os.lstat(source)) != _signature(before):
        raise FileChanged(str(source))
    os.replace(source, target)
    return digest


def copy_across(source: Path, target: Path, before: os.stat_result) -> str:
    """Another filesystem: copy under a hidden temporary name in the target's folder, flush it to disk, rename it to
    `target`, then remove `source`; the sha1 of the copy. `before` is the source's lstat when it was found complete:
    FileChanged when the source no longer matches it. On any failure `source` stays and no partial file is left."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        digest = _write_copy(source, partial, before)
        if _signature(os.lstat(source)) != _signature(before):
            raise FileChanged(str(source))
        os.replace(partial, target)
    except BaseException:
        _discard(partial)
        raise
    try:
        os.unlink(source)
    except OSError:
        # Withdrawn, else the same file would be taken (and processed) again at the next run.
        _discard(target)
        raise
    return digest


def _write_copy(source: Path, partial: Path, before: os.stat_result) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    private = privacy.create_file(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # the inbox's mode, from the start
    with source.open("rb") as reader, open(private, "wb") as out:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.utime(out.fileno(), ns=(before.st_atime_ns, before.st_mtime_ns))  # the drop time, as a rename keeps it
        os.fsync(out.fileno())
    return digest.hexdigest()


def _narrow_mode(target: Path, mode: int, notes: list[str]) -> None:
    """Command files hold personal data and passwords: the data directory's file mode (privacy.py), whatever the
    feeder's."""
    wanted = privacy.file_mode(target.parent)
    if stat.S_IMODE(mode) == wanted:
        return
    try:
        os.chmod(target, wanted)
    except OSError as exc:  # a file owned by the feeder's account: only its owner (or root) may change the mode
        notes.append(
            f"{target} keeps mode {stat.S_IMODE(mode):o}: it could not be narrowed to {wanted:o} ({_reason(exc)}); "
            "have the feeder upload files that others cannot read."
        )


def _hash_file(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _sync_folder(folder: Path) -> None:
    """Make the new name durable; some filesystems cannot fsync a folder, and the file is in place regardless."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_record(record: Path, item: Captured, clock: float, notes: list[str]) -> None:
    line = {
        "time": datetime.fromtimestamp(clock).astimezone().isoformat(timespec="seconds"),
        "source": str(item.source),
        "target": str(item.target),
        "size": item.size,
        "sha1": item.sha1,
        "replaced": item.replaced,
    }
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        fd = privacy.create_file(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        notes.append(
            f"The capture record {record} could not be written ({_reason(exc)}): {item.target.name} came from "
            f"{item.source}, {item.size} bytes, sha1 {item.sha1}."
        )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
