"""Reading a command file: encoding, separator, header, then records streamed as polars batches.

Records are read by records.py (RFC 4180 quoting, exact physical line numbers, broken quotes and stray line breaks
failing their own line) and handed on in columnar polars batches. Each batch also carries every record's raw text, so
that a tryback can hold the failing rows exactly as they were written. A value holding a control character fails its
row (controls.py).

No message quotes a cell that could be a password: a header that names none of the required columns is taken for a
missing header (its cells are a data row) and described by positions only.

A record with more values than the header fails its row. One with fewer fails it too, except in the files whose
reader in tool_sync takes such rows (ColumnSpec.short_rows: users, enrolments, groups) while files.short_rows is
"accept": there the missing trailing cells are read as empty, and describe() (the report's heading) names the lines.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import sys
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import polars as pl

from toolsync_tui.config import FileSettings
from toolsync_tui.engine.datadir.store import private_file
from toolsync_tui.engine.rows import LINE, PROBLEM, RAW
from toolsync_tui.engine.run.controls import REFUSED, escape, escaped, quoted
from toolsync_tui.engine.run.records import LF, RESUMED, LineEnds, Record, read_records
from toolsync_tui.engine.words import plural

SEPARATORS = (";", ",", "\t")
SEPARATOR_NAMES = {";": "';'", ",": "','", "\t": "TAB"}
SHOWN_LINES = 5  # the short rows a note lists by line
CONTROLS_REFUSED = "control characters are refused in values, except TAB and line breaks inside quoted values"


class FileProblem(Exception):
    """The file cannot be processed at all; the message names the file, line and column."""


@dataclass(frozen=True)
class ColumnSpec:
    """Which columns an operation's file has.

    `patterns` are (regex, shown-as) pairs for numbered columns such as ("course\\d+", "courseN").
    Header-less files name their fields in `headerless`; the first `len(required)` are required.
    `short_rows`: the original's reader of this file takes a row with fewer values than the header (it maps the
    values it finds onto the header, the missing trailing ones absent): such a row is read with those cells empty,
    unless files.short_rows is "fail". Without it (the course and cohort files) such a row fails, as there.
    """

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    patterns: tuple[tuple[str, str], ...] = ()
    headerless: tuple[str, ...] | None = None
    short_rows: bool = False

    def allows(self, name: str) -> bool:
        return (
            name in self.required
            or name in self.optional
            or any(re.fullmatch(regex, name) for regex, _ in self.patterns)
        )

    def allowed_names(self) -> str:
        return ", ".join([*self.required, *self.optional, *(shown for _, shown in self.patterns)])


@dataclass(frozen=True)
class SourceFormat:
    encoding: str  # a Python codec name: utf-8, windows-1252 or iso-8859-1
    separator: str
    bom: bool
    ends: LineEnds = LF


@dataclass
class CommandFile:
    path: Path
    spec: ColumnSpec
    format: SourceFormat
    columns: list[str]  # the names each batch carries, in file order
    header_raw: str = ""  # the header record as written, for the tryback
    header_names: list[str] = field(default_factory=list)  # every header cell by position, ignored ones too
    physical_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    comment_prefixes: tuple[str, ...] = ("#", "//")
    header_width: int | None = None  # fields a data row must have (None: header-less)
    accept_short_rows: bool = False  # the spec's short_rows, unless files.short_rows is "fail"
    short_row_lines: list[int] = field(default_factory=list)  # the rows read with missing trailing cells
    _field_positions: list[int] = field(default_factory=list)
    _record_count: int | None = None  # the records, once counted

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def shown_name(self) -> str:
        """The file's name as a message shows it (a name may hold control characters too)."""
        return escaped(self.path.name)

    def describe(self) -> str:
        read = f"{self.format.encoding}, separator {self.format.separator!r}"
        return f"{read}; {self.short_rows_note()}" if self.short_row_lines else read

    def short_rows_note(self) -> str:
        """Which rows were read with missing trailing cells (the report's heading says it with describe())."""
        lines = self.short_row_lines
        what = "missing trailing cells were read as empty, as files.short_rows allows"
        if len(lines) == 1:
            return f"line {lines[0]} has fewer values than the header: its {what}"
        if len(lines) <= SHOWN_LINES:
            listed = ", ".join(str(n) for n in lines[:-1]) + f" and {lines[-1]}"
            return f"lines {listed} have fewer values than the header: their {what}"
        shown = ", ".join(str(n) for n in lines[:SHOWN_LINES])
        return f"{len(lines)} rows have fewer values than the header (lines {shown}, ...): their {what}"

    def tryback(self, path: Path) -> CsvTryback:
        return CsvTryback(path, self.format, self.header_raw)

    @property
    def has_header(self) -> bool:
        return self.spec.headerless is None

    @classmethod
    def open(cls, path: Path, spec: ColumnSpec, settings: FileSettings) -> CommandFile:
        """Check the file as a whole (readable, encoding, separator, header) before any row is used."""
        if not path.is_file():
            raise FileProblem(f"{escaped(str(path))}: file not found")
        encoding, bom, lines, ends = _detect_encoding(path, settings.encoding)
        prefixes = tuple(settings.comment_prefixes)
        source = cls(
            path=path,
            spec=spec,
            format=SourceFormat(encoding, ";", bom, ends),
            columns=[],
            physical_lines=lines,
            comment_prefixes=prefixes,
        )
        first = source._first_record_line()
        separator = _choose_separator(escaped(path.name), first, settings.separator, spec.headerless is not None)
        source.format = SourceFormat(encoding, separator, bom, ends)
        if spec.headerless is not None:
            source.columns = list(spec.headerless)
            source._field_positions = list(range(len(spec.headerless)))
        else:
            source._read_header(settings.ignore_unknown_columns)
            if spec.short_rows and settings.short_rows == "accept":
                source.accept_short_rows = True
                source._find_short_rows()
        return source

    # -- whole-file checks -----------------------------------------------------------------

    def _open_text(self) -> TextIO:
        codec = "utf-8-sig" if self.format.encoding == "utf-8" else self.format.encoding
        return self.path.open(encoding=codec, newline=self.format.ends.end)

    def _first_record_line(self) -> str | None:
        with self._open_text() as text:
            for line in text:
                if line.strip() and not line.startswith(self.comment_prefixes):
                    return line
        return None

    def _read_header(self, ignore_unknown: bool) -> None:
        records = self._records()
        try:
            line, raw, names = next(records)
        except StopIteration:
            raise FileProblem(
                f"{self.shown_name}: the file is empty; a header line is expected "
                f"(columns: {self.spec.allowed_names()})"
            ) from None
        finally:
            records.close()
        if isinstance(names, str):
            raise FileProblem(
                f"{self.shown_name} line {line}: the header cannot be read: {names.removesuffix(RESUMED)}"
            )
        self.header_raw = raw
        names = [name.strip() for name in names]
        if not self._names_a_header(names):
            # Most likely a data row: its cells may be a password, so only their number is said.
            raise FileProblem(f"{self.shown_name} line {line}: {self._no_header(names)}")
        self.header_names = names
        seen: dict[str, int] = {}
        ignored: list[int] = []
        for position, name in enumerate(names, start=1):
            where = f"{self.shown_name} line {line}, column {position}"
            if not name:
                raise FileProblem(f"{where}: empty column name (is there a trailing separator?)")
            if REFUSED.search(name):
                raise FileProblem(f"{where}: the column name {quoted(name)} holds a control character")
            if name in seen:
                raise FileProblem(f"{where}: column {quoted(name)} appears twice (also column {seen[name]})")
            seen[name] = position
            if not self.spec.allows(name):
                if ignore_unknown:
                    self.ignored_columns.append(name)
                    ignored.append(position)
                    continue
                raise FileProblem(
                    f"{where}: unknown column {quoted(name)}; allowed columns are {self.spec.allowed_names()}"
                )
            self.columns.append(name)
            self._field_positions.append(position - 1)
        self.header_width = len(names)
        missing = [name for name in self.spec.required if name not in seen]
        if missing:
            unknown = f" ({plural(len(ignored), 'unknown column')} ignored: {_positions(ignored)})" if ignored else ""
            raise FileProblem(
                f"{self.shown_name} line {line}: {_required(missing)} missing; the header names "
                f"{', '.join(self.columns) or 'no known column'}{unknown}"
            )

    def _names_a_header(self, names: list[str]) -> bool:
        """Whether the first record is a header: it names a required column (any known one, for a file without
        required columns), in any letter case. Otherwise it is most likely a data row, and its cells are not quoted."""
        wanted = {name.lower() for name in self.spec.required}
        if wanted:
            return any(name.lower() in wanted for name in names)
        return any(self._known(name) for name in names)

    def _known(self, name: str) -> bool:
        return self.spec.allows(name) or self.spec.allows(name.lower())

    def _no_header(self, names: list[str]) -> str:
        """What a first record that names no required column is, by positions and known names only."""
        known = sum(1 for name in names if self._known(name))
        cells = f"the header's {plural(len(names), 'cell')} name" + ("s" if len(names) == 1 else "")
        question = "is the header line missing?"
        if not self.spec.required:
            return f"{cells} no known column — {question} (allowed columns are {self.spec.allowed_names()})"
        what = "none of the required columns" if known else "no known column"
        return f"{_required(list(self.spec.required))} missing; {cells} {what} — {question}"

    def _find_short_rows(self) -> None:
        """The lines of the rows with fewer values than the header, known before any row is used: the report's heading
        names them. Counts the records on the way."""
        width = self.header_width
        assert width is not None
        records = self._records()
        total = 0
        try:
            next(records, None)  # the header
            for line, _, fields in records:
                total += 1
                if not isinstance(fields, str) and len(fields) < width:
                    self.short_row_lines.append(line)
        finally:
            records.close()
        self._record_count = total

    # -- records and batches ---------------------------------------------------------------

    def last_record(self) -> Record | None:
        """The file's last record, as the run reads it (its first physical line, raw text, values or error)."""
        records = self._records()
        try:
            last = deque(records, maxlen=1)
        finally:
            records.close()
        return last[0] if last else None

    def _records(self) -> Generator[Record, None, None]:
        """(first physical line, raw text, values) per record; values is an error text if malformed."""
        with self._open_text() as text:
            yield from read_records(
                text, self.format.separator, self.comment_prefixes, self.format.ends, self._column_name, self._fits
            )

    def _column_name(self, index: int) -> str:
        """The index-th value's column, as a message names it."""
        names = self.header_names if self.has_header else list(self.spec.headerless or ())
        return quoted(names[index]) if index < len(names) and names[index] else str(index + 1)

    def _fits(self, count: int) -> bool:
        """Whether a record of `count` values has as many as a data row must (the header: any number)."""
        if self.has_header and self.header_width is None:
            return True
        needed = len(self.spec.required) if self.header_width is None else self.header_width
        too_many = self.header_width is not None and count > self.header_width
        return not too_many and (count >= needed or self.accept_short_rows)

    def count_records(self) -> int:
        """Data records, by the rules of a run (comments, blank lines, quoted records over several lines), without
        building their columns."""
        if self._record_count is not None:
            return self._record_count
        records = self._records()
        try:
            total = sum(1 for _ in records)
        finally:
            records.close()
        return total - 1 if self.has_header and total else total

    def batches(self, size: int) -> Iterator[pl.DataFrame]:
        """Data records in batches: LINE, RAW, PROBLEM (null when the row is well formed), columns."""
        records = self._records()
        if self.has_header:
            next(records, None)
        width = self.header_width
        needed = len(self.spec.required) if width is None else width
        lines: list[int] = []
        raws: list[str] = []
        problems: list[str | None] = []
        values: list[list[str]] = [[] for _ in self.columns]
        by_setting = self.spec.short_rows and not self.accept_short_rows
        strict_by_setting = ' (files.short_rows is "fail")' if by_setting else ""
        fewest, most = (0 if self.accept_short_rows else needed), (sys.maxsize if width is None else width)  # _fits
        for line, raw, fields in records:
            problem: str | None = None
            if isinstance(fields, str):
                problem, fields = fields, []
            elif not fewest <= len(fields) <= most:
                # A short row of a file that takes them has its missing trailing cells read as empty (below).
                problem = f"{plural(len(fields), 'value')} found, {needed} expected" + (
                    " (a separator inside a value must be quoted)" if len(fields) > needed else strict_by_setting
                )
            elif REFUSED.search(raw):
                problem = self._control_problem(fields)
            lines.append(line)
            raws.append(raw)
            problems.append(problem)
            for column, position in zip(values, self._field_positions, strict=True):
                column.append(fields[position].strip() if position < len(fields) else "")
            if len(lines) >= size:
                yield self._frame(lines, raws, problems, values)
                lines, raws, problems = [], [], []
                values = [[] for _ in self.columns]
        if lines:
            yield self._frame(lines, raws, problems, values)

    def _control_problem(self, fields: list[str]) -> str | None:
        """The first used value holding a control character, named by its column (a password's never shown)."""
        for name, position in zip(self.columns, self._field_positions, strict=True):
            value = fields[position] if position < len(fields) else ""
            found = REFUSED.search(value.strip())
            if found is None:
                continue
            if "password" in name:
                return f"column {quoted(name)} holds a control character; {CONTROLS_REFUSED}"
            shown = escape(found.group())
            return f"column {quoted(name)} holds the control character {shown} (character {found.start() + 1}); " + (
                CONTROLS_REFUSED
            )
        return None  # only in an ignored column: nothing of the row uses it

    def _frame(
        self, lines: list[int], raws: list[str], problems: list[str | None], values: list[list[str]]
    ) -> pl.DataFrame:
        data: dict[str, pl.Series] = {
            LINE: pl.Series(LINE, lines, dtype=pl.Int64),
            RAW: pl.Series(RAW, raws, dtype=pl.String),
            PROBLEM: pl.Series(PROBLEM, problems, dtype=pl.String),
        }
        for name, column in zip(self.columns, values, strict=True):
            data[name] = pl.Series(name, column, dtype=pl.String)
        return pl.DataFrame(data)


