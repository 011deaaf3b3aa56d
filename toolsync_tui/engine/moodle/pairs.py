"""Reading rows by exact key tuples: `WHERE (a, b) IN ((1, 2), (3, 4) ...)`, one statement per chunk of tuples.

The bulk reads of an enrolment batch are per (instance, user), (user, context, role) or (group, user): asking for
`a IN (...) AND b IN (...)` instead returns their cross product, which grows with the table (at 1,000,000 stored
enrolments, every user of a batch brings back ~50 enrolments for the one the row names). A row-constructor IN list
is a semi-join on the unique or compound index on MariaDB (and a row-value IN (VALUES ...) on SQLite).

The keys are integers (cast to Int64 by polars: nothing else can get in), written into the statement text; the SQL is
built here rather than by SQLAlchemy, whose expanding IN renders and binds thousands of parameters per statement.

On PostgreSQL the tuples go in as one bigint array per key column, and each is looked up on its own by a LATERAL
subquery (`OFFSET 0` keeps the planner from flattening it into a join): an index probe a tuple, whatever the
statistics say. Its planner turned `IN (VALUES ...)` into a nested loop comparing every tuple with every stored row
on a table not yet analyzed (87 million comparisons for 5,000 tuples against 20,000 role assignments, 50 s) and
into a hash join over the whole table once analyzed: either way the cost grew with the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway, rows_frame

TUPLES = 5000  # key tuples a statement


async def fetch_tuples(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    key: Sequence[str],
    values: pl.DataFrame,
    schema: dict[str, type[pl.DataType]],
    *,
    where: Sequence[tuple[str, int | str]] = (),
) -> pl.DataFrame:
    """The `schema` columns of the rows whose `key` columns are one of the rows of `values` (integer columns, in
    `key` order; a row with a null is left out) and whose `where` columns equal the given constants. On MariaDB
    through the index that leads with `key` (mariadb_plans.py)."""
    keys = values.select(pl.all().cast(pl.Int64)).drop_nulls().unique().sort(pl.all())
    if gateway.kind == "postgresql":
        return await _fetch_lateral(gateway, conn, table, key, keys, schema, where)
    wanted = (
        keys
        # Each tuple's text, "(1, 2)", written by polars: thousands of them per statement.
        .select(pl.format("(" + ", ".join(["{}"] * values.width) + ")", *values.columns).alias("tuple"))["tuple"]
    )
    if wanted.is_empty():
        return pl.DataFrame(schema=schema)
    mariadb = gateway.kind == "mariadb"
    quote = gateway.quote
    columns = list(schema)
    head = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table.name)}"
    if index := gateway.forced_index(table, key, [name for name, _ in where]):
        head += f" FORCE INDEX ({quote(index)})"
    conditions = [f"{quote(name)} = {_literal(value)}" for name, value in where]
    row_key = "(" + ", ".join(quote(c) for c in key) + ")"
    found: list[Sequence[Any]] = []
    for start in range(0, len(wanted), TUPLES):
        tuples = ", ".join(wanted.slice(start, TUPLES).to_list())
        member = f"{row_key} IN ({tuples})" if mariadb else f"{row_key} IN (VALUES {tuples})"
        sql = f"{head} WHERE {' AND '.join([*conditions, member])}"
        found.extend(await conn.exec_driver_sql(sql))
    return rows_frame(found, schema)


async def _fetch_lateral(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    key: Sequence[str],
    keys: pl.DataFrame,
    schema: dict[str, type[pl.DataType]],
    where: Sequence[tuple[str, int | str]],
) -> pl.DataFrame:
    """fetch_tuples on PostgreSQL: the tuples as arrays, one index probe each (see the module's docstring)."""
    if keys.is_empty():
        return pl.DataFrame(schema=schema)
    quote = gateway.engine.dialect.identifier_preparer.quote
    columns = list(schema)
    aliases = [f"toolsync_k{i}" for i in range(len(key))]
    arrays = ", ".join(f"${i}::bigint[]" for i in range(1, len(key) + 1))
    conditions = [f"{quote(c)} = k.{a}" for c, a in zip(key, aliases, strict=True)]
    conditions += [f"{quote(name)} = {_literal(value)}" for name, value in where]
    sql = (
        f"SELECT {', '.join(f't.{quote(c)}' for c in columns)} FROM unnest({arrays}) AS k({', '.join(aliases)}) "
        f"CROSS JOIN LATERAL (SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table.name)} "
        f"WHERE {' AND '.join(conditions)} OFFSET 0) AS t"
    )
    found: list[Sequence[Any]] = []
    for start in range(0, keys.height, TUPLES):
        chunk = keys.slice(start, TUPLES)
        found.extend(await conn.exec_driver_sql(sql, tuple(chunk[c].to_list() for c in keys.columns)))
    return rows_frame(found, schema)


def _literal(value: int | str) -> str:
    if isinstance(value, int):
        return str(int(value))
    if value == "":
        return "''"
    raise ValueError("only integers and the empty string are written into the statement")
