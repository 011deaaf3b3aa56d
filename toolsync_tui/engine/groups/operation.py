"""Groups file (groups.csv): create and update groups and groupings of courses (reference §2.5.1).

Rows are written as groups_create_group(), groups_create_grouping() and groups_assign_grouping() write them
(moodle-db-semantics §7). Decisions where we differ from the original (CONTRACT §3):

* a group or grouping is found by `updateid` (group_identifier / grouping_identifier) when the cell is given, else by
  idnumber when given, else by name, within the row's course; not found: created in the row's resolved course;
* an `updateid` naming by id a group (grouping) of another course fails the row, naming both courses: it is never
  taken for a new one. With the identifier `id`, an `updateid` that is not a number fails the row too;
* found, with an `updateid` column: the present, non-empty cells (name, idnumber, description) that differ are
  updated (never set to NULL); found, without it (add-only mode): `unchanged` when the row matches, else `skipped`
  naming what differs;
* names are unique within a course and idnumbers too (Moodle's forms refuse duplicates): a collision fails the row;
* `selfgrouping` creates the grouping of the group's name when missing AND assigns the group to it. The new grouping
  takes the group's idnumber, description and descriptionformat as the row leaves the group (tool_sync copies them
  from the group it created, found or updated); an idnumber another grouping of the course holds fails the row, as
  groups_create_grouping() refuses it. A grouping of that name is used as it is;
* `grouping` names a grouping of the course by idnumber; unknown fails the row (nothing of it is written);
* `type`: empty or `group`, or `grouping`; anything else fails the row.

Planning is in memory, row by row in file order (a row sees what the rows before it create or rename), each lookup a
dict access (_Index): a batch costs a handful of statements and O(rows) Python, whatever the courses hold.

The batch's standard-log events are recorded with its writes, as the group API logs them (moodle/course_events.py):
grouping_created, group_created, group_updated / grouping_updated (groups_update_group() and _grouping() log one per
call, whatever changed), then grouping_group_assigned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

import polars as pl
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config, GroupKey
from toolsync_tui.engine.groups.common import GroupCaches, course_lookup, resolve_courses
from toolsync_tui.engine.moodle import course_events
from toolsync_tui.engine.moodle import groups as gm
from toolsync_tui.engine.moodle.contexts import course_contexts
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, Outcome, cells
from toolsync_tui.engine.run.command_file import ColumnSpec
from toolsync_tui.engine.run.operation import BatchPlan, Operation, PreviousWrite, nothing_in_flight
from toolsync_tui.engine.run.value_limits import StoredColumns

Kind = Literal["group", "grouping"]
KINDS: dict[str, Kind] = {"": "group", "group": "group", "grouping": "grouping"}  # lower-cased `type` -> kind
TEXT = ("courseid", "name", "type", "idnumber", "updateid", "selfgrouping", "grouping", "description")
FIELDS = ("name", "idnumber", "description")
STORED = ["id", "courseid", *FIELDS, "descriptionformat"]
LIMITS: dict[Kind, dict[str, int]] = {
    "group": {"name": 254, "idnumber": 100},
    "grouping": {"name": 255, "idnumber": 100},
}
ANY_COURSE = 0  # the course part of an id key: ids are unique site-wide


@dataclass(eq=False)
class _Item:
    """A group or grouping, as stored or as planned (id < 0: to be created). Compared by identity."""

    id: int
    kind: Kind
    courseid: int
    name: str
    idnumber: str
    description: str | None
    descriptionformat: int = 0
    changed: set[str] = field(default_factory=set)


class _Refused(Exception):
    """The row fails, for this reason (nothing of it is planned)."""


_Key = tuple[Kind, int, str, str]


class _Index:
    """The items by (kind, courseid, field, value's key), field "name" or "idnumber", and by (kind, ANY_COURSE,
    "id", str(id)) for the stored ones. Several items under a key (stored duplicates): the lowest stored id wins,
    then the first planned."""

    def __init__(self, items: Iterable[_Item] = (), key: Callable[[str], str] = str.lower) -> None:
        # key: a name or idnumber as tool_sync's get_record() compares it on the site (TextMatch.given_text).
        self._key = key
        self._by: dict[_Key, list[_Item]] = {}
        self.looked_up: set[_Key] = set()  # every key find() was asked: what the plan relied on
        self.moved: set[_Key] = set()  # the keys set() took an item from: what the write changes beside the new keys
        for item in items:
            self.add(item)

    def _keys(self, item: _Item) -> list[_Key]:
        keys: list[_Key] = [(item.kind, item.courseid, "name", self._key(item.name))]
        if item.idnumber:
            keys.append((item.kind, item.courseid, "idnumber", self._key(item.idnumber)))
        if item.id > 0:
            keys.append((item.kind, ANY_COURSE, "id", str(item.id)))
        return keys

    def __contains__(self, item: _Item) -> bool:
        return item in self._by.get((item.kind, ANY_COURSE, "id", str(item.id)), ())

    def add(self, item: _Item) -> None:
        for key in self._keys(item):
            self._by.setdefault(key, []).append(item)

    def set(self, item: _Item, values: dict[str, str]) -> None:
        """Change fields of an item, keeping its keys in step."""
        for key in self._keys(item):
            self._by[key].remove(item)
            self.moved.add(key)
        for name, value in values.items():
            setattr(item, name, value)
        self.add(item)

    def find(self, kind: Kind, courseid: int, field: str, value: str) -> _Item | None:
        """The item whose `field` is `value` (as the site compares them), within the course; by id, in any course."""
        key: _Key = (kind, ANY_COURSE, "id", value) if field == "id" else (kind, courseid, field, self._key(value))
        self.looked_up.add(key)
        hits = self._by.get(key)
        if not hits:
            if field == "id":  # an id not stored: maybe one a write in flight gives a new item
                self.looked_up.add(_new_id(kind))
            return None
        return hits[0] if len(hits) == 1 else min(hits, key=lambda i: (i.id < 0, abs(i.id)))


def _new_id(kind: Kind) -> _Key:
    """The key of "an id the write gives a new item of this kind": a plan that missed an id reads it."""
    return (kind, ANY_COURSE, "id", "new")


def _as_id(value: str) -> str | None:
    """A file value as an id key ("007" -> "7"); None when it is not a number."""
    return str(int(value)) if value.isascii() and value.isdigit() else None


class GroupsOperation(Operation):
    name = "groups"
    title = "Groups and groupings"
    columns = ColumnSpec(required=("courseid", "name"), optional=TEXT[2:], short_rows=True)
    # A name is a group's (254 characters) or a grouping's (255) by its row's type: LIMITS checks it per row.
    value_columns: ClassVar[StoredColumns] = {
        "name": ("groupings", "name"),
        "idnumber": ("groups", "idnumber"),
        "description": ("groups", "description"),
    }
    uses_bridge = True
    overlaps_writes = True

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        return False  # the bridge after the run only (cache purges)

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.groups
        self.caches = GroupCaches()
        self.courses = course_lookup(gateway, self.options.course_identifier)
        self.update_mode = False
        self.file_columns: set[str] = set()
        self._items: list[_Item] = []
        self.match = TextMatch(gateway.kind)
        self._index = _Index(key=self.match.given_text)
        self._assigned: set[tuple[int, int]] = set()
        self._links_read: set[tuple[int, int]] = set()  # the (grouping, group) assignments the plan checked
        self._next = -1

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        self.update_mode = "updateid" in columns
        self.file_columns = set(columns)

    async def finish(self, dry_run: bool) -> list[str]:
        return [] if dry_run else await self.caches.purge(self.bridge)

    def _identifier(self, kind: Kind) -> GroupKey:
        return self.options.group_identifier if kind == "group" else self.options.grouping_identifier

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        return await (await self._plan_batch(conn, rows, dry_run)).apply(conn, dry_run)

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        return await self._plan_batch(conn, rows, False)

    async def _plan_batch(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> BatchPlan:
        """The batch's outcomes and its write. Its reads are the index keys its rows looked up ((kind, courseid,
        "name" or "idnumber", lower-cased value), (kind, ANY_COURSE, "id", id)) and the ("link", grouping, group)
        assignments it checked; its writes the keys of the items it creates or changes (before and after) and the
        assignments it adds."""
        rows = cells(rows, TEXT)
        courses = await resolve_courses(self.courses, conn, rows["courseid"])
        ids = sorted({c for c, _ in courses.values() if c is not None})
        self._items = await self._stored(conn, ids)
        self._index = _Index(self._items, self.match.given_text)
        for item in await self._named_by_id(conn, rows):
            if item not in self._index:
                self._items.append(item)
                self._index.add(item)
        self._assigned = await self._assignments(conn, [i.id for i in self._items if i.kind == "grouping"])
        self._next = -1
        new_links: set[tuple[int, int]] = set()
        self._links_read = set()
        outcomes: list[tuple[int, str | None, str, str, str, str]] = []
        would = "would be " if dry_run else ""
        for row in rows.select(LINE, *TEXT).iter_rows(named=True):
            courseid, why = courses[row["courseid"]]
            key = row["name"] or row["updateid"]
            if why is None:
                assert courseid is not None
                try:
                    outcome, message, links = self._plan(row, courseid, would)
                except _Refused as refused:
                    why = str(refused)
            if why is not None:
                outcomes.append((row[LINE], None, Outcome.FAILED.value, "check", key, why))
                continue
            new_links |= links
            self._assigned |= links
            action = {Outcome.CREATED: "create", Outcome.UPDATED: "update"}.get(outcome, "none")
            outcomes.append((row[LINE], None, outcome.value, action, key, message))
        items, index = self._items, self._index
        written = [i for i in items if i.id < 0 or i.changed]
        writes: set[Hashable] = set(index.moved)
        writes.update(key for item in written for key in index._keys(item))
        writes.update(_new_id(item.kind) for item in written if item.id < 0)
        writes.update(("link", a, b) for a, b in new_links)
        reads: set[Hashable] = set(index.looked_up)
        reads.update(("link", a, b) for a, b in self._links_read)

        async def write(conn: AsyncConnection) -> None:
            await self._write(conn, items, new_links)

        return BatchPlan(
            pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row"), write, frozenset(reads), frozenset(writes)
        )

    # -- planning (in memory, row by row in file order) ------------------------------------------------

    def _plan(self, row: dict[str, Any], courseid: int, would: str) -> tuple[Outcome, str, set[tuple[int, int]]]:
        """The row's outcome, message and the (grouping, group) assignments it adds; raises _Refused."""
        kind = KINDS.get(row["type"].lower())
        if kind is None:
            raise _Refused(f"type '{row['type']}': expected group or grouping (empty: group)")
        for name, limit in LIMITS[kind].items():
            if len(row[name]) > limit:
                raise _Refused(f"{name}: a {kind} {name} has at most {limit} characters")
        item = self._target(kind, row, courseid)
        wanted = {f: row[f] for f in FIELDS if f in self.file_columns and row[f] != ""}
        if item is None and not row["name"]:
            raise _Refused(f"empty name: a new {kind} needs a name")
        for name in ("name", "idnumber"):
            value = wanted.get(name)
            other = self._index.find(kind, courseid, name, value) if value else None
            if other is not None and other is not item:
                raise _Refused(f"{name} '{value}' is already used by another {kind} of the course")
        grouping: _Item | None = None
        if kind == "group" and row["grouping"]:
            grouping = self._index.find("grouping", courseid, "idnumber", row["grouping"])
            if grouping is None:
                raise _Refused(f"grouping '{row['grouping']}' not found: no grouping of the course has this idnumber")
        selfgrouping = kind == "group" and row["selfgrouping"] not in ("", "0")
        if selfgrouping:
            self._check_selfgrouping(courseid, item, row["name"], wanted)
        if item is None:
            item = self._new(kind, courseid, row["name"], wanted.get("idnumber", ""), wanted.get("description"))
            outcome, message = Outcome.CREATED, f"{kind} '{row['name']}' {would}created"
        else:
            differs = sorted(f for f, v in wanted.items() if (getattr(item, f) or "") != v)
            if not differs:
                outcome, message = Outcome.UNCHANGED, f"{kind} '{item.name}' exists (id {item.id}) and matches the row"
            elif not self.update_mode:
                outcome = Outcome.SKIPPED
                message = (
                    f"{kind} '{item.name}' exists (id {item.id}); {', '.join(differs)} differ(s) but the file has no "
                    "updateid column (add-only): not updated"
                )
            else:
                self._index.set(item, {f: wanted[f] for f in differs})
                item.changed |= set(differs)
                outcome, message = Outcome.UPDATED, f"{kind} '{item.name}' {would}updated: {', '.join(differs)}"
        links: set[tuple[int, int]] = set()
        extras: list[str] = []
        targets = [grouping] if grouping else []
        if selfgrouping:
            own = self._index.find("grouping", courseid, "name", item.name)
            if own is None:
                own = self._new("grouping", courseid, item.name, item.idnumber, item.description)
                own.descriptionformat = item.descriptionformat
                extras.append(f"grouping '{item.name}' {would}created")
            targets.insert(0, own)
        for target in targets:
            self._links_read.add((target.id, item.id))
            if (target.id, item.id) not in self._assigned:
                links.add((target.id, item.id))
                extras.append(f"{would}assigned to grouping '{target.name}'")
        if extras:
            message += "; " + "; ".join(extras)
            outcome = Outcome.UPDATED if outcome in (Outcome.UNCHANGED, Outcome.SKIPPED) else outcome
        return outcome, message, links

    def _check_selfgrouping(self, courseid: int, item: _Item | None, name: str, wanted: dict[str, str]) -> None:
        """Refuse the row when the grouping its selfgrouping would create cannot have the group's idnumber: another
        grouping of the course holds it. Checked before anything of the row is planned."""
        if item is None:
            idnumber = wanted.get("idnumber", "")
        elif self.update_mode:  # the row updates the group first
            name, idnumber = wanted.get("name", item.name), wanted.get("idnumber", item.idnumber)
        else:
            name, idnumber = item.name, item.idnumber
        if not idnumber or self._index.find("grouping", courseid, "name", name) is not None:
            return
        if self._index.find("grouping", courseid, "idnumber", idnumber) is not None:
            raise _Refused(f"selfgrouping: idnumber '{idnumber}' is already used by another grouping of the course")

    def _target(self, kind: Kind, row: dict[str, Any], courseid: int) -> _Item | None:
        """The existing (or planned) item the row is about: by updateid, else idnumber, else name."""
        if not row["updateid"]:
            if row["idnumber"]:
                return self._index.find(kind, courseid, "idnumber", row["idnumber"])
            return self._index.find(kind, courseid, "name", row["name"])
        identifier = self._identifier(kind)
        value: str | None = row["updateid"]
        if identifier == "id":
            value = _as_id(row["updateid"])
            if value is None:
                raise _Refused(
                    f"updateid '{row['updateid']}': {kind}s are named by id ({kind}_identifier), expected a number"
                )
        assert value is not None
        item = self._index.find(kind, courseid, identifier, value)
        if item is not None and item.courseid != courseid:
            given = f" ('{row['courseid']}')" if row["courseid"] != str(courseid) else ""
            raise _Refused(
                f"{kind} {item.id} belongs to course {item.courseid}, not to the row's course {courseid}{given}: "
                "not updated, and no new one created"
            )
        return item

    def _new(self, kind: Kind, courseid: int, name: str, idnumber: str, description: str | None) -> _Item:
        item = _Item(self._next, kind, courseid, name, idnumber, description)
        self._next -= 1
        self._items.append(item)
        self._index.add(item)
        return item

    # -- reading and writing -------------------------------------------------------------------------

    def _table(self, kind: Kind) -> Table:
        return self.schema.groups if kind == "group" else self.schema.groupings

    async def _stored(self, conn: AsyncConnection, courses: list[int]) -> list[_Item]:
        items: list[_Item] = []
        for kind in get_args(Kind):
            found = await self.gateway.fetch_in(conn, self._table(kind), "courseid", courses, STORED)
            items += _items(kind, found)
        return items

    async def _named_by_id(self, conn: AsyncConnection, rows: pl.DataFrame) -> list[_Item]:
        """The groups and groupings the batch's updateids name by id, in whatever course they are: an updateid of
        another course's item must be found (and refused), never taken for a new one."""
        items: list[_Item] = []
        for kind in get_args(Kind):
            if self._identifier(kind) != "id":
                continue
            types = [t for t, k in KINDS.items() if k == kind]
            ids = (
                rows.filter(
                    pl.col("type").str.to_lowercase().is_in(types), pl.col("updateid").str.contains(r"^[0-9]+$")
                )
                .select(pl.col("updateid").cast(pl.Int64, strict=False))
                .drop_nulls()
                .unique()
                .to_series()
                .sort()
                .to_list()
            )
            if ids:
                found = await self.gateway.fetch_in(conn, self._table(kind), "id", ids, STORED)
                items += _items(kind, found)
        return items

    async def _assignments(self, conn: AsyncConnection, groupings: list[int]) -> set[tuple[int, int]]:
        table = self.schema.groupings_groups
        found = await self.gateway.fetch_in(conn, table, "groupingid", groupings, ["groupingid", "groupid"])
        return {(int(a), int(b)) for a, b in found.iter_rows()}

    async def _write(self, conn: AsyncConnection, items: list[_Item], links: set[tuple[int, int]]) -> None:
        """The planned items (`items`, id < 0: new) and assignments written; a batch's own items, not items:
        the next batch may be planned meanwhile."""
        now = int(time.time())
        events = course_events.collecting(self.event_log)
        new_ids: dict[int, int] = {}
        for kind in ("grouping", "group"):
            new = [i for i in items if i.kind == kind and i.id < 0]
            wanted = pl.DataFrame(
                [(i.courseid, i.name, i.idnumber, i.description, i.descriptionformat) for i in new],
                schema={
                    "courseid": pl.Int64,
                    "name": pl.String,
                    "idnumber": pl.String,
                    "description": pl.String,
                    "descriptionformat": pl.Int64,
                },
                orient="row",
            )
            if kind == "group":
                created = await gm.create_groups(self.gateway, conn, wanted, now, events=events)
            else:
                created = await _create_groupings(self.gateway, conn, wanted, now, events=events)
            key = self.match.given_text
            ids = {(c, key(n)): g for c, n, g in created.iter_rows()}
            for item in new:
                new_ids[item.id] = ids[(item.courseid, key(item.name.strip()))]
            updates = [
                {"id": i.id, **{f: getattr(i, f) for f in i.changed}, "timemodified": now}
                for i in items
                if i.kind == kind and i.id > 0 and i.changed
            ]
            await self.gateway.update_many(conn, self._table(kind), "id", updates)
            if events is not None:
                events += await _updated_events(
                    self.gateway, conn, kind, [i for i in items if i.id > 0 and i.kind == kind and i.changed]
                )
            self.caches.courses |= {i.courseid for i in items if i.kind == kind and (i.id < 0 or i.changed)}
        assigned = [
            {"groupingid": new_ids.get(a, a), "groupid": new_ids.get(b, b), "timeadded": now} for a, b in sorted(links)
        ]
        await self.gateway.insert_many(conn, self.schema.groupings_groups, assigned)
        if events is not None and assigned:
            courses = {i.id if i.id > 0 else new_ids[i.id]: i.courseid for i in items if i.kind == "grouping"}
            frame = pl.DataFrame(
                [(row["groupingid"], row["groupid"], courses[row["groupingid"]]) for row in assigned],
                schema={"groupingid": pl.Int64, "groupid": pl.Int64, "courseid": pl.Int64},
                orient="row",
            )
            events += course_events.groupings_assigned(await _with_contexts(self.gateway, conn, frame))
        await self.event_log.record(conn, events or [], now)
        linked = {a for a, _ in links}
        self.caches.courses |= {i.courseid for i in items if i.kind == "grouping" and i.id in linked}


