"""The group memberships toolsync protects: its own record in the data directory, never a component in Moodle's rows.

tool_sync tagged the memberships of its group members file, and those of the enrolments file with protect_groups,
with `groups_members.component = 'tool_sync'`. The component names the plugin that manages a membership; tool_sync is
not a plugin of the site, so Moodle's groups_add_member() refuses it and the course's Group members page fails on such
a row ("Invalid component used in plugin/component_callback(): tool_sync"). toolsync writes component '' and itemid 0,
as groups_add_member() does without a component, and remembers here which memberships it made under protection: the
enrolments file's greplace and gdel with protect_groups remove only those.

    <data dir>/state/protected_group_members.sqlite     (folder 0700, file 0600)

One SQLite table, `protected_member`, one row a membership:

    site      the site's $CFG->siteidentifier (else, a sandbox has none, the database's address and table prefix):
              one data directory may serve several sites in turn
    groupid, userid
    memberid  the `groups_members.id` of the membership when it was recorded: the entry holds only while that row
              exists. A membership removed in Moodle and made again by hand has another id, and is not protected.
    source    what recorded it: groupmembers, enrols, or repair (`toolsync groups repair-components`)
    recorded  when (unix time)

primary key (site, groupid, userid). A batch's changes are kept in memory (`record`, `forget`) and written by `commit`
after the batch's transaction has committed; the memberships it records are also written as soon as they are stored,
before that commit (`_write_ahead`), so that a run killed between the two commits loses none. A batch rolled back
leaves at most entries whose memberid never came to be, which protect nothing. Runs hold the data directory's lock,
so one writer at a time.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl

from toolsync_tui.engine.datadir.state_db import site_of, state_db

if TYPE_CHECKING:
    from toolsync_tui.engine.moodle.gateway import MoodleGateway

FOLDER = "state"
FILE_NAME = "protected_group_members.sqlite"
TABLE = "protected_member"
SOURCES = ("groupmembers", "enrols", "repair")
CHUNK = 400  # (groupid, userid) pairs a statement: 800 bound values, under SQLite's oldest limit of 999

MEMBER_SCHEMA: dict[str, type[pl.DataType]] = {"groupid": pl.Int64, "userid": pl.Int64, "memberid": pl.Int64}
ENTRY_SCHEMA: dict[str, type[pl.DataType]] = {**MEMBER_SCHEMA, "source": pl.String, "recorded": pl.Int64}

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    site TEXT NOT NULL,
    groupid INTEGER NOT NULL,
    userid INTEGER NOT NULL,
    memberid INTEGER NOT NULL,
    source TEXT NOT NULL,
    recorded INTEGER NOT NULL,
    PRIMARY KEY (site, groupid, userid)
)
"""


class StateProblem(Exception):
    """The state file cannot be read or written; the message says which file and why."""


def state_path(data_dir: Path) -> Path:
    return data_dir / FOLDER / FILE_NAME


async def for_site(data_dir: Path, gateway: MoodleGateway) -> ProtectedMemberships:
    """The protected memberships of the gateway's site, in this data directory."""
    return ProtectedMemberships(state_path(data_dir), await site_of(gateway))


Step = tuple[Literal["record", "forget"], pl.DataFrame, str]


