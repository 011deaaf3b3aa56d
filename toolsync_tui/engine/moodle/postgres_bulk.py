"""Bulk statements for Moodle sites on PostgreSQL (asyncpg): each column of a chunk of rows sent as one array.

`INSERT ... SELECT ... FROM unnest($1::bigint[], $2::text[], ...)` and `UPDATE ... FROM unnest(...)` carry a chunk in
as many parameters as it has columns: no statement text grows with the rows, nothing is escaped, asyncpg encodes
the arrays in binary, and the 32,767-parameter limit of PostgreSQL's protocol never applies.

The arrays are of the columns' base types (bigint, text, numeric ...), never varchar(n): an explicit cast to
varchar(n) would cut a long value silently, while the assignment to the column refuses it, as MariaDB's strict mode
does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Integer, LargeBinary, Numeric, Table
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

ORDER = "toolsync_n"  # the ordinal of each row in its chunk (WITH ORDINALITY)


def _base_type(kind: TypeEngine[Any]) -> tuple[str, Callable[[Any], Any]]:
    """The array element type of a column, and the conversion of a Python value to it (values come from files and
    frames as text or numbers; MariaDB converts them itself, asyncpg's binary encoders do not)."""
    if isinstance(kind, Integer):
        return "bigint", lambda v: int(v)
    if isinstance(kind, Float):
        return "double precision", lambda v: float(v)
    if isinstance(kind, Numeric):
        return "numeric", lambda v: v if isinstance(v, Decimal) else Decimal(str(v))
    if isinstance(kind, LargeBinary):
        return "bytea", lambda v: v if isinstance(v, bytes) else str(v).encode()
    return "text", lambda v: v if isinstance(v, str) else str(int(v) if isinstance(v, bool) else v)


def _arrays(table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Any]]:
    """Per column: its cast (`$n::type[]`) and its values as one list (None stays None). A value the column's type
    cannot take is the server's refusal of the statement, as MariaDB's strict mode refuses it (DataError)."""
    casts, arrays = [], []
    for number, name in enumerate(names, 1):
        kind, convert = _base_type(table.c[name].type)
        casts.append(f"${number}::{kind}[]")
        try:
            arrays.append([None if row.get(name) is None else convert(row[name]) for row in rows])
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise DataError(
                f"{table.name}.{name}", None, ValueError(f"{table.name}.{name}: not a {kind}: {exc}")
            ) from None
    return casts, arrays


async def insert_returning(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], quote: Callable[[str], str]
) -> list[int]:
    """One INSERT of `rows` (the same columns each); their new ids in the rows' order.

    The rows go in in their order (ORDER BY the ordinal), each taking the id sequence's next value as it goes in:
    the ids rise with the rows, whatever other sessions take meanwhile, so the returned ids sorted are the rows' ids.
    """
    names = list(rows[0])
    casts, arrays = _arrays(table, names, rows)
    listed = ", ".join(quote(n) for n in names)
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    sql = (
        f"INSERT INTO {quote(table.name)} ({listed}) SELECT {aliases} FROM unnest({', '.join(casts)}) "
        f"WITH ORDINALITY AS v({aliases}, {ORDER}) ORDER BY {ORDER} RETURNING id"
    )
    result = await conn.exec_driver_sql(sql, tuple(arrays))
    return sorted(int(row[0]) for row in result)


async def update_from_arrays(
    conn: AsyncConnection,
    table: Table,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    quote: Callable[[str], str],
) -> None:
    """One UPDATE of `columns` to each row's values, joined on `key`; a column a row lacks keeps its stored value."""
    partial = [name for name in columns if any(name not in row for row in rows)]
    names = [key, *columns]
    casts, arrays = _arrays(table, names, rows)
    for name in partial:
        casts.append(f"${len(casts) + 1}::boolean[]")
        arrays.append([name in row for row in rows])
    aliases = [f"c{i}" for i in range(len(names))] + [f"g{i}" for i in range(len(partial))]
    target = quote(table.name)

    def value(i: int, name: str) -> str:
        if name not in partial:
            return f"v.c{i}"
        return f"CASE WHEN v.g{partial.index(name)} THEN v.c{i} ELSE {target}.{quote(name)} END"

    assignments = ", ".join(f"{quote(name)} = {value(i, name)}" for i, name in enumerate(names) if i > 0)
    sql = (
        f"UPDATE {target} SET {assignments} FROM unnest({', '.join(casts)}) AS v({', '.join(aliases)}) "
        f"WHERE {target}.{quote(key)} = v.c0"
    )
    await conn.exec_driver_sql(sql, tuple(arrays))
