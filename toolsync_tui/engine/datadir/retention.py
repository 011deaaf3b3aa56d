"""Removing old archives, reports and trybacks (the original's file area cleanup task, without its deletion of
pending command files: the inbox is never touched)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from toolsync_tui.engine.changes.journal import FOLDER as CHANGES
from toolsync_tui.engine.datadir.store import DataStore

DAY = 86400


def remove_expired(
    store: DataStore, days: int, now: float | None = None, *, problems: list[str] | None = None
) -> list[Path]:
    """Remove the files of archive/, reports/, tryback/ and changes/ (sub-folders included) last modified more than
    `days` days ago; the removed paths, sorted. Folders stay. A symbolic link is judged by its own time and removed
    itself: what it points to is never touched. `days` <= 0 removes nothing.

    A file that cannot be removed (or a folder that cannot be read) is skipped, not fatal: housekeeping must not stop
    a cron run. It is retried at the next call, and described in `problems` when the caller passes a list."""
    if days <= 0:
        return []
    cutoff = (time.time() if now is None else now) - days * DAY
    removed: list[Path] = []
    found: list[str] = []
    # The runs' change journals (changes/journal.py) go with their reports: a run past retention cannot be undone.
    for folder in (store.archive, store.reports, store.tryback, store.root / CHANGES):
        _remove_older(folder, cutoff, removed, found)
    if problems is not None:
        problems.extend(found)
    return sorted(removed)


def _remove_older(folder: Path, cutoff: float, removed: list[Path], problems: list[str]) -> None:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:  # not created yet: nothing to remove
        return
    except OSError as exc:
        problems.append(f"{folder} could not be read to remove its old files ({exc.strerror or exc})")
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            status = entry.stat(follow_symlinks=False)  # a link's own time, never its target's
            if stat.S_ISDIR(status.st_mode):
                _remove_older(path, cutoff, removed, problems)
            elif status.st_mtime < cutoff:
                os.unlink(path)
                removed.append(path)
        except FileNotFoundError:  # removed meanwhile: nothing left to do
            continue
        except OSError as exc:
            problems.append(f"{path} is past its retention time but could not be removed ({exc.strerror or exc})")
