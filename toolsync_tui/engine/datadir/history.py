"""What runs left behind in the data directory: reports, trybacks and archived command files, newest first.

Pure functions, no interface: the history screen and the report viewer show what these return. The files' names
are read with store.StoredName, which also writes them.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DRY_RUN_MARK, DataStore, StoredName
from toolsync_tui.engine.datadir.store import KINDS as KINDS
from toolsync_tui.engine.datadir.store import Kind as Kind
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, counts_text
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.exits import EXIT_HELD
from toolsync_tui.engine.run.log import KEEP, RunLog
from toolsync_tui.engine.run.preview import count_rows
from toolsync_tui.engine.run.report import as_written

# A text view reads this much of a file at most: a million-line report must not reach a widget whole.
HEAD_BYTES = 2_000_000
TAIL_BYTES = 64_000
LINE_CHARS = 1_000  # a line longer than this (a binary file, a huge cell) is cut


class HistoryProblem(Exception):
    """A file of the history cannot be read or used; the message says which and why."""


@dataclass(frozen=True)
class HistoryEntry:
    kind: Kind
    path: Path  # a report's text (or its table when the text is gone), a tryback, an archived file
    size: int  # a report's text and table together
    modified: datetime
    operation: str | None = None  # None: no operation's file name matches
    twin: Path | None = None  # a report's CSV table, deleted with it
    dry_run: bool = False
    source: str = ""  # the command file the run read (a report's stem when the run log no longer says its name)

    @property
    def shown(self) -> str:
        """The name a list shows: the command file's, short (the kind, operation and age have their columns)."""
        return self.source or self.name

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path,) if self.twin is None else (self.path, self.twin)


@dataclass
class Deletion:
    removed: list[Path] = field(default_factory=list)
    freed: int = 0  # bytes
    problems: list[str] = field(default_factory=list)


# -- which operation a file belongs to -----------------------------------------------------------


def operation_of_report(name: str) -> str | None:
    return _report_operation(StoredName.parse("report", name))


UNDO = "undo"  # the reports of undos (engine/changes/undo.py) name this operation


def _report_operation(name: StoredName | None) -> str | None:
    if name is None or (name.operation not in OPERATIONS and name.operation != UNDO):
        return None
    return name.operation


def operation_of_file(config: Config, name: str) -> str | None:
    """The operation whose preselected file `name` comes from: a tryback's or a command file's name, matched by its
    stem (before `_tryback_`) against each operation's `file` setting; picture archives by their name prefix. None
    when no operation, or more than one, matches: a run must not guess."""
    return _operation_by_rules(_file_rules(config), name)


def operation_of_stored(config: Config, path: Path) -> str | None:
    """The operation a report, tryback or archived file of the data directory belongs to (see Owners)."""
    stored = StoredName.of(path)
    if stored is None:
        return Owners.read(config).of_command_file(path.name)
    return Owners.read(config).of(stored)


# (operation, the setting's stem or, for operations of many inputs, its name prefix, that inputs' suffix or None)
FileRule = tuple[str, str, str | None]
RunKey = tuple[str, str]  # (a run's stamp, the stem of the command file it read): what its three files share


@dataclass(frozen=True)
class Owners:
    """Which operation each file of the history belongs to, whatever the `file` settings say today: a run's report,
    tryback and archived file share its stamp and its command file's name, and its report (or the run log's record of
    it) names the operation. A file without such a link falls back on the file names the run log saw each operation
    run, then on today's settings (a file put there by hand, a run older than the log)."""

    runs: dict[RunKey, set[str]]  # from the reports' names and the run log's records of them
    logged: dict[str, set[str]]  # command file name -> the operations the run log saw running it
    rules: list[FileRule]
    read_by: dict[str, str] = field(default_factory=dict)  # report name -> the command file's name (run log)

    @classmethod
    def read(cls, config: Config, report_names: Iterable[str] | None = None) -> Owners:
        """`report_names`: the names in reports/ when the caller has listed them already."""
        if report_names is None:
            report_names = [path.name for path, _ in _files(DataStore(config.data_dir).reports)]
        runs: dict[RunKey, set[str]] = {}
        logged: dict[str, set[str]] = {}
        read_by: dict[str, str] = {}
        for record in RunLog(config.data_dir).recent(KEEP):
            if record.operation not in OPERATIONS:
                continue
            logged.setdefault(record.file, set()).add(record.operation)
            if record.report:
                read_by[Path(record.report).name] = record.file
        report_names = [*report_names, *read_by]
        for name in report_names:
            report = StoredName.parse("report", name)
            if (operation := _report_operation(report)) is not None and report is not None:
                for stem in _report_stems(name, report):
                    runs.setdefault((report.stamp, stem), set()).add(operation)
        return cls(runs, logged, _file_rules(config), read_by)

    def of(self, stored: StoredName) -> str | None:
        if stored.kind == "report":
            return _report_operation(stored)
        linked = self.runs.get((stored.stamp, os.path.splitext(stored.source)[0]), set())
        if len(linked) == 1:
            return next(iter(linked))
        return self.of_command_file(stored.source)

    def of_command_file(self, name: str) -> str | None:
        """The operation of a command file's name: a tryback's (or an archived tryback's) by the run that made it."""
        tryback = StoredName.parse("tryback", name)
        if tryback is not None:  # the run that wrote it, or else the command file it holds rows of
            return self.of(tryback)
        logged = self.logged.get(name, set())
        if len(logged) == 1:
            return next(iter(logged))
        return _operation_by_rules(self.rules, name)


