"""Moodle's standard log rows in the database floors (benchmarks.floor, floor_enrols, floor_cohorts).

Moodle's APIs log one mdl_logstore_standard_log row per event, and toolsync writes the same rows in the batch's own
transaction (toolsync_tui/engine/moodle/event_log.py): a floor without them leaves out a third or more of the work.
Each floor script therefore times its write floor twice, the second time "with Moodle's log rows": the same
statements plus multi-row INSERTs of the rows toolsync writes for them. What is here:

- `LogRows`: one event kind's row as a str.format template of its VALUES tuple, fixed cells escaped once. The
  kinds are toolsync's own catalog (engine/moodle/events.py), `other` is encoded by its encoders (JSON or
  serialize(), as the site says), the acting user and origin are what a CLI run writes: the text is toolsync's.
- `log_inserts()`: those tuples as multi-row INSERTs of at most the gateway's MAX_STATEMENT bytes, as toolsync's.
- `spooled()`: a Spool, the floor's transactions built before the clock and kept in a temporary file instead of
  memory (1,000,000 enrolments make 3,000,000 log rows, ~700 MB of text); `run_spooled()` sends them one
  transaction at a time, checking that every INSERT got the first id its log rows name (computed beforehand from the
  tables' AUTO_INCREMENT: the server hands out consecutive ids to a multi-row INSERT, innodb_autoinc_lock_mode 0/1).
- `log_settings()`, `next_id()`, `count()`: what the statements need from the fresh site, and the checks after.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import aiomysql

from toolsync_tui.engine.moodle.event_log import LOG_COLUMNS, ORIGIN, EventKind, php_json, php_serialize
from toolsync_tui.engine.moodle.gateway import MAX_STATEMENT

LOG_TABLE = "mdl_logstore_standard_log"
MARK = 918273645546372819  # stands in `other` for a number of the row's own (a role assignment's id), then {5}

# Every log row toolsync writes gives these their defaults (0, NULL, NULL): its INSERTs leave them out
# (moodle/site_defaults.py), and so does the floor.
LOG_WRITTEN = tuple(c for c in LOG_COLUMNS if c not in ("anonymous", "ip", "realuserid"))

# A transaction's statement: its text and the first id its INSERT must get (None: not checked).
Statement = tuple[str, int | None]


class IdsNotAsBuilt(RuntimeError):
    """An INSERT got other ids than the log rows built beforehand name: the floor would log the wrong rows."""


@dataclass(frozen=True)
class LogRows:
    """The log rows of one floor: `escape` the driver's (aiomysql's Connection.escape), the acting user's id, the
    rows' timecreated, the site's format of `other`."""

    escape: Callable[[Any], str]
    actor: int
    now: int
    json_format: bool = True

    def template(self, kind: EventKind, contextlevel: int, other: Mapping[str, Any] | None = None) -> str:
        """A row of `kind` as str.format(objectid, contextid, contextinstanceid, courseid, relateduserid, number):
        `number` replaces MARK in `other` (unused when `other` holds none)."""

        def fixed(value: Any) -> str:
            return self.escape(value).replace("{", "{{").replace("}", "}}")

        encoded = (php_json if self.json_format else php_serialize)(other)
        cells = [
            fixed(kind.eventname),
            fixed(kind.component),
            fixed(kind.action),
            fixed(kind.target),
            fixed(kind.objecttable),
            "{0}",
            fixed(kind.crud),
            str(kind.edulevel),
            "{1}",
            str(contextlevel),
            "{2}",
            str(self.actor),
            "{3}",
            "{4}",
            fixed(encoded).replace(str(MARK), "{5}"),
            str(self.now),
            fixed(ORIGIN),
        ]  # anonymous 0, ip NULL (none from the command line), realuserid NULL (no "log in as"): their defaults
        return "(" + ", ".join(cells) + ")"


def log_inserts(values: Iterable[str], budget: int = MAX_STATEMENT) -> list[str]:
    """Multi-row INSERTs of the VALUES tuples, each at most `budget` bytes, as the gateway splits toolsync's."""
    head = f"INSERT INTO {LOG_TABLE} ({', '.join(LOG_WRITTEN)}) VALUES "
    statements: list[str] = []
    part: list[str] = []
    size = len(head)
    for text in values:
        if part and size + len(text) + 2 > budget:
            statements.append(head + ", ".join(part))
            part, size = [], len(head)
        part.append(text)
        size += len(text) + 2
    if part:
        statements.append(head + ", ".join(part))
    return statements


