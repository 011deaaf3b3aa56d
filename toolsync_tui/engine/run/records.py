"""A command file's records: physical lines split into values, quoted values over several lines, broken quotes.

A line without quotes is split as it is (tool_sync's own rule, and most lines of most files). A value that starts
with a quote runs to the next quote that is not doubled, over further lines if need be (a description over several
lines); the closing quote must be followed by a separator or the line's end, or the row fails. A quoted value that
runs over lines but never closes into a record (the file ends, its closing quote is followed by other text, or the
record has the wrong number of values) fails its opening line alone, and reading resumes at the next line: one stray
quote cannot swallow the rest of a file, and every physical line belongs to exactly one record (or is blank, or a
comment).

Line ends are LF or CRLF; a file with no LF but lone CRs has CR line ends (classic Mac exports). A CR anywhere else
is no line end: inside a quoted value it is kept as written; in an unquoted value it fails the row, whole (a line
break in a value must be quoted; the row is never cut in two).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TextIO

# A record: (first physical line, raw text as written, values) or, when it cannot be read, the error text instead
# of the values.
Record = tuple[int, str, list[str] | str]
RESUMED = "; the lines after it are read as rows of their own"  # ends the problem of a broken quote over lines


@dataclass(frozen=True)
class LineEnds:
    """How a file's lines end: "\\n" (LF or CRLF) or "\\r"; `stray` is the other character, never a line end."""

    end: str = "\n"

    @property
    def stray(self) -> str:
        return "\r" if self.end == "\n" else "\n"

    def body(self, line: str) -> str:
        """`line` without its line end."""
        if self.end == "\n" and line.endswith("\r\n"):
            return line[:-2]
        return line[:-1] if line.endswith(self.end) else line

    def ended(self, raw: str) -> str:
        """`raw` with a line end (the file's last line may have none)."""
        return raw if raw.endswith(self.end) else raw + self.end


LF = LineEnds()


class _Lines:
    """Physical lines with their numbers; lines read ahead for a value that turned out broken can be put back."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self._back: deque[str] = deque()
        self.number = 0  # the number of the line handed out last

    def next(self) -> str | None:
        if self._back:
            line = self._back.popleft()
        else:
            line = self._text.readline()
            if not line:
                return None
        self.number += 1
        return line

    def put_back(self, lines: list[str]) -> None:
        self._back.extendleft(reversed(lines))
        self.number -= len(lines)


@dataclass(frozen=True)
class _Broken:
    """Why a quoted record could not be read: the index of the value, what went wrong."""

    column: int
    what: str  # "unclosed" (no closing quote before the end of the file), "stray" (a line break in an unquoted value)
    # or "junk" (other text after the closing quote)


def read_records(
    text: TextIO,
    separator: str,
    comment_prefixes: tuple[str, ...],
    ends: LineEnds,
    column_name: Callable[[int], str],
    fits: Callable[[int], bool],
) -> Generator[Record, None, None]:
    """The records of `text` (opened with `ends.end` as its only newline). `column_name(i)` names the i-th value in
    messages ("'lastname'" or "3"); `fits(n)` says whether a record of n values has the expected number."""
    lines = _Lines(text)
    next_line, end, stray = lines.next, ends.end, ends.stray
    while (line := next_line()) is not None:
        if not line.strip() or line.startswith(comment_prefixes):
            continue  # blank and comment lines between records
        start = lines.number
        if '"' not in line:  # most lines: kept lean (LineEnds.body and .ended, inlined)
            if line.endswith(end):
                body = line[:-2] if end == "\n" and line.endswith("\r\n") else line[:-1]
            else:
                body, line = line, line + end
            at = body.find(stray)
            yield (
                start,
                line,
                body.split(separator) if at < 0 else _stray_problem(body.count(separator, 0, at), ends, column_name),
            )
            continue
        parsed, taken, spanning = _quoted_record(line, lines, separator, ends)
        if len(taken) > 1 and (isinstance(parsed, _Broken) or not fits(len(parsed))):
            # A value over several lines that does not close into a record: the quote is broken where it opened.
            lines.put_back(taken[1:])
            problem = f"a quote opened in column {column_name(spanning)} is never closed"
            yield start, ends.ended(line), problem + RESUMED
        elif isinstance(parsed, _Broken) and parsed.what == "stray":
            yield start, ends.ended(line), _stray_problem(parsed.column, ends, column_name)
        elif isinstance(parsed, _Broken) and parsed.what == "unclosed":
            yield start, ends.ended(line), f"a quote opened in column {column_name(parsed.column)} is never closed"
        elif isinstance(parsed, _Broken):
            yield start, ends.ended(line), _junk_problem(parsed, column_name)
        else:
            yield start, ends.ended("".join(taken)), parsed


def _stray_problem(index: int, ends: LineEnds, column_name: Callable[[int], str]) -> str:
    """The problem of an unquoted value holding a line break that is not the file's own line end."""
    column = column_name(index)
    what = "a carriage return (CR)" if ends.stray == "\r" else "a line feed (LF), in a file whose lines end with CR,"
    return f"column {column} holds {what} inside an unquoted value; a line break in a value must be quoted"


def _quoted_record(
    first: str, lines: _Lines, separator: str, ends: LineEnds
) -> tuple[list[str] | _Broken, list[str], int]:
    """The values of the record starting with `first` (a line with a quote), the physical lines it took, and the
    index of the value that ran over the first line's end (if one did)."""
    taken = [first]
    spanning = 0
    text = first
    body_end = len(ends.body(text))  # where the last line's end starts: unquoted values stop there
    stray = ends.stray
    values: list[str] = []
    position = 0
    while True:
        if text.startswith('"', position):
            search = position + 1
            while True:
                close = text.find('"', search)
                if close < 0:
                    more = lines.next()
                    if more is None:
                        return _Broken(len(values), "unclosed"), taken, spanning
                    if len(taken) == 1:
                        spanning = len(values)
                    taken.append(more)
                    search = len(text)
                    text += more
                    body_end = search + len(ends.body(more))
                elif text.startswith('"', close + 1):
                    search = close + 2  # a doubled quote: one quote of the value
                else:
                    break
            values.append(text[position + 1 : close].replace('""', '"'))
            after = close + 1
            if text.startswith(separator, after):
                position = after + len(separator)
                continue
            if after >= body_end:
                return values, taken, spanning
            return _Broken(len(values) - 1, "junk"), taken, spanning
        found = text.find(separator, position, body_end)
        value = text[position : body_end if found < 0 else found]
        if stray in value:
            return _Broken(len(values), "stray"), taken, spanning
        values.append(value)
        if found < 0:
            return values, taken, spanning
        position = found + len(separator)


def _junk_problem(broken: _Broken, column_name: Callable[[int], str]) -> str:
    # The text after the quote is not shown: the column may be a password.
    return (
        f"malformed quoting in column {column_name(broken.column)}: the closing quote is followed by other text, "
        'not by a separator or the end of the line (double a quote inside a quoted value: "")'
    )
