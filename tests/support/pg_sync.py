"""A blocking PostgreSQL connection with the part of pymysql's interface the tests' direct reads use, so that helpers
written for MariaDB (table_compare.connect(url) and its callers) read a PostgreSQL site the same way.

asyncpg (toolsync's own driver, no second one to install) runs on an event loop of its own thread: callable from
synchronous code and from inside a running loop alike. Placeholders are pymysql's `%s`, turned into `$1, $2, ...`.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

T = TypeVar("T")


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


class PgConnection:
    """One asyncpg connection, autocommit (each statement its own transaction, as table_compare's pymysql ones)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-sync", daemon=True)
        self._thread.start()
        try:
            self._conn: asyncpg.Connection = self._call(
                asyncpg.connect(
                    host=parsed.host or "127.0.0.1",
                    port=parsed.port or 5432,
                    user=parsed.username,
                    password=parsed.password,
                    database=parsed.database,
                )
            )
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def fetch(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """The rows of one statement (none for a statement that returns none), as dicts in column order; with params,
        its %s placeholders take them (without, the SQL is sent as it is, as pymysql does)."""
        if params is None:
            records = self._call(self._conn.fetch(sql))
        else:
            records = self._call(self._conn.fetch(_numbered(sql), *params))
        return [dict(record.items()) for record in records]

    def cursor(self, cursor_class: Any = None) -> PgCursor:
        """A cursor returning tuples, or dicts when given pymysql's DictCursor (any class named *Dict*)."""
        return PgCursor(self, as_dicts=cursor_class is not None and "Dict" in getattr(cursor_class, "__name__", ""))

    def close(self) -> None:
        try:
            self._call(self._conn.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class PgCursor:
    def __init__(self, connection: PgConnection, *, as_dicts: bool) -> None:
        self._connection = connection
        self._as_dicts = as_dicts
        self._rows: list[Any] = []

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        rows = self._connection.fetch(sql, params)
        self._rows = rows if self._as_dicts else [tuple(row.values()) for row in rows]
        return len(rows)

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def __enter__(self) -> PgCursor:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._rows = []


def _numbered(sql: str) -> str:
    """pymysql's %s placeholders as PostgreSQL's $1, $2, ... (%% stays a literal %)."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match[0] == "%%":
            return "%"
        count += 1
        return f"${count}"

    return re.sub(r"%%|%s", number, sql)
