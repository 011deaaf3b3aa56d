"""The group commands of the enrolments file (`gcmd` with g1 ... g9: group names in the row's course), run after the
row's command, through the shared group functions (group_membership.py):

* gadd / gaddcreate: membership of each named group; a missing group fails its part (gadd) or is created
  (gaddcreate). Moodle adds only users enrolled in the course (groups_add_member()), so a user who is not fails it.
* greplace / greplacecreate: the same, after leaving the course's other groups (each removal its own detail line).
* gdel: leave each named group.

Memberships are written with component '' and itemid 0, as groups_add_member() writes them. tool_sync's protect_groups
tagged them 'tool_sync', a plugin the site does not have (Moodle's Group members page fails on such a row); here,
with protect_groups, toolsync records the memberships it makes as protected in its data directory
(datadir/protected_groups.py, written after the batch's commit), and greplace and gdel remove only memberships
recorded there (with the stored row's id: one removed in Moodle and made again by hand is not toolsync's) or tagged
'tool_sync' by an earlier run: those made by hand or by other plugins stay. The group members file records its own
memberships there too, as the original tagged them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.datadir.protected_groups import ProtectedMemberships, StateProblem, for_site
from toolsync_tui.engine.enrolments.rows import GROUP_COLUMNS
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.groups import (
    LEGACY_COMPONENT,
    MEMBERSHIP_SCHEMA,
    add_members,
    create_groups,
    enrolled,
    find_groups,
    memberships,
    remove_members,
    stored_members,
)
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import LINE, Outcome, Rule, first_match, outcome_rows, shown
from toolsync_tui.engine.run.operation import SetupProblem

ACTION = "group"
KNOWN_SCHEMA: dict[str, type[pl.DataType]] = {"courseid": pl.Int64, "key": pl.String, "groupid": pl.Int64}
NAMED_SCHEMA: dict[str, type[pl.DataType]] = {"courseid": pl.Int64, "name": pl.String, "key": pl.String}


@dataclass(frozen=True)
class GroupPlan:
    """A batch's group steps planned, not written (GroupSteps.plan())."""

    outcomes: pl.DataFrame  # the detail outcomes, as write() makes them true
    effects: EnrolmentEffects
    to_create: pl.DataFrame  # courseid, name, key, contextid (the course's) of the groups to create
    gone: pl.DataFrame  # groupid, userid of the memberships to remove
    # groupid (null: a group to create), userid, courseid, contextid (the course's), key of the memberships to add
    joining: pl.DataFrame
    # ("pair", courseid, userid) and ("group", courseid, key) the plan read, and those the write changes
    reads: frozenset[Hashable]
    writes: frozenset[Hashable]
    # ("group", courseid, key) of the groups the write before creates, taken as created (plan(in_flight=...))
    assumes: frozenset[Hashable] = frozenset()
    coming: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=NAMED_SCHEMA))  # courseid, name, key


