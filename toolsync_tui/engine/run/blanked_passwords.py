"""The archived copy of a command file with its password cells emptied ([files] archive_passwords off): the file as it
was (encoding, byte order mark, separator, quoting, comments, line endings, every other cell byte for byte), so that
an archive kept for years holds no password. The tryback, private, keeps them: it is run again.

Records are found as the reader finds them (command_file.py): a line without a quote is split at the separator; a
quote opens a quoted value at the start of a cell only, and a quoted value may run over lines. Where the file is
broken the rule is to empty too much rather than too little: a record with more cells than the header has every
cell from the first password column on emptied, and the lines a quote swallowed (a record over several lines with
the wrong number of cells, a quote never closed, or a line inside a quoted value that reads as a whole record) have
the password cells they have when split at every separator, quotes or not, emptied too."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from toolsync_tui.config import FileSettings
from toolsync_tui.engine.run.command_file import CommandFile, SourceFormat
from toolsync_tui.engine.run.operation import Source

SECRET = "password"  # any column whose name holds it (password, an ignored initial_password ...)
QUOTE = '"'
Span = tuple[int, int]  # a cell's start and end in its record's text


def blanking_rewrite(source: Source, files: FileSettings) -> Callable[[BinaryIO], None] | None:
    """What writes the archived copy of `source` with its passwords emptied; None when it is archived as it is (the
    setting keeps passwords, the file has no password column, or it is no command file: a picture archive)."""
    if files.archive_passwords or not isinstance(source, CommandFile):
        return None
    names = _header_names(source) if source.has_header else list(source.spec.headerless or ())
    positions = secret_positions(names)
    if not positions:
        return None
    width = len(names) if source.has_header else None
    layout = Layout(source.format, tuple(source.comment_prefixes), source.has_header, positions, width)
    return partial(write_blanked, source.path, layout)


def secret_positions(names: Sequence[str]) -> tuple[int, ...]:
    return tuple(position for position, name in enumerate(names) if SECRET in name.strip().lower())


def _header_names(source: CommandFile) -> list[str]:
    rows = csv.reader(io.StringIO(source.header_raw), delimiter=source.format.separator, quotechar=QUOTE)
    return next(rows, [])


@dataclass(frozen=True)
class Layout:
    """What the copy needs of the reader's findings: the format, the comment lines, where the passwords are."""

    format: SourceFormat
    comment_prefixes: tuple[str, ...]
    has_header: bool
    positions: tuple[int, ...]  # the password columns'
    width: int | None  # the header's cells (None: a header-less file)

    def emptied(self, count: int) -> set[int]:
        """The cells to empty in a record of `count` cells."""
        if self.width is not None and count > self.width:  # a separator too many: a password may have moved right
            return set(range(min(self.positions), count))
        return {position for position in self.positions if position < count}


def write_blanked(path: Path, layout: Layout, out: BinaryIO) -> None:
    """Write `path` to `out` with the password cells emptied (see the module's docstring)."""
    form = layout.format
    codec = "utf-8-sig" if form.bom else form.encoding

    def put(text: str) -> None:
        out.write(text.encode(form.encoding, "surrogateescape"))  # bytes the codec cannot read go back as they were

    if form.bom:
        out.write(b"\xef\xbb\xbf")
    header_due = layout.has_header
    pending: list[str] = []  # the lines of a quoted record not closed yet
    scanner = _Scanner(form.separator)
    lone_cr_ends = not _has_newline(path)  # an old Mac file, every line ended by a CR
    with path.open(encoding=codec, errors="surrogateescape", newline="") as text:
        for line in text if lone_cr_ends else _lines(text):
            if not pending:
                if not line.strip() or line.startswith(layout.comment_prefixes):
                    put(line)  # blank and comment lines between records
                    continue
                if not header_due and QUOTE not in line:  # the reader's own fast rule: split at the separator
                    put(_plain(line, layout))
                    continue
            pending.append(line)
            if not scanner.feed(line):
                continue
            if header_due:  # the header goes as it is
                header_due = False
                put("".join(pending))
            elif len(pending) > 1 and len(scanner.spans) != layout.width:
                # A quote that swallowed lines (the row fails): their passwords are where their own lines put them.
                put("".join(_cut(part, _plain_secrets(part, 0, layout)) for part in pending))
            else:
                put(_cut("".join(pending), _record_secrets(scanner.spans, pending, layout)))
            scanner.spans = []
            pending = []
    if pending:  # a quote never closed: each line on its own
        put("".join(_cut(part, _plain_secrets(part, 0, layout)) for part in pending))


