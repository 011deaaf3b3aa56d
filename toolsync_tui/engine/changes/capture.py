"""Recording a real run's writes, batch by batch, for its undo (journal.py) and the ownership ledger.

The pipeline opens a BatchCapture on each write transaction's connection (moodle/recording.py's registry): the
gateway's helpers and the other write statements tell it what they write, it reads what undo needs in the same
transaction (the values before an UPDATE, the whole rows before a DELETE, the ids of an INSERT), and before the
commit the batch goes to the run's journal, its new rows of ledger tables to the ledger. Dry runs and the safety
pre-pass open none: they record nothing.

Ids of a multi-row INSERT on MariaDB: the driver's lastrowid is the statement's first id, and under
innodb_autoinc_lock_mode 0 or 1 a simple INSERT's ids are consecutive (auto_increment_increment apart); both are read
at the run's start. Under mode 2 (interleaved) they may not be: the ids are read back (rows from the first id on whose
values are the ones written). On SQLite the ids above the table's highest id before the INSERT are the new ones: the
INSERT holds the database's write lock, and a stale read of the highest id would have failed the INSERT (WAL) or could
not happen (a rollback journal's shared lock keeps writers from committing).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Integer, Select, String, Table, column, func, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import TableClause, operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, ExpressionClauseList

from toolsync_tui.engine.changes.journal import (
    DELETE,
    INSERT,
    UPDATE,
    ChangeJournal,
    Entry,
    JournalProblem,
    journal_path,
)
from toolsync_tui.engine.datadir.ledger import TABLE_KINDS, Ledger, LedgerProblem, ledger_for_site
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.gateway import MoodleGateway, all_same, chunks, in_list
from toolsync_tui.engine.moodle.recording import NOT_RECORDED_COLUMNS, NOT_RECORDED_TABLES, attach, detach
from toolsync_tui.engine.moodle.tasks import retrieved
from toolsync_tui.engine.run.log import Journal
from toolsync_tui.engine.run.operation import Operation

WRITTEN_DIGEST_COLUMNS = 20  # rows of at most so many columns (memberships, enrolments, groups) are digested as written
DIGEST_CHUNK = 10_000  # ids a digest query covers (a range, mostly: the statement stays small)
OFF_SWITCH = "TOOLSYNC_RECORD_CHANGES"  # "0": runs record nothing (only to measure what recording costs)
# Operations whose writes are Moodle's own PHP (through the bridge) or a user's deletion: never undoable.
THROUGH_MOODLE = {
    "deleteusers": "it deleted users (Moodle's deletion of a user cannot be reversed)",
    "deletecourses": "it deleted courses through Moodle's own code",
    "resetcourses": "it reset courses through Moodle's own code",
}
# Row actions (a row's own outcome) that went through Moodle's code or cannot be reversed, per operation.
IRREVERSIBLE_ACTIONS = {
    "users": {"delete": "it deleted users (Moodle's deletion of a user cannot be reversed)"},
    "courses": {"template": "it filled courses from templates through Moodle's own code"},
}


def norm(value: Any) -> Any:
    """A value as compared between the run's record and Moodle's row now: the driver's types and the ones a family
    wrote differ (1 and "1", True and 1, Decimal("2.50000") and 2.5)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float | Decimal):
        number = Decimal(str(value)).normalize()
        return str(number.quantize(Decimal(1)) if number == number.to_integral() else number)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value)


@dataclass(frozen=True)
class _Pending:
    """An UPDATE by a condition under way: the rows it matched, their values before."""

    table: str  # with the prefix
    name: str  # without
    columns: list[str]
    before: list[list[Any]]


