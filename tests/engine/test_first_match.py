"""first_match: the one "first matching rule -> one outcome per row" of every planner."""

from __future__ import annotations

import polars as pl

from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, Outcome, Rule, first_match

ROWS = pl.DataFrame({LINE: [2, 3, 4, 5], "n": [1, None, 7, 12], "name": ["a", "b", "c", "d"]})


def test_each_row_takes_the_first_rule_that_holds_in_the_rows_order() -> None:
    rules = [
        Rule(pl.col("n") > 10, Outcome.FAILED, "check", pl.format("{} is too big", "n")),
        Rule(pl.col("n") > 5, Outcome.CREATED, pl.col("name"), "made"),  # 12 met the rule above first
        Rule(pl.col("n") > 0, Outcome.UNCHANGED, "none", "small"),
    ]

    decided, rest = first_match(ROWS, rules, pl.col("name"))

    assert dict(decided.schema) == OUTCOME_SCHEMA
    assert decided.rows() == [
        (2, None, "unchanged", "none", "a", "small"),
        (4, None, "created", "c", "c", "made"),
        (5, None, "failed", "check", "d", "12 is too big"),
    ]
    # A null `when` holds for no rule: the row is left for the planner's next step, as it came.
    assert rest.to_dicts() == [{LINE: 3, "n": None, "name": "b"}]


def test_a_closing_rule_decides_every_row_and_parts_and_kept_columns_come_along() -> None:
    rules = [
        Rule(pl.col("n") == 7, Outcome.DELETED, "remove", pl.col("name")),
        Rule(pl.lit(True), Outcome.SKIPPED, "none", pl.lit(None, dtype=pl.String)),  # a null message stays null
    ]

    decided, rest = first_match(ROWS, rules, "k", part=pl.format("g{}", LINE), keep=["n"])

    assert rest.is_empty()
    assert decided.columns == [*OUTCOME_SCHEMA, "n"]
    assert decided.select("part", "outcome", "key", "message", "n").rows() == [
        ("g2", "skipped", "k", None, 1),
        ("g3", "skipped", "k", None, None),
        ("g4", "deleted", "k", "c", 7),
        ("g5", "skipped", "k", None, 12),
    ]


def test_no_rows_give_no_outcomes() -> None:
    decided, rest = first_match(ROWS.clear(), [Rule(pl.lit(True), Outcome.CREATED, "add", "x")], "k")
    assert decided.is_empty()
    assert dict(decided.schema) == OUTCOME_SCHEMA
    assert rest.is_empty()
