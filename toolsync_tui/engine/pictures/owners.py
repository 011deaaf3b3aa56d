"""Whose picture an entry is: its value (the file name without extension) matched to one account by the
`user_field` setting, as the original looks users up: not deleted, and of this site's mnet host, except that a
`hostedusername` value (`username@mnethostid`) names its host itself."""

from __future__ import annotations

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup
from toolsync_tui.engine.moodle.text_match import user_rule
from toolsync_tui.engine.rows import shown

USERID = "userid"
PICTURE = "picture"  # the account's user.picture: 0 when it has none
OWNER_PROBLEM = "owner_problem"
HOSTED = "hostedusername"


async def find_owners(
    gateway: MoodleGateway, conn: AsyncConnection, field: str, mnethostid: int, values: pl.Series
) -> pl.DataFrame:
    """One row per distinct value: the value, USERID and PICTURE of its account, or OWNER_PROBLEM."""
    distinct = values.unique().to_frame("value")
    if field != HOSTED:
        return _answers(await _lookup(gateway, conn, field, mnethostid, distinct["value"]), field)
    # The username before the last '@' (usernames may hold one), the host after it.
    split = distinct.with_columns(
        pl.col("value").str.extract(r"^(.+)@\d+$").alias("username"),
        pl.col("value").str.extract(r"@(\d+)$").cast(pl.Int64).alias("host"),
    )
    parts = [
        split.filter(pl.col("host").is_null()).select(
            "value",
            pl.lit(None, dtype=pl.Int64).alias(USERID),
            pl.lit(None, dtype=pl.Int64).alias(PICTURE),
            pl.format("'{}' is not username@mnethostid", shown(pl.col("value"))).alias(OWNER_PROBLEM),
        )
    ]
    for (host,), group in split.filter(pl.col("host").is_not_null()).group_by("host"):
        found = _answers(await _lookup(gateway, conn, "username", int(host), group["username"]), "username")
        parts.append(
            group.join(found.rename({"value": "username"}), on="username", how="left").select(
                "value", USERID, PICTURE, OWNER_PROBLEM
            )
        )
    return pl.concat(parts)


async def _lookup(
    gateway: MoodleGateway, conn: AsyncConnection, field: str, host: int, values: pl.Series
) -> pl.DataFrame:
    user = gateway.schema.user
    live = (user.c.deleted == 0) & (user.c.mnethostid == host)
    lookup = KeyLookup(gateway, user, field, ["id", PICTURE], where=live, rule=user_rule(field))
    return await lookup.resolve(conn, values)


def _answers(resolved: pl.DataFrame, field: str) -> pl.DataFrame:
    value = pl.col(resolved.columns[0])
    problem = (
        pl.when(pl.col("problem").is_not_null())
        .then(pl.col("problem"))
        .when(pl.col("id").is_null())
        .then(pl.format(f"no user has {field} '{{}}'", shown(value)))
        .when(pl.col("matches") > 1)
        .then(pl.format(f"{{}} users have {field} '{{}}': which one is meant is not clear", "matches", shown(value)))
    )
    return resolved.select(
        value.alias("value"),
        pl.when(problem.is_null()).then(pl.col("id")).cast(pl.Int64).alias(USERID),
        pl.col(PICTURE).cast(pl.Int64).alias(PICTURE),
        problem.alias(OWNER_PROBLEM),
    )