@dataclass
class ProtectedMemberships:
    path: Path
    site: str
    _pending: list[Step] = field(default_factory=list, repr=False)

    # -- reading ---------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise StateProblem when the file exists but cannot be read (a run stops before writing anything)."""
        if self.path.exists():
            with self._connected(write=False) as db:
                db.execute(f"SELECT count(*) FROM {TABLE} WHERE site = ?", (self.site,)).fetchone()

    def entries(self) -> pl.DataFrame:
        """Every entry of the site (ENTRY_SCHEMA), by groupid and userid."""
        if not self.path.exists():
            return pl.DataFrame(schema=ENTRY_SCHEMA)
        with self._connected(write=False) as db:
            rows = db.execute(
                f"SELECT groupid, userid, memberid, source, recorded FROM {TABLE} WHERE site = ? "
                "ORDER BY groupid, userid",
                (self.site,),
            ).fetchall()
        return pl.DataFrame(rows, schema=ENTRY_SCHEMA, orient="row")

    def protected(self, members: pl.DataFrame) -> pl.DataFrame:
        """The rows of `members` (groupid, userid, memberid: stored memberships) that are protected: recorded with
        that very memberid, in the file or among the batch's pending records."""
        wanted = _members(members)
        if wanted.is_empty():
            return members.clear()
        found: list[tuple[int, int, int]] = []
        if self.path.exists():
            pairs = wanted.select("groupid", "userid").unique().rows()
            with self._connected(write=False) as db:
                for start in range(0, len(pairs), CHUNK):
                    part = pairs[start : start + CHUNK]
                    values = ", ".join("(?, ?)" for _ in part)
                    found += db.execute(
                        f"SELECT groupid, userid, memberid FROM {TABLE} WHERE site = ? AND (groupid, userid) IN "
                        f"(VALUES {values})",
                        (self.site, *(v for pair in part for v in pair)),
                    ).fetchall()
        held = pl.concat(
            [
                pl.DataFrame(found, schema=MEMBER_SCHEMA, orient="row"),
                *(frame for kind, frame, _ in self._pending if kind == "record"),
            ]
        )
        keys = ["groupid", "userid", "memberid"]
        return members.join(held.select(keys).unique(), on=keys, how="semi", maintain_order="left")

    # -- a batch's changes, written after its commit ---------------------------------------------------

    def begin(self) -> None:
        """A new batch: what an earlier batch left pending (rolled back, or a dry run) is dropped."""
        self._pending.clear()

    def record(self, members: pl.DataFrame, source: str) -> None:
        """Protect these memberships (groupid, userid, memberid): written at once (`_write_ahead`), and again in order
        with the batch's other changes once it has committed."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        frame = _members(members)
        if frame.height:
            self._write_ahead(frame, source)
            self._pending.append(("record", frame, source))

    def _write_ahead(self, frame: pl.DataFrame, source: str) -> None:
        """Entries for memberships the open transaction stores, before it commits: a run killed between Moodle's commit
        and this file's would otherwise leave them unprotected for good (run again, they exist, nothing records them).
        Safe when the batch rolls back: an entry holds only while its memberid exists, and a membership is recorded
        with the id of its current row, so what it replaces is stale, unless an earlier step of the batch removed
        that membership (a rollback brings the row back): those wait for commit(). A failure here is left to commit()
        to report."""
        earlier = [forgot.select("groupid", "userid") for kind, forgot, _ in self._pending if kind == "forget"]
        if earlier:
            frame = frame.join(pl.concat(earlier), on=["groupid", "userid"], how="anti")
        if frame.is_empty():
            return
        stamp = int(time.time())
        with suppress(StateProblem), self._connected(write=True) as db, db:
            db.executemany(
                f"INSERT OR REPLACE INTO {TABLE} (site, groupid, userid, memberid, source, recorded) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(self.site, g, u, m, source, stamp) for g, u, m in frame.iter_rows()],
            )

    def forget(self, members: pl.DataFrame) -> None:
        """These memberships (groupid, userid) are gone: their entries go once the batch has committed."""
        frame = members.select(pl.col("groupid").cast(pl.Int64), pl.col("userid").cast(pl.Int64)).drop_nulls()
        if frame.height:
            self._pending.append(("forget", frame.with_columns(pl.lit(0, dtype=pl.Int64).alias("memberid")), ""))

    @property
    def pending(self) -> int:
        """Memberships recorded or forgotten in the batch, not written yet."""
        return sum(frame.height for _, frame, _ in self._pending)

    def commit(self, now: int | None = None) -> int:
        """Write the batch's changes, in their order, in one SQLite transaction; how many memberships were recorded.
        Raises StateProblem (the pending changes are dropped all the same: the batch is committed in Moodle)."""
        steps, self._pending = self._pending, []
        if not steps:
            return 0
        stamp = int(time.time()) if now is None else now
        recorded = 0
        with self._connected(write=True) as db, db:
            for kind, frame, source in steps:
                if kind == "forget":
                    db.executemany(
                        f"DELETE FROM {TABLE} WHERE site = ? AND groupid = ? AND userid = ?",
                        [(self.site, g, u) for g, u in frame.select("groupid", "userid").iter_rows()],
                    )
                    continue
                db.executemany(
                    f"INSERT OR REPLACE INTO {TABLE} (site, groupid, userid, memberid, source, recorded) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(self.site, g, u, m, source, stamp) for g, u, m in frame.iter_rows()],
                )
                recorded += frame.height
        return recorded

    # -- the file --------------------------------------------------------------------------------------

    def _connected(self, *, write: bool) -> AbstractContextManager[sqlite3.Connection]:
        return state_db(
            self.path, write=write, tables=[_CREATE], problem=StateProblem, what="the protected group memberships file"
        )


def _members(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(pl.Int64) for c in MEMBER_SCHEMA).drop_nulls().unique(maintain_order=True)
