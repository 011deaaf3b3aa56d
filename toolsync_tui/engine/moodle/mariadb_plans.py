"""Keyed reads on MariaDB that stay index lookups whatever the table's statistics say.

MariaDB weighs a keyed read (`email IN (...)`, `(userid, contextid, roleid) IN (...)`) against a full scan by the
table's persistent statistics, which lag behind a table the run itself is filling: on a site whose mdl_user had 2
users when the run started, every chunk of 1,000 emails or idnumbers of a 100,000-user run read the whole table
(Rows_examined = the table's rows, in the slow log): 13 s of that run's 42 s of server time, growing with the table.
And from 1,000 values on (in_predicate_conversion_threshold) it rewrites an IN list into a join to a derived table,
which it then planned as a full scan of mdl_role_assignments probing the derived table, the index named or not.

So a keyed read names the index that leads with its key (FORCE INDEX), when the site has it on the same columns
(read at the start: a site may lack an index Moodle declares), and toolsync's sessions keep IN lists as lists (a
range over that index).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncEngine

# Index lookups for an IN list of any length: no rewriting into a join (MariaDB only; MySQL has no such setting).
SESSION_SETTINGS = "SET SESSION in_predicate_conversion_threshold = 0"


def leading_index(
    table: Table, key: Sequence[str], present: frozenset[tuple[str, str]], also: Collection[str] = ()
) -> str | None:
    """The name of the site's index of `table` that serves a read by `key` best: its leading columns are the key's
    and those of `also` (the columns the read's other conditions name), all the key's among them; the most such
    columns first (`contextid IN (...) AND roleid IN (...)` reads through (roleid, contextid), not through contextid's
    own index and every assignment of those contexts), then the key's own order, a unique index, the narrowest. None
    when no index leads with the key (or the key is the primary key, which the optimizer never passes over)."""
    if list(key) == [c.name for c in table.primary_key.columns]:
        return None
    usable = {*key, *also}
    fitting = []
    for index in table.indexes:
        columns = [c.name for c in index.columns]
        lead = list(itertools.takewhile(usable.__contains__, columns))
        if set(key) <= set(lead) and (table.name, str(index.name)) in present:
            in_order = columns[: len(key)] == list(key)
            fitting.append((-len(lead), not in_order, not index.unique, len(columns), str(index.name)))
    return min(fitting)[-1] if fitting else None


def keep_in_lists(engine: AsyncEngine) -> None:
    """Each new connection of `engine` to a MariaDB server gets SESSION_SETTINGS."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if "mariadb" not in str(dbapi_connection.driver_connection.get_server_info()).lower():
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(SESSION_SETTINGS)
        finally:
            cursor.close()