@dataclass
class BatchCapture:
    """One write transaction's changes, in the order made (moodle/recording.Recorder).

    A row the transaction creates is recorded by its id, and at the commit (`seal`) by a digest of the columns the
    transaction wrote, as committed: its undo is its removal, unless it changed since. Its updates and its deletion
    in the same transaction are then not recorded apart (the digest, or its absence, says it all)."""

    gateway: MoodleGateway
    consecutive: bool  # MariaDB: a multi-row INSERT's ids are consecutive (innodb_autoinc_lock_mode 0, 1)
    increment: int  # MariaDB's auto_increment_increment
    entries: list[Entry] = field(default_factory=list)
    new: dict[str, set[int]] = field(default_factory=dict)  # ids created in this transaction, per table
    new_columns: dict[str, set[str]] = field(default_factory=dict)  # columns then updated on such rows, per table
    # id(entry) -> the values its rows were inserted with, column by column, the ids first, when the server stores them
    # as written: their digests are then known without reading the rows back (written_digests).
    written: dict[int, list[list[Any]]] = field(default_factory=dict)
    closed: bool = False  # sealed: the transaction records nothing more
    digested: bool = False  # every created row's digest taken (known_digests(), after read_digests())
    on_sealed: Callable[[], None] | None = None  # told when the writes seal it before the commit (sealed())

    def _name(self, target: Table) -> str | None:
        """The table's name without prefix, or None when it is never recorded."""
        prefix = self.gateway.schema.prefix
        name = target.name[len(prefix) :] if target.name.startswith(prefix) else target.name
        if name in NOT_RECORDED_TABLES:
            return None
        if self.closed:  # the record is taken: the batch rolls back rather than commit a change it misses
            raise RuntimeError(f"{target.name} written after the transaction's record was taken")
        return name

    def _created(self, table_: Table, name: str, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> None:
        self.new.setdefault(name, set()).update(ids)
        columns = ["id", *(c for c in rows[0] if c != "id")]
        entry = Entry(INSERT, name, "id", columns, [[i] for i in ids])
        self.entries.append(entry)
        # SQLite's digests are of the rows as its driver reads them; a wide row's digest costs the client more than
        # the server's read of it (a 100,000-user run: 0.6 s more of the client's CPU, 4 % slower).
        if self.gateway.kind == "sqlite" or len(columns) > WRITTEN_DIGEST_COLUMNS:
            return
        values = [rows.column(c) if isinstance(rows, ColumnRows) else [row[c] for row in rows] for c in columns[1:]]
        if all(_stored_as_written(table_, c, column) for c, column in zip(columns[1:], values, strict=True)):
            self.written[id(entry)] = [list(ids), *map(list, values)]  # copies: _rewritten() changes them

    async def inserted(
        self, conn: AsyncConnection, table_: Table, first_id: int, count: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        name = self._name(table_)
        if name is None or not rows:
            return
        if "id" in rows[0]:  # ids given (never by the families today): those
            ids = [int(row["id"]) for row in rows]
        elif self.gateway.kind == "sqlite" or self.consecutive:
            step = 1 if self.gateway.kind == "sqlite" else self.increment
            ids = [first_id + i * step for i in range(count)]
        else:
            ids = await self._read_back(conn, table_, first_id, rows)
        self._created(table_, name, ids, rows)

    async def inserted_ids(
        self, conn: AsyncConnection, table_: Table, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        name = self._name(table_)
        if name is not None and rows:
            self._created(table_, name, list(ids), rows)

    async def _read_back(
        self, conn: AsyncConnection, table_: Table, first_id: int, rows: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """The ids of `rows`, just inserted from `first_id` on, when other sessions' ids may lie between them
        (innodb_autoinc_lock_mode 2): the rows from `first_id` on whose values are those written, matched in order."""
        names = [n for n in rows[0] if n != "id"]
        target = table(table_.name, column("id"), *(column(n) for n in names))
        query = select(target.c.id, *(target.c[n] for n in names)).where(target.c.id >= first_id).order_by("id")
        wanted: dict[tuple[Any, ...], list[int]] = {}
        for row_id, *values in await conn.execute(query):
            if int(row_id) not in self.new.get(self._name(table_) or "", set()):
                wanted.setdefault(tuple(map(norm, values)), []).append(int(row_id))
        ids = []
        for row in rows:
            matches = wanted.get(tuple(norm(row[n]) for n in names), [])
            if not matches:
                raise RuntimeError(f"the ids of rows inserted into {table_.name} could not be read back")
            ids.append(matches.pop(0))
        return ids

    async def insert_mark(self, conn: AsyncConnection, table_: Table) -> int:
        if self._name(table_) is None:
            return 0
        target = table(table_.name, column("id"))
        return int((await conn.execute(select(func.coalesce(func.max(target.c.id), 0)))).scalar_one())

    async def inserted_since(
        self, conn: AsyncConnection, table_: Table, mark: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        name = self._name(table_)
        if name is None or not rows:
            return
        target = table(table_.name, column("id"))
        found = await conn.execute(select(target.c.id).where(target.c.id > mark).order_by("id"))
        ids = [int(i) for (i,) in found if int(i) not in self.new.get(name, set())]
        if len(ids) != len(rows):
            raise RuntimeError(f"{len(ids)} new rows in {table_.name} for {len(rows)} inserted")
        start = 0
        for end in range(1, len(rows) + 1):  # an entry per run of rows of the same columns
            if end == len(rows) or rows[end].keys() != rows[start].keys():
                self._created(table_, name, ids[start:end], rows[start:end])
                start = end

    def _old(self, name: str, key: str, value: Any, columns: Sequence[str] = ()) -> bool:
        """Whether the row existed before this transaction; a row it created is recorded by its digest, which then
        takes in the `columns` written since."""
        if key != "id" or int(value) not in self.new.get(name, ()):
            return True
        self.new_columns.setdefault(name, set()).update(columns)
        return False

    def _rewritten(self, table_: Table, name: str, key: str, rows: Sequence[Mapping[str, Any]]) -> set[int]:
        """The ids of `rows` (an update's values, by `key`) that update rows this transaction created with known values
        (`written`), every value given one the server stores as written: their values are updated there, their digests
        still known without a read (a batch's new groups touched as members join, new contexts given their paths)."""
        known = self._written_rows(name) if key == "id" and name not in self.new_columns else {}
        given = {c for row in rows for c in row if c != key}
        if not known or not all(_stored_as_written(table_, c, [row[c] for row in rows if c in row]) for c in given):
            return set()
        done: set[int] = set()
        for row in rows:
            found = known.get(int(row[key]))
            if found is None:
                continue
            columns, at, places = found
            if all(c in places for c in row if c != key):
                for c, value in row.items():
                    if c != key:
                        columns[places[c]][at] = value
                done.add(int(row[key]))
        return done

    def _written_rows(self, name: str) -> dict[int, tuple[list[list[Any]], int, dict[str, int]]]:
        """The rows of `name` this transaction created with known values (`written`): id -> (their columns, the row's
        place in them, each column's place)."""
        found: dict[int, tuple[list[list[Any]], int, dict[str, int]]] = {}
        for entry in self.entries:
            written = self.written.get(id(entry))
            if entry.kind == INSERT and entry.table == name and written is not None:
                places = {c: place for place, c in enumerate(entry.columns)}
                found.update((int(i), (written, at, places)) for at, i in enumerate(written[0]))
        return found

    async def updating(
        self, conn: AsyncConnection, table_: Table, key: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        name = self._name(table_)
        kept = [c for c in columns if c not in NOT_RECORDED_COLUMNS]
        if name is not None and name in self.new:
            rewritten = self._rewritten(table_, name, key, rows)
            rows = [row for row in rows if int(row[key]) not in rewritten] if rewritten else rows
        rows = [row for row in rows if name is not None and self._old(name, key, row[key], columns)]
        if name is None or not kept or not rows:
            return
        target = table(table_.name, column(key), *(column(c) for c in kept))
        before: dict[Any, tuple[Any, ...]] = {}
        # One read for the keys of the UPDATE (update_many chunks them: a thousand, or all of a batch's that get the
        # same values), unless their text is too long for one statement.
        keys = [row[key] for row in rows]
        for part in chunks(keys, len(keys)):
            for found_key, *values in await self._values_before(conn, target, key, kept, part):
                before[norm(found_key)] = (found_key, *values)
        recorded = []
        for row in rows:
            old = before.get(norm(row[key]))
            if old is None:  # no such row: the UPDATE changes nothing
                continue
            after = [row[c] if c in row else old[1 + i] for i, c in enumerate(kept)]
            recorded.append([old[0], *old[1:], *after])
        if recorded:
            self.entries.append(Entry(UPDATE, name, key, [key, *kept], recorded))

    async def _values_before(
        self, conn: AsyncConnection, target: TableClause, key: str, kept: Sequence[str], keys: Sequence[Any]
    ) -> Iterable[Sequence[Any]]:
        """The key and `kept` columns of the rows of these keys, as stored; on MariaDB, integer keys written into the
        text (the thousands of groups a batch touches: no statement for SQLAlchemy to compile, no parameters to
        escape)."""
        if self.gateway.kind != "mariadb":
            query = select(target.c[key], *(target.c[c] for c in kept)).where(target.c[key].in_(list(keys)))
            return await conn.execute(query)
        quote = self.gateway.quote
        listed, params = in_list(keys)
        columns = ", ".join(quote(c) for c in (key, *kept))
        sql = f"SELECT {columns} FROM {quote(target.name)} WHERE {quote(key)} IN ({listed})"
        return await conn.exec_driver_sql(sql, params)

    async def updating_where(
        self,
        conn: AsyncConnection,
        table_: Table,
        where: ColumnElement[bool],
        columns: Sequence[str],
        known: Sequence[Mapping[str, Any]] = (),
    ) -> object:
        name = self._name(table_)
        kept = [c for c in columns if c not in NOT_RECORDED_COLUMNS]
        if name is None or not kept:
            return None
        # The ids first: rows this transaction created (a new context's path) need no values before.
        listed = _listed_ids(where)
        if listed is None:
            matched: Select[Any] = select(literal_column("id")).select_from(table_).where(where)
            listed = [int(i) for (i,) in await conn.execute(matched)]
        if known and name in self.new:
            rewritten = self._rewritten(table_, name, "id", known)
            listed = [i for i in listed if i not in rewritten] if rewritten else listed
        old = [i for i in listed if self._old(name, "id", i, kept)]
        target = table(table_.name, column("id"), *(column(c) for c in kept))
        before: list[list[Any]] = []
        for part in chunks(old):
            query = select(*target.c).where(target.c.id.in_(list(part)))
            before += [list(r) for r in await conn.execute(query)]
        return _Pending(table_.name, name, kept, before)

    async def updated(self, conn: AsyncConnection, token: object) -> None:
        if not isinstance(token, _Pending) or not token.before:
            return
        target = table(token.table, column("id"), *(column(c) for c in token.columns))
        after: dict[int, list[Any]] = {}
        for part in chunks([int(row[0]) for row in token.before]):
            query = select(target.c.id, *(target.c[c] for c in token.columns)).where(target.c.id.in_(list(part)))
            after.update({int(r[0]): list(r[1:]) for r in await conn.execute(query)})
        rows = [[*row, *after[int(row[0])]] for row in token.before if int(row[0]) in after]
        self.entries.append(Entry(UPDATE, token.name, "id", ["id", *token.columns], rows))

    async def deleting(self, conn: AsyncConnection, table_: Table, where: ColumnElement[bool]) -> None:
        name = self._name(table_)
        if name is None:
            return
        query: Select[Any] = select(literal_column("*")).select_from(table_).where(where)
        result = await conn.execute(query)
        columns = list(result.keys())
        at = columns.index("id")
        rows = [list(r) for r in result if self._old(name, "id", r[at])]  # a row created here just goes
        if rows:
            self.entries.append(Entry(DELETE, name, "id", columns, rows))

    async def sealed(self, conn: AsyncConnection) -> None:
        """The writes record nothing more (moodle/recording.nothing_more_recorded): closed now, the run told. On MariaDB
        the run takes the digests meanwhile, while the writes go on (RunChanges); elsewhere they are taken now."""
        if self.on_sealed is None or self.gateway.kind != "mariadb":
            await self.seal(conn)
        self.closed = True
        if self.on_sealed is not None:
            self.on_sealed()

    def reads_digests(self) -> bool:
        """Whether some created row's digest is read from the database (not known from the values written)."""
        return bool(self._read_entries())

    def _read_entries(self) -> list[Entry]:
        return [
            entry
            for entry in self.entries
            if entry.kind == INSERT and (id(entry) not in self.written or entry.table in self.new_columns)
        ]

    async def seal(self, conn: AsyncConnection) -> None:
        """At the commit, or before it when the writes say they record nothing more: each created row's digest, of
        the columns written to it, as committed."""
        if self.closed:
            return
        self.closed = True
        await self.read_digests(conn)
        self.known_digests()

    async def read_digests(self, conn: AsyncConnection) -> None:
        """The created rows' digests not known from their values, read through `conn` (one SELECT per chunk): the
        transaction's own, or one that reads what it has not committed yet (RunChanges reads them aside while the
        writes go on). A row created and removed in this transaction is left out."""
        for entry in self._read_entries():
            entry.columns.extend(sorted(self.new_columns.get(entry.table, set()) - set(entry.columns)))
            ids = [int(row[0]) for row in entry.rows]
            found = await row_digests(self.gateway, conn, entry.table, entry.columns, ids)
            entry.rows[:] = [[i, found[i]] for i in ids if i in found]

    def known_digests(self) -> None:
        """Then the others, known from the values written (none changed since), computed as the server computes them
        (RunChanges: in its thread, as the journal is written); the record is then complete."""
        if self.digested:
            return
        self.digested = True
        for entry in self.entries:
            written = self.written.get(id(entry))
            if entry.kind == INSERT and written is not None and entry.table not in self.new_columns:
                digests = written_digests(written, self.gateway.kind)
                entry.rows[:] = [[i, found] for i, found in zip(written[0], digests, strict=True)]
        self.entries = [e for e in self.entries if e.rows]

    def created(self) -> dict[str, list[int]]:
        """Ids of the rows this batch inserted, per table (without prefix)."""
        found: dict[str, list[int]] = {}
        for entry in self.entries:
            if entry.kind == INSERT:
                found.setdefault(entry.table, []).extend(int(row[0]) for row in entry.rows)
        return found


def _listed_ids(where: ColumnElement[bool]) -> list[int] | None:
    """The ids of a condition that is `id IN (...)` or `id BETWEEN a AND b` and nothing else (no query needed to know
    them), else None."""
    if not isinstance(where, BinaryExpression) or getattr(where.left, "key", None) != "id":
        return None
    right = where.right
    if where.operator is operators.in_op and isinstance(right, BindParameter) and right.value is not None:
        return [int(i) for i in right.value]
    if where.operator is operators.between_op and isinstance(right, ExpressionClauseList):
        bounds = [int(c.value) for c in right.clauses if isinstance(c, BindParameter) and c.value is not None]
        if len(bounds) == 2:
            return list(range(bounds[0], bounds[1] + 1))
    return None


async def row_digests(
    gateway: MoodleGateway, conn: AsyncConnection, name: str, columns: Sequence[str], ids: Sequence[int]
) -> dict[int, str]:
    """Id -> a digest of the row's `columns` as stored (12 hex digits; no value of it, a password's hash, kept):
    taken at the commit of the run's batch that created it, and at its undo. MariaDB computes it (a row's values
    never cross the wire), as PostgreSQL does; SQLite's rows are read and hashed here."""
    quote = gateway.quote
    table_, listed = quote(gateway.schema.prefix + name), tuple(quote(c) for c in columns)
    found: dict[int, str] = {}
    wanted = set(ids)
    for part in chunks(sorted(wanted), DIGEST_CHUNK):
        # Ids a batch created run in sequence: a range the index reads in one sweep, the others dropped here. The ids
        # are integers, written into the text: no statement to compile, once a batch.
        span = part[-1] - part[0] < 2 * len(part)
        where = f"id BETWEEN {int(part[0])} AND {int(part[-1])}" if span else f"id IN ({', '.join(map(str, part))})"
        if gateway.kind != "sqlite":
            sql = _digest_select(gateway.kind, table_, listed) + where
            digests: Sequence[Any] = (await conn.exec_driver_sql(sql)).all()
            found.update({int(i): str(d) for i, d in digests if int(i) in wanted})
        else:
            at = list(columns).index("id")
            rows: Sequence[Any] = (
                await conn.exec_driver_sql(f"SELECT {', '.join(listed)} FROM {table_} WHERE {where}")
            ).all()
            found.update({int(r[at]): digest(r) for r in rows if int(r[at]) in wanted})
    return found


@functools.lru_cache(maxsize=256)
def _digest_select(kind: str, table_: str, columns: tuple[str, ...]) -> str:
    """`SELECT id, <the digest of columns> FROM table WHERE ` on MariaDB or PostgreSQL (names quoted)."""
    # Each value tagged ('v' + value, or 'n' for NULL): CONCAT_WS would skip a NULL, and '' and NULL differ.
    tagged = ", ".join(f"coalesce(concat('v', {c}), 'n')" for c in columns)
    separator = "chr(31)" if kind == "postgresql" else "0x1f"
    return f"SELECT id, left(md5(concat_ws({separator}, {tagged})), 12) FROM {table_} WHERE "


def _stored_as_written(table_: Table, name: str, values: Sequence[Any]) -> bool:
    """Whether the server gives back these values of the column as written, so that written_digests() is the digest it
    computes of them: integers in an integer column (their text is their digits), plain text in a text column
    (printable ASCII without a backslash: the same bytes in any character set, whatever the server's escaping), NULL.
    A string written to an integer column (or any other value) is read back instead."""
    declared = table_.c.get(name)
    if declared is None:
        return False
    kind, types = declared.type, set(map(type, values)) - {type(None)}
    if isinstance(kind, Integer):
        return types <= {int}
    if isinstance(kind, String) and types <= {str}:
        text = "".join(value for value in values if value is not None)
        return text.isascii() and text.isprintable() and "\\" not in text
    return False


def written_digests(columns: Sequence[Sequence[Any]], kind: str) -> list[str]:
    """The digests _digest_select() reads on a `kind` server of rows whose values are in these columns, in their order
    (_stored_as_written()). PostgreSQL's concat() skips a NULL: there a NULL reads 'v', as an empty text does. Column
    by column: a value every row shares (a time, a status) is written once."""
    null = "v" if kind == "postgresql" else "n"

    def cells(column: Sequence[Any]) -> Sequence[str]:
        if all_same(column):
            return [null if column[0] is None else f"v{column[0]}"] * len(column)
        return [null if value is None else f"v{value}" for value in column]

    md5 = hashlib.md5
    texts = map("\x1f".join, zip(*map(cells, columns), strict=True))
    return [md5(text.encode(), usedforsecurity=False).hexdigest()[:12] for text in texts]


def digest(row: Sequence[Any]) -> str:
    """A row's values as the driver reads them (SQLite: the same reading at the commit and at undo)."""
    return hashlib.blake2b(repr(tuple(row)).encode(), digest_size=6).hexdigest()


class RunChanges:
    """A real run's recording (moodle/recording.Session): a BatchCapture per write transaction, journalled ahead of
    its commit and marked after it; new rows of ledger tables entered in the ownership ledger ahead of the commit."""

    def __init__(
        self,
        gateway: MoodleGateway,
        journal: ChangeJournal,
        ledger: Ledger,
        run: str,
        operation: str,
        consecutive: bool,
        increment: int,
    ) -> None:
        self.gateway = gateway
        self.journal = journal
        self.ledger = ledger
        self.run = run
        self.operation = operation
        self.consecutive = consecutive
        self.increment = increment
        self.open_batches: dict[int, tuple[BatchCapture, int | None]] = {}  # id(conn) -> capture, journal batch
        self.early: dict[int, asyncio.Future[int | None]] = {}  # id(conn) -> its journalling, when sealed early
        self.batch = 0
        self.irreversible = THROUGH_MOODLE.get(operation)

    @classmethod
    async def start(cls, data_dir: Path, gateway: MoodleGateway, run: str, operation: str) -> RunChanges:
        step = await gateway.id_step()
        consecutive, increment = gateway.kind != "mariadb" or step is not None, step or 1
        ledger = await ledger_for_site(data_dir, gateway)
        return cls(gateway, ChangeJournal(journal_path(data_dir, run)), ledger, run, operation, consecutive, increment)

    def open(self, conn: AsyncConnection) -> None:
        capture = BatchCapture(self.gateway, self.consecutive, self.increment)
        capture.on_sealed = functools.partial(self._journal_early, id(conn), capture)
        attach(conn, capture)
        self.open_batches[id(conn)] = (capture, None)

    async def ahead(self, conn: AsyncConnection) -> None:
        """Before the commit: the batch's changes in the journal, its new records in the ledger."""
        capture, _ = self.open_batches[id(conn)]
        early = self.early.pop(id(conn), None)
        if early is None:
            await capture.seal(conn)
        number = await (early or self._journal(capture))
        self.open_batches[id(conn)] = (capture, number)

    def _journal_early(self, key: int, capture: BatchCapture) -> None:
        """Sealed by the writes before the commit: journalled at once, while they write what is not recorded."""
        self.early[key] = asyncio.ensure_future(self._journal_sealed(capture))

    async def _journal_sealed(self, capture: BatchCapture) -> int | None:
        """A batch sealed early, journalled. On MariaDB its digests are taken here, while its writes go on (its log
        rows): those read from the database on another connection, READ UNCOMMITTED (a connection runs one statement
        at a time), then those known from the values written in the journal's thread. What that connection reads is
        what the batch commits: the rows are its own, locked by it until then, and nothing it writes after the seal is
        recorded."""
        if not capture.digested and capture.reads_digests():
            async with self.gateway.engine.connect() as aside:
                await capture.read_digests(await aside.execution_options(isolation_level="READ UNCOMMITTED"))
        return await self._journal(capture)

    async def _journal(self, capture: BatchCapture) -> int | None:
        """A sealed batch's changes in the journal and its new records in the ledger; its journal batch number (None:
        it changed nothing recorded)."""
        if not capture.entries:
            return None
        self.batch += 1
        number = self.batch
        meta = {"run": self.run, "operation": self.operation, "site": self.ledger.site}
        if self.irreversible:
            meta["irreversible"] = self.irreversible
        try:
            # In a thread (each call opens its own SQLite connection): the next batch is planned meanwhile.
            await asyncio.to_thread(self._write_ahead, capture, number, meta)
        except (JournalProblem, LedgerProblem) as exc:
            # Never a batch in Moodle that its record misses: rolled back, the run stops as for a full disk.
            raise OSError(errno.EIO, f"{exc}; the batch in progress was rolled back") from None
        return number

    def _write_ahead(self, capture: BatchCapture, number: int, meta: dict[str, str]) -> None:
        capture.known_digests()  # here, in the thread: thousands of rows hashed, off the event loop
        self.journal.write_batch(number, capture.entries, meta)
        for name, ids in capture.created().items():
            if name in TABLE_KINDS:
                self.ledger.add(TABLE_KINDS[name], ids, self.operation, self.run)

    def settle(self, conn: AsyncConnection, committed: bool) -> None:
        """After the commit (or the rollback): the batch marked committed. A batch whose commit failed stays unmarked:
        the error may have come after the server committed, undo resolves it against Moodle's rows. So does one
        journalled early whose write then failed (its rows were never committed: their ids are never handed out
        again)."""
        detach(conn)
        early = self.early.pop(id(conn), None)
        if early is not None:  # the write failed before ahead(): whatever the journalling met, the run has its error
            retrieved(early).cancel()  # rolled back: a digest still being read aside is of rows that never were
        _, number = self.open_batches.pop(id(conn), (None, None))
        if committed and number is not None:
            with contextlib.suppress(JournalProblem):  # unmarked, the batch is resolved at undo (undo.py)
                self.journal.mark_committed(number)

    def account(self, outcomes: pl.DataFrame) -> None:
        """A batch's outcomes: an action Moodle's own code did, or that cannot be reversed, makes the run not
        undoable."""
        actions = IRREVERSIBLE_ACTIONS.get(self.operation)
        if not actions or self.irreversible or outcomes.is_empty():
            return
        done = outcomes.filter(pl.col("outcome").is_in(["created", "updated", "deleted"]))  # rows and their parts
        for action in set(done["action"].to_list()) & set(actions):
            self.irreversible = actions[action]
            if self.journal.exists():
                self.journal.set_meta("irreversible", self.irreversible)
            return


async def start_recording(
    data_dir: Path, gateway: MoodleGateway, journal: Journal | None, operation: Operation, dry_run: bool
) -> RunChanges | None:
    """The recording of a real run that writes; None for a dry run or a read-only operation (nothing recorded)."""
    if dry_run or operation.read_only or journal is None or journal.record.run is None:
        return None
    if os.environ.get(OFF_SWITCH) == "0":  # the recording's cost measured (benchmarks/README.md): no undo then
        return None
    return await RunChanges.start(data_dir, gateway, journal.record.run, operation.name)
