"""Resolving file identifiers (id, idnumber, shortname, username ...) to database rows in bulk."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from ..gateway import MoodleGateway

NUMERIC_KEYS = frozenset({"id"})


async def find_by_key(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    field: str,
    keys: pl.Series,
    columns: Sequence[str],
    where: ColumnElement[bool] | None = None,
) -> pl.DataFrame:
    """Match each distinct key of `keys` (named like the series) to `table.field`.

    Returns one row per distinct key: the key, `problem` (why it cannot be looked up), the matched
    row with the lowest id (its `columns`), and `matches` (how many rows share the key). Text keys
    match case-insensitively, as Moodle's lookups do on MariaDB's default collation.
    """
    name = keys.name
    distinct = keys.unique().to_frame()
    numeric = field in NUMERIC_KEYS
    if numeric:
        distinct = distinct.with_columns(
            pl.when(pl.col(name).str.contains(r"^\d+$") | (pl.col(name) == ""))
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.format(f"{field} '{{}}' is not a number", pl.col(name)))
            .alias("problem")
        )
        lookup = distinct.filter(pl.col("problem").is_null() & (pl.col(name) != ""))
        join_key = pl.col(name).cast(pl.Int64, strict=False)
        values = lookup.select(join_key).to_series().to_list()
    else:
        distinct = distinct.with_columns(pl.lit(None, dtype=pl.String).alias("problem"))
        lookup = distinct.filter(pl.col(name) != "")
        join_key = pl.col(name).str.to_lowercase()
        values = lookup[name].to_list()
    wanted = list(dict.fromkeys(["id", field, *columns]))
    found = await gateway.fetch_in(conn, table, field, values, wanted, where=where, casefold=not numeric)
    found = found.with_columns(
        (pl.col(field) if numeric else pl.col(field).cast(pl.String).str.to_lowercase()).alias("__join")
    )
    best = (
        found.sort("id")
        .group_by("__join", maintain_order=True)
        .agg(*(pl.col(c).first() for c in columns), pl.len().alias("matches"))
    )
    return distinct.with_columns(join_key.alias("__join")).join(best, on="__join", how="left").drop("__join")
