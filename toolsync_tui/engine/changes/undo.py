"""Undoing a run from its change journal (journal.py), as a new run with its own report and line in runs.jsonl.

The run's committed batches are reverted newest first, each batch's changes in the reverse of their order: created
rows removed, updated columns put back, deleted rows (enrolments, role assignments, memberships ...) inserted again
with their ids. A record changed since the run (its values now are not the ones the run left, its id or a unique
value of it is taken) is a conflict: reported with its table and key, and left as it is. The whole undo is one
transaction; a dry run does all of it and rolls it back, so it reports exactly what the real one would.

What is not undone: the standard log (the run happened, and the log says so), Moodle's cache markers (dirty flags,
cache revisions: marked forward here, as the families do after their writes), ended sessions; a run whose writes went
through Moodle's own PHP (deleting users or courses, resets, courses filled from templates) is refused before
anything is done (undo_refusal).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Column, MetaData, Table, delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui import __version__
from toolsync_tui.config import Config
from toolsync_tui.engine.changes.capture import THROUGH_MOODLE, norm, row_digests
from toolsync_tui.engine.changes.journal import (
    DELETE,
    INSERT,
    Batch,
    ChangeJournal,
    Entry,
    JournalProblem,
    journal_path,
)
from toolsync_tui.engine.connect import open_bridge
from toolsync_tui.engine.datadir.ledger import TABLE_KINDS, LedgerProblem, ledger_for_site
from toolsync_tui.engine.datadir.store import DataStore, timestamp
from toolsync_tui.engine.moodle.db_errors import describe
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway, chunks
from toolsync_tui.engine.moodle.groups import bump_cacherev
from toolsync_tui.engine.moodle.staleness import (
    DEFAULT_SESSION_TIMEOUT,
    EnrolmentEffects,
    mark_users_dirty,
    purge_after_run,
)
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, Outcome, OutcomeRow, count_outcomes
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN
from toolsync_tui.engine.run.lock import LockBusy, RunLock
from toolsync_tui.engine.run.log import KEEP, RunLog, RunRecord
from toolsync_tui.engine.run.pipeline import Progress, ProgressCallback, RunBusy, RunProblem, RunResult
from toolsync_tui.engine.run.report import RunReport

UNDO = "undo"  # the operation of an undo's line in runs.jsonl
LAST = "last"
MIN_PREFIX = 8  # hex digits of a run id that name it
# Tables whose rows name a user whose enrolments, roles or memberships the undo changes: flagged dirty (staleness.py).
USER_ROWS = ("user_enrolments", "role_assignments", "groups_members", "cohort_members")
# Rows that name a record (table -> (table, column) of the rows naming it): a record the run created that such a row
# names now is in use, and stays (its removal would leave them dangling).
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "user": (
        ("user_enrolments", "userid"),
        ("role_assignments", "userid"),
        ("groups_members", "userid"),
        ("cohort_members", "userid"),
    ),
    "enrol": (("user_enrolments", "enrolid"),),
    "groups": (("groups_members", "groupid"),),
    "cohort": (("cohort_members", "cohortid"),),
    "course": (("enrol", "courseid"), ("groups", "courseid"), ("course_modules", "course")),
    "context": (("role_assignments", "contextid"),),
    "course_categories": (("course", "category"),),
}


def find_run(data_dir: Path, run: str) -> tuple[RunRecord | None, str | None]:
    """The run `run` names (an id, a unique prefix of 8+ hex digits, or "last": the last run that wrote something),
    or why none."""
    wanted = run.strip().lower()
    records = [r for r in RunLog(data_dir).recent(KEEP) if r.run]
    if wanted == LAST:
        for record in records:
            if record.dry_run:
                continue
            wrote = record.counts.get(Outcome.DELETED, 0) or record.counts.get(Outcome.UPDATED, 0)
            if (record.operation == UNDO and wrote) or _journal(data_dir, record).exists():
                return record, None
        return None, "nothing to undo: no run on record has written anything"
    if not re.fullmatch(f"[0-9a-f]{{{MIN_PREFIX},32}}", wanted):
        return None, (
            f"'{run}' is not a run: give the run's id as runs.jsonl and History show it (or its first "
            f"{MIN_PREFIX} or more hex digits), or 'last'"
        )
    found = [r for r in records if r.run is not None and r.run.startswith(wanted)]
    if not found:
        return None, f"no run {wanted} in the run log"
    if len(found) > 1:
        return None, f"{wanted} is the start of {len(found)} runs' ids: give more of it"
    return found[0], None


def undo_refusal(data_dir: Path, run: str) -> str | None:
    """None when the run can be undone; else why not, in words."""
    record, why = find_run(data_dir, run)
    if record is None:
        return why
    return _refusal(data_dir, record)


def _journal(data_dir: Path, record: RunRecord) -> ChangeJournal:
    return ChangeJournal(journal_path(data_dir, record.run or ""))


def _refusal(data_dir: Path, record: RunRecord) -> str | None:
    short = (record.run or "")[:MIN_PREFIX]
    if record.operation == UNDO:
        return f"run {short} is an undo: an undo cannot be undone (run the command file again instead)"
    if record.dry_run:
        return f"run {short} was a dry run: it wrote nothing to undo"
    journal = _journal(data_dir, record)
    try:
        meta = journal.meta()
    except JournalProblem as exc:
        return str(exc)
    why = THROUGH_MOODLE.get(record.operation) or meta.get("irreversible")
    if why:
        return f"run {short} ({record.operation}, {record.file}) cannot be undone: {why}"
    if not journal.exists():
        return (
            f"run {short} ({record.operation}, {record.file}) has no record of its changes: it wrote nothing, or its "
            "record was removed with its reports (cron retention_days)"
        )
    if meta.get("undone_by"):
        return f"run {short} was already undone, by run {meta['undone_by'][:MIN_PREFIX]}"
    return None


async def undo_run(
    config: Config,
    gateway: MoodleGateway,
    run: str,
    *,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Revert run `run` (an id, a unique prefix of 8+ hex digits, or "last") as a new run; RunProblem when it cannot
    be undone (nothing done), RunBusy when another run holds the data directory."""
    store = DataStore(config.data_dir)
    try:
        store.ensure(group_readable=config.settings.files.group_readable)
        with RunLock(config.data_dir, UNDO):
            record, why = find_run(config.data_dir, run)
            why = why if record is None else _refusal(config.data_dir, record)
            if record is None or why is not None:
                raise RunProblem(why or "nothing to undo")
            log = RunLog(config.data_dir)
            log.close_unfinished()  # as a run does: an earlier run killed without its last line gets it now
            first = RunRecord(UNDO, f"run {record.run}", datetime.now().isoformat(timespec="seconds"), dry_run=dry_run)
            journal = log.begin(first)
            undo = _Undo(config, gateway, store, record, dry_run, on_progress, cancel)
            try:
                result = await undo.execute(journal.record.run or "")
            except (DatabaseError, JournalProblem, LedgerProblem, SQLAlchemyError, OSError) as exc:
                problem = describe(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
                journal.end(replace(first, exit_code=EXIT_CANNOT_RUN, problem=f"the undo was rolled back: {problem}"))
                raise RunProblem(f"undo of run {first.file}: {problem}; nothing was undone") from None
            journal.end(
                replace(
                    first,
                    duration=round(result.duration, 3),
                    rows=result.rows,
                    counts=result.counts,
                    cancelled=result.cancelled,
                    report=str(result.report_path) if result.report_path else None,
                    exit_code=result.exit_code,
                )
            )
    except LockBusy as exc:
        raise RunBusy(str(exc)) from None
    return result


@dataclass
class _Undo:
    config: Config
    gateway: MoodleGateway
    store: DataStore
    record: RunRecord
    dry_run: bool
    on_progress: ProgressCallback | None
    cancel: threading.Event | None
    outcomes: list[OutcomeRow] = field(default_factory=list)
    removed: dict[str, list[int]] = field(default_factory=dict)  # created rows removed, per table
    users: set[int] = field(default_factory=set)  # whose enrolments, roles or memberships changed
    notes: list[str] = field(default_factory=list)
    by_id: dict[str, list[int]] = field(default_factory=dict)  # rows of USER_ROWS (or users) by id, to find the user
    courses: set[int] = field(default_factory=set)  # courses whose own row it writes: their cache revision goes up
    # (table, id) of the rows the run created: their updates by the run are put back silently, before their removal
    created: set[tuple[str, Any]] = field(default_factory=set)

    @property
    def prefix(self) -> str:
        return self.gateway.schema.prefix

    async def execute(self, undo_id: str) -> RunResult:
        clock = time.monotonic()
        assert self.record.run is not None
        journal = ChangeJournal(journal_path(self.config.data_dir, self.record.run))
        ledger = await ledger_for_site(self.config.data_dir, self.gateway)
        site = journal.meta().get("site")
        if site and site != ledger.site:
            raise DatabaseError(f"run {self.record.run[:MIN_PREFIX]} wrote to another site ({site}), not this one")
        batches = journal.batches()
        self.created = {(e.table, norm(r[0])) for b in batches for e in b.entries if e.kind == INSERT for r in e.rows}
        total = sum(len(entry.rows) for batch in batches for entry in batch.entries)
        cancelled = False
        async with self.gateway.engine.connect() as conn:
            transaction = await conn.begin()
            try:
                for batch in reversed(batches):
                    if not batch.committed and not await self._was_committed(conn, batch):
                        self.notes.append(f"batch {batch.number} of the run was never committed: nothing of it to undo")
                        continue
                    for entry in reversed(batch.entries):
                        if self.cancel is not None and self.cancel.is_set():
                            cancelled = True
                            break
                        await self._revert(conn, entry)
                        self._progress(total, clock)
                    if cancelled:
                        break
                if not cancelled:
                    await self._mark_dirty(conn)
                    await bump_cacherev(self.gateway, conn, sorted(self.courses), int(time.time()))
                if self.dry_run or cancelled:
                    await transaction.rollback()
                else:
                    await transaction.commit()
            except BaseException:
                await transaction.rollback()
                raise
        if cancelled:
            self.notes.append("the undo was cancelled: nothing was undone (it was rolled back)")
        elif not self.dry_run:
            journal.set_meta("undone_by", undo_id)
            for name, ids in self.removed.items():
                if name in TABLE_KINDS:
                    ledger.forget(TABLE_KINDS[name], ids)
            self.notes += await self._purge()
        self.notes.append(
            "not undone: the standard log keeps the run's events; caches were marked to be rebuilt, not put back"
        )
        return self._result(clock, cancelled)

    # -- what a batch did, and its reversal ---------------------------------------------------------------------

    async def _was_committed(self, conn: AsyncConnection, batch: Batch) -> bool:
        """A batch whose commit was never confirmed (a kill between the journal's write and the mark): Moodle's rows
        say whether it happened. Ids are never handed out twice, so a created row that exists is the batch's."""
        for entry in batch.entries:
            current = await self._current(conn, entry)
            if entry.kind == INSERT:
                return bool(current)
            if entry.kind == DELETE:
                return len(current) < len(entry.rows)
            width = len(entry.columns) - 1
            for row in entry.rows:
                now = current.get(norm(row[0]))
                before, after = row[1 : 1 + width], row[1 + width :]
                if now is not None and _same(after, now) and not _same(before, after):
                    return True
        return False

    async def _current(self, conn: AsyncConnection, entry: Entry) -> dict[Any, list[Any]]:
        """The entry's records as they are now, by key: the entry's columns (all of them for a deleted row)."""
        target = self._table(entry, entry.columns)
        key = target.c[entry.key]
        at = entry.columns.index(entry.key)  # where the key is in a row now
        given = 0 if entry.kind != DELETE else at  # and in a recorded row (an insert's: [id, digest])
        found: dict[Any, list[Any]] = {}
        for part in chunks([row[given] for row in entry.rows]):
            query = select(*target.c).where(key.in_(list(part)))
            for row in await conn.execute(query):
                found[norm(row[at])] = list(row)
        return found

    def _table(self, entry: Entry | str, columns: Sequence[str]) -> Table:
        """The table with these columns, typed as the schema declares them: asyncpg sends a value as its column's
        type wants it (the journal's '8' is no bigint to PostgreSQL), and the bulk helpers pick their arrays' types
        from the columns. A table or column the schema does not declare stays untyped (MariaDB converts itself)."""
        name = entry if isinstance(entry, str) else entry.table
        declared = self.gateway.schema.metadata.tables.get(self.prefix + name)

        def typed(column: str) -> Column[Any]:
            if declared is None or column not in declared.c:
                return Column(column)
            return Column(column, declared.c[column].type)

        return Table(self.prefix + name, MetaData(), *(typed(column) for column in columns))

    async def _revert(self, conn: AsyncConnection, entry: Entry) -> None:
        if entry.kind == INSERT:
            await self._remove_created(conn, entry)
        elif entry.kind == DELETE:
            await self._reinsert(conn, entry)
        else:
            await self._restore(conn, entry)

    async def _remove_created(self, conn: AsyncConnection, entry: Entry) -> None:
        ids = [int(row[0]) for row in entry.rows]
        current = await row_digests(self.gateway, conn, entry.table, entry.columns, ids)
        used = await self._in_use(conn, entry.table, ids)
        gone: list[int] = []
        for row in entry.rows:
            key = self._key(entry, row[0])
            now = current.get(int(row[0]))
            if now is None:
                self._outcome(Outcome.UNCHANGED, "remove", key, "created by the run, already removed since")
            elif now != row[1]:
                self._outcome(Outcome.FAILED, "remove", key, "conflict: changed since the run; left as it is")
            elif int(row[0]) in used:
                words = f"conflict: in use since the run ({used[int(row[0])]}); left as it is"
                self._outcome(Outcome.FAILED, "remove", key, words)
            else:
                gone.append(int(row[0]))
                self._outcome(Outcome.DELETED, "remove", key, "created by the run: removed")
        if entry.table in USER_ROWS and gone:  # their users' caches go stale (_mark_dirty): read while they exist
            found = await self.gateway.fetch_in(conn, self._table(entry, ["id", "userid"]), "id", gone, ["userid"])
            self.users.update(int(u) for u in found["userid"].to_list())
        target = self._table(entry, ["id"])
        for part in chunks(gone):
            await conn.execute(delete(target).where(target.c.id.in_(list(part))))
        self.removed.setdefault(entry.table, []).extend(gone)

    async def _in_use(self, conn: AsyncConnection, name: str, ids: list[int]) -> dict[int, str]:
        """Of the run's new records `ids`, those that rows made since name (a later run's enrolment of a new user,
        Moodle's cohort or meta sync through a new enrolment method): id -> which rows. The run's own such rows are
        removed before (newest first), so any left are another's."""
        found: dict[int, str] = {}
        for other, column_name in REFERENCES.get(name, ()):
            target = self._table(other, [column_name])
            ref = target.c[column_name]
            for part in chunks(ids):
                query = select(ref, func.count()).where(ref.in_(list(part))).group_by(ref)
                for record, count in await conn.execute(query):
                    found.setdefault(int(record), f"{count} {other} {'rows name' if count > 1 else 'row names'} it")
        return found

    async def _restore(self, conn: AsyncConnection, entry: Entry) -> None:
        columns = entry.columns[1:]
        width = len(columns)
        current = await self._current(conn, entry)
        restores: list[tuple[str, dict[str, Any]]] = []
        words: dict[str, str] = {}
        quiet = {
            self._key(entry, r[0])
            for r in entry.rows
            if entry.key == "id" and (entry.table, norm(r[0])) in self.created
        }
        for row in entry.rows:
            key = self._key(entry, row[0])
            before, after = row[1 : 1 + width], row[1 + width :]
            now = current.get(norm(row[0]))
            if now is None:
                self._outcome(Outcome.FAILED, "restore", key, "conflict: removed since the run; left as it is")
            elif _same(before, now[1:]):
                self._outcome(Outcome.UNCHANGED, "restore", key, "already as before the run")
            elif not _same(after, now[1:]):
                changed = _changed(columns, after, now[1:])
                self._outcome(
                    Outcome.FAILED, "restore", key, f"conflict: changed since the run ({changed}); left as it is"
                )
            else:
                values = dict(zip(columns, before, strict=True))
                restores.append((key, {entry.key: row[0], **values}))
                words[key] = "restored: " + _changed(columns, before, after, "")
                self._touched(entry, row)
        for key, failed in await self._write_all(conn, entry, restores, update=True):
            if failed is None and key in quiet:
                continue  # a row the run created, put back as created: its removal is what the report says
            word = words[key] if failed is None else f"conflict: {failed}; left as it is"
            self._outcome(Outcome.UPDATED if failed is None else Outcome.FAILED, "restore", key, word)

    async def _reinsert(self, conn: AsyncConnection, entry: Entry) -> None:
        current = await self._current(conn, entry)
        ids = entry.columns.index("id")
        rows: list[tuple[str, dict[str, Any]]] = []
        for row in entry.rows:
            key = self._key(entry, row[ids], "id")
            now = current.get(norm(row[ids]))
            if now is None:
                rows.append((key, dict(zip(entry.columns, row, strict=True))))
                self._touched(entry, row)
            elif _same(row, now):
                self._outcome(Outcome.UNCHANGED, "reinsert", key, "removed by the run, already back")
            else:
                self._outcome(
                    Outcome.FAILED, "reinsert", key, "conflict: its id is taken by another record; left alone"
                )
        for key, failed in await self._write_all(conn, entry, rows, update=False):
            word = "removed by the run: put back" if failed is None else f"conflict: {failed}; left as it was"
            self._outcome(Outcome.UPDATED if failed is None else Outcome.FAILED, "reinsert", key, word)

    async def _write_all(
        self, conn: AsyncConnection, entry: Entry, rows: list[tuple[str, dict[str, Any]]], *, update: bool
    ) -> list[tuple[str, str | None]]:
        """Write `rows` (updates by the entry's key, or inserts), all at once; when a unique value is taken, each on
        its own, the refused ones reported (None: written)."""
        if not rows:
            return []
        target = self._table(entry, list(rows[0][1]))
        values = [row for _, row in rows]

        async def write(part: list[dict[str, Any]]) -> None:
            if update:
                await self.gateway.update_many(conn, target, entry.key, part)
            else:
                await self.gateway.insert_many(conn, target, part)

        try:
            async with _savepoint(conn, self.gateway):
                await write(values)
            return [(key, None) for key, _ in rows]
        except IntegrityError:
            pass
        results: list[tuple[str, str | None]] = []
        for key, row in rows:
            try:
                async with _savepoint(conn, self.gateway):
                    await write([row])
                results.append((key, None))
            except IntegrityError:
                results.append((key, "a unique value of it is taken by another record now"))
        return results

    # -- around the writes --------------------------------------------------------------------------------------

    def _key(self, entry: Entry, value: Any, key: str | None = None) -> str:
        return f"{entry.table} {key or entry.key} {value}"

    def _outcome(self, outcome: Outcome, action: str, key: str, message: str) -> None:
        self.outcomes.append((len(self.outcomes) + 1, None, outcome.value, action, key, f"{key}: {message}"))

    def _touched(self, entry: Entry, row: Sequence[Any]) -> None:
        """A row (in the entry's columns) the undo writes: its user's caches are marked stale (_mark_dirty), its
        course's cached settings rebuilt (update_course() bumps cacherev as well)."""
        if entry.table == "course" and entry.key == "id":
            self.courses.add(int(row[entry.columns.index("id")]))
        elif entry.table in USER_ROWS and "userid" in entry.columns:
            self.users.add(int(row[entry.columns.index("userid")]))
        elif (entry.table in USER_ROWS or entry.table == "user") and entry.key == "id":
            self.by_id.setdefault(entry.table, []).append(int(row[entry.columns.index("id")]))

    async def _mark_dirty(self, conn: AsyncConnection) -> None:
        """As the families do after their writes: users whose enrolments, roles or memberships changed are flagged
        dirty, so that their sessions reload them (staleness.py)."""
        for name, ids in self.by_id.items():
            if name == "user":
                self.users.update(ids)
                continue
            found = await self.gateway.fetch_in(conn, self._table(name, ["id", "userid"]), "id", ids, ["userid"])
            self.users.update(int(u) for u in found["userid"].to_list())
        if not self.users:
            return
        timeout = (await self.gateway.config_values(["sessiontimeout"])).get("sessiontimeout", "")
        seconds = int(timeout) if timeout.strip().isdigit() else DEFAULT_SESSION_TIMEOUT
        await mark_users_dirty(self.gateway, conn, self.users, int(time.time()), seconds)

    async def _purge(self) -> list[str]:
        if not self.users:
            return []
        link = await open_bridge(self.config)
        return await purge_after_run(
            link.working(), EnrolmentEffects(dirty_users=set(self.users), group_users=set(self.users))
        )

    def _progress(self, total: int, clock: float) -> None:
        if self.on_progress is None:
            return
        elapsed = time.monotonic() - clock
        done = len(self.outcomes)
        counts = {o: sum(1 for row in self.outcomes if row[2] == o) for o in ("deleted", "updated", "failed")}
        self.on_progress(Progress(UNDO, done, total, counts, done / elapsed if elapsed > 0 else 0.0, 1, elapsed))

    def _result(self, clock: float, cancelled: bool) -> RunResult:
        outcomes = pl.DataFrame(self.outcomes, schema=OUTCOME_SCHEMA, orient="row")
        counts = count_outcomes(outcomes)
        source = Path(f"run-{(self.record.run or '')[:MIN_PREFIX]}")
        result = RunResult(
            UNDO,
            source,
            self.dry_run,
            counts,
            outcomes.height,
            time.monotonic() - clock,
            cancelled=cancelled,
            notes=self.notes,
        )
        if self.config.settings.files.report:
            stamp = timestamp(datetime.now())
            text_path, table_path = self.store.report_paths(stamp, UNDO, source, self.dry_run)
            mode = " (DRY RUN: nothing was written)" if self.dry_run else ""
            heading = [
                f"toolsync {__version__}: undo of a run{mode}",
                f"run: {self.record.run} ({self.record.operation}, {self.record.file}, started {self.record.started})",
                f"site: {self.gateway.label}",
                f"started: {datetime.now():%Y-%m-%d %H:%M:%S}",
            ]
            report = RunReport(text_path, table_path, heading)
            report.add(outcomes)
            report.close([result.verdict.summary(), *self.notes])
            result.report_path, result.table_path = text_path, table_path
        return result


class _savepoint:
    """A SAVEPOINT on MariaDB and PostgreSQL (a refused statement rolled back alone; PostgreSQL would abort the whole
    transaction); SQLite rolls a refused statement back by itself."""

    def __init__(self, conn: AsyncConnection, gateway: MoodleGateway) -> None:
        self.conn = conn
        self.nested = gateway.kind != "sqlite"
        self.point: Any = None

    async def __aenter__(self) -> None:
        if self.nested:
            self.point = await self.conn.begin_nested()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        if self.point is None:
            return
        if kind is None:
            await self.point.commit()
        else:
            await self.point.rollback()


def _same(recorded: Sequence[Any], now: Sequence[Any]) -> bool:
    return [norm(v) for v in recorded] == [norm(v) for v in now]


def _changed(columns: Sequence[str], recorded: Sequence[Any], now: Sequence[Any], said: str = " changed") -> str:
    """The columns whose values differ (names only: a value may be a password's hash)."""
    return ", ".join(c for c, a, b in zip(columns, recorded, now, strict=True) if norm(a) != norm(b)) + said
