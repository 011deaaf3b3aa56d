"""A live database's tables as the schema conformance test compares them, read the same way from MariaDB and
PostgreSQL: columns (type as the server names it, NOT NULL, default), indexes, primary key, the id's generator.

Types keep each server's own names (MariaDB `bigint`, `varchar(255)`; PostgreSQL `bigint`, `character varying(255)`);
defaults become one canonical text per value, so that `'0'::bigint` (a table SQLAlchemy created) and `0` (Moodle's)
compare equal while `'0'` on a varchar column still differs from `0` by its column's type. The id's generator reads
"auto": MariaDB's AUTO_INCREMENT, or on PostgreSQL `nextval` on the sequence `<table>_id_seq` (Moodle's BIGSERIAL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway

Column = tuple[str, str, bool, str | None]  # name, type, nullable, canonical default
Index = tuple[
    str, str, bool, str
]  # name, comma-separated key columns (with a non-default operator class), unique, method

# Types whose defaults are numbers: compared by value ('100.00000' on MariaDB is Moodle's '100' on PostgreSQL).
NUMERIC_TYPES = re.compile(r"^(bigint|int|integer|mediumint|smallint|tinyint|decimal|numeric|float|real|double)\b")
# PostgreSQL's rendering of a typed literal default: '-1'::integer, ''::character varying, 'x'::character varying(9).
PG_TYPED_LITERAL = re.compile(r"^'((?:[^']|'')*)'::[a-z ]+(?:\(\d+(?:,\d+)?\))?$")
AUTO = "auto"


@dataclass
class TableShape:
    columns: list[Column] = field(default_factory=list)
    collations: dict[str, str] = field(default_factory=dict)  # text columns' collation: what `=` and ORDER BY obey
    indexes: set[Index] = field(default_factory=set)
    primary_key: tuple[str, ...] = ()
    id_sequence: str | None = None  # PostgreSQL: the sequence owned by the id column
    next_id: int | None = None  # the id the next insert without one gets
    max_id: int | None = None


def canonical_default(column_type: str, value: str | None) -> str | None:
    """One text per default value: numbers by value (1.0 == 1.00000), strings verbatim."""
    if value is None or not NUMERIC_TYPES.match(column_type):
        return value
    try:
        return format(Decimal(value).normalize(), "f")
    except InvalidOperation:
        return value


def pg_default(table: str, column_type: str, expression: str | None) -> str | None:
    """PostgreSQL's default expression (pg_get_expr) as a canonical value; anything unexpected stays verbatim."""
    if expression is None or expression.upper().startswith("NULL::"):
        return None
    if expression == f"nextval('{table}_id_seq'::regclass)":
        return AUTO
    literal = PG_TYPED_LITERAL.match(expression)
    return canonical_default(column_type, literal.group(1).replace("''", "'") if literal else expression)


def mariadb_default(column_type: str, raw: str | None, extra: str) -> str | None:
    """MariaDB's COLUMN_DEFAULT (string literals quoted since 10.2.7; 'NULL' for none) as a canonical value."""
    if "auto_increment" in extra:
        return AUTO
    if raw is None or raw == "NULL":
        return None
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    return canonical_default(column_type, raw)


async def read_tables(url: str, tables: list[str]) -> dict[str, TableShape]:
    """The named tables of the database at `url` (only those that exist)."""
    gateway = MoodleGateway.for_url(url, "mdl_")
    try:
        async with gateway.reading() as conn:
            shapes = await (_read_postgresql(conn) if gateway.kind == "postgresql" else _read_mariadb(conn))
            present = [name for name in tables if name in shapes]
            await _read_max_ids(conn, shapes, [name for name in present if "id" in _names(shapes[name])])
    finally:
        await gateway.close()
    return {name: shapes[name] for name in present}


def _names(shape: TableShape) -> list[str]:
    return [column[0] for column in shape.columns]


async def _rows(conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.execute(text(sql))]


async def _read_max_ids(conn: AsyncConnection, shapes: dict[str, TableShape], tables: list[str]) -> None:
    if not tables:
        return
    sql = " UNION ALL ".join(f"SELECT '{name}', MAX(id) FROM {name}" for name in tables)
    for name, max_id in await _rows(conn, sql):
        shapes[name].max_id = None if max_id is None else int(max_id)


