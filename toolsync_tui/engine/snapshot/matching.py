"""How a snapshot compares a file's key cells with the stored values: as the operation's lookup of that key does on the
site's database (moodle/text_match.py), so that the snapshot and the run agree on what a row names.

Two comparisons, for safety:
- the scope (which courses, groups, cohorts the file is about; which records `ledger adopt` takes) is the lookup's own
  rule (`given` against `stored`): on PostgreSQL a file naming 'MATH101' is not about the site's 'math101', which its
  rows cannot find (they fail "not found"), so nothing of 'math101' is removed;
- what a row names inside a scope (`loose`, both sides) may be wider, never narrower: case is ignored on every
  database (and MariaDB's collation ignores accents too), so a snapshot never removes a record because its key differs
  from a row's only in case (a row that fails "not found" for that reason still keeps the record, as any failing row
  does: named.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from toolsync_tui.engine.moodle.text_match import Rule, TextMatch, user_rule

DIGITS = r"^\d+$"


@dataclass(frozen=True)
class KeyMatch:
    """One key column's comparison. `text` None: an id, compared as a number ('012' names 12, as the lookup's cast)."""

    text: TextMatch | None

    def given(self, value: pl.Expr) -> pl.Expr:
        """A file cell's key (null: a cell that names nothing, an id that is not a number)."""
        if self.text is None:
            return _number(value)
        return pl.when(value != "").then(self.text.given(value))

    def stored(self, value: pl.Expr) -> pl.Expr:
        """A stored value's key: equal to a cell's `given` key when the operation's lookup finds it by that cell."""
        if self.text is None:
            return _number(value)
        return pl.when(value != "").then(self.text.stored(value))

    def loose(self, value: pl.Expr) -> pl.Expr:
        """A key (either side) equal whenever `given` and `stored` are, and also when only case differs."""
        if self.text is None:
            return _number(value)
        wide = TextMatch(self.text.kind, Rule.EXACT) if self.text.kind == "mariadb" else TextMatch("sqlite")
        return pl.when(value != "").then(wide.stored(value))  # MariaDB: its collation; elsewhere lower case


def _number(value: pl.Expr) -> pl.Expr:
    return pl.when(value.str.contains(DIGITS)).then(value.cast(pl.Int64, strict=False).cast(pl.String))


def key_match(kind: str, field: str, rule: Rule = Rule.EXACT) -> KeyMatch:
    """The comparison of a lookup of `field` (a text column of `rule`, or `id`) on a database of `kind`."""
    return KeyMatch(None if field == "id" else TextMatch(kind, rule))


def user_key(kind: str, field: str) -> KeyMatch:
    """The comparison of a user lookup by `field` (a *_useridentifier setting)."""
    return key_match(kind, field, user_rule(field))
