"""Reading rows by exact key tuples: `WHERE (a, b) IN ((1, 2), (3, 4) ...)`, one statement per chunk of tuples.

The bulk reads of an enrolment batch are per (instance, user), (user, context, role) or (group, user): asking for
`a IN (...) AND b IN (...)` instead returns their cross product, which grows with the table (at 1,000,000 stored
enrolments, every user of a batch brings back ~50 enrolments for the one the row names). A row-constructor IN list
is a semi-join on the unique or compound index on MariaDB (and a row-value IN (VALUES ...) on SQLite).

The keys are integers, written into the statement text (int() of each: nothing else can get in); the SQL is built
here rather than by SQLAlchemy, whose expanding IN renders and binds thousands of parameters per statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from ..gateway import MoodleGateway

TUPLES = 5000  # key tuples a statement


def index_on(table: Table, columns: Sequence[str]) -> str | None:
    """The name of the table's index on exactly these columns, in this order (None when it has none)."""
    for index in table.indexes:
        if [c.name for c in index.columns] == list(columns) and index.name is not None:
            return str(index.name)
    return None


async def fetch_tuples(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    key: Sequence[str],
    values: Iterable[Sequence[Any]],
    schema: dict[str, type[pl.DataType]],
    *,
    where: Sequence[tuple[str, int | str]] = (),
    index: str | None = None,
) -> pl.DataFrame:
    """The `schema` columns of the rows whose `key` columns are one of `values` (integer tuples; a tuple with a
    null is left out) and whose `where` columns equal the given constants. `index`: forced on MariaDB."""
    wanted = sorted({tuple(int(v) for v in value) for value in values if all(v is not None for v in value)})
    if not wanted:
        return pl.DataFrame(schema=schema)
    mariadb = gateway.kind == "mariadb"
    quote = gateway.engine.dialect.identifier_preparer.quote
    columns = list(schema)
    head = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table.name)}"
    if index is not None and mariadb:
        head += f" FORCE INDEX ({quote(index)})"
    conditions = [f"{quote(name)} = {_literal(value)}" for name, value in where]
    row_key = "(" + ", ".join(quote(c) for c in key) + ")"
    found: list[Sequence[Any]] = []
    for start in range(0, len(wanted), TUPLES):
        part = wanted[start : start + TUPLES]
        tuples = ", ".join("(" + ", ".join(map(str, value)) + ")" for value in part)
        member = f"{row_key} IN ({tuples})" if mariadb else f"{row_key} IN (VALUES {tuples})"
        sql = f"{head} WHERE {' AND '.join([*conditions, member])}"
        found.extend(await conn.exec_driver_sql(sql))
    if not found:
        return pl.DataFrame(schema=schema)
    # Column by column: faster than polars' row orientation for thousands of rows.
    data = dict(zip(columns, map(list, zip(*found, strict=True)), strict=True))
    return pl.DataFrame(data, schema=schema)


def _literal(value: int | str) -> str:
    if isinstance(value, int):
        return str(int(value))
    if value == "":
        return "''"
    raise ValueError("only integers and the empty string are written into the statement")
