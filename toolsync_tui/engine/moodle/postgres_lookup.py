"""Reading rows by a list of keys on PostgreSQL (gateway.fetch_in): the keys as one array parameter.

`key IN ($1, ..., $1000)` goes wrong on PostgreSQL in two ways. On a table it has no statistics of (the tables a run
fills, until autovacuum analyzes them), it estimates a thousand-key list to match the whole table and reads all of it;
and when the statement's plan is the generic one of its prepared statement, it compares each row read with the keys
one by one (the hashed IN list needs constants). Both grow with the table: 300 ms a chunk against 100,000 users.

When an index leads with the key column (and the key is compared as stored), the keys go in as an array, unnest()ed,
and each is looked up on its own by a LATERAL subquery (`OFFSET 0` keeps the planner from flattening it into a
join): an index probe a key, whatever the statistics say. Otherwise (no such index, or `lower(column)`, which no
index of Moodle's serves) the IN list stays: one read of the table a chunk, each row's key looked up in the list's
hash table, as the server does in every plan toolsync's connections ask for (plan_cache_mode=force_custom_plan,
gateway.py); a join to the unnest()ed keys was planned as a nested loop reading the table once a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Column, Integer, Select, Table, Text, bindparam, func, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import iterate


def leading_index(table: Table, key: str) -> bool:
    """Whether an index (or the primary key) of the table starts with this column."""
    if [c.name for c in table.primary_key.columns][:1] == [key]:
        return True
    return any([c.name for c in index.columns][:1] == [key] for index in table.indexes)


def probed(table: Table, key: str, casefold: bool) -> bool:
    """Whether fetch_in looks its keys up one by one: an index leads with the key, compared as stored."""
    return not casefold and leading_index(table, key)


def probe_select(
    table: Table, key: str, values: Sequence[Any], columns: Sequence[str], where: ColumnElement[bool] | None
) -> Select[Any]:
    """The SELECT of `columns` of the rows whose `key` is one of `values`, and `where`: an index probe a key."""
    integer = isinstance(table.c[key].type, Integer)
    element = BigInteger() if integer else Text()
    keys = list(dict.fromkeys(int(v) if integer else str(v) for v in values))  # a key once: the join repeats none
    given = func.unnest(bindparam("toolsync_keys", keys, type_=ARRAY(element)))
    wanted = given.table_valued("k").render_derived("toolsync_keys")
    # The probe asks for the key alone: given `where` too (deleted = 0 ...), the planner ANDed in the indexes of
    # those columns, which match most of the table (4 ms a key against 100,000 users).
    stored = table.alias("toolsync_t")
    needed = [*columns, *(c.name for c in _named(where, table) if c.name not in columns)]
    probe = (
        select(*[stored.c[name] for name in dict.fromkeys(needed)])
        .where(stored.c[key] == wanted.c.k)
        .offset(0)
        .lateral("toolsync_found")
    )
    query = select(*[probe.c[name] for name in columns]).select_from(wanted.join(probe, true()))
    # `where` names the table: the same condition on the probe's columns, applied to what it found.
    return query if where is None else query.where(_on_alias(where, probe))


def _on_alias(where: ColumnElement[bool], alias: Any) -> ColumnElement[bool]:
    adapted: ColumnElement[bool] = ClauseAdapter(alias).traverse(where)
    return adapted


def _named(where: ColumnElement[bool] | None, table: Table) -> list[Column[Any]]:
    """The columns of `table` that `where` names."""
    if where is None:
        return []
    return [c for c in iterate(where) if isinstance(c, Column) and c.table is table]


def named_columns(where: ColumnElement[bool] | None, table: Table) -> list[str]:
    """The names of the columns of `table` that `where` names."""
    return [c.name for c in _named(where, table)]
