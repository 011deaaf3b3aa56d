"""The project's table declarations and sandbox seed agree with the real Moodle 4.5 dump, on MariaDB and on PostgreSQL.

Each table toolsync declares is compared with the dump of the module's server (`server_kind`): columns in order, types
(MariaDB's names; on PostgreSQL the mapping of ../shared/moodle/README.md), NOT NULL, defaults, the id's generator
(AUTO_INCREMENT; Moodle's BIGSERIAL sequence `<table>_id_seq`), indexes and unique keys. The tables toolsync creates
from the same declarations (test databases, the sandbox: `project_db_url`) must come out as the dump's tables, and the
baseline rows it seeds them with must be the dump's rows.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import mysql

from tests.conftest import run_blocking
from tests.support.db_schema import AUTO, Column, Index, TableShape, canonical_default, read_tables
from toolsync_tui.engine.moodle.baseline import seed_rows
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.schema import MoodleSchema

SCHEMA = MoodleSchema("mdl_")
TABLES = sorted(SCHEMA.metadata.tables.values(), key=lambda t: t.name)
TABLE_NAMES = [table.name for table in TABLES]
MYSQL_NAMES = {"NUMERIC": "decimal", "INTEGER": "int"}  # the names information_schema uses
# README "The same site on PostgreSQL": Moodle's PostgreSQL type for each of its MariaDB types.
PG_TYPES = {
    "bigint": "bigint",
    "int": "integer",
    "mediumint": "integer",
    "smallint": "smallint",
    "tinyint": "smallint",
    "longtext": "text",
    "float": "real",
    "double": "double precision",
    "longblob": "bytea",
}
# Indexes Moodle makes on one server only (README): toolsync declares none of them.
SERVER_ONLY_INDEXES: dict[str, dict[str, set[Index]]] = {
    "mariadb": {},
    # for `path LIKE '/1/%'`: a C.UTF-8 database's default operator class cannot serve LIKE
    "postgresql": {"mdl_context": {("mdl_cont_pat_ix_pattern", "path varchar_pattern_ops", False, "btree")}},
}


def declared_type(column: Any) -> str:
    """The MariaDB type a declaration compiles to, as information_schema names it."""
    compiled = column.type.compile(dialect=mysql.dialect())
    name, _, size = compiled.partition("(")
    name = MYSQL_NAMES.get(name, name.lower())
    return f"{name}({size.replace(' ', '')}" if size and name in ("varchar", "decimal") else name


def pg_type(mariadb_type: str) -> str:
    """Moodle's PostgreSQL type for one of its MariaDB types: varchar(n) -> character varying(n), decimal -> numeric."""
    name, _, size = mariadb_type.partition("(")
    if name == "varchar":
        return f"character varying({size}"
    if name == "decimal":
        return f"numeric({size}"
    return PG_TYPES[name]


def declared_columns(table: Any, server_kind: str) -> list[Column]:
    columns: list[Column] = []
    for column in table.columns:
        column_type = declared_type(column) if server_kind == "mariadb" else pg_type(declared_type(column))
        default = column.server_default.arg if column.server_default is not None else None
        columns.append(
            (
                column.name,
                column_type,
                bool(column.nullable),
                AUTO if column.primary_key else canonical_default(column_type, default),
            )
        )
    return columns


@pytest.fixture(scope="module")
def dump_tables(dump_db_url: str) -> dict[str, TableShape]:
    return run_blocking(read_tables(dump_db_url, TABLE_NAMES))


