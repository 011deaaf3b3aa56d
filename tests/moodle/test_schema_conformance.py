"""The project's table declarations and sandbox seed agree with the real Moodle 4.5 dump."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import mysql

from tests.conftest import run_blocking
from toolsync_tui.engine.moodle.baseline import seed_rows
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.schema import MoodleSchema

SCHEMA = MoodleSchema("mdl_")
TYPE_NAMES = {"NUMERIC": "decimal", "INTEGER": "int"}  # the names information_schema uses


def declared_type(column: Any) -> str:
    compiled = column.type.compile(dialect=mysql.dialect())
    name, _, size = compiled.partition("(")
    name = TYPE_NAMES.get(name, name.lower())
    return f"{name}({size.replace(' ', '')}" if size and name in ("varchar", "decimal") else name


def real_type(data_type: str, column_type: str) -> str:
    if data_type in ("varchar", "decimal"):
        return column_type
    return data_type


async def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    gateway = MoodleGateway.for_url(url, "mdl_")
    try:
        async with gateway.reading() as conn:
            return [tuple(row) for row in await conn.execute(text(sql))]
    finally:
        await gateway.close()


@pytest.fixture(scope="module")
def real_columns(dump_db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    rows = run_blocking(
        query(
            dump_db_url,
            (
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"
            ),
        )
    )
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for table, *rest in rows:
        tables.setdefault(table, []).append(tuple(rest))
    return tables


@pytest.fixture(scope="module")
def real_indexes(dump_db_url: str) -> dict[str, set[tuple[str, str, bool]]]:
    rows = run_blocking(
        query(
            dump_db_url,
            (
                "SELECT TABLE_NAME, INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX), MIN(NON_UNIQUE) "
                "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME <> 'PRIMARY' "
                "GROUP BY TABLE_NAME, INDEX_NAME"
            ),
        )
    )
    indexes: dict[str, set[tuple[str, str, bool]]] = {}
    for table, name, columns, non_unique in rows:
        indexes.setdefault(table, set()).add((name, columns, not int(non_unique)))
    return indexes


def default_of(raw: str | None) -> str | None:
    if raw is None or raw == "NULL":
        return None
    return raw[1:-1] if raw.startswith("'") else raw


@pytest.mark.parametrize("table", sorted(SCHEMA.metadata.tables.values(), key=lambda t: t.name), ids=lambda t: t.name)
def test_columns_types_nullability_and_defaults(table: Any, real_columns: dict[str, list[tuple[Any, ...]]]) -> None:
    assert table.name in real_columns, f"{table.name} is not a table of the real Moodle 4.5 schema"
    real = [
        (
            name,
            real_type(dtype, ctype),
            nullable == "YES",
            default_of(default) if "auto_increment" not in extra else "auto",
        )
        for name, dtype, ctype, nullable, default, extra in real_columns[table.name]
    ]
    declared = [
        (
            c.name,
            declared_type(c),
            bool(c.nullable),
            "auto" if c.primary_key else (c.server_default.arg if c.server_default is not None else None),
        )
        for c in table.columns
    ]
    assert declared == real


@pytest.mark.parametrize("table", sorted(SCHEMA.metadata.tables.values(), key=lambda t: t.name), ids=lambda t: t.name)
def test_indexes_and_unique_keys(table: Any, real_indexes: dict[str, set[tuple[str, str, bool]]]) -> None:
    declared = {(index.name, ",".join(c.name for c in index.columns), bool(index.unique)) for index in table.indexes}
    assert declared == real_indexes.get(table.name, set())


def test_sandbox_seed_holds_the_real_baseline_rows(dump_db_url: str) -> None:
    seed = seed_rows()
    for table in ("context", "course", "course_categories", "role", "user", "mnet_host", "role_context_levels"):
        where = " WHERE contextlevel IN (10,30,40,50)" if table == "context" else ""
        real_ids = {row[0] for row in run_blocking(query(dump_db_url, f"SELECT id FROM mdl_{table}{where}"))}
        assert {row["id"] for row in seed[table]} == real_ids, table
    config = {row["name"]: row["value"] for row in seed["config"]}
    real = dict(
        run_blocking(
            query(
                dump_db_url,
                "SELECT name, value FROM mdl_config WHERE name IN "
                "('version','release','mnet_localhost_id','siteguest','siteadmins',"
                "'enrol_plugins_enabled','allowaccountssameemail')",
            )
        )
    )
    assert {name: config[name] for name in real} == real
    assert all(row["password"] == "" for row in seed["user"]), "no credential of the lab site in the sandbox"
    # The sandbox's courses get their Announcements forum through the forum module's row, found by name.
    modules = run_blocking(query(dump_db_url, "SELECT id, name FROM mdl_modules"))
    assert {(row["id"], row["name"]) for row in seed["modules"]} == set(modules)
    # ... and their social courses their default block, which must be an installed one (a row of `block`).
    blocks = run_blocking(query(dump_db_url, "SELECT id, name FROM mdl_block"))
    assert {(row["id"], row["name"]) for row in seed["block"]} == set(blocks)
