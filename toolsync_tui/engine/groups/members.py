"""Group members file (groupmembers.csv): add a user to a group, move them into it (`shift`), or remove them (`del`).

Columns `groupid`, `userid`, `courseid`, `cmd`, identifiers per the groupmembers settings (reference §2.5.2). As
groups_add_member() and groups_remove_member() write (moodle-db-semantics §7): component '' and itemid 0. The
original tagged every membership this file adds with component `tool_sync`, a plugin the site does not have (Moodle's
Group members page fails on such a row); toolsync records them as protected in its data directory instead
(datadir/protected_groups.py), after each batch's commit, so that the enrolments file's greplace and gdel with
protect_groups treat them as they treated the original's. Fixed quirks (CONTRACT §3): `del` works; `shift` leaves the
other groups of the course without crashing, and reports each group left; the empty-group purge touches only the
courses the file named. See moodle/groups.py for the rows written. Each batch's group_member_removed and
group_member_added log events, and the purge's group_deleted and grouping_deleted, are recorded with their writes
(moodle/course_events.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from typing import ClassVar

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.protected_groups import ProtectedMemberships, StateProblem, for_site
from toolsync_tui.engine.groups.common import GroupCaches, course_lookup, resolve_courses
from toolsync_tui.engine.groups.purge import plan_purge
from toolsync_tui.engine.moodle import groups as gm
from toolsync_tui.engine.moodle.course_events import collecting
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.moodle.lookup import live_users
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, Outcome, Rule, cells, first_match
from toolsync_tui.engine.run.command_file import ColumnSpec
from toolsync_tui.engine.run.operation import (
    BatchPlan,
    BatchWrite,
    Operation,
    PreviousWrite,
    SetupProblem,
    nothing_in_flight,
)

COMMANDS = ("add", "shift", "del")
# Memberships a plugin manages (enrol_cohort, enrol_meta ...) are that plugin's: neither del nor shift removes them.
# Those of no component are anyone's, those an earlier run tagged 'tool_sync' this file's.
OURS = ("", gm.LEGACY_COMPONENT)
TEXT = ("groupid", "userid", "courseid", "cmd")


# Working columns of a batch.
WHY, KEY = "__why", "__key"
ROW_COURSE, COURSE_WHY = "__row_course", "__course_why"
USER_ID, USER_PROBLEM, USER_MATCHES, USER_VALUE = "__user_id", "__user_problem", "__user_matches", "__user_value"
GROUP_KEY, GROUP_ID, GROUP_COURSE, GROUP_NAME = "__group_key", "__group_id", "__group_course", "__group_name"
ENROLLED, STORED, ADDED = "__enrolled", "__stored", "__added"
GROUP_SCHEMA = {GROUP_KEY: pl.String, GROUP_ID: pl.Int64, GROUP_COURSE: pl.Int64, GROUP_NAME: pl.String}


class GroupMembersOperation(Operation):
    name = "groupmembers"
    title = "Group members"
    columns = ColumnSpec(required=("groupid", "userid"), optional=("courseid", "cmd"))
    # `del` rows and the groups a `shift` leaves are `deleted` lines, which the safety check counts by themselves.
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"remove"})
    uses_bridge = True
    overlaps_writes = True

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        return False  # the bridge after the run only (cache purges)

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.groupmembers
        self.caches = GroupCaches()
        # The file's courses and the groups it fills, per mode: the safety pre-pass (a dry run) comes before the run.
        self.courses: dict[bool, set[int]] = {True: set(), False: set()}
        self.filled: dict[bool, set[int]] = {True: set(), False: set()}
        # Lookups kept for the whole run: this file changes no course, user or group (the purge comes after).
        self.course_lookup = course_lookup(gateway, self.options.course_identifier)
        self.users = live_users(gateway, self.options.user_identifier)
        self._groups_known = pl.DataFrame(schema=GROUP_SCHEMA)
        # Group names and idnumbers compare as tool_sync's get_record() on the site's database (text_match.py).
        self.group_match = TextMatch(gateway.kind)
        self._groups_asked: set[int] = set()  # group ids (group_identifier id), else course ids, already fetched
        self.protected: ProtectedMemberships | None = None  # prepare()
        self.notes: list[str] = []

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        self.protected = await for_site(self.config.data_dir, self.gateway)
        try:
            self.protected.check()
        except StateProblem as exc:
            raise SetupProblem(str(exc)) from None

    async def after_commit(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        """The batch's memberships recorded as protected (and those it removed forgotten), now that they are stored."""
        if self.protected is not None:
            try:
                self.protected.commit()
            except StateProblem as exc:
                self.notes.append(f"{exc}: memberships this run added are not recorded as protected")
        return outcomes

    def may_destroy(self, columns: Sequence[str]) -> bool:
        return "cmd" in columns or self.options.purge_empty != "off"

    def safety_candidates(self, rows: pl.DataFrame) -> pl.DataFrame:
        # The purge's base is every course of the file: then every row counts.
        if self.options.purge_empty != "off" or "cmd" not in rows.columns:
            return rows
        return rows.filter(pl.col("cmd").str.strip_chars().str.to_lowercase().is_in(["shift", "del"]))

    async def safety_base(self, conn: AsyncConnection) -> int:
        """The memberships of the file's courses, and with the purge their groups (and groupings)."""
        courses = sorted(self.courses[True])
        members = await _count_members(self, conn, courses)
        if self.options.purge_empty == "off":
            return members
        plan = await plan_purge(self.gateway, conn, courses, self.options.purge_empty, set())
        return members + plan.existing

    async def removals_after_rows(self, conn: AsyncConnection) -> int:
        """The purge's groups (and groupings), beside the rows' removals."""
        if self.options.purge_empty == "off":
            return 0
        plan = await plan_purge(self.gateway, conn, sorted(self.courses[True]), self.options.purge_empty, set())
        return plan.count

    async def finish(self, dry_run: bool) -> list[str]:
        notes, self.notes = list(dict.fromkeys(self.notes)), []
        courses = sorted(self.courses[dry_run])
        if self.options.purge_empty != "off" and courses:
            async with self.gateway.transaction() as conn:
                plan = await plan_purge(
                    self.gateway, conn, courses, self.options.purge_empty, self.filled[dry_run] if dry_run else set()
                )
                if not dry_run:
                    events = collecting(self.event_log)
                    await plan.apply(self.gateway, conn, events=events)
                    await self.event_log.record(conn, events or [], int(time.time()))
                    self.caches.courses |= plan.courses
            notes.append(plan.note(dry_run))
        if not dry_run:
            notes += await self.caches.purge(self.bridge)
        return notes

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        return await (await self._plan(conn, rows, dry_run)).apply(conn, dry_run)

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        return await self._plan(conn, rows, False)

    async def _plan(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> BatchPlan:
        """The batch's outcomes and its write. Its reads and writes are keyed ("member", courseid, userid): a plan
        reads the memberships of its users in its courses, a write changes those of the pairs it adds or removes."""
        rows = cells(rows, TEXT).with_columns(pl.col("cmd").str.to_lowercase())
        courses = await resolve_courses(self.course_lookup, conn, rows.filter(pl.col("courseid") != "")["courseid"])
        users = await self.users.resolve(conn, rows["userid"])
        groups = await self._groups(conn, rows, courses)
        checked = self._check(rows, courses, users, groups)
        failed = checked.filter(pl.col(WHY).is_not_null()).select(
            pl.col(LINE).alias("line"),
            pl.lit(None, dtype=pl.String).alias("part"),
            pl.lit(Outcome.FAILED.value).alias("outcome"),
            pl.lit("check").alias("action"),
            pl.col(KEY).alias("key"),
            pl.col(WHY).alias("message"),
        )
        valid = checked.filter(pl.col(WHY).is_null()).drop(WHY)
        self.courses[dry_run].update(valid["courseid"].unique().to_list())
        done, write, writes = await self._plan_valid(conn, valid, dry_run)
        outcomes = (
            pl.concat([failed, *done], how="vertical_relaxed")
            .cast(pl.Schema(OUTCOME_SCHEMA))
            .sort("line", maintain_order=True)
        )
        return BatchPlan(outcomes, write, _member_keys(valid), writes)

    # -- resolution (set-based: joins over the batch) --------------------------------------------------

    async def _groups(
        self, conn: AsyncConnection, rows: pl.DataFrame, courses: dict[str, tuple[int | None, str | None]]
    ) -> pl.DataFrame:
        """The groups the rows may name (GROUP_SCHEMA): GROUP_KEY is str(id) by id, else "courseid/value's key";
        the lowest id when several groups of a course share the value. Kept across batches: by id, the ids not asked
        yet are fetched; by idnumber or name, every group of the courses not seen yet (a course's groups once)."""
        identifier = self.options.group_identifier
        table = self.schema.groups
        columns = list(dict.fromkeys(["id", "courseid", "name", identifier]))
        if identifier == "id":
            named = rows.filter(pl.col("groupid") != "")["groupid"].cast(pl.Int64, strict=False).drop_nulls()
            new = sorted(set(named.unique().to_list()) - self._groups_asked)
            found = await self.gateway.fetch_in(conn, table, "id", new, columns)
        else:
            new = sorted({c for c, _ in courses.values() if c is not None} - self._groups_asked)
            found = await self.gateway.fetch_in(conn, table, "courseid", new, columns)
        self._groups_asked.update(new)
        if not found.is_empty():
            key = (
                pl.col("id").cast(pl.String)
                if identifier == "id"
                else pl.format("{}/{}", pl.col("courseid"), self.group_match.stored(pl.col(identifier).cast(pl.String)))
            )
            fresh = (
                found.filter(pl.col(identifier) != "" if identifier != "id" else pl.lit(True))
                .cast({"id": pl.Int64, "courseid": pl.Int64})
                .select(
                    key.alias(GROUP_KEY),
                    pl.col("id").alias(GROUP_ID),
                    pl.col("courseid").alias(GROUP_COURSE),
                    pl.col("name").cast(pl.String).alias(GROUP_NAME),
                )
            )
            self._groups_known = (
                pl.concat([self._groups_known, fresh])
                .sort(GROUP_ID)
                .unique(GROUP_KEY, keep="first", maintain_order=True)
            )
        return self._groups_known

    def _check(
        self,
        rows: pl.DataFrame,
        courses: dict[str, tuple[int | None, str | None]],
        users: pl.DataFrame,
        groups: pl.DataFrame,
    ) -> pl.DataFrame:
        """Every row with WHY (why it fails, null when it can go ahead), KEY, and for the others cmd, courseid (the
        group's), groupid, userid (ids), GROUP_NAME and USER_VALUE (the file's userid cell)."""
        options = self.options
        course_frame = pl.DataFrame(
            [(value, cid, why) for value, (cid, why) in courses.items()],
            schema={"courseid": pl.String, ROW_COURSE: pl.Int64, COURSE_WHY: pl.String},
            orient="row",
        )
        user_frame = users.select(
            pl.col(users.columns[0]).alias("userid"),
            pl.col("problem").alias(USER_PROBLEM),
            pl.col("id").cast(pl.Int64).alias(USER_ID),
            pl.col("matches").cast(pl.Int64).alias(USER_MATCHES),
        )
        group_key = (
            pl.col("groupid").cast(pl.Int64, strict=False).cast(pl.String)
            if options.group_identifier == "id"
            else pl.format("{}/{}", pl.col(ROW_COURSE), self.group_match.given(pl.col("groupid")))
        )
        frame = (
            rows.select(LINE, *TEXT)
            .join(course_frame, on="courseid", how="left", maintain_order="left")
            .join(user_frame, on="userid", how="left", maintain_order="left")
            .with_columns(group_key.alias(GROUP_KEY))
            .join(groups, on=GROUP_KEY, how="left", maintain_order="left")
        )
        course_cell, group_cell, user_cell = pl.col("courseid"), pl.col("groupid"), pl.col("userid")
        in_course = pl.when(pl.col(ROW_COURSE).is_not_null()).then(pl.format(" in course '{}'", course_cell))
        why = (
            pl.when(~pl.col("cmd").is_in(["", *COMMANDS]))
            .then(pl.format("cmd '{}': expected add, shift or del (empty: add)", pl.col("cmd")))
            .when((course_cell != "") & pl.col(COURSE_WHY).is_not_null())
            .then(pl.col(COURSE_WHY))
            .when((course_cell == "") & pl.lit(options.group_identifier != "id"))
            .then(
                pl.lit(f"empty courseid: groups named by {options.group_identifier} are looked up in the row's course")
            )
            .when(group_cell == "")
            .then(pl.lit("empty groupid: the row names no group"))
            .when(pl.col(GROUP_ID).is_null())
            .then(
                pl.format(
                    "group '{}' not found{} (group_identifier {})",
                    group_cell,
                    in_course.otherwise(pl.lit("")),
                    pl.lit(options.group_identifier),
                )
            )
            .when(pl.col(ROW_COURSE).is_not_null() & (pl.col(GROUP_COURSE) != pl.col(ROW_COURSE)))
            .then(pl.format("group '{}' belongs to another course than '{}'", group_cell, course_cell))
            .when(user_cell == "")
            .then(pl.lit("empty userid: the row names no user"))
            .when(pl.col(USER_PROBLEM).is_not_null())
            .then(pl.format("user {}", pl.col(USER_PROBLEM)))
            .when(pl.col(USER_ID).is_null())
            .then(pl.format("user '{}' not found (user_identifier {})", user_cell, pl.lit(options.user_identifier)))
            .when(pl.col(USER_MATCHES) > 1)
            .then(
                pl.format(
                    "user '{}' is ambiguous: {} accounts have this {}",
                    user_cell,
                    pl.col(USER_MATCHES),
                    pl.lit(options.user_identifier),
                )
            )
        )
        return frame.select(
            LINE,
            why.alias(WHY),
            pl.format("{}/{}", group_cell, user_cell).alias(KEY),
            pl.when(pl.col("cmd") == "").then(pl.lit("add")).otherwise(pl.col("cmd")).alias("cmd"),
            pl.col(GROUP_COURSE).alias("courseid"),
            pl.col(GROUP_ID).alias("groupid"),
            pl.col(USER_ID).alias("userid"),
            GROUP_NAME,
            user_cell.alias(USER_VALUE),
        )

    # -- planning and writing --------------------------------------------------------------------------

    async def _plan_valid(
        self, conn: AsyncConnection, valid: pl.DataFrame, dry_run: bool
    ) -> tuple[list[pl.DataFrame], BatchWrite, frozenset[Hashable]]:
        """Outcome frames of the valid rows, their write and what it changes (_member_keys).

        A user whose rows in a course are all `add` (the bulk of a file) is planned by joins: a row adds the
        membership unless it is stored or an earlier row adds it. The rows of a user who also has `shift` or `del`
        rows in the course are planned in file order, row by row (_sequential), each seeing the ones before."""
        if valid.is_empty():
            return [], _no_write, frozenset()
        pairs = valid.select("courseid", "userid").unique()
        enrolled = await gm.enrolled(self.gateway, conn, pairs)
        enrolled = enrolled.with_columns(pl.lit(True).alias(ENROLLED))
        ordered = valid.filter(pl.col("cmd") != "add").select("courseid", "userid").unique()
        bulk = valid.join(ordered, on=["courseid", "userid"], how="anti", maintain_order="left")
        stored = await gm.stored_members(self.gateway, conn, bulk.select("groupid", "userid").unique())
        would = "would be " if dry_run else ""
        planned = (
            bulk.join(enrolled, on=["courseid", "userid"], how="left", maintain_order="left")
            .join(
                stored.select("groupid", "userid", pl.lit(True).alias(STORED)),
                on=["groupid", "userid"],
                how="left",
                maintain_order="left",
            )
            .with_columns(pl.col(ENROLLED).fill_null(False), pl.col(STORED).fill_null(False))
            .with_columns(
                (
                    pl.col(ENROLLED) & ~pl.col(STORED) & pl.struct("groupid", "userid", ENROLLED).is_first_distinct()
                ).alias(ADDED)
            )
        )
        name = pl.col(GROUP_NAME)
        rules = [
            Rule(
                ~pl.col(ENROLLED),
                Outcome.FAILED,
                "check",
                pl.format(
                    "user '{}' is not enrolled in the course of group '{}': Moodle only adds enrolled users to groups",
                    pl.col(USER_VALUE),
                    name,
                ),
            ),
            Rule(pl.col(ADDED), Outcome.CREATED, "add", pl.format(f"{would}added to group '{{}}'", name)),
            Rule(pl.lit(True), Outcome.UNCHANGED, "none", pl.format("already a member of group '{}'", name)),
        ]
        bulk_outcomes, _ = first_match(planned, rules, pl.col(KEY))
        added = planned.filter(ADDED).select("groupid", "userid", "courseid")
        self.filled[dry_run].update(added["groupid"].unique().to_list())
        rest = valid.join(ordered, on=["courseid", "userid"], how="semi", maintain_order="left")
        outcomes, gone, new = await self._sequential(conn, rest, enrolled, would, dry_run)
        new = pl.concat([added, new])

        async def write(conn: AsyncConnection) -> None:
            # The protected memberships' pending steps are this write's: an earlier batch's were committed (or
            # dropped with their rollback) before it started (after_commit).
            if self.protected is not None:
                self.protected.begin()
            now = int(time.time())
            events = collecting(self.event_log)
            await gm.remove_members(self.gateway, conn, gone.select("groupid", "userid"), now=now, events=events)
            # Read by the plan in this transaction: none of them is a member (stored_members(), memberships()).
            await gm.add_members(self.gateway, conn, new, now=now, absent=True, events=events)
            await self.event_log.record(conn, events or [], now)
            if self.protected is not None:
                self.protected.forget(gone)
                made = await gm.stored_members(self.gateway, conn, new.select("groupid", "userid"))
                # A file write (and its sync) in a thread: the next batch is planned meanwhile.
                await asyncio.to_thread(self.protected.record, made.rename({"id": "memberid"}), "groupmembers")
            changed = pl.concat([gone, new])
            self.caches.users.update(changed["userid"].unique().to_list())
            self.caches.courses.update(changed["courseid"].unique().to_list())

        return [bulk_outcomes, outcomes], write, _member_keys(pl.concat([gone, new]))

    async def _sequential(
        self, conn: AsyncConnection, rows: pl.DataFrame, enrolled: pl.DataFrame, would: str, dry_run: bool
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The rows of users with `shift` or `del` rows in the course, in file order: their outcomes, and the
        (groupid, userid, courseid) memberships removed and added."""
        change_schema = {"groupid": pl.Int64, "userid": pl.Int64, "courseid": pl.Int64}
        if rows.is_empty():
            empty = pl.DataFrame(schema=change_schema)
            return pl.DataFrame(schema=OUTCOME_SCHEMA), empty, empty
        is_enrolled = set(
            enrolled.join(rows.select("courseid", "userid").unique(), on=["courseid", "userid"], how="semi")
            .select("courseid", "userid")
            .iter_rows()
        )
        stored = await gm.memberships(self.gateway, conn, rows.select("courseid", "userid").unique())
        # (userid, courseid) -> groupid -> component: the memberships, changed row by row.
        state: dict[tuple[int, int], dict[int, str]] = {}
        names: dict[int, str] = {}
        for courseid, userid, groupid, groupname, component in stored.select(
            "courseid", "userid", "groupid", "groupname", "component"
        ).iter_rows():
            state.setdefault((userid, courseid), {})[groupid] = component
            names[groupid] = groupname
        names.update(zip(rows["groupid"].to_list(), rows[GROUP_NAME].to_list(), strict=True))
        initial = {(g, u, c) for (u, c), held in state.items() for g in held}
        outcomes: list[tuple[int, str | None, str, str, str, str]] = []
        for line, key, cmd, courseid, groupid, userid, user_value in rows.select(
            LINE, KEY, "cmd", "courseid", "groupid", "userid", USER_VALUE
        ).iter_rows():
            held = state.setdefault((userid, courseid), {})
            name = names.get(groupid, str(groupid))
            if cmd == "del":
                component = held.get(groupid)
                if component is None:
                    outcomes.append((line, None, "unchanged", "none", key, f"not a member of group '{name}'"))
                elif component not in OURS:
                    outcomes.append(_managed(line, key, name, component))
                else:
                    del held[groupid]
                    outcomes.append((line, None, "deleted", "remove", key, f"{would}removed from group '{name}'"))
                continue
            if (courseid, userid) not in is_enrolled:
                outcomes.append(
                    (
                        line,
                        None,
                        "failed",
                        "check",
                        key,
                        f"user '{user_value}' is not enrolled in the course of group '{name}': "
                        "Moodle only adds enrolled users to groups",
                    )
                )
                continue
            left: list[tuple[int, str | None, str, str, str, str]] = []
            if cmd == "shift":
                for other in sorted(g for g in held if g != groupid):
                    other_name = names.get(other, str(other))
                    part = f"group {other_name}"
                    if held[other] not in OURS:
                        message = f"kept in group '{other_name}': the membership is managed by {held[other]}"
                        left.append((line, part, "skipped", "none", key, message))
                        continue
                    del held[other]
                    left.append((line, part, "deleted", "remove", key, f"{would}removed from group '{other_name}'"))
            added = groupid not in held
            if added:
                held[groupid] = ""
                self.filled[dry_run].add(groupid)
            removed = sum(1 for o in left if o[2] == "deleted")
            action = "shift" if removed else ("add" if added else "none")
            text = f"{would}added to group '{name}'" if added else f"already a member of group '{name}'"
            if removed:
                text += f"; {would}removed from {removed} other group{'s' if removed > 1 else ''} of the course"
            outcome = "created" if added and not removed else ("updated" if removed else "unchanged")
            outcomes.append((line, None, outcome, action, key, text))
            outcomes += left
        final = {(g, u, c) for (u, c), held in state.items() for g in held}
        return (
            pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row"),
            pl.DataFrame(sorted(initial - final), schema=change_schema, orient="row"),
            pl.DataFrame(sorted(final - initial), schema=change_schema, orient="row"),
        )


def _member_keys(pairs: pl.DataFrame) -> frozenset[Hashable]:
    """("member", courseid, userid) of the pairs: what a batch reads (every membership of its users in its courses)
    and what its write changes."""
    return frozenset(("member", c, u) for c, u in pairs.select("courseid", "userid").unique().iter_rows())


async def _no_write(conn: AsyncConnection) -> None:
    return None


def _managed(line: int, key: str, name: str, component: str) -> tuple[int, str | None, str, str, str, str]:
    return (
        line,
        None,
        "failed",
        "check",
        key,
        f"the membership of group '{name}' is managed by {component}; it is removed there, not by this file",
    )


async def _count_members(op: GroupMembersOperation, conn: AsyncConnection, courses: list[int]) -> int:
    members, groups = op.schema.groups_members, op.schema.groups
    total = 0
    for part in chunks(courses):
        query = (
            select(func.count())
            .select_from(members.join(groups, groups.c.id == members.c.groupid))
            .where(groups.c.courseid.in_(part))
        )
        total += int((await conn.execute(query)).scalar_one())
    return total
