"""How a lookup compares a file's text identifiers with the stored ones: as Moodle's own code does on the site's
database.

MariaDB: Moodle's tables are utf8mb4_unicode_ci, so `=` ignores case, accents and trailing spaces whatever Moodle's code
asks. PostgreSQL compares exactly: Moodle is case-insensitive there only where its code asks for it
(`sql_equal(..., false)` is `LOWER(a) = LOWER(b)`, `sql_like(..., false)` is ILIKE) or lower-cases the value first
(usernames). The SQLite sandbox stands in for MariaDB with LOWER() (case only).

Each lookup names its Rule; `casefold` is then fetch_in's flag and `given`/`stored` the in-memory keys that pair a file
value with the rows the database returned for it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum

import polars as pl


class Rule(Enum):
    EXACT = "exact"  # get_record([field => value]): tool_sync's lookups, core's record_exists() checks
    LOWERED_VALUE = "lowered value"  # field = strtolower(value): usernames (Moodle stores them lower-cased)
    CASELESS = "caseless"  # sql_equal(field, value, false): e-mail addresses (case-insensitive, accent-sensitive)


# What utf8mb4_unicode_ci deems equal to more than one letter, or to a base letter that NFKD does not give.
_EXPANSIONS = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "\u0131": "i"}


def user_rule(field: str) -> Rule:
    """The rule of a user lookup by `field` (a *_useridentifier setting)."""
    return {"username": Rule.LOWERED_VALUE, "email": Rule.CASELESS}.get(field, Rule.EXACT)


def collation_key(value: pl.Expr) -> pl.Expr:
    """A text as MariaDB's utf8mb4_unicode_ci compares it: without accents, lower case, trailing spaces dropped."""
    return value.cast(pl.String).map_batches(_collation_fold, return_dtype=pl.String)


def _collation_fold(values: pl.Series) -> pl.Series:
    # Decomposing (NFKD) is most of the cost, and plain ASCII needs none: a file of ASCII keys pays a lower-casing.
    text = values.str.to_lowercase()
    if not text.str.contains(r"[^\x00-\x7f]").any():
        return text.str.strip_chars_end(" ")
    text = text.str.normalize("NFKD").str.replace_all(r"\p{M}", "")
    return text.str.replace_many(list(_EXPANSIONS), list(_EXPANSIONS.values())).str.strip_chars_end(" ")


def collation_text(value: str) -> str:
    """collation_key() of one value."""
    text = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.category(c).startswith("M"))
    text = text.lower()
    for letter, plain in _EXPANSIONS.items():
        text = text.replace(letter, plain)
    return text.rstrip(" ")


@dataclass(frozen=True)
class TextMatch:
    kind: str  # the gateway's: "mariadb", "postgresql" or "sqlite"
    rule: Rule = Rule.EXACT

    @property
    def casefold(self) -> bool:
        """fetch_in's casefold: LOWER() on both sides (no-op on MariaDB, whose collation folds by itself)."""
        return self.kind != "postgresql" or self.rule is Rule.CASELESS

    @property
    def _lowers_given(self) -> bool:
        return self.kind == "postgresql" and self.rule is Rule.LOWERED_VALUE

    def values(self, values: list[str]) -> list[str]:
        """The file values as fetch_in must look them up."""
        return [v.lower() for v in values] if self._lowers_given else values

    def given(self, value: pl.Expr) -> pl.Expr:
        """The key of a file value."""
        return value.str.to_lowercase() if self._lowers_given else self.stored(value)

    def stored(self, value: pl.Expr) -> pl.Expr:
        """The key of a stored value: equal to a file value's `given` key when the database deems them equal."""
        if self.kind == "postgresql":
            return value.str.to_lowercase() if self.rule is Rule.CASELESS else value
        if self.kind == "mariadb" and self.rule is not Rule.CASELESS:
            return collation_key(value)
        return value.str.to_lowercase()  # SQLite; CASELESS on MariaDB (sql_equal() is accent-sensitive there)

    def given_text(self, value: str) -> str:
        """given() of one value."""
        return value.lower() if self._lowers_given else self.stored_text(value)

    def stored_text(self, value: str) -> str:
        """stored() of one value."""
        if self.kind == "postgresql":
            return value.lower() if self.rule is Rule.CASELESS else value
        if self.kind == "mariadb" and self.rule is not Rule.CASELESS:
            return collation_text(value)
        return value.lower()
