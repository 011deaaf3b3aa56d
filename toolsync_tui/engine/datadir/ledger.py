"""The ownership ledger: which Moodle records toolsync created or manages, and from which run. Its own state in the
data directory, never a column or a row in Moodle's tables.

    <data dir>/state/ledger.sqlite     (folder 0700, file 0600)

One SQLite table, `owned`, one row a record:

    site       as in protected_groups.py: $CFG->siteidentifier, else the database's address
    kind       what the record is (KINDS): user, course, category, enrolment (a user_enrolments row), role_assignment,
               group, group_member, cohort, cohort_member
    id         the record's id in its Moodle table (KIND_TABLES)
    operation  the operation that made it ours (users, enrols ...)
    run        the run's id (runs.jsonl), or "adopt" for `toolsync ledger adopt`
    since      when (unix time)

primary key (site, kind, id). Entries are written ahead of the Moodle commit of the batch that creates the records
(a kill between the two commits loses none). A batch rolled back leaves entries whose id never came to be: Moodle's
auto-increment ids are never handed out twice (InnoDB keeps its counter across restarts; SQLite's AUTOINCREMENT
tables too), so such an entry names nothing and readers ignore it (`prune` removes them).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolsync_tui.engine.datadir.protected_groups import FOLDER
from toolsync_tui.engine.datadir.state_db import site_of, state_db

if TYPE_CHECKING:
    from toolsync_tui.engine.moodle.gateway import MoodleGateway

FILE_NAME = "ledger.sqlite"
ADOPTED = "adopt"  # the run of entries made by `toolsync ledger adopt`
CHUNK = 900  # ids a statement, under SQLite's oldest limit of 999 bound values

# What a kind of record is stored in: its Moodle table (without prefix).
KIND_TABLES: dict[str, str] = {
    "user": "user",
    "course": "course",
    "category": "course_categories",
    "enrolment": "user_enrolments",
    "role_assignment": "role_assignments",
    "group": "groups",
    "group_member": "groups_members",
    "cohort": "cohort",
    "cohort_member": "cohort_members",
}
TABLE_KINDS = {table: kind for kind, table in KIND_TABLES.items()}
KINDS = tuple(KIND_TABLES)

_CREATE = """
CREATE TABLE IF NOT EXISTS owned (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    id INTEGER NOT NULL,
    operation TEXT NOT NULL,
    run TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (site, kind, id)
)
"""


class LedgerProblem(Exception):
    """The ledger file cannot be read or written; the message says which file and why."""


def ledger_path(data_dir: Path) -> Path:
    return data_dir / FOLDER / FILE_NAME


async def ledger_for_site(data_dir: Path, gateway: MoodleGateway) -> Ledger:
    """The ledger of the gateway's site, in this data directory."""
    return Ledger(ledger_path(data_dir), await site_of(gateway))


@dataclass(frozen=True)
class Ledger:
    path: Path
    site: str

    def add(self, kind: str, ids: Iterable[int], operation: str, run: str) -> int:
        """These records are ours from now (an entry already there keeps its first operation and run); how many
        entries were new."""
        _known(kind)
        listed = [int(i) for i in ids]
        if not listed:
            return 0
        with self._connected(write=True) as db, db:
            before = db.total_changes
            # One statement over the ids as a JSON array: SQLite inserts a batch's thousands of entries without the
            # GIL (executemany would take it back for each row, from the run's event loop: this runs in a thread).
            db.execute(
                "INSERT OR IGNORE INTO owned SELECT ?, ?, value, ?, ?, ? FROM json_each(?)",
                (self.site, kind, operation, run, int(time.time()), json.dumps(listed)),
            )
            return db.total_changes - before

    def owned(self, kind: str) -> set[int]:
        """The ids of this kind's records the ledger holds (some may no longer exist in Moodle)."""
        _known(kind)
        if not self.path.exists():
            return set()
        with self._connected(write=False) as db:
            rows = db.execute("SELECT id FROM owned WHERE site = ? AND kind = ?", (self.site, kind)).fetchall()
        return {row[0] for row in rows}

    def counts(self) -> dict[str, int]:
        """Entries per kind (kinds without any left out)."""
        if not self.path.exists():
            return {}
        with self._connected(write=False) as db:
            rows = db.execute("SELECT kind, count(*) FROM owned WHERE site = ? GROUP BY kind", (self.site,)).fetchall()
        return {kind: count for kind, count in rows}

    def forget(self, kind: str, ids: Iterable[int]) -> None:
        """These records are no longer ours (removed from Moodle, or an undo removed what a run created)."""
        _known(kind)
        wanted = [int(i) for i in ids]
        if not wanted or not self.path.exists():
            return
        with self._connected(write=True) as db, db:
            for start in range(0, len(wanted), CHUNK):
                part = wanted[start : start + CHUNK]
                db.execute(
                    f"DELETE FROM owned WHERE site = ? AND kind = ? AND id IN ({', '.join('?' * len(part))})",
                    (self.site, kind, *part),
                )

    def prune(self, kind: str, existing: Iterable[int]) -> None:
        """Keep, of this kind, only the entries whose record exists (`existing`: the ids found in Moodle)."""
        self.forget(kind, self.owned(kind) - set(existing))

    def _connected(self, *, write: bool) -> AbstractContextManager[sqlite3.Connection]:
        return state_db(self.path, write=write, tables=[_CREATE], problem=LedgerProblem, what="the ownership ledger")


def _known(kind: str) -> None:
    if kind not in KIND_TABLES:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
