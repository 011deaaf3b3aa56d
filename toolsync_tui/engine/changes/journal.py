"""A run's change journal: what each of its batches wrote to Moodle, with the values before, for its undo.

    <data dir>/changes/<run id>.sqlite     (folder 0700, file 0600; removed with the reports past retention_days)

Tables:
    meta     name -> value: run, operation, site, irreversible (why the run cannot be undone), undone_by (the undo's
             run id)
    batches  batch -> committed (0 until Moodle's commit of the batch is known to have happened)
    entries  batch, seq, kind (insert | update | delete), tbl (without prefix), keycol, columns (JSON), rows (JSON)

A batch's entries are written ahead of its Moodle commit and marked committed after it: a batch never marked (a kill
between the two commits) is resolved against Moodle's rows at undo (undo.py). Rows, as JSON lists in `columns`'
order: insert [id, digest] (a digest of the whole row as committed, capture.digest: the row's columns are in
`columns`), update [key, before ..., after ...], delete the whole row; compressed JSON.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import zlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from toolsync_tui.engine.datadir.state_db import state_db

FOLDER = "changes"
INSERT, UPDATE, DELETE = "insert", "update", "delete"

_CREATE = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS batches (batch INTEGER PRIMARY KEY, committed INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (batch INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, "
    "tbl TEXT NOT NULL, keycol TEXT NOT NULL, columns TEXT NOT NULL, rows BLOB NOT NULL, PRIMARY KEY (batch, seq))",
)


class JournalProblem(Exception):
    """The change journal cannot be read or written; the message names the file and why."""


@dataclass(frozen=True)
class Entry:
    """One statement's (or chunk's) changes."""

    kind: str
    table: str  # without the site's prefix
    key: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Batch:
    number: int
    committed: bool
    entries: list[Entry]


def journal_path(data_dir: Path, run: str) -> Path:
    return data_dir / FOLDER / f"{run}.sqlite"


def encode(rows: Sequence[Sequence[Any]]) -> bytes:
    """Rows as compressed JSON: ids run in sequence and values repeat, a batch's entry takes a few kB."""
    return zlib.compress(json.dumps(rows, default=_default, ensure_ascii=False, separators=(",", ":")).encode(), 1)


def decode(data: bytes) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(zlib.decompress(data), object_hook=_hook)
    return rows


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    return str(value)  # no other type in Moodle's tables; its text is what the database takes back


def _hook(found: dict[str, Any]) -> Any:
    if "$d" in found:
        return Decimal(found["$d"])
    if "$b" in found:
        return base64.b64decode(found["$b"])
    return found


@dataclass(frozen=True)
class ChangeJournal:
    path: Path

    def exists(self) -> bool:
        return self.path.is_file()

    def write_batch(self, number: int, entries: Sequence[Entry], meta: dict[str, str]) -> None:
        """A batch's entries, before its Moodle commit (committed = 0); `meta` set alongside."""
        with self._connected(write=True) as db, db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(meta.items()))
            db.execute("INSERT OR REPLACE INTO batches VALUES (?, 0)", (number,))
            db.execute("DELETE FROM entries WHERE batch = ?", (number,))
            db.executemany(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (number, seq, e.kind, e.table, e.key, json.dumps(e.columns), encode(e.rows))
                    for seq, e in enumerate(entries)
                ],
            )

    def mark_committed(self, number: int) -> None:
        with self._connected(write=True) as db, db:
            db.execute("UPDATE batches SET committed = 1 WHERE batch = ?", (number,))

    def set_meta(self, name: str, value: str) -> None:
        with self._connected(write=True) as db, db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def meta(self) -> dict[str, str]:
        if not self.exists():
            return {}
        with self._connected(write=False) as db:
            return {str(n): str(v) for n, v in db.execute("SELECT name, value FROM meta")}

    def batches(self) -> list[Batch]:
        """Every batch, in the order written, with its entries in the order recorded."""
        if not self.exists():
            return []
        with self._connected(write=False) as db:
            marks = dict(db.execute("SELECT batch, committed FROM batches ORDER BY batch").fetchall())
            found: dict[int, list[Entry]] = {number: [] for number in marks}
            query = "SELECT batch, kind, tbl, keycol, columns, rows FROM entries ORDER BY batch, seq"
            for number, kind, table, key, columns, rows in db.execute(query):
                found[number].append(Entry(kind, table, key, json.loads(columns), decode(rows)))
        return [Batch(number, bool(marks[number]), entries) for number, entries in found.items()]

    def _connected(self, *, write: bool) -> AbstractContextManager[sqlite3.Connection]:
        return state_db(self.path, write=write, tables=_CREATE, problem=JournalProblem, what="the change journal")