@pytest.fixture(scope="module")
def created_tables(project_db_url: str) -> dict[str, TableShape]:
    """The declared tables as toolsync creates them (metadata.create_all, then the baseline rows)."""
    return run_blocking(read_tables(project_db_url, TABLE_NAMES))


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_columns_types_nullability_and_defaults(
    table: Any, server_kind: str, dump_tables: dict[str, TableShape]
) -> None:
    assert table.name in dump_tables, f"{table.name} is not a table of the real Moodle 4.5 schema"
    real = dump_tables[table.name]
    assert declared_columns(table, server_kind) == real.columns
    assert tuple(c.name for c in table.primary_key.columns) == real.primary_key == ("id",)
    if server_kind == "postgresql":  # "auto" is nextval on <table>_id_seq; the sequence must be the column's own
        assert real.id_sequence == f"{table.name}_id_seq"


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_indexes_and_unique_keys(table: Any, server_kind: str, dump_tables: dict[str, TableShape]) -> None:
    declared = {
        (index.name, ",".join(c.name for c in index.columns), bool(index.unique), "btree") for index in table.indexes
    }
    server_only = SERVER_ONLY_INDEXES[server_kind].get(table.name, set())
    assert declared | server_only == dump_tables[table.name].indexes


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_declarations_create_the_dump_s_tables(
    table: Any, server_kind: str, dump_tables: dict[str, TableShape], created_tables: dict[str, TableShape]
) -> None:
    """What create_all makes of a declaration on this server is Moodle's table: same types (bigint, not integer,
    on PostgreSQL), NOT NULL, defaults, indexes, and the id's generator named as Moodle's (mdl_X_id_seq)."""
    real, created = dump_tables[table.name], created_tables[table.name]
    assert created.columns == real.columns
    assert created.collations == real.collations, "text compares as on the site (case, accents)"
    assert created.indexes == real.indexes - SERVER_ONLY_INDEXES[server_kind].get(table.name, set())
    assert created.primary_key == real.primary_key
    assert created.id_sequence == real.id_sequence
    next_id, max_id = created.next_id, created.max_id
    assert next_id is not None, "the id has no generator"
    # The baseline rows carry explicit ids: the next id must come after them (PostgreSQL's sequence does not move).
    assert max_id is None or next_id > max_id, f"the next id {next_id} is a baseline row's (max {max_id})"


# Values that differ between two installs of the same site (README): times, hashes, what comes from the web address and
# the data folder. The seed blanks credentials and site secrets.
PER_INSTALL_COLUMNS = {
    "course": {"timecreated", "timemodified", "cacherev"},
    "course_categories": {"timemodified"},
    "user": {"timemodified"},
    "mnet_host": {"wwwroot", "ip_address"},
}
PER_INSTALL_CONFIG = {
    *("themerev", "jsrev", "templaterev", "langrev", "localcachedirpurged", "scheduledtaskreset"),  # times
    *("allcomponenthash", "geoip2file", "chat_serverhost"),
}
SITE_SECRETS = re.compile(r"salt|secret|privatekey|siteidentifier|cronremotepassword")  # as extract_sandbox_seed.py
BLANKED = {"user": {"password"}}


def row_key(table: str, row: dict[str, Any]) -> Any:
    """config_plugins rows match on (plugin, name): the PostgreSQL install gave 176 `message` rows other ids."""
    if table == "config_plugins":
        return (row["plugin"], row["name"])
    return row["name"] if table == "config" else row["id"]


async def dump_rows(url: str, tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    gateway = MoodleGateway.for_url(url, "mdl_")
    try:
        async with gateway.reading() as conn:
            rows: dict[str, list[dict[str, Any]]] = {}
            for table, seeded in tables.items():
                where = ""
                if table == "context":  # the seed keeps the site's, the front page's, a category's and course's
                    where = " WHERE contextlevel IN (10, 30, 40, 50)"
                if table == "config_plugins":  # the plugins whose settings the engine reads
                    plugins = ",".join(sorted({f"'{row['plugin']}'" for row in seeded}))
                    where = f" WHERE plugin IN ({plugins})"
                result = await conn.execute(text(f"SELECT * FROM mdl_{table}{where}"))
                rows[table] = [dict(row._mapping) for row in result]
            return rows
    finally:
        await gateway.close()


def test_sandbox_seed_holds_the_real_baseline_rows(dump_db_url: str) -> None:
    seed = seed_rows()
    real = run_blocking(dump_rows(dump_db_url, seed))
    for table, seeded in seed.items():
        real_rows = {row_key(table, row): row for row in real[table]}
        assert {row_key(table, row) for row in seeded} == set(real_rows), table
        for row in seeded:
            key = row_key(table, row)
            columns = set(row) - PER_INSTALL_COLUMNS.get(table, set()) - BLANKED.get(table, set())
            if table == "config_plugins":
                columns.discard("id")  # matched on (plugin, name), never on id
            if table == "config" and (row["name"] in PER_INSTALL_CONFIG or SITE_SECRETS.search(row["name"])):
                columns.discard("value")
            assert {c: row[c] for c in columns} == {c: real_rows[key][c] for c in columns}, (table, key)
            assert set(row) == set(real_rows[key]), (table, "the seed has every column")
    assert all(row["password"] == "" for row in seed["user"]), "no credential of the lab site in the sandbox"
    assert all(row["value"] == "" for row in seed["config"] if SITE_SECRETS.search(row["name"])), "no site secret"
