"""Reading a command file: encoding, separator, header, then records streamed as polars batches.

Records are parsed by the stdlib csv module (RFC 4180 quoting, exact physical line numbers) and
handed on in columnar polars batches. Each batch also carries every record's raw text, so that a
tryback can hold the failing rows exactly as they were written.

A record with more values than the header fails its row. One with fewer fails it too, except in the files whose
reader in tool_sync takes such rows (ColumnSpec.short_rows: users, enrolments, groups) while files.short_rows is
"accept": there the missing trailing cells are read as empty, and describe() (the report's heading) names the lines.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import polars as pl

from toolsync_tui.config import FileSettings
from toolsync_tui.engine.datadir.store import private_file
from toolsync_tui.engine.rows import LINE, PROBLEM, RAW

SEPARATORS = (";", ",", "\t")
SEPARATOR_NAMES = {";": "';'", ",": "','", "\t": "TAB"}
SHOWN_LINES = 5  # the short rows a note lists by line
csv.field_size_limit(16 * 1024 * 1024)


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


@dataclass
class CommandFile:
    path: Path
    spec: ColumnSpec
    format: SourceFormat
    columns: list[str]  # the names each batch carries, in file order
    header_raw: str = ""  # the header record as written, for the tryback
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
            raise FileProblem(f"{path}: file not found")
        encoding, bom, lines = _detect_encoding(path, settings.encoding)
        prefixes = tuple(settings.comment_prefixes)
        source = cls(
            path=path,
            spec=spec,
            format=SourceFormat(encoding, ";", bom),
            columns=[],
            physical_lines=lines,
            comment_prefixes=prefixes,
        )
        first = source._first_record_line()
        separator = _choose_separator(path.name, first, settings.separator, spec.headerless is not None)
        source.format = SourceFormat(encoding, separator, bom)
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
        return self.path.open(encoding=codec, newline="")

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
                f"{self.name}: the file is empty; a header line is expected (columns: {self.spec.allowed_names()})"
            ) from None
        finally:
            records.close()
        if isinstance(names, str):
            raise FileProblem(f"{self.name} line {line}: the header cannot be read: {names}")
        self.header_raw = raw
        seen: dict[str, int] = {}
        for position, name in enumerate(names, start=1):
            name = name.strip()
            where = f"{self.name} line {line}, column {position}"
            if not name:
                raise FileProblem(f"{where}: empty column name (is there a trailing separator?)")
            if name in seen:
                raise FileProblem(f"{where}: column '{name}' appears twice (also column {seen[name]})")
            seen[name] = position
            if not self.spec.allows(name):
                if ignore_unknown:
                    self.ignored_columns.append(name)
                    continue
                raise FileProblem(f"{where}: unknown column '{name}'; allowed columns are {self.spec.allowed_names()}")
            self.columns.append(name)
            self._field_positions.append(position - 1)
        self.header_width = len(names)
        missing = [name for name in self.spec.required if name not in seen]
        if missing:
            raise FileProblem(
                f"{self.name} line {line}: required column "
                f"{', '.join(repr(m) for m in missing)} missing; the header has "
                f"{', '.join(repr(n.strip()) for n in names)}"
            )

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

    def _records(self) -> Generator[tuple[int, str, list[str] | str], None, None]:
        """(first physical line, raw text, fields) per record; fields is an error text if malformed.

        A line without quotes is split as it is (tool_sync's own rule, and most lines of most files);
        a record with a quote goes through the csv module, which may read on over further lines.
        """
        separator = self.format.separator
        with self._open_text() as text:
            feed = _LineFeed(text)
            reader = csv.reader(feed, delimiter=separator, quotechar='"', strict=True)
            for line in feed:
                if not line.strip() or line.startswith(self.comment_prefixes):
                    continue  # blank and comment lines between records
                start = feed.line_number
                if '"' not in line:
                    yield start, line if line.endswith("\n") else line + "\n", line.rstrip("\r\n").split(separator)
                    continue
                feed.replay(line)
                fields: list[str] | str
                try:
                    fields = next(reader)
                except csv.Error as exc:
                    fields = _quoting_problem(str(exc), start, feed.line_number)
                yield start, feed.take(), fields

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
        for line, raw, fields in records:
            problem: str | None = None
            if isinstance(fields, str):
                problem, fields = fields, []
            elif (len(fields) < needed and not self.accept_short_rows) or (width is not None and len(fields) > width):
                # A short row of a file that takes them has its missing trailing cells read as empty (below).
                problem = f"{len(fields)} values found, {needed} expected" + (
                    " (a separator inside a value must be quoted)" if len(fields) > needed else strict_by_setting
                )
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


class _LineFeed:
    """Physical lines with their numbers; what the csv reader reads for one record is kept as its raw text."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self.line_number = 0
        self._replay: str | None = None
        self._record: list[str] | None = None  # the lines of the quoted record being read, if any

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self._replay is not None:  # the first line of a quoted record, read already
            line, self._replay = self._replay, None
        else:
            line = next(self._text)
            self.line_number += 1
        if self._record is not None:
            self._record.append(line)
        return line

    def replay(self, line: str) -> None:
        """Start a quoted record with `line`, already read: the csv reader reads it again from here."""
        self._record = []
        self._replay = line

    def take(self) -> str:
        raw = "".join(self._record or ())
        self._record = None
        return raw if raw.endswith("\n") else raw + "\n"


def _quoting_problem(error: str, start: int, end: int) -> str:
    if "unexpected end of data" in error:
        return f"a quoted value opened on line {start} is not closed before the end of the file (lines {start}-{end})"
    return f"malformed quoting: {error} (quote a value that holds quotes, doubling the inner ones)"


def _detect_encoding(path: Path, setting: str) -> tuple[str, bool, int]:
    """(codec, has BOM, physical line count). Strict UTF-8 unless the file or setting says otherwise."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines = 0
    offset = 0
    bom = False
    legacy_bytes = False
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            if offset == 0:
                bom = chunk.startswith(codecs.BOM_UTF8)
            lines += chunk.count(b"\n")
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
        if offset and not last.endswith(b"\n"):
            lines += 1
    if not legacy_bytes:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            legacy_bytes = True
    if setting != "auto":
        codec = setting
    elif not legacy_bytes:
        codec = "utf-8"
    else:
        codec = "windows-1252" if _decodes(path, "windows-1252") else "iso-8859-1"
    return codec, bom and codec == "utf-8", lines


def _decodes(path: Path, codec: str) -> bool:
    decoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        with path.open("rb") as data:
            while chunk := data.read(1 << 20):
                decoder.decode(chunk)
    except UnicodeDecodeError:
        return False
    return True


def _not_utf8(path: Path, position: int, byte: int) -> str:
    with path.open("rb") as data:
        head = data.read(position)
    line = head.count(b"\n") + 1
    column = position - (head.rfind(b"\n") + 1) + 1
    return (
        f"{path.name} line {line}, byte {column}: 0x{byte:02X} is not valid UTF-8; if the file is "
        f'in a legacy encoding set files.encoding to "windows-1252" or "iso-8859-1" (or "auto")'
    )


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