def _report_stems(name: str, report: StoredName) -> set[str]:
    """The command file stems a report's name may stand for: StoredName takes a final -<digits> for the mark of a
    name taken in the same second, but it may be the file's own (courses_tryback_20260104-080000: a tryback's)."""
    whole = os.path.splitext(name)[0].removeprefix(f"{report.stamp}_{report.operation}_")
    return {report.source, whole.removesuffix(DRY_RUN_MARK) if report.dry_run else whole}


def _file_rules(config: Config) -> list[FileRule]:
    rules = []
    for info in OPERATIONS.values():
        setting = Path(config.operation(info.name).file)
        suffix = info.implementation.inputs_suffix
        if setting.name:
            rules.append((info.name, setting.stem if suffix is None else setting.name, suffix))
    return rules


def _operation_by_rules(rules: list[FileRule], name: str) -> str | None:
    tryback = StoredName.parse("tryback", name)
    if tryback is not None:  # the command file it holds rows of (a tryback's tryback: back to the first file)
        return _operation_by_rules(rules, tryback.source)
    stem, suffix = os.path.splitext(name)  # not Path: called for every file of the history
    found = [rule[0] for rule in rules if _follows(rule, stem, suffix)]
    return found[0] if len(found) == 1 else None


def _follows(rule: FileRule, base: str, suffix: str) -> bool:
    _, start, inputs_suffix = rule
    if inputs_suffix is None:
        return base == start
    return base.startswith(start) and suffix == inputs_suffix  # userpictures_<anything>.zip


# -- listing ------------------------------------------------------------------------------------


def list_history(config: Config) -> list[HistoryEntry]:
    """Every report, tryback and archived file of the data directory, newest first."""
    store = DataStore(config.data_dir)
    reports = _files(store.reports)
    owners = Owners.read(config, [path.name for path, _ in reports])  # once: there may be tens of thousands of files
    entries = [
        *_reports(owners, reports),
        *(_plain(owners, "tryback", path, status) for path, status in _files(store.tryback)),
        *(_plain(owners, "archive", path, status) for path, status in _files(store.archive)),
    ]
    # A run's files share one time: its report comes first, then its tryback, then the file it archived.
    return sorted(entries, key=lambda entry: (entry.modified, -KINDS.index(entry.kind), entry.name), reverse=True)