def _items(kind: Kind, found: pl.DataFrame) -> list[_Item]:
    return [
        _Item(
            int(r["id"]),
            kind,
            int(r["courseid"]),
            r["name"],
            r["idnumber"] or "",
            r["description"],
            int(r["descriptionformat"] or 0),
        )
        for r in found.to_dicts()
    ]


async def _with_contexts(gateway: MoodleGateway, conn: AsyncConnection, frame: pl.DataFrame) -> pl.DataFrame:
    """frame (with courseid) and the contextid of its course, in its order."""
    contexts = await course_contexts(gateway, conn, frame["courseid"].unique().to_list())
    return frame.join(contexts.select("courseid", "contextid"), on="courseid", maintain_order="left")


async def _updated_events(gateway: MoodleGateway, conn: AsyncConnection, kind: Kind, items: list[_Item]) -> list[Event]:
    """group_updated or grouping_updated of the stored items the batch changed."""
    column = "groupid" if kind == "group" else "groupingid"
    frame = pl.DataFrame(
        [(i.id, i.courseid) for i in items], schema={column: pl.Int64, "courseid": pl.Int64}, orient="row"
    ).sort(column)
    build = course_events.groups_updated if kind == "group" else course_events.groupings_updated
    return build(await _with_contexts(gateway, conn, frame)) if items else []


