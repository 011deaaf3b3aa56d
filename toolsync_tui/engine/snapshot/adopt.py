"""`toolsync ledger adopt OPERATION FILE`: "these records are ours". The records a file names, resolved in bulk as a
run of the operation would name them, go into the ownership ledger (run "adopt"), for a site fed before toolsync
kept one, or by another tool: from then on a snapshot of the operation manages them.

users: the accounts (by primary identity, else username); enrols: the enrolments (a file with an enrol column) or
the role assignments (without); groupmembers and cohorts: the memberships. A row whose record does not exist is
counted not found, by line; nothing is written to Moodle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.ledger import ADOPTED, Ledger, ledger_for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.registry import OPERATIONS as REGISTERED
from toolsync_tui.engine.rows import LINE
from toolsync_tui.engine.snapshot import users
from toolsync_tui.engine.snapshot.kinds import spec_for
from toolsync_tui.engine.snapshot.named import Named, read_named
from toolsync_tui.engine.snapshot.plan import OPERATIONS, file_column


class AdoptProblem(Exception):
    """The adoption cannot happen (an operation without a ledger kind)."""


@dataclass
class Adoption:
    operation: str
    kind: str
    adopted: int  # entries new in the ledger (or that would be, in a dry run)
    owned: int  # records the ledger already held
    not_found: list[int] = field(default_factory=list)  # lines whose record does not exist
    unreadable: list[int] = field(default_factory=list)  # lines that could not be read
    dry_run: bool = False


async def adopt(
    config: Config, gateway: MoodleGateway, operation: str, path: Path, *, dry_run: bool = False
) -> Adoption:
    if operation not in OPERATIONS:
        raise AdoptProblem(f"'{operation}' keeps no records in the ledger; adopt works on {', '.join(OPERATIONS)}")
    source = REGISTERED[operation].implementation(config, gateway).open_source(path)
    spec = None if operation == "users" else spec_for(config, gateway, operation, source.columns, acting=False)
    keys = users.key_columns(config) if spec is None else [file_column(k) for k in spec.keys]
    named = read_named(source, keys)
    async with gateway.reading() as conn:
        if spec is None:
            found = await _accounts(conn, gateway, named, config)
        else:
            records = await spec.in_scope(conn, gateway, named.cells[file_column(spec.scope[0])].unique().to_list())
            # A row adopts the record the run would find by its keys: the lookups' own rule (matching.py).
            stored = records.select("id", *(spec.matches[k].stored(pl.col(k)).alias(f"__{k}") for k in spec.keys))
            given = named.cells.with_columns(
                spec.matches[k].given(pl.col(file_column(k))).alias(f"__{k}") for k in spec.keys
            )
            found = given.join(stored, on=[f"__{k}" for k in spec.keys]).select(LINE, "id")
    kind = "user" if spec is None else spec.kind
    ledger = await ledger_for_site(config.data_dir, gateway)
    ids = found["id"].unique().to_list()
    adopted, owned = _counted(ledger, kind, ids, operation, dry_run)
    missing = named.cells.join(found, on=LINE, how="anti")[LINE].to_list()
    return Adoption(operation, kind, adopted, owned, sorted(missing), named.unreadable, dry_run)


def _counted(ledger: Ledger, kind: str, ids: list[int], operation: str, dry_run: bool) -> tuple[int, int]:
    """(new entries, entries already there)."""
    if dry_run:
        already = len(ledger.owned(kind) & set(ids))
        return len(ids) - already, already
    new = ledger.add(kind, ids, operation, ADOPTED)
    return new, len(ids) - new


async def _accounts(conn: AsyncConnection, gateway: MoodleGateway, named: Named, config: Config) -> pl.DataFrame:
    """LINE and id of the rows' accounts: by the primary identity when the row gives one, else by username (the
    users operation's rule); local accounts not deleted."""
    user = gateway.schema.user
    key = users.identity(config)
    rules = dict(zip(("username", key), users.matches(gateway.kind, config), strict=True))
    cells = named.cells.with_columns(
        pl.when(pl.col(key) != "").then(pl.lit(key)).otherwise(pl.lit("username")).alias("__by"),
        pl.when(pl.col(key) != "").then(pl.col(key)).otherwise(pl.col("username")).alias("__value"),
    ).filter(pl.col("__value") != "")
    found_host = await gateway.config_values(["mnet_localhost_id"])
    host = int(found_host.get("mnet_localhost_id") or 1)
    frames: list[pl.DataFrame] = []
    for column in dict.fromkeys(["username", key]):
        rule = rules[column]  # as the users operation's lookup of the column (users/accounts.py)
        rows = cells.filter(pl.col("__by") == column).with_columns(rule.given(pl.col("__value")).alias("__key"))
        values = rows["__value"].unique().to_list()
        match: ColumnElement[Any] = user.c[column]
        if rule.text is not None:
            values = rule.text.values(values)
            if rule.text.casefold and gateway.kind != "mariadb":  # MariaDB's collation folds by itself
                match, values = func.lower(match), [v.lower() for v in values]
        found: list[tuple[int, str]] = []
        for part in chunks(values):
            query = select(user.c.id, user.c[column]).where(
                match.in_(part), user.c.deleted == 0, user.c.mnethostid == host
            )
            found.extend((int(i), str(v)) for i, v in await conn.execute(query))
        by_value = pl.DataFrame(found, schema={"id": pl.Int64, "__value": pl.String}, orient="row")
        by_value = by_value.select("id", rule.stored(pl.col("__value")).alias("__key"))
        # An identity two accounts share names neither: the run would refuse the row too.
        by_value = by_value.filter(pl.len().over("__key") == 1)
        frames.append(rows.join(by_value, on="__key").select(LINE, "id"))
    return pl.concat(frames)