def _files(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """The regular files of a folder (links included, judged by their own status); none when it cannot be read."""
    try:
        scanned = list(os.scandir(folder))
    except OSError:  # not created yet, or unreadable: nothing to list
        return []
    found = []
    for item in scanned:
        if item.name.startswith("."):  # temporary and lock files, not history
            continue
        try:
            status = item.stat(follow_symlinks=False)
        except OSError:  # removed meanwhile
            continue
        if not stat.S_ISDIR(status.st_mode):
            found.append((Path(item.path), status))
    return found


def _reports(owners: Owners, files: Iterable[tuple[Path, os.stat_result]]) -> list[HistoryEntry]:
    """One entry per report: its text with its CSV table as twin; a table alone (its text removed) stands alone."""
    by_path = dict(files)
    entries = []
    for path, status in by_path.items():
        twin = path.with_suffix(".csv") if path.suffix == ".txt" else None
        if path.suffix == ".csv" and path.with_suffix(".txt") in by_path:
            continue  # listed with its text
        twin_status = by_path.get(twin) if twin is not None else None
        name = StoredName.parse("report", path.name)
        entries.append(
            HistoryEntry(
                "report",
                path,
                status.st_size + (twin_status.st_size if twin_status else 0),
                datetime.fromtimestamp(status.st_mtime),
                _report_operation(name),
                twin if twin_status else None,
                name is not None and name.dry_run,
                owners.read_by.get(path.with_suffix(".txt").name) or (name.source if name is not None else ""),
            )
        )
    return entries


def _plain(owners: Owners, kind: Kind, path: Path, status: os.stat_result) -> HistoryEntry:
    stored = StoredName.parse(kind, path.name)
    operation = owners.of(stored) if stored is not None else owners.of_command_file(path.name)
    source = stored.source if stored is not None else ""
    return HistoryEntry(kind, path, status.st_size, datetime.fromtimestamp(status.st_mtime), operation, source=source)


def total_size(entries: Iterable[HistoryEntry]) -> int:
    return sum(entry.size for entry in entries)


def file_count(entries: Iterable[HistoryEntry]) -> int:
    return sum(len(entry.files) for entry in entries)


# -- the run log's word on a report ---------------------------------------------------------------


def report_counts(data_dir: Path) -> dict[str, dict[str, int]]:
    """Report file name -> the outcome counts the run log recorded for it (runs the log still keeps)."""
    found: dict[str, dict[str, int]] = {}
    for record in RunLog(data_dir).recent(KEEP):
        if record.report:
            found.setdefault(Path(record.report).name, record.counts)
    return found


def report_results(data_dir: Path) -> dict[str, str]:
    """Report file name -> what its run came to, in the run log's words: "500 created", and for a run stopped
    mid-way "500 created; interrupted (SIGINT)" (a killed run: as the log reads it, with what it had committed)."""
    found: dict[str, str] = {}
    for record in RunLog(data_dir).recent(KEEP):
        if record.report and (name := Path(record.report).name) not in found:
            words = counts_text(record.counts)
            if record.exit_code == EXIT_HELD:
                words = f"held for approval; {words} (dry run)" if words else "held for approval"
            elif record.interrupted or (record.problem and record.rows):
                stop = record.interrupted or "the run stopped"
                words = f"{words}; interrupted ({stop})" if words else f"interrupted ({stop})"
            found[name] = words
    return found


# -- deleting -------------------------------------------------------------------------------------


def deletable(store: DataStore, path: Path) -> bool:
    """Only a file directly in archive/, reports/ or tryback/: whatever a caller passes, nothing else is removed."""
    try:
        folder = path.parent.resolve()
        status = path.lstat()
    except OSError:
        return False
    allowed = {store.archive.resolve(), store.reports.resolve(), store.tryback.resolve()}
    return folder in allowed and not stat.S_ISDIR(status.st_mode)


def delete_entries(config: Config, entries: Sequence[HistoryEntry]) -> Deletion:
    """Remove the entries' files (a report with its table); a link is removed itself, never what it points to."""
    store = DataStore(config.data_dir)
    done = Deletion()
    for path in (path for entry in entries for path in entry.files):
        if not deletable(store, path):
            if path.exists() or path.is_symlink():
                done.problems.append(f"{path} is not in archive/, reports/ or tryback/: it was left alone")
            continue
        try:
            size = path.lstat().st_size
            path.unlink()
        except FileNotFoundError:  # removed meanwhile (retention, another session): nothing left to do
            continue
        except OSError as problem:
            done.problems.append(f"{path.name} could not be deleted ({problem.strerror or problem})")
            continue
        done.removed.append(path)
        done.freed += size
    return done


# -- trybacks -------------------------------------------------------------------------------------


def tryback_rows(config: Config, operation: str, path: Path) -> int:
    """How many rows (or, for picture archives, entries) a tryback would run; raises HistoryProblem."""
    try:
        return count_rows(config, operation, path)
    except (FileProblem, OSError) as problem:
        raise HistoryProblem(f"{path.name} cannot be read: {problem}") from None


# -- bounded views of a file ----------------------------------------------------------------------


@dataclass(frozen=True)
class TextView:
    head: list[str]
    tail: list[str] = field(default_factory=list)  # the file's last lines, when the head is not all of it
    complete: bool = True  # False: lines between the head and the tail are not shown


def text_view(path: Path, head_lines: int, tail_lines: int = 0) -> TextView:
    """The first `head_lines` lines of a text file and, when there is more, its last `tail_lines` lines (a report's
    summary is at its end). Reads a bounded number of bytes whatever the file's size; raises HistoryProblem."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = file.read(HEAD_BYTES)
            whole = size <= len(data)
            head = _lines(data, cut_end=not whole)
            if whole and len(head) <= head_lines:
                return TextView(head)
            if whole:
                tail = head[head_lines:]
            else:
                start = max(size - TAIL_BYTES, len(data))
                file.seek(start)
                tail = _lines(file.read(TAIL_BYTES), cut_start=start > len(data))
    except OSError as problem:
        raise HistoryProblem(f"{path.name} cannot be read ({problem.strerror or problem})") from None
    return TextView(head[:head_lines], tail[-tail_lines:] if tail_lines else [], complete=False)


def _lines(data: bytes, *, cut_start: bool = False, cut_end: bool = False) -> list[str]:
    # Cut at line ends before decoding: a read that began or ended mid-line may have split a character too.
    if cut_start:
        data = data[data.find(b"\n") + 1 :]
    if cut_end and b"\n" in data:
        data = data[: data.rfind(b"\n") + 1]
    return [line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…" for line in _decoded(data).splitlines()]


def _decoded(data: bytes) -> str:
    """UTF-8, as the engine writes; a command file in windows-1252 reads too."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("windows-1252", errors="replace")


@dataclass(frozen=True)
class ArchiveMember:
    name: str
    size: int


def zip_members(path: Path, limit: int) -> tuple[list[ArchiveMember], int]:
    """The first `limit` entries of a zip (a picture archive or its tryback) and how many it has in all."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [member for member in archive.infolist() if not member.is_dir()]
    except (OSError, zipfile.BadZipFile) as problem:
        raise HistoryProblem(f"{path.name} cannot be read as a zip archive: {problem}") from None
    return [ArchiveMember(member.filename, member.file_size) for member in members[:limit]], len(members)


# -- a report's outcome table ---------------------------------------------------------------------


def _scan(table: Path) -> pl.LazyFrame:
    return pl.scan_csv(table, schema=OUTCOME_SCHEMA).with_columns(as_written())


def outcome_totals(table: Path) -> dict[str, int]:
    """Outcome -> records of the table with it (detail rows included: they are rows of the table too)."""
    try:
        counted = _scan(table).group_by("outcome").len().collect()
    except (OSError, pl.exceptions.PolarsError) as problem:
        raise HistoryProblem(f"{table.name} cannot be read: {problem}") from None
    return {str(outcome): int(number) for outcome, number in counted.iter_rows()}


def outcome_page(table: Path, outcome: str | None, offset: int, limit: int, search: str = "") -> pl.DataFrame:
    """`limit` records of the table from `offset`, of one outcome or (None) of all, holding `search` (see
    `_chosen`): never the whole table."""
    try:
        return _chosen(table, outcome, search).slice(offset, limit).collect()
    except (OSError, pl.exceptions.PolarsError) as problem:
        raise HistoryProblem(f"{table.name} cannot be read: {problem}") from None


def outcome_count(table: Path, outcome: str | None, search: str = "") -> int:
    """How many records `outcome_page` chooses from."""
    try:
        return int(_chosen(table, outcome, search).select(pl.len()).collect().item())
    except (OSError, pl.exceptions.PolarsError) as problem:
        raise HistoryProblem(f"{table.name} cannot be read: {problem}") from None


def _chosen(table: Path, outcome: str | None, search: str) -> pl.LazyFrame:
    """The records of `outcome` (None: all) with `search` in any of their columns, whatever its case (the `/` rule
    of the lists, filter_input.admits): one polars scan of the CSV, not a loop over rows."""
    frame = _scan(table)
    if outcome is not None:
        frame = frame.filter(pl.col("outcome") == outcome)
    if words := search.strip().lower():
        columns = [pl.col(name).cast(pl.String) for name in OUTCOME_SCHEMA]
        every = pl.concat_str(columns, separator="\t", ignore_nulls=True)
        frame = frame.filter(every.str.to_lowercase().str.contains(words, literal=True))
    return frame
