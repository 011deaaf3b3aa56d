"""Read picture entries from a zip archive in memory, never extracting anything to disk.

The archive comes from outside and is treated as hostile: names are checked (no traversal,
no absolute paths), links and encrypted entries are refused, and every size is capped by what
is really decompressed, not by what the headers claim.
"""

from __future__ import annotations

import lzma
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolsync_tui.engine.words import size_text

MB = 1000 * 1000  # decimal, as every size is shown (engine/words.py): a 30 MB limit reads "30.0 MB"


@dataclass(frozen=True)
class Limits:
    """What one archive may hold before it is refused (a zip bomb or a mistake).

    max_entries: entries in the central directory, folders included (100,000: a very large site's users).
    max_entry_bytes: uncompressed bytes of one entry (30 MB: above any real profile picture).
    max_total_bytes: uncompressed bytes read from the whole archive (4 GB).
    max_ratio: uncompressed/compressed size allowed for entries over ratio_floor bytes (100:1;
        JPEG and PNG hardly compress, a bomb compresses ~1000:1; small entries are exempt because
        a tiny flat image can legitimately compress very well).
    """

    max_entries: int = 100_000
    max_entry_bytes: int = 30 * MB
    max_total_bytes: int = 4 * 1000 * MB
    max_ratio: int = 100
    ratio_floor: int = 1 * MB


@dataclass(frozen=True)
class Entry:
    """A readable file of the archive: name is its path inside the zip, value its file name without extension."""

    name: str
    value: str
    data: bytes


@dataclass(frozen=True)
class BadEntry:
    """An entry that cannot be used, with the reason in plain words."""

    name: str
    value: str
    problem: str


class ArchiveProblem(Exception):
    """The archive as a whole cannot be read (not a zip, too many entries, too much data)."""


_DRIVE = re.compile(r"^[A-Za-z]:")


def value_of(name: str) -> str:
    """The file name without its last extension: 'sub/dir/jdoe.jpg' -> 'jdoe'."""
    base = posixpath.basename(name.replace("\\", "/"))
    return posixpath.splitext(base)[0]


def _name_problem(name: str) -> str | None:
    # Nothing is ever extracted, but the names end up in reports and maybe paths later on:
    # refuse what would escape a folder on any system.
    if "\\" in name:
        return "its path contains a backslash"
    if name.startswith("/"):
        return "its path is absolute"
    if _DRIVE.match(name):
        return "its path starts with a drive letter"
    if ".." in name.split("/"):
        return "its path goes up a folder ('..')"
    return None


def _hidden(name: str) -> bool:
    """macOS resource forks (__MACOSX/, ._x.jpg) and hidden files or folders are not pictures; a name that tries to
    leave the archive's folder is never hidden, so that it is reported."""
    if _name_problem(name) is not None:
        return False
    parts = name.split("/")
    return "__MACOSX" in parts or any(part.startswith(".") and part != "." for part in parts)


def _kind_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "it is a symbolic link"
    # Zips made on Unix carry the file type; a type that is neither file nor folder is a device or pipe.
    if stat.S_IFMT(mode) and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return "it is not a regular file"
    if info.flag_bits & 0x1:
        return "it is encrypted (password-protected)"
    return None


def _size_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    if info.file_size > limits.max_entry_bytes:
        return f"it is larger than {size_text(limits.max_entry_bytes)} uncompressed"
    if info.file_size > limits.ratio_floor and info.file_size > info.compress_size * limits.max_ratio:
        return f"it compresses more than {limits.max_ratio}:1 (a zip bomb?)"
    return None


# What a damaged or hostile entry can raise while it is decompressed (bz2 raises OSError).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError)


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes | str:
    """The entry's bytes, or the problem. Reads at most max_entry_bytes + 1 whatever the header says."""
    try:
        with zf.open(info) as stream:
            data = stream.read(limits.max_entry_bytes + 1)
    except NotImplementedError:
        return "it uses a compression method that cannot be read"
    except _READ_ERRORS as error:
        return f"it is damaged ({error})"
    if len(data) > limits.max_entry_bytes:
        return f"it is larger than {size_text(limits.max_entry_bytes)} uncompressed"
    if len(data) != info.file_size:
        # zipfile stops at the declared size, so a header that understates it shows up as a CRC error
        # above; one that overstates it ends here.
        return f"its recorded size ({info.file_size:,} bytes) does not match its content ({len(data):,} bytes)"
    if len(data) > limits.ratio_floor and len(data) > max(info.compress_size, 1) * limits.max_ratio:
        return f"it compresses more than {limits.max_ratio}:1 (a zip bomb?)"
    return data


class Archive:
    """An open picture archive: checked as a whole when opened, its pictures read one at a time.

    `members` are the files that count (folders, hidden files and macOS resource forks left out), in the
    archive's order; an entry's position in that list (from 1) is its line in the run's report.
    """

    def __init__(self, path: str | Path, limits: Limits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or Limits()
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise ArchiveProblem(f"{path} is not a zip archive ({error})") from error
        except (OSError, EOFError, ValueError) as error:
            raise ArchiveProblem(f"{path} cannot be read ({error})") from error
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            self._zip.close()
            raise ArchiveProblem(
                f"{path} holds {len(infos):,} entries, more than the {self.limits.max_entries:,} allowed"
            )
        self.members = [info for info in infos if not info.is_dir() and not _hidden(info.filename)]
        # An entry is read only if its content matches its recorded size (see _read), so the recorded sizes bound
        # what the whole archive can expand to before anything is read.
        total = sum(info.file_size for info in self.members)
        if total > self.limits.max_total_bytes:
            self._zip.close()
            raise ArchiveProblem(f"{path} expands to more than {size_text(self.limits.max_total_bytes)}")

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def entries(self) -> Iterator[Entry | BadEntry]:
        """Every member, in order, as an Entry or a BadEntry."""
        for info in self.members:
            name = info.filename
            problem = _name_problem(name) or _kind_problem(info) or _size_problem(info, self.limits)
            if problem is None:
                result = _read(self._zip, info, self.limits)
                if isinstance(result, bytes):
                    yield Entry(name, value_of(name), result)
                    continue
                problem = result
            yield BadEntry(name, value_of(name), problem)


def iter_entries(path: str | Path, limits: Limits | None = None) -> Iterator[Entry | BadEntry]:
    """Every picture of the archive at `path` (see Archive); raises ArchiveProblem on the first next() when the
    archive as a whole cannot be used."""
    with Archive(path, limits) as archive:
        yield from archive.entries()
