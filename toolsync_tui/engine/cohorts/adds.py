"""The cohort file's common case, planned column-wise: `add` rows for cohorts that exist, in cohorts no other command
of the batch names.

A feed of memberships is mostly that. Its rows can be planned with polars instead of row by row: a row's changes
depend only on the rows of the same cohort before it (a name, description or visibility it sets is compared with what
the rows before it left) and a membership only on whether an earlier row of the batch added the same user. Rows that
create a cohort, or share it with del, free or delete rows, keep the row-by-row planner of the cohorts operation;
both produce the same outcomes and messages.

Input columns: LINE, `cell` (the key cell), userid, cname, cdescription, cvisible, component, __ckey, __uproblem,
__uid, __umatches, and the stored cohort's __sname, __sdesc, __svis, __scomp and __member (the user is a member).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from toolsync_tui.engine.parts.cohort_memberships import NAME_MAX
from toolsync_tui.engine.rows import OUTCOME_SCHEMA, Outcome, Rule, first_match

KEY = "__ckey"
ATTRIBUTES = (("name", "__sname"), ("description", "__sdesc"), ("visible", "__svis"))


@dataclass(frozen=True)
class PlainAdds:
    """The outcomes of the rows, and per cohort key what the rows leave: the last given value of each attribute
    (null: none given) and the users to add."""

    outcomes: pl.DataFrame
    finals: pl.DataFrame  # __ckey, name, description, visible
    added: pl.DataFrame  # __ckey, __uid


def plain_add_rows(stored_keys: list[str]) -> pl.Expr:
    """The rows planned here: every row of the key is an add (cmd empty or add) and the cohort exists."""
    is_add = pl.col("cmd").is_in(["", "add"])
    return pl.col(KEY).is_in(stored_keys) & is_add.all().over(KEY)


def plan_plain_adds(
    rows: pl.DataFrame, *, cell: str, identifier: str, user_identifier: str, dry_run: bool
) -> PlainAdds:
    would = "would be " if dry_run else ""
    user = pl.col("userid")
    key = pl.when(user != "").then(pl.format("{}/{}", pl.col(cell), user)).otherwise(pl.col(cell))
    wanted_name = pl.col("cname") if identifier != "name" else pl.lit("")
    problem = (
        pl.when(~pl.col("cvisible").is_in(["", "0", "1"]))
        .then(pl.format("cvisible '{}': expected 0 or 1", pl.col("cvisible")))
        .when((user != "") & pl.col("__uproblem").is_not_null())
        .then(pl.format("user {}", pl.col("__uproblem")))
        .when((user != "") & pl.col("__uid").is_null())
        .then(pl.format(f"user '{{}}' not found (user_identifier {user_identifier})", user))
        .when(pl.col("__umatches").fill_null(0) > 1)
        .then(
            pl.format(
                f"user '{{}}' is ambiguous: {{}} accounts have this {user_identifier}", user, pl.col("__umatches")
            )
        )
        .when((pl.col("__scomp") != "") & (pl.col("__scomp") != pl.col("component")))
        .then(
            pl.format(
                "cohort '{}' is managed by {}; it is changed there, not by this file",
                pl.col("__sname"),
                pl.col("__scomp"),
            )
        )
        .when(wanted_name.str.len_chars() > NAME_MAX)
        .then(pl.lit(f"cname: a cohort name has at most {NAME_MAX} characters"))
    )
    planned = rows.with_columns(key.alias("__key"), problem.alias("__problem"))
    ok = pl.col("__problem").is_null()
    # What each row asks for (null: nothing), only on rows that do not fail.
    planned = planned.with_columns(
        pl.when(ok & (wanted_name != "")).then(wanted_name).alias("name"),
        pl.when(ok & (pl.col("cdescription") != "")).then(pl.col("cdescription")).alias("description"),
        pl.when(ok & (pl.col("cvisible") != "")).then(pl.col("cvisible").cast(pl.Int64, strict=False)).alias("visible"),
    )
    # The value each attribute has after the row: the last one asked for by the cohort's rows so far, else stored.
    planned = planned.with_columns(
        *(
            pl.coalesce(pl.col(name).shift(1).forward_fill().over(KEY), pl.col(stored)).alias(f"__was_{name}")
            for name, stored in ATTRIBUTES
        ),
    ).with_columns(
        *(
            (pl.col(name).is_not_null() & (pl.col(name) != pl.col(f"__was_{name}"))).alias(f"__changes_{name}")
            for name, _ in ATTRIBUTES
        ),
        pl.coalesce("name", "__was_name").alias("__shown"),
        # A user is added by the first successful row of the batch naming them, unless a member already.
        (
            ok
            & pl.col("__uid").is_not_null()
            & ~pl.col("__member").fill_null(False)
            & pl.struct(KEY, "__uid", ok).is_first_distinct()
        ).alias("__added"),
    )
    changes = pl.concat_str(
        [pl.when(pl.col(f"__changes_{name}")).then(pl.lit(name)) for name, _ in ATTRIBUTES],
        separator=", ",
        ignore_nulls=True,
    )
    changed = changes != ""
    shown = pl.col("__shown")
    parts = pl.concat_str(
        [
            pl.when(changed).then(pl.format(f"cohort '{{}}' {would}updated ({{}})", shown, changes)),
            pl.when(pl.col("__added"))
            .then(pl.format(f"{would}added to cohort '{{}}'", shown))
            .when(pl.col("__uid").is_not_null())
            .then(pl.format("already a member of cohort '{}'", shown)),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    message = pl.when(parts != "").then(parts).otherwise(pl.format("cohort '{}' is up to date", shown))
    rules = [
        Rule(~ok, Outcome.FAILED, "check", pl.col("__problem")),
        Rule(pl.col("__added"), Outcome.CREATED, "add", message),
        Rule(changed, Outcome.UPDATED, "update", message),
        Rule(pl.lit(True), Outcome.UNCHANGED, "none", message),
    ]
    outcomes = first_match(planned, rules, pl.col("__key"))[0].cast(OUTCOME_SCHEMA)  # type: ignore[arg-type]
    finals = planned.group_by(KEY, maintain_order=True).agg(
        *(pl.col(name).drop_nulls().last() for name, _ in ATTRIBUTES)
    )
    added = planned.filter("__added").select(KEY, "__uid")
    return PlainAdds(outcomes, finals, added)
