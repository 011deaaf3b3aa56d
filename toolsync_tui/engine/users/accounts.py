"""Which existing account each row of a users file names, or why it names none or several.

A row names an account by the `primary_identity` setting (idnumber or email; username when that value is empty, as
the original does), or, when renames are allowed, by `oldusername`. Only accounts of this site's mnet host count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup
from toolsync_tui.engine.moodle.text_match import Rule, user_rule
from toolsync_tui.engine.rows import LINE, shown

USERID = "userid"
SKIP = "skip"  # why the row is skipped (a rename of an account that does not exist)
PROBLEM = "account_problem"
NO_ID = pl.lit(None, dtype=pl.Int64)


def protected_why(protected: Mapping[int, str]) -> pl.Expr:
    """Why the row's account (USERID) is one toolsync never deletes or suspends (`protected`, from
    protected_accounts()); null for the others."""
    return pl.col(USERID).replace_strict(protected, default=None, return_dtype=pl.String)


class AccountFinder:
    def __init__(self, gateway: MoodleGateway, identity: str, mnethostid: int, columns: Sequence[str] = ()) -> None:
        """`columns`: mdl_user columns `find_stored` also returns for the accounts it meets by identity."""
        user = gateway.schema.user
        local = user.c.mnethostid == mnethostid
        # A file has no `id` column: an `id` identity finds accounts by username, as the original does.
        self.identity = identity if identity in ("idnumber", "email") else "username"
        self.columns = list(dict.fromkeys(["id", "username", *columns]))
        # Usernames: lower-cased (validation.py), then `=` (exact on PostgreSQL); e-mails case-insensitively, as
        # Moodle's upload tool matches them (text_match.py).
        self.by_username = KeyLookup(gateway, user, "username", ["id"], local, rule=Rule.LOWERED_VALUE)
        self.by_identity = (
            KeyLookup(gateway, user, self.identity, self.columns, local, rule=user_rule(self.identity))
            if self.identity != "username"
            else None
        )
        # mdl_user's unique index (mnethostid, username) compares as the lookups do (the column's collation):
        # an account met by identity whose username is the row's, exactly, is the only one a username lookup
        # could find, so that lookup is skipped. Not on SQLite, whose index is case-sensitive while its lookups
        # are not (on PostgreSQL both are exact).
        self.unique_usernames = gateway.kind in ("mariadb", "postgresql")

    async def find(self, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
        """Per row (LINE, username, the identity column, oldusername if any): LINE, USERID (the account to update,
        null to create), SKIP and PROBLEM (null when none), and `via`, the column that found the account."""
        found, _ = await self.find_stored(conn, rows)
        return found

    async def find_stored(self, conn: AsyncConnection, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """`find`, and the stored `columns` (as read) of the accounts met by the identity lookup, one row per id:
        usually every account found, read without a query of their own."""
        has_old = "oldusername" in rows.columns
        if self.by_identity is not None and self.identity in rows.columns:
            key = self.identity
            by_identity, stored = await self.by_identity.resolve_rows(conn, rows[key])
            stored = stored.unique("id", keep="first", maintain_order=True).select(self.columns)
            found = rows.select(LINE, "username", *(["oldusername"] if has_old else []), key).join(
                by_identity.select(key, pl.col("id").alias("i_id"), pl.col("matches").alias("i_matches")),
                on=key,
                how="left",
            )
            named = pl.col(key) != ""
        else:
            key = "username"
            stored = pl.DataFrame(schema=dict.fromkeys(self.columns, pl.String)).cast({"id": pl.Int64})
            found = rows.select(LINE, "username", *(["oldusername"] if has_old else [])).with_columns(
                NO_ID.alias("i_id"), pl.lit(0).alias("i_matches")
            )
            named = pl.lit(False)
        known = stored.select(pl.col("username").cast(pl.String), pl.col("id").cast(pl.Int64).alias("known_id"))
        if not self.unique_usernames:
            known = known.clear()
        known = known.filter(pl.col("username") != "").unique("username", keep="first")
        found = found.join(known, on="username", how="left")
        usernames = found.filter(pl.col("known_id").is_null())["username"]
        if has_old:
            usernames = pl.concat([usernames, rows["oldusername"]])
        if usernames.is_empty():  # every row's account was met by identity: nothing to look up
            by_username = pl.DataFrame(schema={"username": pl.String, "id": pl.Int64})
        else:
            by_username = await self.by_username.resolve(conn, usernames)
        found = found.join(
            by_username.select(pl.col("username"), pl.col("id").alias("u_id")), on="username", how="left"
        ).with_columns(pl.coalesce("known_id", "u_id").alias("u_id"))
        if has_old:
            found = found.join(
                by_username.select(pl.col("username").alias("oldusername"), pl.col("id").alias("o_id")),
                on="oldusername",
                how="left",
            )
        else:
            found = found.with_columns(pl.lit("").alias("oldusername"), NO_ID.alias("o_id"))
        return found.select(LINE, *_decide(key, named)), stored


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
