"""One async interface to the Moodle database: MariaDB/MySQL through aiomysql, PostgreSQL through asyncpg, or the
SQLite sandbox.

SQL is built with SQLAlchemy Core, so the same statements serve all three. Bulk helpers keep to one
statement per chunk of keys or rows: a batch of a command file costs a handful of round trips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import URL, ColumnElement, Select, Table, bindparam, delete, func, insert, make_url, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from toolsync_tui.engine.moodle.column_limits import DEFAULT_PACKET, read_packet
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.db_errors import describe
from toolsync_tui.engine.moodle.mariadb_plans import keep_in_lists, leading_index
from toolsync_tui.engine.moodle.postgres_bulk import insert_returning, update_from_arrays
from toolsync_tui.engine.moodle.postgres_lookup import named_columns, probe_select, probed
from toolsync_tui.engine.moodle.recording import RUN_SESSION, recorder_of
from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.moodle.site_defaults import SiteDefaults, left_out, site_defaults
from toolsync_tui.engine.moodle.sql_literals import ColumnLiterals
from toolsync_tui.engine.moodle.timed_connection import timed_creator

# Keys per IN (...) list and rows per multi-row statement; well under MariaDB's packet limit.
CHUNK = 1000
SQLITE_MAX_PARAMETERS = 32_766
UNIFORM_CHUNK = 10 * CHUNK  # keys of an UPDATE giving them all the same values (MariaDB, PostgreSQL)
MAX_STATEMENT = 2_000_000  # bytes of a multi-row INSERT written here (MariaDB's max_allowed_packet: 16 MB by default)
CONNECT_TIMEOUT = 10  # seconds
STATEMENT_TIMEOUT = 300  # seconds the server has to answer each call (the default of [database] statement_timeout)


class DatabaseError(Exception):
    """The database cannot be used: unreachable, wrong credentials, or not a compatible Moodle."""


@dataclass(frozen=True)
class WrittenInsert:
    """MariaDB multi-row INSERT statements written ahead of their transaction (gateway.written_insert): each one's
    text (every value in it) and rows."""

    statements: list[tuple[str, Sequence[Mapping[str, Any]]]]


@dataclass(frozen=True)
class SiteInfo:
    kind: str  # "mariadb", "postgresql" or "sqlite"
    label: str  # where: host:port/name or the SQLite file
    prefix: str
    release: str
    version: str

    @property
    def is_sandbox(self) -> bool:
        return self.kind == "sqlite"


def rows_frame(rows: Sequence[Sequence[Any]], schema: Mapping[str, type[pl.DataType]] | Sequence[str]) -> pl.DataFrame:
    """Rows read from the database as a frame, built column by column: several times faster than polars' row
    orientation for thousands of rows. `schema`: the columns' types, or their names only (types as the rows give)."""
    typed = isinstance(schema, Mapping)
    if not rows:
        return pl.DataFrame(schema=schema if typed else list(schema))
    data = dict(zip(schema, map(list, zip(*rows, strict=True)), strict=True))
    return pl.DataFrame(data, schema=schema) if typed else pl.DataFrame(data, strict=False)


def all_same(column: Sequence[Any]) -> bool:
    """Every value of the column equal to the first, and of its type (1, True and 1.0 are not the same value here)."""
    first = column[0]
    return column.count(first) == len(column) and set(map(type, column)) == {type(first)}


def chunks(values: Sequence[Any], size: int = CHUNK, budget: int = MAX_STATEMENT) -> Iterable[Sequence[Any]]:
    """Slices of at most `size` values (keys, pairs or rows) taking at most `budget` bytes of statement text, or of one
    value larger than that: an IN (...) list or a multi-row statement a slice fits the server's packet, whatever the
    file's values (a value alone fits it: engine/run/value_limits.py checked it)."""
    if all(type(value) is int for value in values):  # ids: the count decides (the common case, kept cheap)
        for start in range(0, len(values), size):
            yield values[start : start + size]
        return
    start, total = 0, 0
    for end, value in enumerate(values):
        taken = _text_size(value)
        if end > start and (end - start >= size or total + taken > budget):
            yield values[start:end]
            start, total = end, 0
        total += taken
    if start < len(values):
        yield values[start:]


