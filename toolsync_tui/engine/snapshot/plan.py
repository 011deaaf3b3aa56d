"""Which records a snapshot run gives its action: the ledger's records of the operation's kind that still exist, are
in the file's scope, and that no row of the file names; as the operation's own command rows (source.py).

The scope is what the file names: for users every account the ledger holds (a users file is the site's list); for
enrolments the courses the file names, for group memberships the groups, for cohort memberships the cohorts, so that
an office feeding one faculty's file never unenrols another faculty's students. Ledger entries of records that no
longer exist are pruned on the way.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.ledger import KIND_TABLES, LedgerProblem, ledger_for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.moodle.site_settings import protected_accounts
from toolsync_tui.engine.run.command_file import CommandFile
from toolsync_tui.engine.run.guards import is_tryback
from toolsync_tui.engine.run.operation import Operation, SetupProblem, Source
from toolsync_tui.engine.snapshot import users
from toolsync_tui.engine.snapshot.kinds import Spec, spec_for
from toolsync_tui.engine.snapshot.named import Named, read_named
from toolsync_tui.engine.snapshot.source import SnapshotSource
from toolsync_tui.engine.words import plural

OPERATIONS = ("users", "enrols", "groupmembers", "cohorts")
USER_KEY = "userid_key"  # a record's user key, read beside its user id; the file's `userid` column
REASON = "not in the snapshot file"
SHOWN_LINES = 5


def snapshot_on(config: Config, operation: str) -> bool:
    return operation in OPERATIONS and getattr(config.operation(operation), "mode", "update") == "snapshot"


async def with_snapshot(
    config: Config, gateway: MoodleGateway, operation: Operation, source: Source, path: Path, notes: list[str]
) -> Source:
    """The run's source: `source` as it is, or with the snapshot's rows after its last line (notes say why none)."""
    if not snapshot_on(config, operation.name) or not isinstance(source, CommandFile):
        return source
    if is_tryback(path):  # a tryback, or a held run's removals: the snapshot rows of its run are in it already
        notes.append(
            "snapshot mode does not apply to a tryback: it holds only the rows that failed, not the whole truth"
        )
        return source
    try:
        return await _snapshot(config, gateway, operation, source, path, notes)
    except LedgerProblem as exc:
        raise SetupProblem(str(exc)) from None


async def _snapshot(
    config: Config, gateway: MoodleGateway, operation: Operation, source: CommandFile, path: Path, notes: list[str]
) -> Source:
    name = operation.name
    spec = None if name == "users" else spec_for(config, gateway, name, source.columns)
    if name == "users" and config.settings.operations.users.snapshot_action == "nothing":
        notes.append("snapshot mode with users.snapshot_action nothing: accounts the file no longer names are kept")
        return source
    keys = users.key_columns(config) if spec is None else [file_column(k) for k in spec.keys]
    named = read_named(operation.open_source(path), keys)  # a reading of its own: every row, whatever a run skips
    if named.unreadable:
        notes.append(
            f"snapshot mode removed nothing: {_listed(named.unreadable)} could not be read, so the file cannot say "
            "which records it no longer names; correct the file"
        )
        return source
    kind = "user" if spec is None else spec.kind
    ledger = await ledger_for_site(config.data_dir, gateway)
    owned = sorted(ledger.owned(kind))
    async with gateway.reading() as conn:
        if spec is None:
            records = await users.accounts(conn, gateway, owned, config)
        else:
            records = await spec.by_ids(conn, owned)
        protected = await protected_accounts(gateway, conn)
        existing = await existing_ids(conn, gateway, kind, owned)
    ledger.prune(kind, existing)  # a record outside the spec's query (another context ...) still exists: kept
    if spec is None:
        action = config.settings.operations.users.snapshot_action
        live = records.filter(users.live(action) & ~pl.col("id").is_in(list(protected)))
        cells = users.command_rows(users.unnamed(live, named, config, gateway.kind), action)
        added = {c: "" for c in cells.columns if c not in source.columns}
        words = "suspend" if action == "suspend" else "delete"
    else:
        cells, added = _command_rows(spec, records, named, protected, source.columns, operation)
        words = spec.action
    if cells.is_empty():
        return source
    notes.append(
        f"snapshot mode: {plural(cells.height, 'record')} toolsync manages that the file no longer names "
        f"({words}): the rows after the file's last line"
    )
    return SnapshotSource.of(source, added, cells)


def _command_rows(
    spec: Spec,
    records: pl.DataFrame,
    named: Named,
    protected: dict[int, str],
    columns: list[str],
    operation: Operation,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """The rows giving the spec's action to the live records of the file's scopes that no row names, and the columns
    they add to the file with the value its own rows read."""
    keyed = records.filter((pl.col("live") == 1) & ~pl.col("userid").is_in(list(protected)))
    keyed = keyed.filter(
        pl.all_horizontal(pl.col(k) != "" for k in spec.keys)
    )  # a key no row could name: not ours to judge
    # The scopes the file names, as the operation's lookups find them (a scope its rows cannot find is not its
    # business); inside them, what a row names compared loosely (matching.py: never narrower than the lookups).
    scope = [f"__scope_{k}" for k in spec.scope]
    names = [f"__{k}" for k in spec.keys]
    records_keyed = keyed.with_columns(
        *(spec.matches[k].stored(pl.col(k)).alias(f"__scope_{k}") for k in spec.scope),
        *(spec.matches[k].loose(pl.col(k)).alias(f"__{k}") for k in spec.keys),
    )
    given = named.cells
    file_scopes = given.select(spec.matches[k].given(pl.col(file_column(k))).alias(f"__scope_{k}") for k in spec.scope)
    file_names = given.select(spec.matches[k].loose(pl.col(file_column(k))).alias(f"__{k}") for k in spec.keys)
    in_scope = records_keyed.join(file_scopes.drop_nulls().unique(), on=scope, how="semi")
    left = in_scope.join(file_names.unique(), on=names, how="anti")
    wanted = [*spec.keys, *(c for c in spec.cells if file_column(c) in columns and c not in spec.keys)]
    cells = left.sort("id").select(
        *(pl.col(c).alias(file_column(c)) for c in dict.fromkeys(wanted)),
        *(pl.lit(v, dtype=pl.String).alias(n) for n, v in spec.command.items()),
    )
    default_cmd = getattr(operation.settings, "default_cmd", "")  # the file's own rows: the command they had
    added = {c: (default_cmd if c == "cmd" else "") for c in cells.columns if c not in columns}
    return cells, added


async def existing_ids(conn: AsyncConnection, gateway: MoodleGateway, kind: str, ids: list[int]) -> set[int]:
    """Which of these ids of a kind's table still exist."""
    table: Table = getattr(gateway.schema, KIND_TABLES[kind])  # the schema names its tables as Moodle does
    found: set[int] = set()
    for part in chunks(ids):
        found.update(int(i) for i in (await conn.execute(select(table.c.id).where(table.c.id.in_(part)))).scalars())
    return found


def file_column(cell: str) -> str:
    return "userid" if cell == USER_KEY else cell


def _listed(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:SHOWN_LINES]) + (", ..." if len(lines) > SHOWN_LINES else "")
    return f"line {shown}" if len(lines) == 1 else f"{len(lines)} rows (lines {shown})"


def delivered(source: Source) -> Source:
    """The file as it was delivered: a snapshot's without the rows it added (its archived copy, blanked passwords)."""
    return source.inner if isinstance(source, SnapshotSource) else source


def snapshot_reasons(source: Source, outcomes: pl.DataFrame) -> pl.DataFrame:
    """A batch's outcomes, the snapshot rows' saying where they come from."""
    if not isinstance(source, SnapshotSource) or outcomes.is_empty():
        return outcomes
    added = pl.col("line") >= source.first_line
    return outcomes.with_columns(
        pl.when(added)
        .then(pl.concat_str(pl.col("message"), pl.lit(f"; {REASON}")))
        .otherwise("message")
        .alias("message")
    )
