"""What the database takes: a column's length, and the size of one statement (the server's max_allowed_packet).

A value past either is refused by a strict server, which then rolls back the whole batch (a packet too large even
drops the connection), and cut short by a lax one, silently. The rows are checked against these before anything is
written (engine/run/value_limits.py), so that such a value fails its own row alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import String, Table, text
from sqlalchemy.ext.asyncio import AsyncConnection

DEFAULT_PACKET = 16 * 1024 * 1024  # MariaDB's default max_allowed_packet, until the server's own is read
# The "packet" of SQLite and PostgreSQL, whose only bound is a value's own: SQLite's SQLITE_MAX_LENGTH, PostgreSQL's
# 1 GB a field.
UNBOUNDED_PACKET = 1_000_000_000
# What a statement carries besides a row's file values: its SQL, the columns toolsync fills itself, the other rows'
# keys. A row's values must leave this much of the packet free.
STATEMENT_ROOM = 64 * 1024
# The characters the driver's escape() doubles (a backslash before each), as the statement's text carries them.
_ESCAPED = r"[\x00\n\r\x1a'\x22\\]"


@dataclass(frozen=True)
class ColumnLimit:
    """Where a file value goes, and how many characters it may have there (None: a text column, LONGTEXT in
    Moodle, whose only bound is the packet)."""

    table: str  # without the prefix, as the schema's attribute
    column: str
    chars: int | None


def column_limit(table: Table, name: str, prefix: str) -> ColumnLimit:
    """The limit of `table`.`name` as the schema (generated from Moodle's) declares it: VARCHAR(n) counts
    characters on utf8mb4; Moodle's text columns are all LONGTEXT."""
    kind = table.c[name].type
    chars = kind.length if isinstance(kind, String) and kind.length else None
    return ColumnLimit(table.name.removeprefix(prefix), name, chars)


async def read_packet(conn: AsyncConnection, kind: str) -> int:
    """The most bytes one statement may take on this server (read once a run)."""
    if kind != "mariadb":  # SQLite, PostgreSQL: no packet limit below a value's own (1 GB)
        return UNBOUNDED_PACKET
    value = (await conn.execute(text("SELECT @@max_allowed_packet"))).scalar()
    return int(value) if value else DEFAULT_PACKET


def value_room(packet: int) -> int:
    """The most bytes a row's file values may take together, as a statement's text carries them."""
    return max(packet - STATEMENT_ROOM, packet // 2)


def statement_bytes(value: pl.Expr) -> pl.Expr:
    """The bytes a text value takes in a statement's text: UTF-8, a backslash before each character escape() doubles,
    two quotes. Exact for aiomysql's escape_string; SQLite binds parameters, so this is an upper bound there."""
    return value.str.len_bytes().cast(pl.Int64) + value.str.count_matches(_ESCAPED).cast(pl.Int64) + 2
