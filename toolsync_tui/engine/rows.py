"""The frame vocabulary of a run: the columns every batch carries, the row outcomes and the outcome table."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

import polars as pl

# Columns every batch carries beside the file's own: the data row's line number in the file, the record as read
# (for the tryback), and why the record could not be read (then the row fails before anything else).
LINE = "__line"
RAW = "__raw"
PROBLEM = "__problem"


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


# One row per input row: its line, outcome, what was (or would be) done, the row's key, and why.
# A row that does several things (a user's cohort and courseN columns) also has detail rows: the same line, the
# `part` it concerns ("cohort", "course2"); a row's own outcome has a null part. Counts are of the rows' own outcomes.
OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "part": pl.String(),
    "outcome": pl.String(),
    "action": pl.String(),
    "key": pl.String(),
    "message": pl.String(),
}
OutcomeRow = tuple[int, str | None, str, str, str, str]  # one OUTCOME_SCHEMA row, for row-by-row planners
NOT_PROCESSED = "not processed"
SHOWN_CHARS = 60  # a value quoted in a row message is cut to this many characters


def shown(value: pl.Expr) -> pl.Expr:
    """A file value as quoted in a row message: long ones cut, so one bad cell cannot flood a report."""
    return (
        pl.when(value.str.len_chars() > SHOWN_CHARS)
        .then(pl.concat_str(value.str.slice(0, SHOWN_CHARS), pl.lit("...")))
        .otherwise(value)
    )


def outcome_rows(
    rows: pl.DataFrame,
    outcome: Outcome,
    action: str | pl.Expr,
    key: str | pl.Expr,
    message: str | pl.Expr,
    *,
    part: str | pl.Expr | None = None,
) -> pl.DataFrame:
    """Outcomes for every row of `rows` (a batch slice); plain strings are literals. With `part`, detail rows."""
    return rows.select(
        pl.col(LINE).alias("line"),
        _text(part).alias("part"),
        pl.lit(outcome.value, dtype=pl.String).alias("outcome"),
        _text(action).alias("action"),
        _text(key).alias("key"),
        _text(message).alias("message"),
    )


class Rule(NamedTuple):
    """A planner's rule: the rows `when` holds for get this outcome, action and message (plain strings are literals),
    unless an earlier rule of the list holds for them."""

    when: pl.Expr
    outcome: Outcome
    action: str | pl.Expr
    message: str | pl.Expr


RULE = "__rule"  # the index of the first rule that holds for a row, while first_match picks


def first_match(
    rows: pl.DataFrame,
    rules: Sequence[Rule],
    key: str | pl.Expr,
    *,
    part: str | pl.Expr | None = None,
    keep: Sequence[str] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One outcome per row, by the first of `rules` that holds for it (a null `when` does not hold).

    Returns the outcomes of the rows a rule holds for, in the rows' order (OUTCOME_SCHEMA, then the `keep` columns of
    `rows`), and the rows none holds for: what the planner decides next (a write, another list of rules). End the list
    with a `pl.lit(True)` rule to decide every row.
    """
    chosen = pl.coalesce(pl.when(rule.when.fill_null(False)).then(pl.lit(n)) for n, rule in enumerate(rules))
    numbered = rows.with_columns(chosen.alias(RULE))

    def pick(values: Sequence[str | pl.Expr]) -> pl.Expr:
        # Only the chosen rule's branch is not null (a null value of its own stays null).
        return pl.coalesce(pl.when(pl.col(RULE) == n).then(_text(v)) for n, v in enumerate(values)).cast(pl.String)

    decided = numbered.filter(pl.col(RULE).is_not_null()).select(
        pl.col(LINE).alias("line"),
        _text(part).alias("part"),
        pick([rule.outcome.value for rule in rules]).alias("outcome"),
        pick([rule.action for rule in rules]).alias("action"),
        _text(key).alias("key"),
        pick([rule.message for rule in rules]).alias("message"),
        *keep,
    )
    return decided, numbered.filter(pl.col(RULE).is_null()).drop(RULE)


def _text(value: str | pl.Expr | None) -> pl.Expr:
    """An outcome cell: an expression as it is, plain text (or None) as a literal."""
    return value if isinstance(value, pl.Expr) else pl.lit(value, dtype=pl.String)


def row_outcomes(outcomes: pl.DataFrame) -> pl.DataFrame:
    """The rows' own outcomes, detail rows left out."""
    return outcomes.filter(pl.col("part").is_null())


def count_outcomes(outcomes: pl.DataFrame) -> dict[str, int]:
    """Outcome -> number of rows, of the rows' own outcomes."""
    counted = row_outcomes(outcomes).group_by("outcome").len()
    return {str(o): int(n) for o, n in counted.iter_rows()}


def count_failed_details(outcomes: pl.DataFrame) -> int:
    return outcomes.filter(pl.col("part").is_not_null() & (pl.col("outcome") == Outcome.FAILED)).height


def counts_text(counts: dict[str, int]) -> str:
    """The outcomes that happened, in the engine's order: "3 created, 1 failed"."""
    return ", ".join(f"{counts[outcome]:,} {outcome}" for outcome in Outcome if counts.get(outcome))


def cells(rows: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """The rows with each of `names` as trimmed text ("" when empty or absent from the file)."""
    return rows.with_columns(
        (pl.col(n).cast(pl.String).fill_null("").str.strip_chars() if n in rows.columns else pl.lit("")).alias(n)
        for n in names
    )
