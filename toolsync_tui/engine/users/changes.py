"""What a users-file row changes on its account: the columns present and non-empty whose value differs.

Pure column work, no database: the rows come with the account's stored values as `cur_<column>`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from toolsync_tui.engine.users.accounts import USERID

CURRENT = "cur_"
CHANGES = "changes"


def current(name: str) -> pl.Expr:
    return pl.col(CURRENT + name)


def given(name: str) -> pl.Expr:
    return pl.col(name) != ""


def changed_columns(fields: Sequence[str], *, protect_emails: bool) -> pl.Expr:
    """The list of mdl_user columns a row would change (only rows with an account have any).

    An empty cell leaves the stored value alone. With protect_emails the e-mail of an existing account never changes.
    """
    found = pl.col(USERID).is_not_null()
    names: list[pl.Expr] = []
    for name in fields:
        if name == "email" and protect_emails:
            continue
        differs = given(name) & (pl.col(name) != current(name).cast(pl.String).fill_null(""))
        names.append(pl.when(found & differs).then(pl.lit(name)))
    if not names:
        return pl.lit([], dtype=pl.List(pl.String)).alias(CHANGES)
    return pl.concat_list(names).list.drop_nulls().alias(CHANGES)


def revived() -> pl.Expr:
    """An account marked deleted that a row names (without deleted=1) comes back, as tool_sync's "resurrection"."""
    return pl.col(USERID).is_not_null() & (current("deleted") == 1)