class CsvTryback:
    """Failed rows in the source's own format: header and records exactly as read, same encoding."""

    def __init__(self, path: Path, source: SourceFormat, header_raw: str) -> None:
        self.path = path
        self._encoding = source.encoding
        self._prefix = (codecs.BOM_UTF8 if source.bom else b"") + header_raw.encode(source.encoding)
        self._out: BinaryIO | None = None
        self.rows = 0

    def add(self, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        if self._out is None:
            self._out = os.fdopen(private_file(self.path), "wb")
            self._out.write(self._prefix)
        buffer = io.StringIO()
        buffer.writelines(rows.sort(LINE)[RAW].to_list())
        self._out.write(buffer.getvalue().encode(self._encoding))
        self.rows += rows.height

    def close(self) -> Path | None:
        if self._out is None:
            return None
        self._out.close()
        return self.path


def _detect_encoding(path: Path, setting: str) -> tuple[str, bool, int, LineEnds]:
    """(codec, has BOM, physical line count, line ends). Strict UTF-8 unless the file or setting says otherwise."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    feeds = lone_crs = 0
    offset = 0
    bom = False
    legacy_bytes = False
    last = b""
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            if offset == 0:
                bom = chunk.startswith(codecs.BOM_UTF8)
            feeds += chunk.count(b"\n")
            # A CR not followed by LF (a CRLF may straddle two chunks).
            lone_crs += chunk.count(b"\r") - chunk.count(b"\r\n") - (last.endswith(b"\r") and chunk.startswith(b"\n"))
            if not legacy_bytes:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    legacy_bytes = True
                    position = offset + exc.start
                    if setting == "utf-8":
                        raise FileProblem(_not_utf8(path, position, chunk[exc.start])) from None
            offset += len(chunk)
            last = chunk
    ends = LineEnds("\r") if lone_crs and not feeds else LF
    lines = lone_crs if ends.end == "\r" else feeds
    if offset and not last.endswith(ends.end.encode()):
        lines += 1
    if not legacy_bytes:
        pending = decoder.getstate()[0]
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            legacy_bytes = True
            if setting == "utf-8":
                raise FileProblem(_cut_utf8(path, offset - len(pending), pending)) from None
    if setting != "auto":
        codec = setting
    elif not legacy_bytes:
        codec = "utf-8"
    else:
        codec = "windows-1252" if _decodes(path, "windows-1252") else "iso-8859-1"
    return codec, bom and codec == "utf-8", lines, ends


def _decodes(path: Path, codec: str) -> bool:
    decoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        with path.open("rb") as data:
            while chunk := data.read(1 << 20):
                decoder.decode(chunk)
    except UnicodeDecodeError:
        return False
    return True


def _positions(positions: list[int]) -> str:
    return f"column{'s' if len(positions) > 1 else ''} {', '.join(str(p) for p in positions)}"


def _required(names: list[str]) -> str:
    """The spec's required columns named (safe to quote): "required column 'a'", "required columns 'a', 'b'"."""
    return f"required column{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"


def _not_utf8(path: Path, position: int, byte: int) -> str:
    return f"{_where(path, position)}: 0x{byte:02X} is not valid UTF-8; if the file is in a legacy encoding {_LEGACY}"


def _cut_utf8(path: Path, position: int, pending: bytes) -> str:
    """The file ends inside a character: `pending`, the bytes of it found, at `position`."""
    lead = pending[0]
    size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    found = " ".join(f"0x{byte:02X}" for byte in pending)
    return (
        f"{_where(path, position)}: the file ends inside a UTF-8 character ({found}: {len(pending)} of its {size} "
        f"bytes); was it cut short? If the file is in a legacy encoding {_LEGACY}"
    )


_LEGACY = 'set files.encoding to "windows-1252" or "iso-8859-1" (or "auto")'


def _where(path: Path, position: int) -> str:
    """Where a byte offset of the file is: "name line N, byte B"."""
    with path.open("rb") as data:
        head = data.read(position)
    line = head.count(b"\n") + 1
    column = position - (head.rfind(b"\n") + 1) + 1
    return f"{escaped(path.name)} line {line}, byte {column}"


def _choose_separator(name: str, first: str | None, setting: str, headerless: bool) -> str:
    counts = {sep: (first or "").count(sep) for sep in SEPARATORS}
    if setting == "auto":
        best = max(SEPARATORS, key=lambda sep: counts[sep])
        return best if counts[best] else ";"
    if headerless or first is None or counts[setting]:
        return setting
    others = [sep for sep in SEPARATORS if counts[sep]]
    if others:
        raise FileProblem(
            f"{name} line 1: the header is separated by {SEPARATOR_NAMES[others[0]]}, but files.separator "
            f'is {SEPARATOR_NAMES[setting]}; set files.separator to match the file, or to "auto"'
        )
    return setting