async def _read_postgresql(conn: AsyncConnection) -> dict[str, TableShape]:
    shapes: dict[str, TableShape] = {}
    # A column of the "default" collation compares as its database does: the database's collation stands for it.
    for table, name, column_type, nullable, default, collation in await _rows(
        conn,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid), CASE WHEN co.collname = 'default' "
        "THEN (SELECT datcollate FROM pg_database WHERE datname = current_database()) ELSE co.collname END "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY c.relname, a.attnum",
    ):
        shape = shapes.setdefault(table, TableShape())
        shape.columns.append((name, column_type, bool(nullable), pg_default(table, column_type, default)))
        if collation is not None:
            shape.collations[name] = collation
    # Key columns with their operator class when it is not the default one (varchar_pattern_ops), expressions as
    # PostgreSQL prints them, a partial index's predicate after WHERE.
    for table, name, unique, primary, method, columns, predicate in await _rows(
        conn,
        "SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary, am.amname, "
        "array_to_string(ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true) "
        "|| CASE WHEN oc.opcdefault THEN '' ELSE ' ' || oc.opcname END "
        "FROM generate_series(1, ix.indnkeyatts) k JOIN pg_opclass oc ON oc.oid = ix.indclass[k - 1] "
        "ORDER BY k), ','), "
        "pg_get_expr(ix.indpred, ix.indrelid) "
        "FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam "
        "WHERE n.nspname = current_schema()",
    ):
        shape = shapes.setdefault(table, TableShape())
        if primary:
            shape.primary_key = tuple(columns.split(","))
        else:
            keys = f"{columns} WHERE {predicate}" if predicate else columns
            shape.indexes.add((name, keys, bool(unique), method))
    # The sequence owned by the id column (pg_depend 'a': OWNED BY, as BIGSERIAL makes; 'i': an identity column).
    for table, sequence, last_value, start_value, increment in await _rows(
        conn,
        "SELECT t.relname, s.relname, ps.last_value, ps.start_value, ps.increment_by "
        "FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid AND a.attname = 'id' "
        "JOIN pg_namespace sn ON sn.oid = s.relnamespace "
        "JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = s.relname "
        "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
        "AND d.deptype IN ('a', 'i') AND n.nspname = current_schema()",
    ):
        shape = shapes.setdefault(table, TableShape())
        shape.id_sequence = sequence
        # last_value is NULL until the sequence is first used or set (setval)
        shape.next_id = int(start_value) if last_value is None else int(last_value) + int(increment)
    return shapes


async def _read_mariadb(conn: AsyncConnection) -> dict[str, TableShape]:
    shapes: dict[str, TableShape] = {}
    for table, name, data_type, column_type, nullable, default, extra, collation in await _rows(
        conn,
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLLATION_NAME "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
    ):
        # Sizes only where Moodle's type depends on them: integer display widths (bigint(10)) are not types.
        shown = column_type if data_type in ("varchar", "decimal") else data_type
        shape = shapes.setdefault(table, TableShape())
        shape.columns.append((name, shown, nullable == "YES", mariadb_default(shown, default, extra)))
        if collation is not None:
            shape.collations[name] = collation
    for table, name, columns, non_unique, method in await _rows(
        conn,
        "SELECT TABLE_NAME, INDEX_NAME, GROUP_CONCAT(CONCAT(COLUMN_NAME, IFNULL(CONCAT('(', SUB_PART, ')'), '')) "
        "ORDER BY SEQ_IN_INDEX), MIN(NON_UNIQUE), MIN(INDEX_TYPE) "
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() GROUP BY TABLE_NAME, INDEX_NAME",
    ):
        shape = shapes.setdefault(table, TableShape())
        if name == "PRIMARY":
            shape.primary_key = tuple(columns.split(","))
        else:
            shape.indexes.add((name, columns, not int(non_unique), str(method).lower()))
    for table, next_id in await _rows(
        conn,
        "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND AUTO_INCREMENT IS NOT NULL",
    ):
        shapes.setdefault(table, TableShape()).next_id = int(next_id)
    return shapes
