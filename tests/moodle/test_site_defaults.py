"""Which column defaults a site shares with Moodle's declarations (moodle/site_defaults.py), from information_schema
as MariaDB shows it (text defaults quoted, 'NULL' for a NULL default) and as MySQL does (unquoted, no row value)."""

from __future__ import annotations

import pytest

from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.moodle.site_defaults import left_out, site_defaults

SCHEMA = MoodleSchema("mdl_")


@pytest.mark.parametrize(
    ("column", "shown", "nullable", "expected"),
    [
        ("lang", "'en'", "NO", ("en",)),  # MariaDB
        ("lang", "en", "NO", ("en",)),  # MySQL
        ("lang", "'fr'", "NO", ()),  # the site changed it
        ("phone1", "''", "NO", ("",)),
        ("phone1", "", "NO", ("",)),
        ("confirmed", "0", "NO", (0,)),
        ("confirmed", "1", "NO", ()),
        ("description", "NULL", "YES", (None,)),  # MariaDB: a NULL default
        ("description", None, "YES", (None,)),  # MySQL
        ("description", None, "NO", ()),  # made NOT NULL on this site: no default to rely on
        ("username", None, "NO", ()),  # no default shown at all
        ("id", None, "NO", ()),  # the key is never left out
    ],
)
def test_a_default_is_relied_on_only_where_the_site_has_moodles(
    column: str, shown: str | None, nullable: str, expected: tuple[object, ...]
) -> None:
    found = site_defaults(SCHEMA, [("mdl_user", column, shown, nullable)]).get("mdl_user", {})
    assert tuple(found.values()) == expected
    assert list(found) == ([column] if expected else [])


def test_columns_of_tables_or_names_toolsync_does_not_declare_are_ignored() -> None:
    shown = [("mdl_user", "not_declared", "0", "NO"), ("mdl_other", "lang", "'en'", "NO")]
    assert site_defaults(SCHEMA, shown) == {}


def test_a_shared_value_is_left_out_only_when_it_is_the_default_of_the_same_type() -> None:
    defaults = {"confirmed": 0, "lang": "en", "description": None}
    shared = {"confirmed": 0, "lang": "en", "description": None, "username": "x"}
    assert left_out(defaults, shared) == {"confirmed", "lang", "description"}
    assert left_out(defaults, {"confirmed": "0", "lang": "fr", "description": ""}) == set()
    assert left_out(defaults, {"confirmed": False}) == set()  # a bool is not the integer 0 Moodle writes
