"""Course delete and reset command files written from a selection of courses, ready for `toolsync run`.

The files are what tool_sync's generators wrote (deletecourses_creator.php, resetcourses_creator.php), with their
quirks fixed: the delete file goes where the delete operation reads it (not deletecourses.txt), and the reset file
holds each course's identifier value under the identifier column. Values are written so that toolsync reads them
back unchanged: quoted when they hold a separator, a quote or a line break, or begin like a comment line.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toolsync_tui.config import Config, FileSettings
from toolsync_tui.engine.datadir.store import DataStore, private_file
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.command_file import SEPARATORS
from toolsync_tui.engine.tools.course_selection import CourseSelection, SelectedCourse, select_courses

GENERATORS = ("deletecourses", "resetcourses")

# The reset generator's defaults, in its column order: unenrol students, teachers and guests, and reset everything
# else the file can reset. `modules` = all: each module's own reset defaults.
RESET_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("roles", "student teacher guest"),
    ("local_roles", "all"),
    ("completion", "yes"),
    ("grades", "all"),
    ("groups", "all"),
    ("groupings", "all"),
    ("blog_associations", "yes"),
    ("events", "yes"),
    ("logs", "yes"),
    ("notes", "yes"),
    ("comments", "yes"),
    ("modules", "all"),
)


class GenerateProblem(Exception):
    """The file cannot be written: it exists, nothing was selected, a value cannot be encoded, the disk refused."""


@dataclass(frozen=True)
class GeneratedFile:
    operation: str
    path: Path
    identifier: str  # the identifier setting the file's values follow
    written: int  # courses written (one line each)
    left_out: list[SelectedCourse]  # selected courses without a value for the identifier


@dataclass(frozen=True)
class OutputFormat:
    """How `files.*` settings say command files are read, turned into how to write one."""

    separator: str
    encoding: str
    quote_when: str  # characters that make a row's values quoted
    comment_prefixes: tuple[str, ...]

    @classmethod
    def of(cls, files: FileSettings) -> OutputFormat:
        auto = files.separator == "auto"
        separator = ";" if auto else files.separator
        # With separator = auto, the reader picks the separator the first line holds most: any of them in a value
        # is quoted, so that no choice splits it.
        specials = "".join(SEPARATORS) if auto else separator
        # A legacy encoding setting reads every file in that encoding: the file is written in it.
        encoding = "utf-8" if files.encoding in ("auto", "utf-8") else files.encoding
        return cls(separator, encoding, specials + '"\r\n', tuple(files.comment_prefixes))

    def encode(self, rows: Sequence[Sequence[str]]) -> bytes:
        """The rows as the file's bytes; a row with a value that needs quotes is quoted throughout."""
        quoted = io.StringIO()
        writer = csv.writer(quoted, delimiter=self.separator, quoting=csv.QUOTE_ALL, lineterminator="\n")
        lines: list[bytes] = []
        for row in rows:
            if self._needs_quotes(row):
                quoted.seek(0)
                quoted.truncate()
                writer.writerow(row)
                text = quoted.getvalue()
            else:
                text = self.separator.join(row) + "\n"
            try:
                lines.append(text.encode(self.encoding))
            except UnicodeEncodeError as exc:
                raise GenerateProblem(
                    f"'{row[0]}': {exc.object[exc.start : exc.end]!r} cannot be written in {self.encoding} "
                    "(files.encoding)"
                ) from None
        return b"".join(lines)

    def _needs_quotes(self, row: Sequence[str]) -> bool:
        return bool(row) and (
            row[0].startswith(self.comment_prefixes) or any(c in value for value in row for c in self.quote_when)
        )


def identifier_setting(config: Config, operation: str) -> str:
    operations = config.settings.operations
    if operation == "deletecourses":
        return operations.deletecourses.identifier
    if operation == "resetcourses":
        return operations.resetcourses.identifier
    raise GenerateProblem(f"no generator for '{operation}': one of {', '.join(GENERATORS)}")


def command_rows(operation: str, courses: Sequence[SelectedCourse], identifier: str) -> tuple[list[list[str]], int]:
    """The file's rows (with its header, if any) and the number of courses written; a value is written once."""
    values = list(dict.fromkeys(v for v in (c.identifier(identifier) for c in courses) if v))
    if operation == "deletecourses":
        return [[value] for value in values], len(values)
    header = [identifier, *(name for name, _ in RESET_DEFAULTS)]
    defaults = [value for _, value in RESET_DEFAULTS]
    return [header, *([value, *defaults] for value in values)], len(values)


async def generate(
    config: Config,
    gateway: MoodleGateway,
    operation: str,
    selection: CourseSelection,
    output: Path | None = None,
    *,
    force: bool = False,
) -> GeneratedFile:
    """Write the operation's command file for the selected courses (default: its preselected file in the inbox)."""
    identifier = identifier_setting(config, operation)
    path = output or DataStore(config.data_dir).preselected(config.operation(operation).file)
    if path.exists() and not force:
        raise GenerateProblem(f"{path} exists: give --force to overwrite it, or --output another file")
    courses = await select_courses(gateway, selection)
    if not courses:
        raise GenerateProblem("no course matches the selection: nothing written")
    left_out = [c for c in courses if not c.identifier(identifier)]
    if len(left_out) == len(courses):
        raise GenerateProblem(
            f"the selected courses ({len(courses)}) have no {identifier} (operations.{operation}.identifier): "
            "nothing written"
        )
    rows, written = command_rows(operation, courses, identifier)
    _write(path, OutputFormat.of(config.settings.files).encode(rows), default_place=output is None)
    return GeneratedFile(operation, path, identifier, written, left_out)


def _write(path: Path, data: bytes, *, default_place: bool) -> None:
    """Write through a temporary file, so that a scheduled run never reads half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if default_place:
            path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(private_file(temporary), "wb") as out:  # the data directory's mode from the first byte
            out.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise GenerateProblem(f"cannot write {path}: {exc.strerror or exc}") from None
