"""Moodle's file pool (moodle-db-semantics §9.2): file content stored once per SHA-1 under
`<dataroot>/filedir/<h[0:2]>/<h[2:4]>/<h>`, written to a temporary name and renamed so that a reader never sees half a
file; content no `files` row references any more goes to `<dataroot>/trashdir/` with the same layout, where Moodle's
trash cleanup task removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

# $CFG->directorypermissions of a default config.php, and the file permissions Moodle derives from it.
DIRECTORY_MODE = 0o2777
FILE_MODE = 0o666


class FilePoolProblem(Exception):
    """The Moodle data directory cannot take the content (missing, not writable)."""


@dataclass(frozen=True)
class FilePool:
    dataroot: Path
    directory_mode: int = DIRECTORY_MODE
    file_mode: int = FILE_MODE

    def check(self) -> None:
        """Fail early, with the setting to fix, when the data directory is not a Moodle one we can write to."""
        filedir = self.dataroot / "filedir"
        if not filedir.is_dir():
            raise FilePoolProblem(
                f"{self.dataroot} has no filedir/: [operations.pictures] moodle_data_dir must be the site's "
                "$CFG->dataroot (moodledata)"
            )
        if not os.access(filedir, os.W_OK | os.X_OK):
            raise FilePoolProblem(f"{filedir} is not writable by this user: run toolsync as the site's file owner")

    def path(self, contenthash: str, area: str = "filedir") -> Path:
        return self.dataroot / area / contenthash[:2] / contenthash[2:4] / contenthash

    def store(self, data: bytes) -> str:
        """The content's SHA-1, its file written unless the pool has it already (same hash and size)."""
        contenthash = hashlib.sha1(data).hexdigest()
        target = self.path(contenthash)
        with contextlib.suppress(FileNotFoundError):
            if target.stat().st_size == len(data):
                return contenthash
        self._directories(target.parent)
        temporary = target.with_name(f"{contenthash}.tmp.{os.getpid()}")
        try:
            with temporary.open("wb") as out:
                out.write(data)
            temporary.chmod(self.file_mode)
            temporary.replace(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return contenthash

    def trash(self, contenthash: str) -> None:
        """Move content no row references any more to the trash, as file_storage::deleted_file_cleanup() does."""
        source = self.path(contenthash)
        if not source.is_file():
            return
        target = self.path(contenthash, "trashdir")
        self._directories(target.parent)
        source.replace(target)

    def _directories(self, directory: Path) -> None:
        if directory.is_dir():
            return
        # Created one level at a time so that each gets Moodle's mode whatever the umask.
        for missing in reversed([directory, *directory.parents][: len(directory.relative_to(self.dataroot).parts)]):
            if not missing.is_dir():
                with contextlib.suppress(FileExistsError):
                    missing.mkdir()
                    missing.chmod(self.directory_mode)
