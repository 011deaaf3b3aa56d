"""Which existing account each row of a users file names, or why it names none or several.

A row names an account by the `primary_identity` setting (idnumber or email; username when that value is empty, as
the original does), or, when renames are allowed, by `oldusername`. Only accounts of this site's mnet host count.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from ..command_file import LINE
from ..gateway import MoodleGateway
from ..lookup import KeyLookup
from ..outcomes import shown

USERID = "userid"
SKIP = "skip"  # why the row is skipped (a rename of an account that does not exist)
PROBLEM = "account_problem"
NO_ID = pl.lit(None, dtype=pl.Int64)


class AccountFinder:
    def __init__(self, gateway: MoodleGateway, identity: str, mnethostid: int) -> None:
        user = gateway.schema.user
        local = user.c.mnethostid == mnethostid
        # A file has no `id` column: an `id` identity finds accounts by username, as the original does.
        self.identity = identity if identity in ("idnumber", "email") else "username"
        self.by_username = KeyLookup(gateway, user, "username", ["id"], local)
        self.by_identity = (
            KeyLookup(gateway, user, self.identity, ["id"], local) if self.identity != "username" else None
        )

    async def find(self, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
        """Per row (LINE, username, the identity column, oldusername if any): LINE, USERID (the account to update,
        null to create), SKIP and PROBLEM (null when none), and `via`, the column that found the account."""
        has_old = "oldusername" in rows.columns
        usernames = rows["username"]
        if has_old:
            usernames = pl.concat([usernames, rows["oldusername"]])
        by_username = await self.by_username.resolve(conn, usernames)
        found = rows.select(LINE, "username", *(["oldusername"] if has_old else [])).join(
            by_username.select(pl.col("username"), pl.col("id").alias("u_id")), on="username", how="left"
        )
        if has_old:
            found = found.join(
                by_username.select(pl.col("username").alias("oldusername"), pl.col("id").alias("o_id")),
                on="oldusername",
                how="left",
            )
        else:
            found = found.with_columns(pl.lit("").alias("oldusername"), NO_ID.alias("o_id"))
        if self.by_identity is not None and self.identity in rows.columns:
            key = self.identity
            by_identity = await self.by_identity.resolve(conn, rows[key])
            found = found.with_columns(rows[key]).join(
                by_identity.select(key, pl.col("id").alias("i_id"), pl.col("matches").alias("i_matches")),
                on=key,
                how="left",
            )
            named = pl.col(key) != ""
        else:
            key = "username"
            found = found.with_columns(NO_ID.alias("i_id"), pl.lit(0).alias("i_matches"))
            named = pl.lit(False)
        return found.select(LINE, *_decide(key, named))


def _decide(key: str, named: pl.Expr) -> list[pl.Expr]:
    u_id, o_id, i_id = pl.col("u_id"), pl.col("o_id"), pl.col("i_id")
    old = pl.col("oldusername")
    renaming = old != ""
    by_key = pl.when(named).then(i_id).otherwise(u_id)
    target = pl.when(renaming & o_id.is_not_null()).then(o_id).otherwise(by_key)
    username = shown(pl.col("username"))
    problem = (
        pl.when(named & (pl.col("i_matches") > 1))
        .then(
            pl.format(
                f"{{}} accounts have {key} '{{}}'; toolsync cannot tell which one this row is",
                "i_matches",
                shown(pl.col(key)),
            )
        )
        .when(renaming & o_id.is_not_null() & named & i_id.is_not_null() & (i_id != o_id))
        .then(
            pl.format(
                f"oldusername '{{}}' is account id {{}} but {key} '{{}}' is account id {{}}; a row names one account",
                shown(old),
                o_id,
                shown(pl.col(key)),
                i_id,
            )
        )
        .when(u_id.is_not_null() & (target.is_null() | (u_id != target)))
        .then(pl.format("username '{}' is already used by another account (id {})", username, u_id))
    )
    skip = pl.when(renaming & o_id.is_null() & target.is_null()).then(
        pl.format("no account has the username '{}' given as oldusername; nothing was renamed or created", shown(old))
    )
    via = (
        pl.when(renaming & o_id.is_not_null())
        .then(pl.lit("oldusername"))
        .when(named)
        .then(pl.lit(key))
        .otherwise(pl.lit("username"))
    )
    return [
        target.cast(pl.Int64).alias(USERID),
        skip.alias(SKIP),
        problem.alias(PROBLEM),
        via.alias("via"),
    ]
