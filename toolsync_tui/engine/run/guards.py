"""Source guards: a command file is refused before anything is written when it is most likely not the whole export
its sender meant (the incidents behind them: an upstream outage exporting nothing, a truncated transfer).

Refused, and held when the run may be held (stops.GuardStop; --force runs it), for an operation in snapshot mode (or
every operation with run.row_guards = "all"):
- a file with no data rows;
- a file with fewer data rows than run.guard_min_share of the operation's last applied file of the same name (the
  last real run of that feed that went through, as the run log has it: a file run by hand under another name is no
  part of the feed). A tryback (only some rows of a file) is not held to either.
Refused whatever is forced, never held: a broken delivery (stops.BrokenDelivery):
- a file that ends in the middle of a row: its last record has no line break and is cut (a quote never closed, or
  fewer values than the header);
- a trailer that does not match: the file's last non-blank line, a comment (files.comment_prefixes) that declares its
  data rows as `#rows: 12345`, names another count than the file has;
- a checksum that does not match: `<file>.sha256` beside the file, in sha256sum's format (`<64 hex digits>  <name>`).
  Picture archives are checked against theirs too (the only guard they have: each archive is a delta).

A dry run is never refused: its report says what a real run would meet.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import CHECKSUM
from toolsync_tui.engine.datadir.store import DataStore, StoredName
from toolsync_tui.engine.run.command_file import CommandFile
from toolsync_tui.engine.run.controls import escaped
from toolsync_tui.engine.run.exits import EXIT_HELD, EXIT_OK, EXIT_ROWS_FAILED
from toolsync_tui.engine.run.log import KEEP, RunLog, RunRecord
from toolsync_tui.engine.run.operation import Source
from toolsync_tui.engine.run.stops import BrokenDelivery, GuardStop
from toolsync_tui.engine.words import plural

TRAILER = re.compile(r"\s*rows\s*[:=]\s*(\d[\d,_]*)\s*", re.IGNORECASE)
CHECKSUM_LINE = re.compile(r"\\?([0-9a-fA-F]{64})(?:\s+\*?(.+))?")
TAIL_BYTES = 65_536  # the end of the file read for its trailer and its last line


class SourceGuard:
    """The guards of one run's input."""

    def __init__(self, config: Config, operation: str, path: Path, *, dry_run: bool) -> None:
        self.config = config
        self.operation = operation
        self.path = path
        self.dry_run = dry_run
        self.count: int | None = None  # the file's data rows, if a guard counted them (the next run's base)

    def delivery(self) -> list[str]:
        """Before the file is read: its checksum, when its sender put a .sha256 beside it. A dry run's notes."""
        return self._noted(self._checksum)

    def rows(self, source: Source, force: bool) -> list[str]:
        """Once the file is open: cut, trailer, then (unless forced) empty and short. A dry run's notes."""
        if not isinstance(source, CommandFile):
            return []
        return self._noted(lambda: self._rows(source, force))

    def archived(self, stamp: str) -> None:
        """After the file was moved to the archive: its .sha256 too (a checksum is for one delivery)."""
        checksum = self.path.with_name(self.path.name + CHECKSUM)
        if self.config.settings.files.archive == "move" and checksum.is_file():
            DataStore(self.config.data_dir).archive_file(checksum, stamp, "move")

    def _noted(self, check: Callable[[], None]) -> list[str]:
        try:
            check()
        except (GuardStop, BrokenDelivery) as refused:
            if not self.dry_run:
                raise
            return [f"a real run would refuse this file: {refused.reason}"]
        return []

    def _rows(self, source: CommandFile, force: bool) -> None:
        tail = _tail(source)

        def count() -> int:
            """The file's data rows, read only when a guard needs them (a read of the whole file, but for users)."""
            if self.count is None:
                self.count = source.count_records()
            return self.count

        self._cut(source, count, tail)
        self._trailer(source, count, tail)
        if force or is_tryback(self.path) or not self._rows_guarded():
            return
        name = source.shown_name
        if count() == 0:
            header = " (a header only)" if source.has_header else ""
            raise GuardStop(
                self.operation, f"{name} has no data rows{header}: an empty export usually means its source failed"
            )
        share = self.config.settings.run.guard_min_share
        last = last_applied(self.config.data_dir, self.operation, self.path.name)
        if share <= 0 or last is None:
            return
        base = last.file_rows if last.file_rows is not None else last.rows  # rows: a run that did not count them
        if count() < share * base:
            raise GuardStop(
                self.operation,
                f"{name} has {plural(count(), 'data row')}, fewer than {share:.0%} (run.guard_min_share) of the "
                f"{base:,} rows of the last applied file ({escaped(last.file)}, {last.started}): most likely "
                "a partial export",
            )

    def _rows_guarded(self) -> bool:
        """Whether the row count guards apply: in snapshot mode a missing row removes its record; an update file of
        today's changes may be short or empty (run.row_guards = "all" holds those to them too)."""
        if self.config.settings.run.row_guards == "all":
            return True
        settings = getattr(self.config.settings.operations, self.operation, None)
        return getattr(settings, "mode", "update") == "snapshot"

    def _cut(self, source: CommandFile, count: Callable[[], int], tail: list[str]) -> None:
        """A last record without its line break that is cut: a quote never closed, or fewer values than the header."""
        if not tail or source.format.ends.body(tail[-1]) != tail[-1]:
            return  # the file ends with a line break
        if not tail[-1].strip() or tail[-1].startswith(source.comment_prefixes):
            return  # it ends with a blank or a comment line (a trailer): no row is cut
        if count() == 0:
            return
        last = source.last_record()  # the run's own reading, to find where the last record starts
        if last is None:
            return
        line, _, fields = last
        width = source.header_width or len(source.spec.required)
        where = f"{source.shown_name} line {line}: the file ends in the middle of a row (no line break after it"
        if isinstance(fields, str) and "never closed" in fields:
            raise BrokenDelivery(self.operation, f"{where}, and a quote opened in it is never closed)")
        if not isinstance(fields, str) and len(fields) < width:
            raise BrokenDelivery(self.operation, f"{where}, and it has {len(fields)} of the header's {width} values)")

    def _trailer(self, source: CommandFile, count: Callable[[], int], tail: list[str]) -> None:
        """The sender's `#rows: N` on the last non-blank line, against the data rows the file has."""
        lines = [line for line in tail if line.strip()]
        if not lines:
            return
        last = source.format.ends.body(lines[-1])
        prefix = next((prefix for prefix in source.comment_prefixes if last.startswith(prefix)), None)
        found = TRAILER.fullmatch(last[len(prefix) :]) if prefix is not None else None
        if found is None:
            return
        declared = int(re.sub(r"[,_]", "", found[1]))
        if declared != count():
            blank_after = len(tail) - 1 - max(i for i, line in enumerate(tail) if line.strip())
            number = source.physical_lines - blank_after
            raise BrokenDelivery(
                self.operation,
                f"{source.shown_name} line {number}: its trailer declares {declared:,} data rows "
                f"({escaped(last.strip())}), but the file has {count():,}",
            )

    def _checksum(self) -> None:
        checksum = self.path.with_name(self.path.name + CHECKSUM)
        if not checksum.is_file():
            return
        name = escaped(self.path.name)
        try:
            lines = [line.strip() for line in checksum.read_text(encoding="utf-8", errors="replace").splitlines()]
        except OSError as exc:
            raise BrokenDelivery(self.operation, f"{checksum.name} cannot be read ({exc.strerror or exc})") from None
        entries = [CHECKSUM_LINE.fullmatch(line) for line in lines if line]
        if not entries or any(entry is None for entry in entries):
            raise BrokenDelivery(
                self.operation,
                f"{escaped(checksum.name)} is not in sha256sum's format (64 hexadecimal digits, two spaces, the "
                "file's name, on each line)",
            )
        mine = [entry for entry in entries if entry and (entry[2] is None or Path(entry[2]).name == self.path.name)]
        if not mine:
            raise BrokenDelivery(self.operation, f"{escaped(checksum.name)} has no checksum for {name}")
        expected = mine[0][1].lower()
        actual = _sha256(self.path)
        if actual != expected:
            raise BrokenDelivery(
                self.operation,
                f"{name}: its SHA-256 checksum ({actual[:16]}...) does not match {escaped(checksum.name)} "
                f"({expected[:16]}...): the file was cut or changed on its way",
            )