async def _create_groupings(
    gateway: MoodleGateway, conn: AsyncConnection, wanted: pl.DataFrame, now: int, *, events: list[Event] | None = None
) -> pl.DataFrame:
    """groups_create_grouping() for each row: courseid, name, idnumber, description (NULL unless given),
    descriptionformat (0 unless given), configdata NULL, timecreated, timemodified. Returns courseid, name, groupid
    (its id)."""
    table = gateway.schema.groupings
    ids = await gateway.insert_many(
        conn,
        table,
        [
            {
                "courseid": c,
                "name": n.strip(),
                "idnumber": (i or "").strip(),
                "description": d,
                "descriptionformat": f or 0,
                "configdata": None,
                "timecreated": now,
                "timemodified": now,
            }
            for c, n, i, d, f in wanted.iter_rows()
        ],
    )
    if ids is None:  # the server does not number a statement's rows in order: read back
        rows: list[tuple[int, str, int]] = []
        for part in chunks(sorted(set(wanted["courseid"].to_list()))):
            found = await gateway.fetch_in(conn, table, "courseid", part, ["id", "courseid", "name"])
            rows += [(int(c), str(n), int(i)) for i, c, n in found.sort("id").iter_rows()]
        # The new rows have the highest ids of their name: autoincrement.
        key = TextMatch(gateway.kind).given_text
        latest = {(c, key(n)): i for c, n, i in rows}
        ids = [latest[(c, key(n.strip()))] for c, n in wanted.select("courseid", "name").iter_rows()]
    created = wanted.select("courseid", "name").with_columns(pl.Series("groupid", ids, dtype=pl.Int64))
    if events is not None and created.height:
        made = created.select(pl.col("groupid").alias("groupingid"), "courseid")
        events += course_events.groupings_created(await _with_contexts(gateway, conn, made))
    return created
