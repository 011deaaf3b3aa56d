"""The values a MariaDB/MySQL site gives a column an INSERT leaves out, where they are Moodle's own defaults.

A multi-row INSERT of new users names ~40 columns, and a batch of them gives most of those the column's default
(policyagreed 0, phone1 '', lang 'en' ...): leaving such a column out stores the same row in fewer bytes, and the server
parses a fifth less of each statement. A column is left out only when every row of the statement gives it the same
value, of the declared type, and the site's own default (information_schema, read at the start) is the one Moodle
declares (install.xml, schema.py): a site whose column says otherwise gets the value written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Column, Integer, String

from toolsync_tui.engine.moodle.schema import MoodleSchema

SiteDefaults = dict[str, dict[str, Any]]  # table name -> column -> the value an INSERT that leaves it out stores


def site_defaults(schema: MoodleSchema, columns: Iterable[tuple[str, str, str | None, str]]) -> SiteDefaults:
    """From information_schema.columns' (table_name, column_name, column_default, is_nullable): the declared columns
    whose default on the site is Moodle's, with that default's value."""
    found: SiteDefaults = {}
    for table_name, column_name, shown, nullable in columns:
        declared = schema.metadata.tables.get(table_name)
        column = declared.c.get(column_name) if declared is not None else None
        if column is None or column.primary_key:
            continue
        agreed, value = _agreed_default(column, shown, nullable == "YES")
        if agreed:
            found.setdefault(table_name, {})[column_name] = value
    return found


def _agreed_default(column: Column[Any], shown: str | None, nullable: bool) -> tuple[bool, Any]:
    """Whether the site's default of `column` (as information_schema shows it) is the declared one, and its value."""
    declared = column.server_default
    if declared is None:  # no default but NULL: MariaDB shows 'NULL', MySQL no default at all
        return column.nullable is True and nullable and shown in (None, "NULL"), None
    text = getattr(declared, "arg", None)
    if not isinstance(text, str) or shown is None:
        return False, None
    if isinstance(column.type, Integer):
        number = text.lstrip("-").isdigit()
        return number and shown == text, int(text) if number else None
    if isinstance(column.type, String):
        # MariaDB quotes a text default ('en'), MySQL does not (en); a quote inside is never taken as agreeing.
        return "'" not in text and shown in (f"'{text}'", text), text
    return False, None


def left_out(defaults: Mapping[str, Any], shared: Mapping[str, Any]) -> set[str]:
    """Of the columns every row gives the same value (`shared`: column -> that value), those an INSERT may leave out:
    the value is the site's default, of the same type (an integer column given the text '0' keeps it)."""
    return {
        name
        for name, value in shared.items()
        if name in defaults and type(value) is type(defaults[name]) and value == defaults[name]
    }
