"""Cohort file (cohorts.csv): cohorts created and updated, members added and removed, cohorts emptied and deleted.

Columns (reference §2.6.1, all optional): `cmd`, `userid`, the cohort key column `c<cohort_identifier>` (`cid`,
`cidnumber` or `cname`), `cname`, `cidnumber`, `cdescription`, `ccatcontext` (category id), `ccatcontextidnumber`
(category idnumber), `component`, and beyond the original `ccatcontextpath` (category path, `Science/Biology`) and
`cvisible` (0/1). Commands:

* `add` (default): the cohort is created when missing (setting `autocreate`, else the row fails) as
  cohort_add_cohort() writes it (moodle-db-semantics §8): context = the system context or the category's context,
  idnumber NULL when empty, description '' / descriptionformat 1, visible 1 (or `cvisible`), component '' (or the
  `component` cell), theme '', timecreated = timemodified = now. An existing cohort gets the given `cname` (when the
  key is not the name), `cdescription` and `cvisible` (timemodified = now); its idnumber and context are set at
  creation only. With a `userid`, the user becomes a member: `cohort_members (cohortid, userid, timeadded = now)`.
* `del`: removes the user from the cohort. An empty or unknown user fails the row (CONTRACT §3: never a deletion).
* `free`: removes every member of the cohort.
* `delete`: deletes the cohort as cohort_delete_cohort() does (its members, then the cohort row). A cohort that
  cohort enrolment methods (enrol_cohort, §6.5) point at is refused: Moodle's deletion then also deletes or disables
  those methods and unenrols their users, a cascade through enrolments, roles and groups that only Moodle's own code
  does right. Rows in `competency_templatecohort` and cohort custom field data are not removed by this version.

A cohort managed by a plugin (a non-empty `component` other than the row's) is refused by every command. Membership
changes reach course enrolments through Moodle's enrol_cohort sync: run by the bridge after the file for the courses
bound to the cohorts that changed, else by Moodle's scheduled task (engine/enrol_sync.py; the report says which).

Each batch's write records the standard-log events of the cohort API (moodle/cohort_events.py): cohort_deleted,
cohort_updated, cohort_created, then a cohort_member_removed per member removed (del, and every member a free removes,
as cohort_remove_member() does each) and a cohort_member_added per member added. They follow what the batch leaves:
rows of a batch undoing each other write nothing and log nothing, and a deleted cohort's members go with it unlogged
(cohort_delete_cohort() logs only cohort_deleted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl
from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.cohorts.adds import plain_add_rows, plan_plain_adds
from toolsync_tui.engine.moodle import events as kinds
from toolsync_tui.engine.moodle import recording
from toolsync_tui.engine.moodle.categories import CategoryIndex
from toolsync_tui.engine.moodle.cohort_events import CohortContexts
from toolsync_tui.engine.moodle.contexts import system_context
from toolsync_tui.engine.moodle.course_events import collecting
from toolsync_tui.engine.moodle.enrol_sync import sync_after_run
from toolsync_tui.engine.moodle.event_log import Event, EventKind
from toolsync_tui.engine.moodle.gateway import MoodleGateway, WrittenInsert, chunks
from toolsync_tui.engine.moodle.lookup import live_users
from toolsync_tui.engine.moodle.pairs import fetch_tuples
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.parts.cohort_memberships import IDNUMBER_MAX, NAME_MAX, new_cohort_row
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, OutcomeRow, cells
from toolsync_tui.engine.run.command_file import ColumnSpec
from toolsync_tui.engine.run.operation import BatchPlan, Operation, PreviousWrite, nothing_in_flight
from toolsync_tui.engine.run.value_limits import StoredColumns

COMMANDS = ("add", "del", "free", "delete")
TEXT = (
    "cmd",
    "userid",
    "cid",
    "cname",
    "cidnumber",
    "cdescription",
    "ccatcontext",
    "ccatcontextidnumber",
    "ccatcontextpath",
    "component",
    "cvisible",
)
CATEGORY_CELLS = ("ccatcontext", "ccatcontextidnumber", "ccatcontextpath")  # a category by id, idnumber or path
COHORT_COLUMNS = ["id", "name", "idnumber", "description", "visible", "contextid", "component"]
Outcome = OutcomeRow
PAIR_SCHEMA: dict[str, type[pl.DataType]] = {"cohortid": pl.Int64, "userid": pl.Int64}


@dataclass
class _Cohort:
    """A cohort as the batch sees it, row after row."""

    id: int | None
    name: str
    idnumber: str | None
    description: str
    visible: int
    contextid: int
    component: str
    exists: bool = True
    members: set[int] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)  # updated columns of a stored cohort


@dataclass(frozen=True)
class _MemberAdds:
    """A batch of member additions to stored cohorts: its rows and log events, their statements written ahead (None
    where the database takes none: the write then builds them)."""

    now: int
    rows: list[dict[str, Any]]
    written: WrittenInsert | None
    events: list[Event]
    log: WrittenInsert | None


class CohortsOperation(Operation):
    name = "cohorts"
    title = "Cohorts"
    columns = ColumnSpec(optional=TEXT)
    value_columns: ClassVar[StoredColumns] = {
        "cname": ("cohort", "name"),
        "cidnumber": ("cohort", "idnumber"),
        "cdescription": ("cohort", "description"),
        "component": ("cohort", "component"),
    }
    # del rows are `remove`, free `free`, delete `delete`; the members a free or delete removes beyond its row are
    # counted by removals_after_rows().
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"remove", "free", "delete"})
    overlaps_writes = True
    uses_bridge = True

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        return False  # the bridge after the run only (the cohort sync)

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.cohorts
        self.key = "c" + self.options.cohort_identifier
        # Cohort names and idnumbers compare as tool_sync's get_record() does on the site's database (text_match.py).
        self.match = TextMatch(gateway.kind)
        self.users = live_users(gateway, self.options.user_identifier)
        self.system_context = 0
        self.categories: CategoryIndex | None = None  # read when a row first names a category
        self.contexts = CohortContexts(gateway)  # the cohorts' contexts, as their log events name them
        self.changed_cohorts: set[int] = set()  # cohorts whose members changed: their enrol_cohort courses sync
        self.touched: dict[bool, set[int]] = {True: set(), False: set()}  # stored cohorts the file names, per mode
        self.extra_removed = 0  # members removed by free and delete rows beyond one a row (safety pre-pass)
        # The pairs the batch being written adds, when that is all it writes (None: it writes more, or nothing runs).
        self.in_flight: pl.DataFrame | None = None

    def may_destroy(self, columns: Sequence[str]) -> bool:
        return "cmd" in columns

    def safety_candidates(self, rows: pl.DataFrame) -> pl.DataFrame:
        if "cmd" not in rows.columns:
            return rows.clear()
        return rows.filter(pl.col("cmd").str.strip_chars().str.to_lowercase().is_in(["del", "free", "delete"]))

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        self.system_context = (await system_context(self.gateway, conn)).id

    async def safety_base(self, conn: AsyncConnection) -> int:
        """The stored cohorts the file names and their members."""
        ids = sorted(self.touched[True])
        members = self.schema.cohort_members
        total = len(ids)
        for part in chunks(ids):
            query = select(func.count()).select_from(members).where(members.c.cohortid.in_(part))
            total += int((await conn.execute(query)).scalar_one())
        return total

    async def removals_after_rows(self, conn: AsyncConnection) -> int:
        extra, self.extra_removed = self.extra_removed, 0
        return extra

    async def finish(self, dry_run: bool) -> list[str]:
        """Moodle's cohort sync of the courses bound to the cohorts whose members changed."""
        if dry_run or not self.changed_cohorts:
            return []
        enrol = self.schema.enrol
        async with self.gateway.reading() as conn:
            bound = await self.gateway.fetch_in(
                conn, enrol, "customint1", sorted(self.changed_cohorts), ["courseid"], where=enrol.c.enrol == "cohort"
            )
        return await sync_after_run(self.bridge, cohort_courses=bound["courseid"].to_list() if bound.height else [])

    # -- a batch ---------------------------------------------------------------------------------------

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        return await (await self._plan(conn, rows, dry_run, None)).apply(conn, dry_run)

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        return await self._plan(conn, rows, False, previous)

    async def _plan(
        self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool, previous: PreviousWrite | None
    ) -> BatchPlan:
        """A batch's outcomes and its write. While the previous batch's write is still running (`previous`), this one
        reads what that write cannot change: users always; cohorts when that batch only added members; members when
        this batch names none of the pairs it added. Otherwise it waits for that write first."""
        if previous is not None and self.in_flight is None:
            await previous()
        rows = cells(rows, TEXT).with_columns(pl.col("cmd").str.to_lowercase())
        rows = rows.with_columns(
            _join_key(pl.col(self.key), self.options.cohort_identifier, self.match.given).alias("__ckey")
        )
        users = await self.users.resolve(conn, rows.filter(pl.col("userid") != "")["userid"])
        cohorts = await self._stored_cohorts(conn, rows)
        frame = rows.join(
            users.select(
                pl.col(users.columns[0]).alias("userid"),
                pl.col("problem").alias("__uproblem"),
                pl.col("id").cast(pl.Int64).alias("__uid"),
                pl.col("matches").cast(pl.Int64).alias("__umatches"),
            ),
            on="userid",
            how="left",
            maintain_order="left",
        )
        stored = {row["__ckey"]: row for row in cohorts.to_dicts()}
        plain = frame.select(plain_add_rows(list(stored)))[:, 0]
        # The row-by-row planner's rows, with what only it needs: categories and idnumbers of cohorts to create.
        others = frame.filter(~plain)
        if previous is not None and self.in_flight is not None:
            named = _pairs(frame, cohorts)
            if not others.is_empty() or not named.join(self.in_flight, on=named.columns, how="semi").is_empty():
                await previous()
        categories = await self._categories(conn, others)
        others = others.join(categories, on=list(CATEGORY_CELLS), how="left", maintain_order="left")
        ids = [int(r["id"]) for r in stored.values()]
        self.touched[dry_run].update(ids)
        member_pairs = await self._members(conn, frame, stored, cohorts)
        planned, added, finals = self._plan_plain_adds(frame.filter(plain), cohorts, member_pairs, dry_run)
        if others.is_empty() and not _changes(finals, stored):
            # Member additions alone (a feed's batches once its cohorts exist): written from the pairs, no state.
            self.in_flight = added
            contexts = {int(row["id"]): int(row["contextid"]) for row in stored.values()}
            adds = await self._member_adds(conn, added, contexts)

            async def write_adds(conn: AsyncConnection) -> None:
                await self._write_adds(conn, adds)

            return BatchPlan(planned.sort("line", maintain_order=True), write_adds)
        members = {int(c): set(u) for c, u in member_pairs.group_by("cohortid").agg("userid").iter_rows()}
        enrol_uses = await self._enrol_uses(conn, others, stored)
        taken = await self._taken_idnumbers(conn, others)
        state: dict[str, _Cohort] = {}
        for key, row in stored.items():
            state[key] = _Cohort(
                id=int(row["id"]),
                name=str(row["name"]),
                idnumber=row["idnumber"],
                description=str(row["description"] or ""),
                visible=int(row["visible"]),
                contextid=int(row["contextid"]),
                component=str(row["component"] or ""),
                members=set(members.get(int(row["id"]), set())),
            )
        initial = {key: (c.id, set(c.members)) for key, c in state.items()}
        # The stored cohorts' contexts, as their log events name them (a row may replace a deleted cohort in `state`).
        contexts = {c.id: c.contextid for c in state.values() if c.id is not None}
        _carry(finals, added, cohorts, state)
        planner = _Planner(self, state, enrol_uses, taken, dry_run)
        outcomes = [planner.row(row) for row in others.iter_rows(named=True)]
        # What the next batch may read before this write is done: only member additions leave the rest as it is.
        only_adds = others.is_empty() and not any(c.changed for c in state.values())
        self.in_flight = added if only_adds else None

        async def write(conn: AsyncConnection) -> None:
            await self._write(conn, state, initial, contexts)

        result = pl.concat([planned, pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row")])
        return BatchPlan(result.sort("line", maintain_order=True), write)

    def _plan_plain_adds(
        self,
        rows: pl.DataFrame,
        cohorts: pl.DataFrame,
        members: pl.DataFrame,
        dry_run: bool,
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Plan the plain add rows column-wise (cohort_adds): the outcomes, the (cohortid, userid) pairs added and
        what the rows leave of each cohort's attributes (PlainAdds.finals)."""
        if rows.is_empty():
            return pl.DataFrame(schema=OUTCOME_SCHEMA), pl.DataFrame(schema=PAIR_SCHEMA), pl.DataFrame()
        stored = cohorts.select(
            "__ckey",
            pl.col("id").alias("__sid"),
            pl.col("name").alias("__sname"),
            pl.col("description").fill_null("").alias("__sdesc"),
            pl.col("visible").cast(pl.Int64).alias("__svis"),
            pl.col("component").fill_null("").alias("__scomp"),
        )
        pairs = members.select(
            pl.col("cohortid").alias("__sid"), pl.col("userid").alias("__uid"), pl.lit(True).alias("__member")
        ).unique(["__sid", "__uid"])
        rows = rows.join(stored, on="__ckey", how="left", maintain_order="left").join(
            pairs, on=["__sid", "__uid"], how="left", maintain_order="left"
        )
        plan = plan_plain_adds(
            rows,
            cell=self.key,
            identifier=self.options.cohort_identifier,
            user_identifier=self.options.user_identifier,
            dry_run=dry_run,
        )
        return plan.outcomes, _pairs(plan.added, cohorts), plan.finals

    # -- resolution (one query per chunk of keys) ------------------------------------------------------

    async def _stored_cohorts(self, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
        """__ckey -> the stored cohort (COHORT_COLUMNS), the lowest id when several share the key."""
        identifier = self.options.cohort_identifier
        keys = rows["__ckey"].drop_nulls().unique().to_list()
        cohort = self.schema.cohort
        values: list[Any] = [int(k) for k in keys] if identifier == "id" else keys
        found = await self.gateway.fetch_in(
            conn, cohort, identifier, values, COHORT_COLUMNS, casefold=identifier != "id" and self.match.casefold
        )
        if found.is_empty():
            return pl.DataFrame(schema={"__ckey": pl.String})
        return (
            found.with_columns(pl.col("id").cast(pl.Int64))
            .sort("id")
            .with_columns(_join_key(pl.col(identifier).cast(pl.String), identifier, self.match.stored).alias("__ckey"))
            .unique("__ckey", keep="first", maintain_order=True)
        )

    async def _categories(self, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
        """CATEGORY_CELLS -> __catctx (the category's context id) or __catwhy, for the rows naming a category."""
        triples = rows.select(CATEGORY_CELLS).unique()
        named = triples.filter(pl.any_horizontal(pl.col(c) != "" for c in CATEGORY_CELLS))
        schema = {**dict.fromkeys(CATEGORY_CELLS, pl.String), "__catctx": pl.Int64, "__catwhy": pl.String}
        if named.is_empty():
            return pl.DataFrame(schema=schema)
        if self.categories is None:
            self.categories = await CategoryIndex.read(self.gateway, conn)
        answers = []
        for cat, catnumber, catpath in named.iter_rows():
            if cat != "":
                category, shown = self.categories.by_id(cat), f"ccatcontext '{cat}'"
            elif catnumber != "":
                category, shown = self.categories.by_idnumber(catnumber), f"ccatcontextidnumber '{catnumber}'"
            else:
                category, shown = self.categories.by_path(catpath), f"ccatcontextpath '{catpath}'"
            context = self.categories.contexts.get(category) if category is not None else None
            why = None
            if category is None:
                why = f"{shown}: no such course category"
            elif context is None:
                why = f"{shown}: the category has no context row"
            answers.append((cat, catnumber, catpath, context, why))
        return pl.DataFrame(answers, schema=schema, orient="row")

    async def _members(
        self, conn: AsyncConnection, frame: pl.DataFrame, stored: dict[str, dict[str, Any]], cohorts: pl.DataFrame
    ) -> pl.DataFrame:
        """The stored (cohortid, userid) memberships the batch needs (PAIR_SCHEMA): every member of the cohorts a free
        or delete row names, and of the others the pairs the rows name."""
        table = self.schema.cohort_members
        whole_keys = {
            k
            for k in frame.filter(pl.col("cmd").is_in(["free", "delete"]))["__ckey"].drop_nulls().unique().to_list()
            if k in stored
        }
        whole = {int(stored[k]["id"]) for k in whole_keys}
        found = [await self.gateway.fetch_in(conn, table, "cohortid", sorted(whole), ["cohortid", "userid"])]
        # Of the other cohorts, the exact (cohort, user) pairs the rows name, on the unique index.
        pairs = _pairs(frame.filter(~pl.col("__ckey").is_in(list(whole_keys))), cohorts)
        found.append(await fetch_tuples(self.gateway, conn, table, ["cohortid", "userid"], pairs, PAIR_SCHEMA))
        return pl.concat(f.cast(pl.Int64) for f in found)

    async def _enrol_uses(
        self, conn: AsyncConnection, frame: pl.DataFrame, stored: dict[str, dict[str, Any]]
    ) -> dict[int, list[int]]:
        """cohort id -> the courses of the cohort enrolment methods pointing at it, for the cohorts delete rows name."""
        wanted = [
            int(stored[k]["id"])
            for k in frame.filter(pl.col("cmd") == "delete")["__ckey"].drop_nulls().unique().to_list()
            if k in stored
        ]
        enrol = self.schema.enrol
        found = await self.gateway.fetch_in(
            conn, enrol, "customint1", wanted, ["customint1", "courseid"], where=enrol.c.enrol == "cohort"
        )
        uses: dict[int, list[int]] = {}
        for cohortid, courseid in found.iter_rows():
            uses.setdefault(int(cohortid), []).append(int(courseid))
        return uses

    async def _taken_idnumbers(self, conn: AsyncConnection, frame: pl.DataFrame) -> dict[str, str]:
        """lower-cased idnumber -> name of the stored cohort that has it, for the cidnumber cells of add rows (the
        key itself when cohorts are named by idnumber: a missing one is free)."""
        adds = frame.filter(pl.col("cmd").is_in(["", "add"]) & (pl.col("cidnumber") != ""))
        values = adds["cidnumber"].unique().to_list()
        found = await self.gateway.fetch_in(
            conn, self.schema.cohort, "idnumber", values, ["id", "idnumber", "name"], casefold=self.match.casefold
        )
        key = self.match.stored_text
        return {key(str(n)): str(name) for _, n, name in found.sort("id", descending=True).iter_rows()}

    # -- writing -----------------------------------------------------------------------------------------

    async def _write(
        self,
        conn: AsyncConnection,
        state: dict[str, _Cohort],
        initial: dict[str, tuple[int | None, set[int]]],
        contexts: dict[int, int],
    ) -> None:
        now = int(time.time())
        events = collecting(self.event_log)
        logged: list[tuple[EventKind, list[tuple[int, int, int | None]]]] = []
        cohort, members = self.schema.cohort, self.schema.cohort_members
        final_ids = {c.id for c in state.values() if c.exists and c.id is not None}
        gone = sorted({cid for cid, _ in initial.values() if cid is not None} - final_ids)
        logged.append((kinds.COHORT_DELETED, [(cid, contexts[cid], None) for cid in gone]))
        # cohort_delete_cohort(): the members, then the cohort.
        await self.gateway.delete_in(conn, members, "cohortid", gone)
        await self.gateway.delete_in(conn, cohort, "id", gone)
        updates = []
        for c in state.values():
            if c.exists and c.id is not None and c.changed:
                values: dict[str, Any] = {"id": c.id, "timemodified": now}
                values.update({name: getattr(c, name) for name in sorted(c.changed)})
                updates.append(values)
        await self.gateway.update_many(conn, cohort, "id", updates)
        logged.append((kinds.COHORT_UPDATED, [(row["id"], contexts[row["id"]], None) for row in updates]))
        new = [c for c in state.values() if c.exists and c.id is None]
        await self._create(conn, new, now)
        contexts = {**contexts, **{c.id: c.contextid for c in new if c.id is not None}}
        logged.append((kinds.COHORT_CREATED, [(int(c.id), c.contextid, None) for c in new if c.id is not None]))
        added: list[dict[str, int]] = []
        removals: list[tuple[int, int, int | None]] = []
        for key, c in state.items():
            if not c.exists or c.id is None:
                continue
            before_id, before = initial.get(key, (None, set()))
            stored = before if before_id == c.id else set()
            removed = sorted(stored - c.members)
            for part in chunks(removed):
                leaving = and_(members.c.cohortid == c.id, members.c.userid.in_(part))
                await recording.deleting(conn, members, leaving)
                await conn.execute(delete(members).where(leaving))
            removals += [(c.id, c.contextid, u) for u in removed]
            added += [{"cohortid": c.id, "userid": u, "timeadded": now} for u in sorted(c.members - stored)]
            if removed or c.members - stored:
                self.changed_cohorts.add(c.id)
        await self.gateway.insert_many(conn, members, added)
        self.changed_cohorts.update(gone)
        if events is not None:
            logged.append((kinds.COHORT_MEMBER_REMOVED, removals))
            member: list[tuple[int, int, int | None]] = [
                (row["cohortid"], contexts[row["cohortid"]], row["userid"]) for row in added
            ]
            logged.append((kinds.COHORT_MEMBER_ADDED, member))
            for kind, rows in logged:
                events += await self.contexts.events(conn, kind, rows)
            await self.event_log.record(conn, events, now)

    async def _member_adds(self, conn: AsyncConnection, added: pl.DataFrame, contexts: dict[int, int]) -> _MemberAdds:
        """What a batch that only adds members to stored cohorts writes, as _write() would write it: the same rows and
        events in the same order (by cohort id, then user id). Their statements are written here, as the batch is
        planned (while the batch before is being written)."""
        now = int(time.time())
        pairs = added.sort("cohortid", "userid").rows()
        rows = [{"cohortid": c, "userid": u, "timeadded": now} for c, u in pairs]
        events: list[Event] = []
        if self.event_log.active and pairs:  # a run that logs nothing skips the contexts' read
            # CohortContexts.events() inlined: one event per new member, thousands per batch.
            await self.contexts.read(conn, contexts.values())
            known, kind = self.contexts.known, kinds.COHORT_MEMBER_ADDED
            events = [Event(kind, c, contexts[c], *known[contexts[c]], 0, u) for c, u in pairs]
        return _MemberAdds(
            now=now,
            rows=rows,
            written=await self.gateway.written_insert(conn, self.schema.cohort_members, rows),
            events=events,
            log=await self.event_log.written(conn, events, now),
        )

    async def _write_adds(self, conn: AsyncConnection, adds: _MemberAdds) -> None:
        if not adds.rows:
            return
        await self.gateway.insert_many(conn, self.schema.cohort_members, adds.rows, adds.written)
        await recording.nothing_more_recorded(conn)
        self.changed_cohorts.update(row["cohortid"] for row in adds.rows)
        await self.event_log.record(conn, adds.events, adds.now, adds.log)

    async def _create(self, conn: AsyncConnection, new: list[_Cohort], now: int) -> None:
        """Insert the new cohorts in one statement; their ids as the server numbered them, else read back by key: no
        stored cohort had the key (the batch looked it up), so the newest row with it is the new one."""
        if not new:
            return
        cohort = self.schema.cohort
        rows = [
            new_cohort_row(
                contextid=c.contextid,
                name=c.name,
                idnumber=c.idnumber,
                description=c.description,
                visible=c.visible,
                component=c.component,
                now=now,
            )
            for c in new
        ]
        ids = await self.gateway.insert_many(conn, cohort, rows)
        if ids is not None:  # the server numbered them in order (gateway.insert_many)
            for c, new_id in zip(new, ids, strict=True):
                c.id = new_id
            return
        identifier = self.options.cohort_identifier
        keys = [getattr(c, identifier) for c in new]
        match = self.match
        found = await self.gateway.fetch_in(conn, cohort, identifier, keys, ["id", identifier], casefold=match.casefold)
        newest = {match.stored_text(str(k)): int(i) for i, k in found.sort("id").iter_rows()}
        for c in new:
            c.id = newest[match.given_text(str(getattr(c, identifier)))]


class _Planner:
    """The rows of a batch in file order, each seeing what the rows before it did to `state`."""

    def __init__(
        self,
        op: CohortsOperation,
        state: dict[str, _Cohort],
        enrol_uses: dict[int, list[int]],
        taken: dict[str, str],
        dry_run: bool,
    ) -> None:
        self.op = op
        self.state = state
        self.enrol_uses = enrol_uses
        self.taken = taken
        self.would = "would be " if dry_run else ""
        self.dry_run = dry_run

    def row(self, row: dict[str, Any]) -> Outcome:
        op = self.op
        line, cmd, ckey = int(row[LINE]), row["cmd"] or "add", row["__ckey"]
        cell, user_cell = row[op.key], row["userid"]
        key = f"{cell}/{user_cell}" if user_cell else cell

        def fail(why: str) -> Outcome:
            return (line, None, "failed", "check", key, why)

        if cmd not in COMMANDS:
            return fail(f"cmd '{cmd}': expected add, del, free or delete (empty: add)")
        if cell == "":
            return fail(f"empty {op.key}: the row names no cohort (cohort_identifier {op.options.cohort_identifier})")
        if ckey is None:
            return fail(f"{op.key} '{cell}' is not a number")
        if row["cvisible"] not in ("", "0", "1"):
            return fail(f"cvisible '{row['cvisible']}': expected 0 or 1")
        uid: int | None = None
        if user_cell != "":
            if row["__uproblem"] is not None:
                return fail(f"user {row['__uproblem']}")
            if row["__uid"] is None:
                return fail(f"user '{user_cell}' not found (user_identifier {op.options.user_identifier})")
            if (row["__umatches"] or 0) > 1:
                return fail(
                    f"user '{user_cell}' is ambiguous: {row['__umatches']} accounts have this "
                    f"{op.options.user_identifier}"
                )
            uid = int(row["__uid"])
        c = self.state.get(ckey)
        present = c is not None and c.exists
        if present and c is not None and c.component not in ("", row["component"]):
            return fail(f"cohort '{c.name}' is managed by {c.component}; it is changed there, not by this file")
        if cmd == "add":
            return self._add(line, key, row, ckey, c if present else None, uid)
        if not present or c is None:
            if cmd == "delete":
                return (line, None, "unchanged", "none", key, f"no cohort '{cell}'; nothing to delete")
            return fail(f"cohort '{cell}' not found (cohort_identifier {op.options.cohort_identifier})")
        if cmd == "del":
            if uid is None:
                return fail(
                    "empty userid: del removes a member from a cohort; to delete the cohort itself use cmd delete"
                )
            if uid not in c.members:
                return (line, None, "unchanged", "none", key, f"not a member of cohort '{c.name}'")
            c.members.discard(uid)
            return (line, None, "deleted", "remove", key, f"{self.would}removed from cohort '{c.name}'")
        if cmd == "free":
            count = len(c.members)
            if not count:
                return (line, None, "unchanged", "none", key, f"cohort '{c.name}' has no members")
            c.members.clear()
            if self.dry_run:
                self.op.extra_removed += count - 1
            return (line, None, "deleted", "free", key, f"{count} member(s) {self.would}removed from cohort '{c.name}'")
        # delete
        courses = self.enrol_uses.get(c.id, []) if c.id is not None else []
        if courses:
            shown = ", ".join(str(x) for x in sorted(courses)[:5]) + (" ..." if len(courses) > 5 else "")
            return fail(
                f"cohort '{c.name}' not deleted: {len(courses)} cohort enrolment method(s) use it (course id {shown}); "
                "deleting it also deletes or disables them and unenrols their users, which only Moodle's own "
                "cohort_delete_cohort() does: delete the cohort in Moodle, or remove those enrolment methods first"
            )
        count = len(c.members)
        if self.dry_run:
            self.op.extra_removed += count
        c.members = set()
        c.exists = False
        return (
            line,
            None,
            "deleted",
            "delete",
            key,
            f"cohort '{c.name}' {self.would}deleted" + (f" with its {count} member(s)" if count else ""),
        )

    def _add(self, line: int, key: str, row: dict[str, Any], ckey: str, c: _Cohort | None, uid: int | None) -> Outcome:
        op = self.op
        identifier = op.options.cohort_identifier
        created = False
        changes: list[str] = []
        if c is None:
            if not op.options.autocreate:
                return (line, None, "failed", "check", key, f"cohort '{row[op.key]}' not found (autocreate is off)")
            c, why = self._new(row)
            if c is None:
                return (line, None, "failed", "check", key, why)
            self.state[ckey] = c
            created = True
        else:
            wanted: dict[str, Any] = {}
            if row["cname"] != "" and identifier != "name":
                wanted["name"] = row["cname"]
            if row["cdescription"] != "":
                wanted["description"] = row["cdescription"]
            if row["cvisible"] != "":
                wanted["visible"] = int(row["cvisible"])
            if len(wanted.get("name", "")) > NAME_MAX:
                return (line, None, "failed", "check", key, f"cname: a cohort name has at most {NAME_MAX} characters")
            for name, value in wanted.items():
                if getattr(c, name) != value:
                    setattr(c, name, value)
                    if c.id is not None:
                        c.changed.add(name)
                    changes.append(name)
        added = uid is not None and uid not in c.members
        if uid is not None:
            c.members.add(uid)
        parts = []
        if created:
            parts.append(f"cohort '{c.name}' {self.would}created")
        if changes:
            parts.append(f"cohort '{c.name}' {self.would}updated ({', '.join(changes)})")
        if added:
            parts.append(f"{self.would}added to cohort '{c.name}'")
        elif uid is not None:
            parts.append(f"already a member of cohort '{c.name}'")
        if not parts:
            parts.append(f"cohort '{c.name}' is up to date")
        message = "; ".join(parts)
        if created or added:
            return (line, None, "created", "create" if created else "add", key, message)
        if changes:
            return (line, None, "updated", "update", key, message)
        return (line, None, "unchanged", "none", key, message)

    def _new(self, row: dict[str, Any]) -> tuple[_Cohort | None, str]:
        """The cohort an add row creates, or why it cannot."""
        op = self.op
        identifier = op.options.cohort_identifier
        if identifier == "id":
            return (
                None,
                f"cohort id '{row['cid']}' not found: a cohort named by id is not created (use cidnumber or cname)",
            )
        name, idnumber = row["cname"], row["cidnumber"]
        if name == "":
            return None, f"cohort '{row[op.key]}' not found, and not created: a new cohort needs a name (cname)"
        if len(name) > NAME_MAX:
            return None, f"cname: a cohort name has at most {NAME_MAX} characters"
        if len(idnumber) > IDNUMBER_MAX:
            return None, f"cidnumber: a cohort idnumber has at most {IDNUMBER_MAX} characters"
        if idnumber != "":
            key = op.match.given_text(idnumber)
            holder = self.taken.get(key)
            if holder is None:
                holder = next(
                    (c.name for c in self.state.values() if c.exists and op.match.stored_text(c.idnumber or "") == key),
                    None,
                )
            if holder is not None:
                return (
                    None,
                    f"cohort '{name}' not created: cidnumber '{idnumber}' is already the idnumber of cohort '{holder}'",
                )
        if row["__catwhy"] is not None:
            return None, f"cohort '{name}' not created: {row['__catwhy']}"
        context = row["__catctx"] if row["__catctx"] is not None else op.system_context
        return (
            _Cohort(
                id=None,
                name=name,
                idnumber=idnumber or None,
                description=row["cdescription"],
                visible=int(row["cvisible"] or 1),
                contextid=int(context),
                component=row["component"],
            ),
            "",
        )


def _changes(finals: pl.DataFrame, stored: dict[str, dict[str, Any]]) -> bool:
    """Whether the plain adds' last values (PlainAdds.finals) change an attribute of a stored cohort."""
    for key, name, description, visible in finals.iter_rows():
        row = stored[key]
        now = (str(row["name"]), str(row["description"] or ""), int(row["visible"]))
        if any(v is not None and v != was for v, was in zip((name, description, visible), now, strict=True)):
            return True
    return False


def _carry(finals: pl.DataFrame, added: pl.DataFrame, cohorts: pl.DataFrame, state: dict[str, _Cohort]) -> None:
    """What the plain adds leave (their last attribute values, the members they add) carried into `state`."""
    for key, name, description, visible in finals.iter_rows():
        c = state[key]
        for attribute, value in (("name", name), ("description", description), ("visible", visible)):
            if value is not None and getattr(c, attribute) != value:
                setattr(c, attribute, value)
                c.changed.add(attribute)
    if added.is_empty():
        return
    ids = dict(zip(cohorts["id"].cast(pl.Int64).to_list(), cohorts["__ckey"].to_list(), strict=True))
    for cohortid, users in added.group_by("cohortid").agg("userid").iter_rows():
        state[ids[cohortid]].members.update(users)


def _pairs(rows: pl.DataFrame, cohorts: pl.DataFrame) -> pl.DataFrame:
    """The (cohortid, userid) pairs of rows naming a stored cohort (__ckey) and a user (__uid)."""
    if cohorts.is_empty():  # untyped: nothing stored to join
        return pl.DataFrame(schema=PAIR_SCHEMA)
    ids = cohorts.select("__ckey", pl.col("id").cast(pl.Int64).alias("cohortid"))
    return rows.join(ids, on="__ckey").select("cohortid", pl.col("__uid").alias("userid")).drop_nulls()


def _join_key(value: pl.Expr, identifier: str, key: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:
    """The key a cohort cell is matched by: the id as text, else `key` of the value (TextMatch.given or .stored)."""
    if identifier == "id":
        return pl.when(value.str.contains(r"^\d+$")).then(value.cast(pl.Int64, strict=False).cast(pl.String))
    return key(value)