@dataclass(frozen=True)
class GroupSteps:
    gateway: MoodleGateway
    protect: bool
    # The memberships toolsync protects, in the data directory (None: none read or recorded).
    protected: ProtectedMemberships | None = None
    # courseid, key (the name's key, _names()), groupid of committed groups found so far in the run (plan(cache=True))
    known: pl.DataFrame = field(init=False)
    notes: list[str] = field(init=False)  # for the report: the protected memberships' file could not be written

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", pl.DataFrame(schema=KNOWN_SCHEMA))
        object.__setattr__(self, "notes", [])

    @classmethod
    async def open(cls, gateway: MoodleGateway, data_dir: Path, *, protect: bool) -> GroupSteps:
        """The run's group steps, with the site's protected memberships of the data directory; a file that cannot be
        read stops the run before any write (SetupProblem)."""
        protected = await for_site(data_dir, gateway)
        try:
            protected.check()
        except StateProblem as exc:
            raise SetupProblem(str(exc)) from None
        return cls(gateway, protect, protected)

    def _names(self) -> TextMatch:
        """How group names compare: as `get_field('groups', 'id', [courseid, name])` on the site (text_match.py)."""
        return TextMatch(self.gateway.kind)

    def begin_batch(self) -> None:
        """A new batch: what a rolled-back batch or a dry run left pending is dropped."""
        if self.protected is not None:
            self.protected.begin()

    def committed(self) -> None:
        """The batch's transaction has committed: its protected memberships recorded, those it removed forgotten."""
        if self.protected is None:
            return
        try:
            self.protected.commit()
        except StateProblem as exc:
            note = f"{exc}: memberships this run added under protect_groups are not recorded as protected"
            if note not in self.notes:
                self.notes.append(note)

    def _remember(self, groups: pl.DataFrame) -> None:
        """Add committed groups (courseid, key, groupid) to `known`."""
        if groups.height:
            known = pl.concat([self.known, groups]).unique(["courseid", "key"], keep="first", maintain_order=True)
            object.__setattr__(self, "known", known)

    async def apply(
        self,
        conn: AsyncConnection,
        rows: pl.DataFrame,
        *,
        now: int,
        dry_run: bool,
        events: list[Event] | None = None,
        cache: bool = False,
    ) -> tuple[pl.DataFrame, EnrolmentEffects]:
        """rows: LINE, userid, courseid, contextid (the course's), cid, group_command, g1..g9, `enrolled_after`
        (Boolean: what the row's command left, null when the database says). Detail outcomes (part g<n> or "group
        <name>") and what went stale; the log events of the writes (group_created, group_member_removed,
        group_member_added) go to `events`. plan() then (unless dry_run) write()."""
        planned = await self.plan(conn, rows, dry_run=dry_run, cache=cache)
        if not dry_run:
            await self.write(conn, planned, now=now, events=events)
        return planned.outcomes, planned.effects

    async def plan(
        self,
        conn: AsyncConnection,
        rows: pl.DataFrame,
        *,
        dry_run: bool,
        cache: bool,
        in_flight: frozenset[Hashable] = frozenset(),
    ) -> GroupPlan:
        """The reads and decisions of apply(), nothing written. `cache`: nothing of this transaction is written yet,
        so the groups found are committed ones, kept for the run's later batches (the file deletes and renames
        none); groups created are found again by the next batch that names them. `in_flight`: what the write in
        flight changes (PreviousWrite.writes); the groups it creates are taken as existing, their ids read by
        write()."""
        named = self._named(rows)
        unknown = named.join(self.known, on=["courseid", "key"], how="anti")
        coming = (  # the named groups the write in flight creates
            unknown.join(_group_keys(in_flight), on=["courseid", "key"], how="semi")
            .select(list(NAMED_SCHEMA))
            .unique(["courseid", "key"], keep="first", maintain_order=True)
        )
        unknown = unknown.join(coming, on=["courseid", "key"], how="anti")
        found = _keyed(await find_groups(self.gateway, conn, unknown.select("courseid", "name")), self._names())
        if cache:
            self._remember(found)
        known = pl.concat([self.known, found]).unique(["courseid", "key"], keep="first", maintain_order=True)
        named = named.join(known, on=["courseid", "key"], how="left", maintain_order="left").join(
            coming.select("courseid", "key", pl.lit(True).alias("coming")),
            on=["courseid", "key"],
            how="left",
            maintain_order="left",
        )
        coming_group = pl.col("coming").fill_null(False)
        creating = pl.col("group_command").str.ends_with("create") & pl.col("groupid").is_null() & ~coming_group
        # A group still to create has no id: write() gives it its new one (its rows find it by courseid and key).
        named = named.with_columns(creating.alias("created"))
        to_create = named.filter(creating).select("courseid", "name", "key", "contextid")
        # The batch's other rows naming a group it creates, or the write before creates, find it (`made`), as once it
        # is written.
        made = to_create.select("courseid", "key", pl.lit(True).alias("made")).unique(["courseid", "key"])
        named = (
            named.join(made, on=["courseid", "key"], how="left", maintain_order="left")
            .with_columns((pl.col("made").fill_null(False) | coming_group).alias("made"))
            .drop("coming")
        )
        # Every membership of the user in the course only for greplace and gdel (which remove by component); the
        # other rows' named groups are checked pair by pair.
        whole = pl.col("group_command").str.starts_with("greplace") | (pl.col("group_command") == "gdel")
        pairs = rows.filter(whole).select("courseid", "userid").unique()
        current = (
            await memberships(self.gateway, conn, pairs) if pairs.height else pl.DataFrame(schema=MEMBERSHIP_SCHEMA)
        )
        current = await self._mark_protected(conn, current)
        exact = named.filter(~whole & ~pl.col("created") & pl.col("groupid").is_not_null()).select("groupid", "userid")
        stored = await stored_members(self.gateway, conn, exact.unique())
        held = pl.concat(
            [
                current.select("groupid", "userid", "component", "protected"),
                stored.select(
                    "groupid",
                    "userid",
                    pl.lit(None, dtype=pl.String).alias("component"),
                    pl.lit(False).alias("protected"),
                ),
            ]
        ).unique(["groupid", "userid"], keep="first", maintain_order=True)
        # Rows whose command just enrolled the user need no look-up (in a dry run, nothing was written to look up).
        unknown = rows.filter(pl.col("enrolled_after").is_null()).select("courseid", "userid").unique()
        enrolled_now = (await enrolled(self.gateway, conn, unknown)).with_columns(pl.lit(True).alias("in_db"))
        rows = rows.join(enrolled_now, on=["courseid", "userid"], how="left", maintain_order="left").with_columns(
            pl.coalesce("enrolled_after", "in_db", pl.lit(False)).alias("is_enrolled")
        )
        await asyncio.sleep(0)  # the write in flight takes its answers before the outcomes are decided
        removals = self._removals(rows, named, current)
        named = (
            named.join(rows.select("__row", "is_enrolled"), on="__row", how="left")
            .join(
                held.select(
                    "groupid",
                    "userid",
                    pl.lit(True).alias("member"),
                    pl.col("component").alias("member_component"),
                    pl.col("protected").alias("member_protected"),
                ),
                on=["groupid", "userid"],
                how="left",
                maintain_order="left",
            )
            .with_columns(pl.col("member").fill_null(False))
        )
        adding = named.filter(pl.col("group_command") != "gdel")
        leaving = named.filter(pl.col("group_command") == "gdel")
        removable = pl.col("member") & (pl.lit(True) if not self.protect else pl.col("member_protected"))
        to_leave = leaving.filter(pl.col("groupid").is_not_null() & removable)
        joinable = pl.col("groupid").is_not_null() | pl.col("made")
        to_join = adding.filter(joinable & pl.col("is_enrolled") & ~pl.col("member"))
        gone = pl.concat([removals.select("groupid", "userid"), to_leave.select("groupid", "userid")])
        outcomes = pl.concat(
            [
                self._removal_outcomes(removals, dry_run),
                self._add_outcomes(adding, dry_run),
                self._leave_outcomes(leaving, removable, dry_run),
            ]
        )
        changed = pl.concat(
            [
                removals.select("courseid", "userid"),
                to_leave.select("courseid", "userid"),
                to_join.select("courseid", "userid"),
            ]
        )
        effects = EnrolmentEffects(
            group_courses={*changed["courseid"].to_list(), *named.filter("created")["courseid"].to_list()},
            group_users=set(changed["userid"].to_list()),
        )
        writes = frozenset(
            [
                *(("pair", c, u) for c, u in changed.unique().iter_rows()),
                *(("group", c, k) for c, k in to_create.select("courseid", "key").unique().iter_rows()),
            ]
        )
        assumes = frozenset(("group", c, k) for c, k in coming.select("courseid", "key").iter_rows())
        reads = frozenset(
            [
                *(("pair", c, u) for c, u in rows.select("courseid", "userid").unique().iter_rows()),
                *(("group", c, k) for c, k in named.select("courseid", "key").unique().iter_rows()),
            ]
        )
        joining = to_join.select("groupid", "userid", "courseid", "contextid", "key")
        return GroupPlan(outcomes, effects, to_create, gone, joining, reads - assumes, writes, assumes, coming)

    async def write(
        self, conn: AsyncConnection, planned: GroupPlan, *, now: int, events: list[Event] | None = None
    ) -> None:
        """What plan() decided, written on `conn`: groups created, memberships removed then added."""
        joining = planned.joining
        if planned.to_create.height:
            made = _keyed(
                await create_groups(
                    self.gateway, conn, planned.to_create.select("courseid", "name", "contextid"), now, events=events
                ),
                self._names(),
            )
            joining = _given_ids(joining, made)
        if planned.coming.height:  # created by the write before, committed since (else this plan was made again)
            coming = await find_groups(self.gateway, conn, planned.coming.select("courseid", "name"))
            found = _keyed(coming, self._names())
            self._remember(found)
            joining = _given_ids(joining, found)
        gone = planned.gone
        await remove_members(self.gateway, conn, gone, now=now, events=events)
        joined = joining.select("groupid", "userid")
        # absent: plan() read, in this transaction, that none of them is a member.
        courses = joining.select("groupid", "courseid", "contextid")
        await add_members(self.gateway, conn, joined, now=now, events=events, absent=True, courses=courses)
        if self.protected is not None:
            self.protected.forget(gone)
            if self.protect:
                made_members = await stored_members(self.gateway, conn, joined.unique())
                self.protected.record(made_members.rename({"id": "memberid"}), "enrols")

    def _named(self, rows: pl.DataFrame) -> pl.DataFrame:
        """One row per non-empty g<n> of a row: __row, LINE, userid, courseid, contextid, cid, group_command, part,
        name, key."""
        frames = [
            rows.filter(pl.col(column) != "").select(
                "__row",
                LINE,
                "userid",
                "courseid",
                "contextid",
                "cid",
                "group_command",
                pl.lit(column).alias("part"),
                pl.col(column).alias("name"),
            )
            for column in GROUP_COLUMNS
        ]
        key = self._names().given(pl.col("name"))
        return pl.concat(frames).with_columns(key.alias("key")).sort("__row", "part")

    async def _mark_protected(self, conn: AsyncConnection, current: pl.DataFrame) -> pl.DataFrame:
        """`current` with `protected` (Boolean): with protect_groups, the memberships toolsync protects (its state,
        with the stored row's id, this batch's earlier generations included) and those an earlier run tagged
        'tool_sync'; else none (nothing reads it)."""
        if not self.protect or current.is_empty():
            return current.with_columns(pl.lit(False).alias("protected"))
        ids = await stored_members(self.gateway, conn, current.select("groupid", "userid").unique())
        mine = (
            self.protected.protected(ids.rename({"id": "memberid"})).select("groupid", "userid")
            if self.protected is not None
            else ids.clear().select("groupid", "userid")
        )
        return current.join(
            mine.with_columns(pl.lit(True).alias("protected")),
            on=["groupid", "userid"],
            how="left",
            maintain_order="left",
        ).with_columns(
            (pl.col("protected").fill_null(False) | (pl.col("component") == LEGACY_COMPONENT)).alias("protected")
        )

    def _removals(self, rows: pl.DataFrame, named: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
        """greplace: the memberships of the row's user in the course's groups that the row does not name (with
        protect_groups, only those toolsync protects)."""
        replacing = rows.filter(pl.col("group_command").str.starts_with("greplace")).select(
            "__row", LINE, "courseid", "userid", "cid"
        )
        held = replacing.join(current, on=["courseid", "userid"])
        if self.protect:
            held = held.filter(pl.col("protected"))
        kept = named.select("__row", pl.col("groupid")).drop_nulls()
        return held.join(kept, on=["__row", "groupid"], how="anti").sort("__row", "groupname")

    @staticmethod
    def _removal_outcomes(removals: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        would = "would be " if dry_run else ""
        return outcome_rows(
            removals,
            Outcome.DELETED,
            "greplace",
            pl.col("groupname"),
            pl.format(
                f"{would}removed from group '{{}}' of course '{{}}' (greplace: not named in the row)",
                "groupname",
                shown(pl.col("cid")),
            ),
            part=pl.format("group {}", pl.col("groupname")),
        )

    def _add_outcomes(self, adding: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        would = "would be " if dry_run else ""
        name, course = shown(pl.col("name")), shown(pl.col("cid"))
        missing = pl.col("groupid").is_null() & ~pl.col("made")
        command = pl.col("group_command")
        rules = [
            Rule(
                missing,
                Outcome.FAILED,
                command,
                pl.format(
                    "group '{}' does not exist in course '{}'; gaddcreate or greplacecreate creates it", name, course
                ),
            ),
            Rule(
                ~pl.col("is_enrolled"),
                Outcome.FAILED,
                command,
                pl.format(
                    "not added to group '{}': the user is not enrolled in course '{}' (groups take enrolled users)",
                    name,
                    course,
                ),
            ),
            Rule(
                pl.col("created"),
                Outcome.CREATED,
                command,
                pl.format(f"group '{{}}' {would}created in course '{{}}', member {would}added", name, course),
            ),
            Rule(pl.col("member"), Outcome.UNCHANGED, command, pl.format("already in group '{}'", name)),
            Rule(pl.lit(True), Outcome.CREATED, command, pl.format(f"{would}added to group '{{}}'", name)),
        ]
        return _steps(adding, rules)

    @staticmethod
    def _leave_outcomes(leaving: pl.DataFrame, removable: pl.Expr, dry_run: bool) -> pl.DataFrame:
        would = "would be " if dry_run else ""
        name, course = shown(pl.col("name")), shown(pl.col("cid"))
        rules = [
            Rule(
                pl.col("groupid").is_null() & ~pl.col("made"),
                Outcome.FAILED,
                "gdel",
                pl.format("group '{}' does not exist in course '{}'", name, course),
            ),
            Rule(~pl.col("member"), Outcome.UNCHANGED, "gdel", pl.format("not a member of group '{}'", name)),
            Rule(
                ~removable,
                Outcome.UNCHANGED,
                "gdel",
                pl.format(
                    "membership of group '{}' kept: toolsync did not make it under protect_groups{}",
                    name,
                    pl.when(pl.col("member_component").fill_null("") != "")
                    .then(pl.format(" (managed by {})", pl.col("member_component")))
                    .otherwise(pl.lit("")),
                ),
            ),
            Rule(pl.lit(True), Outcome.DELETED, "gdel", pl.format(f"{would}removed from group '{{}}'", name)),
        ]
        return _steps(leaving, rules)


def _keyed(groups: pl.DataFrame, names: TextMatch) -> pl.DataFrame:
    """courseid, key, groupid of the shared functions' (courseid, name, groupid) answer, null ids left out."""
    return groups.filter(pl.col("groupid").is_not_null()).select(
        pl.col("courseid").cast(pl.Int64),
        names.given(pl.col("name")).alias("key"),
        pl.col("groupid").cast(pl.Int64),
    )


def _given_ids(joining: pl.DataFrame, groups: pl.DataFrame) -> pl.DataFrame:
    """joining's null group ids given from groups (courseid, key, groupid)."""
    return joining.join(
        groups.rename({"groupid": "new"}), on=["courseid", "key"], how="left", maintain_order="left"
    ).select(pl.coalesce("groupid", "new").alias("groupid"), pl.exclude("groupid", "new"))


def _group_keys(keys: frozenset[Hashable]) -> pl.DataFrame:
    """courseid, key of the ("group", courseid, key) among keys (BatchPlan.writes)."""
    groups = [key[1:] for key in keys if isinstance(key, tuple) and key[0] == "group"]
    return pl.DataFrame(groups, schema={"courseid": pl.Int64, "key": pl.String}, orient="row")


def _steps(rows: pl.DataFrame, rules: list[Rule]) -> pl.DataFrame:
    """The detail outcome of each named group of a row (part g<n>), in the rows' order."""
    decided, _ = first_match(rows, rules, pl.col("name"), part=pl.col("part"), keep=["__row"])
    return decided.sort("__row", "part").drop("__row")