class Spool:
    """Transactions of statements written to a temporary file as they are built (before the clock), read back one
    transaction at a time: memory holds one transaction, not the floor's whole text. Made by spooled()."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.transactions = 0
        self.bytes = 0

    def add(self, statements: Sequence[Statement]) -> None:
        pickle.dump(list(statements), self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.transactions += 1
        self.bytes += sum(len(sql) for sql, _ in statements)

    def __iter__(self) -> Iterator[list[Statement]]:
        self._file.flush()
        self._file.seek(0)
        for _ in range(self.transactions):
            yield pickle.load(self._file)  # the file this object wrote


@contextmanager
def spooled() -> Iterator[Spool]:
    """A Spool in a temporary file, removed on leaving."""
    with tempfile.TemporaryFile(prefix="toolsync-floor-") as file:
        yield Spool(file)


async def run_spooled(conn: aiomysql.Connection, cursor: aiomysql.Cursor, spool: Spool) -> str:
    """Send the spool's transactions, a commit after each; the time spent reading them back, in words."""
    reading = 0.0
    transactions = iter(spool)
    while True:
        started = time.perf_counter()
        statements = next(transactions, None)
        reading += time.perf_counter() - started
        if statements is None:
            break
        for sql, first in statements:
            await cursor.execute(sql)
            if cursor.description is not None:
                await cursor.fetchall()
            if first is not None and cursor.lastrowid != first:
                raise IdsNotAsBuilt(f"{sql[:60]}...: first id {cursor.lastrowid}, the log rows name {first}")
        await conn.commit()
    return f"of which reading the built statements back {reading:.2f} s ({spool.bytes / 1e6:,.0f} MB)"


async def log_settings(cursor: aiomysql.Cursor) -> tuple[int, bool]:
    """The acting user toolsync logs on this site (the first of $CFG->siteadmins, as get_admin() finds it on the fresh
    site) and whether `other` is JSON (logstore_standard's jsonformat); the standard store must be enabled."""
    await cursor.execute("SELECT value FROM mdl_config WHERE name = 'siteadmins'")
    (admins,) = await cursor.fetchone()
    await cursor.execute(
        "SELECT plugin, name, value FROM mdl_config_plugins WHERE (plugin = 'tool_log' AND name = 'enabled_stores') "
        "OR (plugin = 'logstore_standard' AND name = 'jsonformat')"
    )
    values = {(plugin, name): value or "" for plugin, name, value in await cursor.fetchall()}
    if "logstore_standard" not in values.get(("tool_log", "enabled_stores"), "").split(","):
        raise RuntimeError("the site's standard log store is not enabled: toolsync would write no log rows")
    return int(str(admins).split(",")[0]), values.get(("logstore_standard", "jsonformat"), "0") not in ("", "0")


async def next_id(cursor: aiomysql.Cursor, table: str) -> int:
    """The id the next INSERT into `table` gets (its AUTO_INCREMENT)."""
    await cursor.execute(
        "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    (value,) = await cursor.fetchone()
    return int(value)


async def count(cursor: aiomysql.Cursor, sql: str) -> int:
    await cursor.execute(sql)
    (value,) = await cursor.fetchone()
    return int(value)


async def checked_count(cursor: aiomysql.Cursor, sql: str, wanted: int, what: str) -> None:
    """The log rows a floor wrote, counted by `sql` (those that name what they log): `wanted` of them, or the floor
    fails; printed as `what`."""
    found = await count(cursor, sql)
    if found != wanted:
        raise RuntimeError(f"{found:,} log rows found of {wanted:,}: {what}")
    print(f"  checked: {found:,} {what}", flush=True)


def add_log_rows_only(parser: argparse.ArgumentParser) -> None:
    """A floor's `--log-rows-only`: only its floor with log rows, the one a run is compared with (benchmarks.share)."""
    parser.add_argument("--log-rows-only", action="store_true", help="only the floor with log rows")