def is_tryback(path: Path) -> bool:
    """A tryback (or a held run's removals, named as one): only some rows of a file, never the whole export."""
    return path.parent.name == "tryback" or StoredName.parse("tryback", path.name) is not None


def last_applied(data_dir: Path, operation: str, name: str) -> RunRecord | None:
    """The operation's last real run of a file of that name (the same feed) that went through (a held run's, whose
    creates and updates went on, too)."""
    for record in RunLog(data_dir).recent(KEEP):
        if record.operation != operation or record.file != name or record.dry_run:
            continue
        if record.cancelled or record.interrupted:
            continue
        if record.exit_code in (EXIT_OK, EXIT_ROWS_FAILED) and not record.problem:
            return record
        if record.exit_code == EXIT_HELD and record.rows:
            return record
    return None


def _tail(source: CommandFile) -> list[str]:
    """The file's last physical lines (up to TAIL_BYTES), each with its line end; the first may be cut."""
    with source.path.open("rb") as data:
        size = data.seek(0, 2)
        data.seek(max(size - TAIL_BYTES, 0))
        text = data.read().decode(source.format.encoding, errors="replace")
    end = source.format.ends.end  # the file's own line end only (str.splitlines would split at U+2028 too)
    parts = text.split(end)
    lines = [part + end for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