def _lines(text: Iterable[str]) -> Iterator[str]:
    """The file's lines with their endings, \n or \r\n: a lone CR stays inside its line, as inside a value, so that
    the line's password cell is where the line's separators put it."""
    held = ""
    for piece in text:  # newline="": pieces end at \n, \r\n or a lone \r
        if piece.endswith("\r"):
            held += piece
            continue
        yield held + piece
        held = ""
    if held:
        yield held


def _has_newline(path: Path) -> bool:
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            if b"\n" in chunk:
                return True
    return False


def _plain(line: str, layout: Layout) -> str:
    """A line split at every separator, as the reader splits a line without quotes."""
    content = line.rstrip("\r\n")
    cells = content.split(layout.format.separator)
    for position in layout.emptied(len(cells)):
        cells[position] = ""
    return layout.format.separator.join(cells) + line[len(content) :]


def _record_secrets(spans: list[Span], lines: list[str], layout: Layout) -> list[Span]:
    """The password cells of a record with quotes; and, where a quoted value runs over lines, those of each of its
    further lines that reads as a whole record of its own (a stray quote may have swallowed rows that balance)."""
    found = [spans[position] for position in layout.emptied(len(spans))]
    offset = len(lines[0])
    for line in lines[1:]:
        if len(line.split(layout.format.separator)) == layout.width:
            found += _plain_secrets(line, offset, layout)
        offset += len(line)
    return found


def _plain_secrets(line: str, offset: int, layout: Layout) -> list[Span]:
    """The password cells of `line` split at every separator, quotes or not; positions from `offset`."""
    content = line.rstrip("\r\n")
    spans: list[Span] = []
    start = 0
    for cell in content.split(layout.format.separator):
        spans.append((offset + start, offset + start + len(cell)))
        start += len(cell) + 1
    return [spans[position] for position in layout.emptied(len(spans))]


def _cut(text: str, secrets: list[Span]) -> str:
    """`text` without the characters of `secrets` (which may overlap)."""
    pieces: list[str] = []
    done = 0
    for start, end in sorted(secrets):
        if end <= done:
            continue
        pieces.append(text[done : max(start, done)])
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


class _Scanner:
    """Cell boundaries of one record, fed line by line: Python's csv rules (a quote opens a value at a cell's start,
    "" inside is a quote, a quote followed by anything but the separator or the line's end goes on unquoted)."""

    START, PLAIN, QUOTED, QUOTE_IN_QUOTED = range(4)

    def __init__(self, separator: str) -> None:
        self.separator = separator
        self.spans: list[Span] = []
        self._state = self.START
        self._cell = 0  # where the cell being read starts, in the record
        self._offset = 0  # the record's length read so far

    def feed(self, line: str) -> bool:
        """Read one more line of the record; True when the record ends with it."""
        separator = self.separator
        content = line.rstrip("\r\n")
        for index, char in enumerate(content):
            at = self._offset + index
            state = self._state
            if state == self.QUOTED:
                if char == QUOTE:
                    self._state = self.QUOTE_IN_QUOTED
                continue
            if char == separator:
                self.spans.append((self._cell, at))
                self._cell = at + 1
                self._state = self.START
            elif state in (self.START, self.QUOTE_IN_QUOTED):  # a cell's opening quote, or "" inside a value
                self._state = self.QUOTED if char == QUOTE else self.PLAIN
        end = self._offset + len(content)
        self._offset += len(line)
        if self._state == self.QUOTED:  # the line's ending is inside the value (none: the file ends in it)
            return False
        return self._end(end)

    def _end(self, at: int) -> bool:
        self.spans.append((self._cell, at))
        self._state = self.START
        self._cell = 0
        self._offset = 0
        return True
