"""What a users batch's plan read and what its write changes, as BatchPlan keys (engine/run/overlap.py).

With overlapping writes, batch N+1 is planned while batch N is written: a plan whose reads meet the writes of the
batch in flight is planned again once that write has ended, as a run batch after batch would see it. The keys:

* ("username" | "email" | "idnumber", folded value): an account looked up, or checked as taken, by that column
  (the finder's identity and username lookups, oldusername, the e-mail check). Written for every value a created
  account gets and, for an updated one, for its stored and new values of the three columns.
* ("id", user id): an account the plan found (its stored values, password hash, profile data); written when the
  batch updates it.
* ("profile", field id, folded value): a value of a unique (forceunique) profile field checked; written for the
  values a batch stores and the stored values it replaces.
* DELETIONS: read by every plan, written by a batch that deletes accounts (delete_user() renames the account, clears
  its e-mail and idnumber, removes its profile data ...): the batch after a deletion is planned again.

Parts (course enrolments, cohorts) are planned in the write, after the previous write has ended: no keys.

Values compare as MariaDB's case- and accent-insensitive collation compares them: folded (NFKD without marks, lower
case, the usual expansions, letters and digits only). Folding may make two values meet that the database tells
apart: a batch planned again for nothing, never a stale plan.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from itertools import repeat

import polars as pl

from toolsync_tui.engine.users.accounts import USERID
from toolsync_tui.engine.users.changes import current
from toolsync_tui.engine.users.profile_fields import ProfileField

DELETIONS = ("deletions",)
UNIQUE_COLUMNS = ("username", "email", "idnumber")
# What the collation treats as equal to more than one letter, or to a base letter NFKD does not give.
_EXPANSIONS = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "\u0131": "i"}


def folded(value: pl.Expr) -> pl.Expr:
    """A value as the key of every value the collation deems equal to it (see the module docstring)."""
    text = value.cast(pl.String).str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    for letter, plain in _EXPANSIONS.items():
        text = text.str.replace_all(letter, plain, literal=True)
    return text.str.replace_all(r"[^\p{L}\p{N}]", "")


def read_keys(rows: pl.DataFrame, fields: Mapping[str, ProfileField]) -> frozenset[Hashable]:
    """What planning `rows` (the checked rows, with USERID of the accounts found) relied on."""
    columns = [(kind, pl.col(kind)) for kind in UNIQUE_COLUMNS if kind in rows.columns]
    if "oldusername" in rows.columns:
        columns.append(("username", pl.col("oldusername")))
    keys: set[Hashable] = {DELETIONS}
    keys.update(_keys(rows, columns))
    keys.update(_profile_keys(rows, fields))
    keys.update(("id", uid) for uid in rows[USERID].drop_nulls().unique().to_list())
    return frozenset(keys)


def write_keys(
    creates: pl.DataFrame,
    updates: pl.DataFrame,
    deletes: int,
    profile_changes: pl.DataFrame,
    fields: Mapping[str, ProfileField],
) -> frozenset[Hashable]:
    """What writing the plan changes: `creates` and `updates` (planned rows with cur_<column>), `deletes` accounts
    deleted, `profile_changes` of the updated accounts (plan_profile_data(): data and the stored value)."""
    keys: set[Hashable] = {DELETIONS} if deletes else set()
    keys.update(_keys(creates, [(kind, pl.col(kind)) for kind in UNIQUE_COLUMNS if kind in creates.columns]))
    keys.update(_profile_keys(creates, fields))
    stored_and_new = [(kind, current(kind)) for kind in UNIQUE_COLUMNS]
    stored_and_new += [(kind, pl.col(kind)) for kind in UNIQUE_COLUMNS if kind in updates.columns]
    keys.update(_keys(updates, stored_and_new))
    keys.update(("id", uid) for uid in updates[USERID].to_list())
    unique = {f.id for f in fields.values() if f.forceunique}
    changed = profile_changes.filter(pl.col("fieldid").is_in(list(unique)))
    for value in ("data", "stored"):
        keys.update(
            ("profile", fid, v)
            for fid, v in changed.select("fieldid", folded(pl.col(value))).drop_nulls().unique().iter_rows()
        )
    return frozenset(keys)


def _keys(rows: pl.DataFrame, columns: Iterable[tuple[str, pl.Expr]]) -> set[Hashable]:
    """(kind, folded value) of every non-empty value of the `columns` expressions."""
    keys: set[Hashable] = set()
    if rows.is_empty():
        return keys
    for kind, value in columns:
        keys.update(zip(repeat(kind), _folded_values(rows, value)))  # the pairs made in C: thousands a batch
    return keys


def _profile_keys(rows: pl.DataFrame, fields: Mapping[str, ProfileField]) -> set[Hashable]:
    """The unique profile fields' (encoded) values of `rows`."""
    keys: set[Hashable] = set()
    for field in fields.values():
        if field.forceunique and field.column in rows.columns and not rows.is_empty():
            keys.update(("profile", field.id, v) for v in _folded_values(rows, pl.col(field.column)))
    return keys


def _folded_values(rows: pl.DataFrame, value: pl.Expr) -> list[str]:
    """The distinct folded values of the non-empty values (a value folding to nothing stays a key: "")."""
    text = value.cast(pl.String)
    return rows.select(folded(text.filter(text.is_not_null() & (text != ""))).unique()).to_series().to_list()
