"""The users snapshot: the accounts the ledger holds that the file no longer names get suspended=1 or deleted=1.

A row names an account by its username, its oldusername (a rename) or its primary identity (idnumber or email): any
of them keeps the account, so that a row found by one key never loses its account through another. An account
already suspended (for suspend) or deleted, an administrator and the guest account get no row.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.snapshot.matching import KeyMatch, user_key
from toolsync_tui.engine.snapshot.named import Named

FIELDS = ("id", "username", "firstname", "lastname", "deleted", "suspended")


def identity(config: Config) -> str:
    """The column besides username that names an account (the finder's rule: idnumber or email, else none)."""
    chosen = config.settings.operations.users.primary_identity
    return chosen if chosen in ("idnumber", "email") else "username"


def key_columns(config: Config) -> list[str]:
    return list(dict.fromkeys(["username", "oldusername", identity(config)]))


async def accounts(conn: AsyncConnection, gateway: MoodleGateway, ids: list[int], config: Config) -> pl.DataFrame:
    """The accounts of these ids that exist: FIELDS and the identity column (text, "" when null)."""
    user = gateway.schema.user
    names = list(dict.fromkeys([*FIELDS, identity(config)]))
    found: list[Any] = []
    for part in chunks(sorted(ids)):
        found.extend(await conn.execute(select(*(user.c[n] for n in names)).where(user.c.id.in_(part))))
    ints: dict[Any, pl.DataType] = {n: pl.Int64() for n in ("id", "deleted", "suspended")}
    texts: dict[Any, pl.DataType] = {n: pl.String() for n in names if n not in ints}
    if not found:
        return pl.DataFrame(schema={**ints, **texts})
    frame = pl.DataFrame(dict(zip(names, map(list, zip(*found, strict=True)), strict=True)), strict=False)
    return frame.cast({**ints, **texts}).with_columns(pl.col(n).fill_null("") for n in texts)


def matches(kind: str, config: Config) -> tuple[KeyMatch, KeyMatch]:
    """How the users operation's lookups compare (username, identity) on a database of `kind`."""
    return user_key(kind, "username"), user_key(kind, identity(config))


def unnamed(records: pl.DataFrame, named: Named, config: Config, kind: str) -> pl.DataFrame:
    """The accounts no row of the file names by any of its keys, compared loosely (matching.py): never narrower than
    the operation's lookups, so no account is suspended or deleted because a row gives its key in another case."""
    key = identity(config)
    by_username, by_identity = matches(kind, config)
    cells = named.cells
    usernames = pl.concat([cells["username"], cells["oldusername"]]).unique().to_frame("v")
    wanted_names = usernames.select(by_username.loose(pl.col("v"))).to_series().drop_nulls()
    wanted_identities = cells.select(by_identity.loose(pl.col(key))).to_series().drop_nulls().unique()
    named_by_name = by_username.loose(pl.col("username")).is_in(wanted_names.implode()).fill_null(False)
    named_by_identity = by_identity.loose(pl.col(key)).is_in(wanted_identities.implode()).fill_null(False)
    return records.filter(~(named_by_name | named_by_identity))


def command_rows(records: pl.DataFrame, action: str) -> pl.DataFrame:
    """The users-file rows giving these accounts the action (suspend or delete): names kept as stored."""
    flag = "deleted" if action == "delete" else "suspended"
    return records.select("username", "firstname", "lastname", pl.lit("1").alias(flag))


def live(action: str) -> pl.Expr:
    """The accounts the action would still change."""
    alive = pl.col("deleted") == 0
    return alive & (pl.col("suspended") == 0) if action == "suspend" else alive
