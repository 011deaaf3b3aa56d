"""Resolving file identifiers (id, idnumber, shortname, username ...) to database rows in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.text_match import Rule, TextMatch, user_rule

NUMERIC_KEYS = frozenset({"id"})
JOIN = "__join"


class KeyLookup:
    """Matches the values of a file column to `table.field`, one query per chunk of new keys.

    Text keys match as Moodle's lookup does on the site's database (`rule`, text_match.py): on MariaDB whatever
    the collation deems equal (case, accents), on PostgreSQL exactly unless the rule says otherwise.
    With `remember`, every answer (found or not) is kept for the rest of the run, so a key that
    recurs in the file costs one lookup: right for read-only runs, where no answer can change.
    """

    def __init__(
        self,
        gateway: MoodleGateway,
        table: Table,
        field: str,
        columns: Sequence[str],
        where: ColumnElement[bool] | None = None,
        *,
        remember: bool = False,
        rule: Rule = Rule.EXACT,
    ) -> None:
        self.gateway = gateway
        self.table = table
        self.field = field
        self.columns = list(columns)
        self.where = where
        self.numeric = field in NUMERIC_KEYS
        self.match = TextMatch(gateway.kind, rule)
        self._known: pl.DataFrame | None = pl.DataFrame() if remember else None

    async def resolve(self, conn: AsyncConnection, keys: pl.Series) -> pl.DataFrame:
        """One row per distinct key: the key, `problem` (why it cannot be looked up), the matched row
        with the lowest id (its `columns`) and `matches` (how many rows share the key)."""
        resolved, _ = await self.resolve_rows(conn, keys)
        return resolved

    async def resolve_rows(self, conn: AsyncConnection, keys: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
        """`resolve`, and every row fetched for it (`id`, the field and `columns` of each matching row, not
        only the first), for a caller that needs the other matches too. With `remember`, the keys answered
        earlier are not fetched again, so their rows are not among them."""
        distinct = self._keyed(keys.unique().to_frame())
        # Keys the database deems equal ("BIO1", "bio1" on MariaDB) are one lookup.
        wanted = distinct.filter(pl.col("problem").is_null() & pl.col(JOIN).is_not_null()).select(JOIN).unique()
        if self._known is not None and not self._known.is_empty():
            wanted = wanted.join(self._known, on=JOIN, how="anti")
        # The file's own spellings are sent (all of them): the database, not our key, decides what they match.
        asked = distinct.join(wanted, on=JOIN, how="semi")[distinct.columns[0]]
        fetched = await self._fetch_rows(conn, asked.unique().to_list() if not self.numeric else wanted[JOIN].to_list())
        answers = wanted.join(self._first_matches(fetched), on=JOIN, how="left")
        if self._known is not None:
            self._known = pl.concat([self._known, answers], how="diagonal_relaxed")
            answers = self._known
        return distinct.join(answers, on=JOIN, how="left").drop(JOIN), fetched.drop(JOIN)

    def _keyed(self, distinct: pl.DataFrame) -> pl.DataFrame:
        key = pl.col(distinct.columns[0])
        if not self.numeric:
            return distinct.with_columns(
                pl.lit(None, dtype=pl.String).alias("problem"),
                pl.when(key != "").then(self.match.given(key)).alias(JOIN),
            )
        return distinct.with_columns(
            pl.when(key.str.contains(r"^\d+$") | (key == ""))
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.format(f"{self.field} '{{}}' is not a number", key))
            .alias("problem"),
            key.cast(pl.Int64, strict=False).alias(JOIN),
        )

    async def _fetch_rows(self, conn: AsyncConnection, values: list[object]) -> pl.DataFrame:
        wanted = list(dict.fromkeys(["id", self.field, *self.columns]))
        if not self.numeric:
            values = list(self.match.values([str(v) for v in values]))
        casefold = not self.numeric and self.match.casefold
        found = await self.gateway.fetch_in(
            conn, self.table, self.field, values, wanted, where=self.where, casefold=casefold
        )
        key = pl.col(self.field)
        # Typed even when nothing was found (an empty answer's columns are untyped), so that it still joins.
        return found.with_columns(
            (key.cast(pl.Int64) if self.numeric else self.match.stored(key.cast(pl.String))).alias(JOIN)
        )

    def _first_matches(self, found: pl.DataFrame) -> pl.DataFrame:
        return (
            found.sort("id")
            .group_by(JOIN, maintain_order=True)
            .agg(*(pl.col(c).first() for c in self.columns), pl.len().alias("matches"))
        )


def answers_by_value(found: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """File value -> its KeyLookup answer (problem, id, matches, columns)."""
    column = found.columns[0]
    return {str(row[column]): row for row in found.to_dicts()}


def lookup_problem(answer: dict[str, Any] | None, value: str, what: str, setting: str, identifier: str) -> str | None:
    """Why a looked-up value names no single row (`setting` = `identifier` names the lookup), or None."""
    if answer is None or answer.get("id") is None:
        if answer is not None and answer.get("problem"):
            return f"{what} {answer['problem']}"
        return f"{what} '{value}' not found ({setting} {identifier})"
    if (answer.get("matches") or 0) > 1:
        return f"{what} '{value}' is ambiguous: {answer['matches']} {what}s have this {identifier}"
    return None


def live_users(gateway: MoodleGateway, identifier: str, columns: Sequence[str] = ("id",)) -> KeyLookup:
    """Accounts not deleted, by a file's user identifier, for a whole run (for the files that change no account: each
    value is looked up once), compared as Moodle compares that field (text_match.user_rule)."""
    user = gateway.schema.user
    return KeyLookup(
        gateway, user, identifier, list(columns), user.c.deleted == 0, remember=True, rule=user_rule(identifier)
    )
