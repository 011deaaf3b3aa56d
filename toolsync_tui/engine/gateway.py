"""One async interface to the Moodle database: MariaDB/MySQL through aiomysql, or the SQLite sandbox.

SQL is built with SQLAlchemy Core, so the same statements serve both. Bulk helpers keep to one
statement per chunk of keys or rows: a batch of a command file costs a handful of round trips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import URL, ColumnElement, Table, case, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..config import Config
from .moodle_schema import MoodleSchema

# Keys per IN (...) list and rows per multi-row statement; well under MariaDB's packet limit.
CHUNK = 1000
CONNECT_TIMEOUT = 10  # seconds


class DatabaseError(Exception):
    """The database cannot be used: unreachable, wrong credentials, or not a compatible Moodle."""


@dataclass(frozen=True)
class SiteInfo:
    kind: str  # "mariadb" or "sqlite"
    label: str  # where: host:port/name or the SQLite file
    prefix: str
    release: str
    version: str

    @property
    def is_sandbox(self) -> bool:
        return self.kind == "sqlite"


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class MoodleGateway:
    def __init__(self, engine: AsyncEngine, schema: MoodleSchema, kind: str, label: str) -> None:
        self.engine = engine
        self.schema = schema
        self.kind = kind
        self.label = label

    @classmethod
    def for_mariadb(
        cls, *, host: str, port: int, user: str, password: str, database: str, prefix: str, socket: str = ""
    ) -> MoodleGateway:
        query = {"charset": "utf8mb4"} | ({"unix_socket": socket} if socket else {})
        url = URL.create(
            "mysql+aiomysql",
            username=user,
            password=password or None,
            host=None if socket else host,
            port=None if socket else port,
            database=database,
            query=query,
        )
        engine = create_async_engine(
            url, pool_size=2, max_overflow=2, pool_recycle=3600, connect_args={"connect_timeout": CONNECT_TIMEOUT}
        )
        where = socket or f"{host}:{port}"
        return cls(engine, MoodleSchema(prefix), "mariadb", f"{where}/{database}")

    @classmethod
    def for_url(cls, url: str, prefix: str) -> MoodleGateway:
        """Any SQLAlchemy async URL (tests and benchmarks use this)."""
        engine = create_async_engine(url)
        kind = "sqlite" if engine.dialect.name == "sqlite" else "mariadb"
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
        """One batch's writes: committed together, or rolled back together on any error."""
        async with self.engine.begin() as conn:
            yield conn

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
        except DatabaseError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(f"cannot use the database at {self.label}: {_reason(exc)}") from None
        return SiteInfo(
            kind=self.kind,
            label=self.label,
            prefix=self.schema.prefix,
            release=values.get("release", "?"),
            version=values.get("version", "?"),
        )

    async def _check_columns(self) -> None:
        async with self.reading() as conn:
            if self.kind == "sqlite":
                present = {}
                for table in self.schema.metadata.tables.values():
                    rows = await conn.execute(text(f'PRAGMA table_info("{table.name}")'))
                    present[table.name] = {row[1] for row in rows}
            else:
                rows = await conn.execute(
                    text(
                        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE :pattern"
                    ),
                    {"pattern": self.schema.prefix.replace("_", "\\_") + "%"},
                )
                present = {}
                for table_name, column_name in rows:
                    present.setdefault(table_name, set()).add(column_name)
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
        if casefold and self.kind == "sqlite":
            key_col = func.lower(key_col)
            values = [str(v).lower() for v in values]
        found: list[tuple[Any, ...]] = []
        for part in chunks(list(values)):
            query = select(*wanted).where(key_col.in_(part))
            if where is not None:
                query = query.where(where)
            found.extend(tuple(row) for row in await conn.execute(query))
        return pl.DataFrame(found, schema=list(columns), orient="row", infer_schema_length=None)

    async def insert_many(self, conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Multi-row INSERTs (the driver folds each chunk into one statement)."""
        for part in chunks(list(rows)):
            await conn.execute(insert(table), list(part))

    async def update_many(
        self, conn: AsyncConnection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Per-row values in one UPDATE per chunk: SET col = CASE key WHEN .. THEN .. END."""
        if not rows:
            return
        key_col = table.c[key]
        for part in chunks(list(rows)):
            columns = sorted({name for row in part for name in row if name != key})
            values = {}
            for name in columns:
                whens = [(key_col == row[key], row[name]) for row in part if name in row]
                values[name] = case(*whens, else_=table.c[name])
            keys = [row[key] for row in part]
            await conn.execute(update(table).where(key_col.in_(keys)).values(values))

    async def delete_in(self, conn: AsyncConnection, table: Table, key: str, values: Sequence[Any]) -> int:
        removed = 0
        for part in chunks(list(values)):
            result = await conn.execute(delete(table).where(table.c[key].in_(part)))
            removed += result.rowcount or 0
        return removed


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def open_gateway(config: Config) -> MoodleGateway:
    """The gateway for a configuration's [database] section."""
    settings = config.settings.database
    if settings.driver == "sqlite":
        path = config.resolve(settings.sqlite_path)
        if not path.exists():
            raise DatabaseError(f"sandbox database {path} does not exist: run `toolsync sandbox init`")
        return MoodleGateway.for_sqlite(path, settings.prefix)
    return MoodleGateway.for_mariadb(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=config.database_password,
        database=settings.name,
        prefix=settings.prefix,
        socket=settings.socket,
    )