def _text_size(value: Any) -> int:
    """More than the bytes `value` takes in a statement's text (4 a character); a number or a null
    counts 24 with the SQL around it."""
    if isinstance(value, str | bytes):
        return 4 * len(value) + 24
    if isinstance(value, tuple | list):
        return sum(map(_text_size, value))
    if isinstance(value, Mapping):  # a row: its text only measured, at C speed
        return 24 * len(value) + 4 * sum([len(v) for v in value.values() if type(v) is str or type(v) is bytes])
    return 24


class MoodleGateway:
    def __init__(self, engine: AsyncEngine, schema: MoodleSchema, kind: str, label: str) -> None:
        self.engine = engine
        self.schema = schema
        self.kind = kind
        if kind == "sqlite":
            schema.never_reuse_ids()
        self.label = label
        # The most bytes a statement may take (the server's max_allowed_packet), read by site_info() at a run's start.
        self.packet = DEFAULT_PACKET
        self._id_step: int | None = None  # id_step(), once read
        self.indexes: frozenset[tuple[str, str]] = frozenset()  # MariaDB: the site's (table, index), read at the start
        self.defaults: SiteDefaults = {}  # MariaDB: Moodle's column defaults the site has, read at the start
        self._id_step_read = False

    @classmethod
    def for_server(
        cls,
        kind: str,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        prefix: str,
        socket: str = "",
        schema: str = "",
        statement_timeout: float = STATEMENT_TIMEOUT,
    ) -> MoodleGateway:
        """A site's own server: `kind` "mariadb" (aiomysql) or "postgresql" (asyncpg; `schema`: its search path).
        `socket`: MariaDB's socket file, or the directory of PostgreSQL's (asyncpg takes it as its host)."""
        mariadb = kind == "mariadb"
        query = ({"charset": "utf8mb4"} | ({"unix_socket": socket} if socket else {})) if mariadb else {}
        url = URL.create(
            "mysql+aiomysql" if mariadb else "postgresql+asyncpg",
            username=user,
            password=password or None,
            host=None if socket else host,
            port=None if socket else port,
            database=database,
            query=query if mariadb or not socket else {"host": socket},
        )
        # Kept open: an overlapped run's two (planning, writing) and the one that reads a batch's digests aside.
        pool = {"pool_size": 3, "max_overflow": 2, "pool_recycle": 3600}
        if mariadb:
            engine = _mariadb_engine(url, statement_timeout, **pool)
        else:
            engine = _postgres_engine(url, statement_timeout, schema, **pool)
        where = f"{socket or f'{host}:{port}'}/{database}" + (f" schema {schema}" if schema else "")
        return cls(engine, MoodleSchema(prefix), kind, where)

    @classmethod
    def for_url(cls, url: str, prefix: str, statement_timeout: float = STATEMENT_TIMEOUT) -> MoodleGateway:
        """Any SQLAlchemy async URL (tests and benchmarks use this)."""
        driver = make_url(url).get_driver_name()
        if driver == "aiomysql":
            engine = _mariadb_engine(url, statement_timeout)
        elif driver == "asyncpg":
            engine = _postgres_engine(url, statement_timeout, "")
        else:
            engine = create_async_engine(url)
        kind = {"sqlite": "sqlite", "postgresql": "postgresql"}.get(engine.dialect.name, "mariadb")
        label = engine.url.render_as_string(hide_password=True)
        return cls(engine, MoodleSchema(prefix), kind, label)

    @classmethod
    def for_sqlite(cls, path: Path, prefix: str) -> MoodleGateway:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        return cls(engine, MoodleSchema(prefix), "sqlite", str(path))

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One batch's writes: committed together, or rolled back together on any error. Within a run that records
        its writes (recording.RUN_SESSION), they are recorded and journalled ahead of the commit."""
        session = RUN_SESSION.get()
        if session is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        committed = False
        async with self.engine.connect() as conn:
            transaction = await conn.begin()
            session.open(conn)
            try:
                yield conn
                await session.ahead(conn)
                await transaction.commit()
                committed = True
            except BaseException:
                await transaction.rollback()
                raise
            finally:
                session.settle(conn, committed)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    # -- site checks -------------------------------------------------------------------------

    async def site_info(self) -> SiteInfo:
        """Connect, verify the tables and columns toolsync needs, and read the Moodle release."""
        try:
            await self._check_columns()
            values = await self.config_values(["release", "version"])
            async with self.reading() as conn:
                self.packet = await read_packet(conn, self.kind)
            await self.id_step()
        except DatabaseError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(f"cannot use the database at {self.label}: {_startup_words(exc)}") from None
        return SiteInfo(
            kind=self.kind,
            label=self.label,
            prefix=self.schema.prefix,
            release=values.get("release", "?"),
            version=values.get("version", "?"),
        )

    async def id_step(self) -> int | None:
        """How far apart the ids of one multi-row INSERT are, when the server guarantees it; None when they must be
        read back. MariaDB hands a simple INSERT consecutive ids, auto_increment_increment apart, unless
        innodb_autoinc_lock_mode is 2 (interleaved: other sessions' ids may lie between them). Read once."""
        if not self._id_step_read and self.kind == "mariadb":
            async with self.reading() as conn:
                mode, step = (
                    await conn.execute(text("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment"))
                ).one()
            self._id_step = int(step or 1) if int(mode) in (0, 1) else None
        self._id_step_read = True
        return self._id_step

    async def _check_columns(self) -> None:
        if self.kind == "sqlite":
            # A sandbox made by an older toolsync gets the tables declared since, empty (never done to a real site).
            async with self.transaction() as conn:
                await conn.run_sync(self.schema.metadata.create_all)
        async with self.reading() as conn:
            if self.kind == "sqlite":
                present = {}
                for table in self.schema.metadata.tables.values():
                    rows = await conn.execute(text(f'PRAGMA table_info("{table.name}")'))
                    present[table.name] = {row[1] for row in rows}
            else:
                # The tables by name: the server opens those only, not each of the site's ~500 (5x faster).
                schema = "current_schema()" if self.kind == "postgresql" else "DATABASE()"
                rows = await conn.execute(
                    text(
                        "SELECT table_name, column_name, column_default, is_nullable FROM information_schema.columns "
                        f"WHERE table_schema = {schema} AND table_name IN :names"
                    ).bindparams(bindparam("names", expanding=True)),
                    {"names": sorted(self.schema.metadata.tables)},
                )
                columns = [tuple(row) for row in rows]
                present = {}
                for table_name, column_name, *_ in columns:
                    present.setdefault(table_name, set()).add(column_name)
                if self.kind == "mariadb":
                    self.indexes = await _site_indexes(conn, self.schema)
                    self.defaults = site_defaults(self.schema, columns)
        missing: list[str] = []
        for table in self.schema.metadata.tables.values():
            if table.name not in present:
                missing.append(f"table {table.name}")
                continue
            missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present[table.name]]
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise DatabaseError(
                f"{self.label} is not a Moodle 4.5 database with prefix '{self.schema.prefix}': "
                f"missing {shown}. Check the table prefix, or the Moodle version (toolsync needs 4.5)."
            )

    async def config_values(self, names: Sequence[str]) -> dict[str, str]:
        config = self.schema.config
        async with self.reading() as conn:
            rows = await conn.execute(select(config.c.name, config.c.value).where(config.c.name.in_(names)))
            return {name: value for name, value in rows}

    # -- bulk helpers ----------------------------------------------------------------------

    async def fetch_in(
        self,
        conn: AsyncConnection,
        table: Table,
        key: str,
        values: Sequence[Any],
        columns: Sequence[str],
        where: ColumnElement[bool] | None = None,
        casefold: bool = False,
    ) -> pl.DataFrame:
        """Rows whose `key` is in `values`, as a DataFrame, one SELECT per chunk of keys.

        casefold: match text case-insensitively, as MariaDB's Moodle collation does by itself.
        """
        wanted = [table.c[name] for name in columns]
        key_col: ColumnElement[Any] = table.c[key]
        if casefold and self.kind != "mariadb":
            key_col = func.lower(key_col)
            values = [str(v).lower() for v in values]
        found: list[Any] = []
        for part in chunks(list(values)):
            if self.kind == "postgresql" and probed(table, key, casefold):  # postgres_lookup.py says why
                query = probe_select(table, key, part, columns, where)
            else:
                query = select(*wanted).where(key_col.in_(part))
                if where is not None:
                    query = query.where(where)
                query = self.force_index(query, table, [key], named_columns(where, table))
            found.extend(await conn.execute(query))
        return rows_frame(found, columns)

    def force_index(
        self, query: Select[Any], table: Table, key: Sequence[str], also: Collection[str] = ()
    ) -> Select[Any]:
        """`query` naming the index a read of `table` by `key` goes through on MariaDB (forced_index()); as it is
        elsewhere, or when the site has no such index."""
        if index := self.forced_index(table, key, also):  # mariadb_plans.py: why
            return query.with_hint(table, f"FORCE INDEX ({self.quote(index)})")
        return query

    def forced_index(self, table: Table, key: Sequence[str], also: Collection[str] = ()) -> str | None:
        """MariaDB: the index a read by `key` (and conditions on `also`) names (mariadb_plans.py); None elsewhere, or
        when the site has none."""
        return leading_index(table, key, self.indexes, also) if self.kind == "mariadb" else None

    def quote(self, name: str) -> str:
        quoted: str = self.engine.dialect.identifier_preparer.quote(name)
        return quoted

    async def insert_many(
        self,
        conn: AsyncConnection,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        written: WrittenInsert | None = None,
    ) -> list[int] | None:
        """Multi-row INSERTs, a statement per chunk of rows; the new rows' ids, in order, when the server guarantees
        them (id_step(): each statement's first id and row count give them, no read-back), else None.

        On MariaDB, when every row has the same columns, the statement is written here, its values escaped by the
        driver's own escape() (what it does to a parameter): a value all the rows of the chunk share is written once
        (a chunk of new users then has ~10 values a row to escape instead of ~40), integers as digits, and SQLAlchemy
        builds no parameter set per row. Otherwise (SQLite, rows with differing columns) SQLAlchemy's executemany.
        `written`: those statements, written ahead by written_insert() for these rows.
        """
        rows = rows if isinstance(rows, ColumnRows) else list(rows)
        if not rows:
            return []
        if self.kind == "postgresql":
            return await self._insert_returning(conn, table, rows)
        names = list(rows[0])
        writable = self.kind == "mariadb" and set(names) <= set(table.c.keys())
        same = written is not None or _same_keys(rows)  # rows written ahead were found so by written_insert()
        recorder = recorder_of(conn)
        if writable and recorder is not None and not same:
            # A run that records its writes needs each statement's ids: rows of the same columns together.
            for part in _same_columns(rows):
                await self.insert_many(conn, table, part)
            return None
        if not writable or not same:
            mark = await recorder.insert_mark(conn, table) if recorder is not None else 0
            for part in chunks(rows, CHUNK, self.max_statement):
                await conn.execute(insert(table), list(part))
            if recorder is not None:
                await recorder.inserted_since(conn, table, mark, rows)
            return None
        return await self.insert_written(conn, table, written or await self._written(conn, table, rows))

    async def insert_written(self, conn: AsyncConnection, table: Table, written: WrittenInsert) -> list[int] | None:
        """Run INSERT statements written ahead (written_insert()); the new rows' ids as insert_many() gives them."""
        firsts = [await self._insert_rows(conn, table, *statement) for statement in written.statements]
        step = await self.id_step()
        if step is None:
            return None
        return [first + i * step for first, count in firsts for i in range(count)]

    async def written_insert(
        self, conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
    ) -> WrittenInsert | None:
        """On MariaDB, the multi-row INSERT statements of `rows` written now, for insert_many to run later in another
        transaction: a family writes them while it plans a batch (when the batch before is being written), not in its
        write. `conn` lends its escape() only (toolsync's connections share their character set). None elsewhere, or
        when the rows differ in their columns or name one the table lacks: insert_many then does without. Rows given
        as ColumnRows are taken as they are, column by column."""
        rows = rows if isinstance(rows, ColumnRows) else list(rows)
        names = list(rows[0]) if rows else []
        if self.kind != "mariadb" or not rows or not set(names) <= set(table.c.keys()) or not _same_keys(rows):
            return None
        return await self._written(conn, table, rows)

    async def _written(self, conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> WrittenInsert:
        """written_insert() of rows it would take (MariaDB, the same columns, all of them the table's)."""
        columns = rows if isinstance(rows, ColumnRows) else ColumnRows.of(rows)
        driver = (await conn.get_raw_connection()).driver_connection
        return WrittenInsert(self._insert_statements(table, columns, rows, driver.escape))  # type: ignore[union-attr]

    async def _insert_returning(
        self, conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        """PostgreSQL: rows of the same columns together, a statement per chunk, their ids from RETURNING."""
        quote = self.engine.dialect.identifier_preparer.quote
        recorder = recorder_of(conn)
        ids: list[int] = []
        for same in _same_columns(rows):
            for part in chunks(same, 10 * CHUNK, self.max_statement):
                new = await insert_returning(conn, self._declared(table), part, quote)
                if recorder is not None:  # for an undo of the run
                    await recorder.inserted_ids(conn, table, new, part)
                ids += new
        return ids

    def _insert_statements(
        self,
        table: Table,
        columns: ColumnRows,
        rows: Sequence[Mapping[str, Any]],
        escape: Callable[[Any], str],
    ) -> list[tuple[str, Sequence[Mapping[str, Any]]]]:
        """The statements' text and rows (`columns`, as the caller gave them): every value in the text, as the
        driver's own escape() writes it (a statement written ahead costs its write nothing but the sending); as few
        statements as MAX_STATEMENT allows (the server then works through a batch's rows while the event loop is free
        for other work)."""
        # Column by column: a value every row shares is written once (a batch's log rows: 20 columns, 5 varying).
        values = columns.varying
        varying = [name for name in values if not all_same(values[name])]
        shared = {**columns.shared, **{name: values[name][0] for name in values if name not in varying}}
        omitted = left_out(self.defaults.get(table.name, {}), shared)
        names = [name for name in columns.names if name not in omitted] or list(columns.names)
        literals = ColumnLiterals(escape)
        if varying:
            cells = pl.DataFrame([literals.column(values[name]).alias(name) for name in varying])
            cell = [pl.col(name) if name in varying else pl.lit(literals.one(shared[name])) for name in names]
            row_texts = cells.select(
                pl.concat_str(pl.lit("("), pl.concat_str(cell, separator=", "), pl.lit(")"))
            ).to_series()
            sizes = (row_texts.str.len_bytes() + 2).to_list()  # bytes, with the ", " between rows
            texts: list[str] = row_texts.to_list()
        else:  # every row the same
            same = "(" + ", ".join(literals.one(shared[name]) for name in names) + ")"
            texts, sizes = [same] * len(rows), [len(same.encode()) + 2] * len(rows)
        quote = self.quote
        head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES "
        statements: list[tuple[str, Sequence[Mapping[str, Any]]]] = []
        start, size = 0, len(head)
        for end, row_size in enumerate(sizes):
            if end > start and size + row_size > self.max_statement:
                statements.append((head + ", ".join(texts[start:end]), rows[start:end]))
                start, size = end, len(head)
            size += row_size
        statements.append((head + ", ".join(texts[start:]), rows[start:]))
        return statements

    @staticmethod
    async def _insert_rows(
        conn: AsyncConnection, table: Table, sql: str, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        result = await conn.exec_driver_sql(sql, ())  # no parameter, yet formatted by the driver: % doubled
        first = int(result.lastrowid or 0)  # the statement's first generated id
        recorder = recorder_of(conn)
        if recorder is not None:  # for an undo of the run
            await recorder.inserted(conn, table, first, len(rows), rows)
        return first, len(rows)

    async def update_many(
        self, conn: AsyncConnection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Per-row values, one UPDATE per chunk: the chunk's rows as a derived table joined on `key`.

        A column a row lacks keeps its stored value; a key given twice in a chunk takes, column by column,
        the first row that has the column. Set-based on the server (one index lookup per row; a CASE per
        column would compare every row with every key), and the SQL text is built here, its values passed
        to the driver: no expression tree of thousands of nodes to build, compile and cache per chunk.
        """
        if not rows:
            return
        if self.kind != "sqlite" and _uniform(rows, key):
            await self._update_keys(conn, table, key, list({row[key]: row for row in rows}.values()))  # a row a key
            return
        for part in chunks(list(rows), self._update_chunk(rows), self.max_statement):
            merged: dict[Any, dict[str, Any]] = {}
            for row in part:
                known = merged.setdefault(row[key], {})
                for name, value in row.items():
                    known.setdefault(name, value)
            columns = sorted({name for row in merged.values() for name in row if name != key})
            if columns:
                given = list(merged.values())
                await self._record_update(conn, table, key, columns, given)
                if self.kind == "postgresql":
                    await update_from_arrays(conn, self._declared(table), key, columns, given, self.quote)
                else:
                    await self._update_joined(conn, table, key, columns, given)

    def _declared(self, target: Table) -> Table:
        """The declared table of that name, whose columns have their types (PostgreSQL's arrays are typed by them),
        for a table built by name alone (undo's); else `target`."""
        return self.schema.metadata.tables.get(target.name, target)

    @property
    def max_statement(self) -> int:
        """Bytes of the values of a multi-row statement: MAX_STATEMENT, less on a server with a small packet."""
        return min(MAX_STATEMENT, self.packet // 4)

    def _update_chunk(self, rows: Sequence[Mapping[str, Any]]) -> int:
        if self.kind != "sqlite":
            return CHUNK
        # SQLite takes at most 32,766 parameters a statement: a value and a presence flag per column.
        width = 1 + 2 * len({name for row in rows for name in row})
        return max(1, min(CHUNK, SQLITE_MAX_PARAMETERS // width))

    async def _update_keys(
        self, conn: AsyncConnection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """`rows` of distinct keys and the same values (_uniform), MariaDB or PostgreSQL: a batch's groups touched as
        members join, thousands of them. One plain UPDATE of a long key list, and one read of their values before
        (the run's record), not one of each a thousand keys; integer keys are written into the text (no parameters
        for the driver to escape one by one). MariaDB's statement carries the values once, its keys taking the rest
        of the byte budget; PostgreSQL's arrays carry them a row each, so its rows are what the budget counts."""
        values = {name: value for name, value in rows[0].items() if name != key}
        columns = sorted(values)
        if self.kind == "postgresql":
            for part in chunks(rows, UNIFORM_CHUNK, self.max_statement):
                await self._record_update(conn, table, key, columns, part)
                await update_from_arrays(conn, self._declared(table), key, columns, part, self.quote)
            return
        assignments = ", ".join(f"{self.quote(name)} = %s" for name in columns)
        budget = max(self.max_statement - _text_size(list(values.values())), 1)
        count = min(UNIFORM_CHUNK, max(1, budget // _text_size(0)))  # integer keys go by count (chunks())
        for start, part in _offsets(chunks([row[key] for row in rows], count, budget)):
            await self._record_update(conn, table, key, columns, rows[start : start + len(part)])
            listed, params = in_list(part)
            sql = f"UPDATE {self.quote(table.name)} SET {assignments} WHERE {self.quote(key)} IN ({listed})"
            await conn.exec_driver_sql(sql, (*(values[name] for name in columns), *params))

    @staticmethod
    async def _record_update(
        conn: AsyncConnection, table: Table, key: str, columns: list[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        recorder = recorder_of(conn)
        if recorder is not None:  # the values before, read in this transaction, for an undo of the run
            await recorder.updating(conn, table, key, columns, rows)

    async def _update_joined(
        self, conn: AsyncConnection, table: Table, key: str, columns: list[str], rows: list[dict[str, Any]]
    ) -> None:
        quote = self.engine.dialect.identifier_preparer.quote
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        if len(rows) == 1:
            # A row alone (a large value fills a statement by itself): a plain UPDATE, no derived table for the server
            # to materialise, on disk for a text that large.
            [row] = rows
            assignments = ", ".join(f"{quote(name)} = {mark}" for name in columns)
            sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote(key)} = {mark}"
            await conn.exec_driver_sql(sql, (*(row[name] for name in columns), row[key]))
            return
        partial = [name for name in columns if any(name not in row for row in rows)]
        fields = [key, *columns, *(f"{name}__given" for name in partial)]
        params: list[Any] = []
        for row in rows:
            params.append(row[key])
            params.extend(row.get(name) for name in columns)
            params.extend(int(name in row) for name in partial)
        target, alias = quote(table.name), "toolsync_v"

        def value(name: str) -> str:
            given = f"{alias}.{quote(name)}"
            if name not in partial:
                return given
            return f"CASE WHEN {alias}.{quote(name + '__given')} = 1 THEN {given} ELSE {target}.{quote(name)} END"

        assignments = ", ".join(f"{quote(name)} = {value(name)}" for name in columns)
        if self.kind == "sqlite":
            # VALUES names its columns column1, column2 ...: renamed by a SELECT over it.
            renamed = ", ".join(f"column{i} AS {quote(name)}" for i, name in enumerate(fields, 1))
            values = ", ".join(["(" + ", ".join([mark] * len(fields)) + ")"] * len(rows))
            sql = (
                f"UPDATE {target} SET {assignments} FROM (SELECT {renamed} FROM (VALUES {values})) AS {alias} "
                f"WHERE {target}.{quote(key)} = {alias}.{quote(key)}"
            )
        else:
            head = "SELECT " + ", ".join(f"{mark} AS {quote(name)}" for name in fields)
            others = " UNION ALL SELECT " + ", ".join([mark] * len(fields))
            sql = (
                f"UPDATE {target} JOIN ({head}{others * (len(rows) - 1)}) AS {alias} "
                f"ON {target}.{quote(key)} = {alias}.{quote(key)} SET "
                + ", ".join(f"{target}.{quote(name)} = {value(name)}" for name in columns)
            )
        await conn.exec_driver_sql(sql, tuple(params))

    async def delete_in(self, conn: AsyncConnection, table: Table, key: str, values: Sequence[Any]) -> int:
        removed = 0
        recorder = recorder_of(conn)
        for part in chunks(list(values)):
            if recorder is not None:  # the whole rows, for an undo of the run
                await recorder.deleting(conn, table, table.c[key].in_(part))
            result = await conn.execute(delete(table).where(table.c[key].in_(part)))
            removed += result.rowcount or 0
        return removed


def _offsets(parts: Iterable[Sequence[Any]]) -> Iterable[tuple[int, Sequence[Any]]]:
    """Each slice that chunks() yields, with where it starts."""
    start = 0
    for part in parts:
        yield start, part
        start += len(part)


def in_list(keys: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """The text of an `IN (...)` list of these keys on MariaDB (`%s` marks) and its parameters: integers written into
    the text (their digits, nothing to escape), other keys as parameters."""
    if all(type(value) is int for value in keys):
        return ", ".join(map(str, keys)), ()
    return ", ".join(["%s"] * len(keys)), tuple(keys)


def _uniform(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """Every row of the same columns, with the same values but for its key (update_many's plain UPDATE)."""
    return _same_keys(rows) and all(all_same([row[name] for row in rows]) for name in rows[0] if name != key)


def _same_keys(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Every row of the same columns (ColumnRows are, by their making)."""
    return isinstance(rows, ColumnRows) or all(row.keys() == rows[0].keys() for row in rows)


def _same_columns(rows: Sequence[Mapping[str, Any]]) -> Iterable[Sequence[Mapping[str, Any]]]:
    """The rows in runs of the same columns, in their order."""
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end].keys() != rows[start].keys():
            yield rows[start:end]
            start = end


def _mariadb_engine(url: str | URL, statement_timeout: float, **pool: Any) -> AsyncEngine:
    """An aiomysql engine whose every wait for the server ends after `statement_timeout` seconds (0: never), the
    log-in after CONNECT_TIMEOUT: a stalled server fails the call instead of hanging the run (timed_connection.py)."""
    params: dict[str, Any] = {}  # the dialect's own connection arguments, from the URL, filled in once it exists
    creator = timed_creator(lambda: dict(params), statement_timeout, CONNECT_TIMEOUT)
    engine = create_async_engine(url, async_creator=creator, **pool)
    params.update(engine.sync_engine.dialect.create_connect_args(engine.url)[1])
    keep_in_lists(engine)
    return engine


async def _site_indexes(conn: AsyncConnection, schema: MoodleSchema) -> frozenset[tuple[str, str]]:
    """The (table, index) pairs of the indexes Moodle declares that the site has, on the same columns."""
    declared = {
        (table.name, str(index.name)): ",".join(c.name for c in index.columns)
        for table in schema.metadata.tables.values()
        for index in table.indexes
    }
    rows = await conn.execute(
        text(
            "SELECT table_name, index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index) "
            "FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name IN :names "
            "GROUP BY table_name, index_name"
        ).bindparams(bindparam("names", expanding=True)),
        {"names": sorted({table for table, _ in declared})},
    )
    return frozenset((str(t), str(i)) for t, i, columns in rows if declared.get((str(t), str(i))) == columns)


def _postgres_engine(url: str | URL, statement_timeout: float, schema: str, **pool: Any) -> AsyncEngine:
    """An asyncpg engine whose statements the server stops after `statement_timeout` seconds (0: never; its
    statement_timeout, lock waits included, as MariaDB's), the log-in after CONNECT_TIMEOUT; the site's `schema` first
    on the search path. A server that stops answering fails the call a little later (postgres_deadline.py)."""
    from toolsync_tui.engine.moodle.postgres_deadline import deadline_engine  # PostgreSQL sites only: asyncpg's import

    settings = {"application_name": "toolsync", "statement_timeout": str(int(statement_timeout * 1000))}
    # No JIT compilation: a run's statements are short, and on tables the server has no statistics of yet their
    # estimated costs pass jit_above_cost, which then compiled for longer than the statement ran (300 ms for 18 ms).
    settings["jit"] = "off"
    # A plan for each statement's own values (not the generic plan of its prepared statement after 5 runs): an IN
    # list of constants is hashed, and a table the server has no statistics of is estimated from the values given.
    settings["plan_cache_mode"] = "force_custom_plan"
    if schema:
        settings["search_path"] = schema
    return deadline_engine(url, statement_timeout, CONNECT_TIMEOUT, settings, **pool)


def _startup_words(exc: BaseException) -> str:
    """Why the start-up check failed, in the words of its class (db_errors.py); a driver-less failure as it is."""
    return describe(exc) if isinstance(exc, DBAPIError) else _reason(exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
