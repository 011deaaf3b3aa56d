"""The data directory is private to its owner: folders 0700 and files 0600, or 0750 and 0640 where the site lets the
group read it ([files] group_readable). Command files hold personal data and passwords, reports name people.

Files are made private from their first byte (`create_file`); what an older version left wider is narrowed when a
run starts (`narrow`). A new file takes its folder's rule: group-readable when its folder lets the group in, so
that writers need not know the setting (`ensure` applies it to the folders first)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE = (0o700, 0o600)  # (folder, file)
GROUP_READABLE = (0o750, 0o640)
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
MARKER = ".modes"  # the modes the whole directory was last given: later starts narrow only what others drop in


def modes(group_readable: bool) -> tuple[int, int]:
    """(folder mode, file mode) of the data directory."""
    return GROUP_READABLE if group_readable else PRIVATE


def file_mode(folder: Path) -> int:
    """The mode of a new file of `folder`: group-readable only when the folder lets the group read (and no one else)."""
    return modes(_group_reads(folder))[1]


def folder_mode(parent: Path) -> int:
    """The mode of a new folder of `parent`, by the same rule."""
    return modes(_group_reads(parent))[0]


def _group_reads(folder: Path) -> bool:
    """Whether the folder lets its group read, and no one else (one left wide by an older version is not a rule)."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IRGRP) and not mode & stat.S_IRWXO


def create_file(path: Path, flags: int = NEW_FILE) -> int:
    """Open a file readable by its owner (and the group, see `file_mode`) only, before any byte is written.

    fchmod: os.open's mode applies to a new file only, under the umask; a left-over file keeps its own mode."""
    mode = file_mode(path.parent)
    descriptor = os.open(path, flags, mode)
    try:
        os.fchmod(descriptor, mode)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def make_folder(path: Path, group_readable: bool) -> None:
    """Create `path`, and the missing folders above it, with the data directory's folder mode (mkdir's parents=True
    would make those with the umask's)."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=modes(group_readable)[0], exist_ok=True)


def narrow_once(root: Path, group_readable: bool, *, dropped: Path) -> list[str]:
    """`narrow` the whole directory the first time (or after the setting changed), then only `dropped` (the inbox,
    where feeders and admins put files with their own modes): everything else is created private by toolsync, and a
    walk of a large archive at every cron call would cost each run its start-up time."""
    wanted = "{:o} {:o}\n".format(*modes(group_readable))
    marker = root / MARKER
    try:
        done = marker.read_text() == wanted
    except OSError:
        done = False
    if done:
        return narrow(dropped, group_readable)
    problems = narrow(root, group_readable)
    if not problems:  # walked again next time until every entry could be changed
        descriptor = create_file(marker)
        with os.fdopen(descriptor, "w") as out:
            out.write(wanted)
    return problems


def narrow(root: Path, group_readable: bool) -> list[str]:
    """Give `root` and everything under it the data directory's modes; problems (a file of another owner ...) as
    sentences, never fatal. Symbolic links are left alone, and never followed: what they point to is not ours.

    A folder keeps its set-group-ID bit (a site's way of sharing the group); files and folders get exactly their mode,
    so that switching group_readable on or off applies to what older runs left too."""
    folder_mode, file_mode_ = modes(group_readable)
    problems: list[str] = []
    top = os.path.realpath(root)  # a data directory reached through a link: the folder itself
    current = os.stat(top).st_mode
    _set_mode(top, current, folder_mode | (current & stat.S_ISGID), problems)
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            problems.append(f"{folder} could not be read to make it private ({exc.strerror or exc})")
            continue
        for entry in entries:
            try:
                current = entry.stat(follow_symlinks=False).st_mode
            except OSError:  # removed meanwhile
                continue
            if stat.S_ISDIR(current):
                _set_mode(entry.path, current, folder_mode | (current & stat.S_ISGID), problems)
                pending.append(entry.path)
            elif stat.S_ISREG(current):  # never a link, nor what it points to
                _set_mode(entry.path, current, file_mode_, problems)
    return problems


def _set_mode(path: str, current: int, wanted: int, problems: list[str]) -> None:
    if stat.S_IMODE(current) == wanted:
        return
    try:
        os.chmod(path, wanted)
    except FileNotFoundError:
        return
    except OSError as exc:
        problems.append(f"{path} could not be made private ({exc.strerror or exc}): chmod {wanted:o} it")
