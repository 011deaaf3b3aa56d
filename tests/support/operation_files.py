"""Running an operation on a file dropped in the inbox."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.datadir.store import FOLDERS, DataStore, StoredName, stamp_time
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.rows import Outcome, outcome_rows
from toolsync_tui.engine.run.command_file import ColumnSpec
from toolsync_tui.engine.run.operation import Operation
from toolsync_tui.engine.run.pipeline import RunResult, run_operation


def identifiers_by_id(config: Config, operation: str, *names: str) -> None:
    """Set the operation's identifier settings to their default (id), whatever the sandbox's configuration names."""
    for name in names:
        config.set(f"operations.{operation}.{name}", "id")


async def run_file(config: Config, gateway: MoodleGateway, operation: str, content: str, **options: Any) -> RunResult:
    """Run the operation on `content` as its preselected file (`operations.<operation>.file`) in the inbox."""
    inbox_file(config, config.operation(operation).file, content)
    return await run_operation(config, gateway, operation, **options)


def report_of(result: RunResult) -> str:
    """The run's text report."""
    assert result.report_path is not None
    return result.report_path.read_text()


def report_rows(result: RunResult) -> list[dict[str, str]]:
    """The run's table report, a dict per row."""
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def welcomes_counted(result: RunResult) -> int:
    """The welcome messages Moodle would send for the run's enrolments, as its note counts them (dry run or not;
    sent or not, without a bridge): 0 without a note."""
    for note in result.notes:
        if note.startswith("welcome messages"):
            found = re.search(r"would send (\d+)|(\d+) would be sent|(\d+) not sent, that|(\d+) sent", note)
            assert found is not None, note
            return int(next(g for g in found.groups() if g is not None))
    return 0


def dry_and_real(result: RunResult) -> list[tuple[int, str, str, str]]:
    """The run's outcomes as (line, part, outcome, action): what a dry run must predict of the real run."""
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        return [(int(r["line"]), r["part"], r["outcome"], r["action"]) for r in csv.DictReader(handle)]


Site = tuple[Config, MoodleGateway]


def inbox_file(config: Config, name: str, content: bytes | str) -> Path:
    store = DataStore(config.data_dir)
    store.ensure()
    path = store.inbox / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


class FlagPurge(Operation):
    """A test-only destructive operation: deletes the cache_flags rows of one flagtype named in the file."""

    name = "flagpurge"
    title = "Purge flags (test)"
    columns = ColumnSpec(required=("name",), headerless=("name",))
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"delete"})
    flagtype = ""

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        flags = self.schema.cache_flags
        existing = await self.gateway.fetch_in(
            conn, flags, "name", rows["name"].to_list(), ["id", "name"], where=flags.c.flagtype == self.flagtype
        )
        known = rows.join(existing, on="name", how="inner")
        if not dry_run:
            await self.gateway.delete_in(conn, flags, "id", known["id"].to_list())
            if "kill" in rows["name"].to_list():  # the server ends the connection in the middle of a batch
                kill = (
                    "KILL CONNECTION_ID()"
                    if self.gateway.kind == "mariadb"
                    else "SELECT pg_terminate_backend(pg_backend_pid())"
                )
                await conn.exec_driver_sql(kill)
            if "poison" in rows["name"].to_list():  # a write the database refuses: the batch must roll back
                await self.gateway.insert_many(
                    conn, flags, [{"flagtype": "x", "name": "x", "value": None, "expiry": 0}]
                )
        missing = rows.join(existing, on="name", how="anti")
        return pl.concat(
            [
                outcome_rows(known, Outcome.DELETED, "delete", pl.col("name"), "deleted"),
                outcome_rows(missing, Outcome.FAILED, "delete", pl.col("name"), "no such flag"),
            ]
        ).sort("line")

    async def safety_base(self, conn: AsyncConnection) -> int:
        flags = self.schema.cache_flags
        return int((await conn.execute(select(func.count()).where(flags.c.flagtype == self.flagtype))).scalar_one())


async def run_operations(config: Config, *runs: tuple[str, bool]) -> list[RunResult]:
    """(operation, dry run) in turn on the sandbox, as the command line would run them."""
    gateway = open_gateway(config)
    try:
        return [await run_operation(config, gateway, name, dry_run=dry_run) for name, dry_run in runs]
    finally:
        await gateway.close()


def date_by_stamp(data_dir: Path) -> None:
    """Give every file of the history the time its name's stamp says: runs of one test are seconds apart at most."""
    for folder in FOLDERS.values():
        for path in (data_dir / folder).iterdir():
            name = StoredName.of(path)
            assert name is not None, path
            moment = stamp_time(name.stamp).timestamp()
            os.utime(path, (moment, moment))


def header(*columns: str) -> str:
    """A command file's header line."""
    return ";".join(columns) + "\n"
