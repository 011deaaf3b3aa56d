"""Enrolments file (enrols.csv): enrol, unenrol, shift, enable and disable users in courses, through an enrol method
(`enrol` column) or as bare role assignments (no `enrol` column), then the row's group command
(tool_sync-reference §2.4, contract §3; the rows written: moodle-db-semantics §6, §7).

Per batch: read and check the values -> resolve users, courses, roles and enrol instances in bulk -> apply the rows
generation by generation (a generation holds at most one row per user and course, so rows naming the same pair apply
in file order) -> group commands -> dirty flags -> the standard-log events of the batch's writes, recorded at its end
in one go (what enrol_user(), update_user_enrol(), unenrol_user(), role_assign(), role_unassign() and the group
functions log: moodle/course_events.py). Every row has one own outcome; group steps are detail lines.

A dry run plans each generation, then writes it in the batch's transaction (which the pipeline rolls back), so that
the next generation sees what the real run would have written: its outcomes are those of the real run.

Overlapped writes (run/overlap.py, on MariaDB): a batch of adds through an enrol method (no group command, gadd or
gaddcreate), each user and course once - the nightly feed's case - is planned whole without writing (plan_batch():
the reads and decisions of CourseEnrolments.plan() and GroupSteps.plan()), and its write (enrolments, roles, groups,
memberships, dirty flags, log events, welcome messages queued) runs while the next batch is planned. The plan names
what it read and what its write changes: ("pair", courseid, userid), ("group", courseid, the name's key),
("instance", courseid, plugin); a next batch reading one of them is planned again once the write has ended. Any
other batch applies generation by generation, all of it in its write (EVERYTHING: the batch after it is planned
again); its dry run, as before. A dry run of adds is the plan alone, the very plan the real run writes.
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
from toolsync_tui.engine.enrolments.groups import GroupSteps
from toolsync_tui.engine.enrolments.resolve import Resolver, choose_instances, instance_problem
from toolsync_tui.engine.enrolments.roles import plan_roles, write_roles
from toolsync_tui.engine.enrolments.rows import ENROLS_FILE, GEN, ROLE_MODE, normalised, value_problem
from toolsync_tui.engine.enrolments.status import course_enrolments, plan_status, write_status
from toolsync_tui.engine.moodle.course_events import collecting
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.recording import nothing_more_recorded
from toolsync_tui.engine.moodle.site_settings import UserSite, site_timezone
from toolsync_tui.engine.moodle.staleness import (
    EnrolmentEffects,
    FlaggedUsers,
    mark_contexts_dirty,
    purge_after_run,
)
from toolsync_tui.engine.moodle.unenrol import stored_enrolments, unenrol
from toolsync_tui.engine.parts.course_enrolments import INSTANCE_SCHEMA, CourseEnrolments, first_instances
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, Outcome, Rule, first_match, outcome_rows, shown
from toolsync_tui.engine.run.operation import BatchPlan, Operation, PreviousWrite, nothing_in_flight
from toolsync_tui.engine.run.value_limits import StoredColumns

ROW = "__row"
DESTRUCTIVE = ("shift", "unenrol", "disable", "unassign")


class EnrolsOperation(Operation):
    name = "enrols"
    title = "Enrolments"
    columns = ENROLS_FILE
    # gaddcreate and greplacecreate create the groups they name.
    value_columns: ClassVar[StoredColumns] = {r"g\d+": ("groups", "name")}
    # The memberships greplace removes count too: the safety check counts every `deleted` line, parts included.
    destructive_actions: ClassVar[frozenset[str]] = frozenset(DESTRUCTIVE)
    uses_bridge = True
    # A batch of adds is planned while the one before is written (_plan_adds); not with protect_groups (prepare()).
    overlaps_writes = True

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        return False  # the bridge after commits and the run only (welcome messages, cache purges)

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.enrols
        self.effects = EnrolmentEffects()
        self.instances: pl.DataFrame | None = None  # the batch's first_instances(), while current
        # A batch applied generation by generation is planned (its plan is its write): the next batch's plan waits
        # for that write, which shares self.instances and the group steps' state with it.
        self.in_turn = False
        self.events: list[Event] | None = None  # the log events of the batch being written (None: none gathered)
        self.known_instances = KnownInstances()
        self.enabled_instances = False  # the batch being written enables an instance
        self.flagged = FlaggedUsers()  # the users given a dirty flag by this run's batches
        self.batch_flagged: set[int] = set()  # those the batch being written flags

    def may_destroy(self, columns: Sequence[str]) -> bool:
        return "cmd" in columns or "gcmd" in columns or self.options.default_cmd not in ("add", "enable")

    def safety_candidates(self, rows: pl.DataFrame) -> pl.DataFrame:
        def lowered(column: str, default: str = "") -> pl.Expr:
            if column not in rows.columns:
                return pl.lit(default)
            return pl.col(column).str.strip_chars().str.to_lowercase()

        removing = lowered("cmd", self.options.default_cmd).is_in(["del", "delete", "shift", "disable"])
        return rows.filter(removing | lowered("gcmd").is_in(["greplace", "greplacecreate"]))

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        self.site = await UserSite.read(self.gateway)
        self.timezone = await site_timezone(self.gateway)
        self.role_mode = "enrol" not in columns
        self.enrolments = CourseEnrolments(
            self.gateway,
            course_identity=self.options.course_identifier,
            site_timezone=self.timezone,
            actor_id=self.site.actor_id,
            enable_on_disabled=self.options.enable_on_disabled,
            remember_courses=True,
            welcome=self.welcome,
        )
        await self.enrolments.prepare(conn)
        self.resolver = Resolver(
            self.gateway, user_identifier=self.options.user_identifier, course_identifier=self.options.course_identifier
        )
        self.groups = await GroupSteps.open(self.gateway, self.config.data_dir, protect=self.options.protect_groups)
        # The protected memberships a batch records are written once it has committed (after_commit()), before the
        # next batch starts them afresh (begin_batch()): batches in turn.
        self.overlaps_writes = not self.options.protect_groups

    async def safety_base(self, conn: AsyncConnection) -> int:
        """The enrolments the file draws from; role assignments of component '' for a role-only file."""
        if self.role_mode:
            ra = self.schema.role_assignments
            query = select(func.count()).select_from(ra).where(ra.c.component == "")
        else:
            query = select(func.count()).select_from(self.schema.user_enrolments)
        return int((await conn.execute(query)).scalar_one())

    async def finish(self, dry_run: bool) -> list[str]:
        groups: GroupSteps | None = getattr(self, "groups", None)  # None when prepare() stopped the run
        notes = groups.notes if groups is not None else []
        return notes if dry_run else notes + await purge_after_run(self.bridge, self.effects)

    async def after_commit(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        # protect_groups: the memberships the batch made are recorded as protected once they are stored.
        self.groups.committed()
        self.flagged.written(self.batch_flagged)
        self.batch_flagged = set()
        if self.enabled_instances:  # what plans read while the batch was written is forgotten too
            self.known_instances.forget()
            self.enabled_instances = False
        return outcomes

    async def _mark_users_dirty(self, conn: AsyncConnection, effects: EnrolmentEffects, now: int) -> None:
        """A dirty flag per user and run (staleness.FlaggedUsers): the users of the batch not flagged yet."""
        self.batch_flagged = await self.flagged.mark(
            self.gateway, conn, effects.dirty_users, now, self.site.session_timeout
        )

    # -- one batch ------------------------------------------------------------------------------

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        return await (await self._planned(conn, rows, dry_run, nothing_in_flight)).apply(conn, dry_run)

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        if self.in_turn:  # a batch applied generation by generation is being written: it uses the batch's state
            await previous()
        return await self._planned(conn, rows, False, previous)

    async def _planned(
        self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool, previous: PreviousWrite
    ) -> BatchPlan:
        """A batch of adds through an enrol method (gadd, gaddcreate), each user and course once: planned whole, its
        write later (_plan_adds). Any other batch (shift, unenrol, enable, role mode, greplace, gdel, a pair named
        twice) applies generation by generation, each planned on the writes of the one before: all of it in the
        write, after the write before it (EVERYTHING), or, in a dry run, in the plan as before."""
        now = int(time.time())
        req = normalised(rows, default_cmd=self.options.default_cmd, timezone=self.timezone)
        if _adds_only(req):
            return await self._plan_adds(conn, req, now, dry_run, previous)
        if dry_run:
            return BatchPlan(await self._apply_batch(conn, rows, dry_run=True), _nothing)

        async def write(conn: AsyncConnection) -> pl.DataFrame:
            try:
                return await self._apply_batch(conn, rows, dry_run=False)
            finally:
                self.in_turn = False

        self.in_turn = True

        pending = outcome_rows(rows, Outcome.FAILED, "write", pl.lit(""), "not written")  # write() gives the outcomes
        return BatchPlan(pending, write, EVERYTHING, EVERYTHING)

    async def _resolved(self, conn: AsyncConnection, req: pl.DataFrame, *, keep: bool = False) -> pl.DataFrame:
        """normalised() rows with ROW, their users, courses, roles and enrol instances; `problem` (null: valid).
        `keep`: nothing of this transaction is written yet (a plan of adds): the instances read are committed ones,
        kept for the run's later plans (KnownInstances)."""
        req = req.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW), value_problem().alias("problem"))
        site = self.enrolments.site
        req = await self.resolver.resolve(conn, req, site.roles)
        req = req.with_columns(
            pl.coalesce(
                "problem", self.resolver.problem(site.course_roles, site.installed_plugins, site.enabled_plugins)
            )
        )
        courses = sorted(req["courseid"].drop_nulls().unique().to_list())
        enabling = self.options.enable_on_disabled
        instances = (
            await self.known_instances.of(self.gateway, conn, courses, enable_on_disabled=enabling)
            if keep
            else await first_instances(self.gateway, conn, courses, enable_on_disabled=enabling)
        )
        req = choose_instances(req, instances)
        # CourseEnrolments reuses them until one of its writes enables an instance (_add).
        self.instances = instances
        return req.with_columns(pl.coalesce("problem", instance_problem(self.options.enable_on_disabled)))

    async def _plan_adds(
        self, conn: AsyncConnection, req: pl.DataFrame, now: int, dry_run: bool, previous: PreviousWrite
    ) -> BatchPlan:
        """Reads and decisions of a batch of adds (_adds_only); its write does the writes, log events and dirty flags
        and queues the welcome messages. The plan names the pairs, groups and instances it read and those its write
        changes (PlannedEnrolments, GroupPlan); the groups the write in flight creates it takes as created (a file
        that creates groups names them again in the next batches)."""
        if self.groups.protect:  # (protect_groups runs its batches in turn: prepare())
            self.groups.begin_batch()
        req = await self._resolved(conn, req, keep=not dry_run)
        failed = req.filter(pl.col("problem").is_not_null())
        valid = req.filter(pl.col("problem").is_null())
        enrolling = await self.enrolments.plan(
            conn, self._requests(valid), now=now, dry_run=dry_run, instances=self.instances
        )
        await asyncio.sleep(0)  # the write in flight takes its answers before the groups are planned (overlap.py)
        own = self._added(valid, enrolling.outcomes)
        grouped = valid.filter(pl.col("gcmd") != "").join(
            own.filter(pl.col("outcome") != Outcome.FAILED.value).select(ROW, "enrolled_after"), on=ROW
        )
        grouping = (
            await self.groups.plan(conn, grouped, dry_run=dry_run, cache=True, in_flight=previous.writes)
            if grouped.height
            else None
        )
        effects = EnrolmentEffects()
        effects.update(enrolling.effects)
        if grouping is not None:
            effects.update(grouping.effects)
        if dry_run:
            self.enrolments.queue_welcome(enrolling)
        checked = _own(outcome_rows(failed, Outcome.FAILED, "check", _key(), pl.col("problem")), failed)
        outcomes = pl.concat(
            [checked.select(list(OUTCOME_SCHEMA)), own.select(list(OUTCOME_SCHEMA))], how="vertical_relaxed"
        )
        if grouping is not None:
            outcomes = pl.concat([outcomes, grouping.outcomes], how="vertical_relaxed")
        outcomes = outcomes.sort("line", "part", nulls_last=False, maintain_order=True)

        async def write(conn: AsyncConnection) -> None:
            events = self.event_log.ahead(conn, now)
            if effects.enabled_contexts:  # an instance enabled: the run's plans read them again, once it commits
                self.known_instances.forget()
                self.enabled_instances = True
            await self.enrolments.write(conn, enrolling, now=now, events=events)
            if grouping is not None:
                await self.groups.write(conn, grouping, now=now, events=events)
            await self._mark_users_dirty(conn, effects, now)
            await mark_contexts_dirty(self.gateway, conn, effects.enabled_contexts, now, self.site.session_timeout)
            # Journalled while the log rows go in (never recorded, as the dirty flags): after the flags, whose writing
            # is the loop's own work, so that the journal's thread takes the GIL while the server writes the log rows.
            await nothing_more_recorded(conn)
            self.effects.update(effects)
            await self.event_log.record(conn, events or [], now)

        reads = EVERYTHING | enrolling.reads | (grouping.reads if grouping is not None else frozenset())
        writes = enrolling.writes | (grouping.writes if grouping is not None else frozenset())
        assumes = grouping.assumes if grouping is not None else frozenset()
        return BatchPlan(outcomes, write, reads, writes, assumes)

    async def _apply_batch(self, conn: AsyncConnection, rows: pl.DataFrame, *, dry_run: bool) -> pl.DataFrame:
        """A batch generation by generation (a generation holds each user and course once), each planned then
        written; a dry run writes a generation in the batch's transaction (rolled back) before planning the next."""
        now = int(time.time())
        self.groups.begin_batch()
        self.events = None if dry_run else collecting(self.event_log)
        req = normalised(rows, default_cmd=self.options.default_cmd, timezone=self.timezone)
        req = await self._resolved(conn, req)
        failed = req.filter(pl.col("problem").is_not_null())
        outcomes = [_own(outcome_rows(failed, Outcome.FAILED, "check", _key(), pl.col("problem")), failed)]
        details: list[pl.DataFrame] = []
        effects = EnrolmentEffects()
        valid = req.filter(pl.col("problem").is_null())
        generations = sorted(valid[GEN].unique().to_list())
        for generation in generations:
            batch = valid.filter(pl.col(GEN) == generation)
            # The first generation reads before any write of the transaction: the groups it finds are committed.
            first = generation == generations[0]
            own, steps = await self._generation(conn, batch, now, dry_run, effects, cache=first)
            outcomes.append(own)
            details += steps
            if dry_run and generation != generations[-1]:
                await self._write_for_later(conn, batch, now)
        if not dry_run:  # (a dry run's groups are forgotten by the next batch's begin_batch())
            await self._mark_users_dirty(conn, effects, now)
            await mark_contexts_dirty(self.gateway, conn, effects.enabled_contexts, now, self.site.session_timeout)
            self.effects.update(effects)
            await self.event_log.record(conn, self.events or [], now)
        result = pl.concat([o.select(list(OUTCOME_SCHEMA)) for o in outcomes], how="vertical_relaxed")
        return pl.concat([result, *details], how="vertical_relaxed").sort(
            "line", "part", nulls_last=False, maintain_order=True
        )

    async def _generation(
        self,
        conn: AsyncConnection,
        batch: pl.DataFrame,
        now: int,
        dry_run: bool,
        effects: EnrolmentEffects,
        *,
        cache: bool = False,
    ) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        """One generation's own outcomes (_commands()) and its group steps' detail outcomes."""
        own = await self._commands(conn, batch, now, dry_run, effects)
        grouped = batch.filter(pl.col("gcmd") != "").join(
            own.filter(pl.col("outcome") != Outcome.FAILED.value).select(ROW, "enrolled_after"), on=ROW
        )
        if not grouped.height:
            return own, []
        steps, group_effects = await self.groups.apply(
            conn, grouped, now=now, dry_run=dry_run, events=self.events, cache=cache
        )
        effects.update(group_effects)
        return own, [steps]

    async def _write_for_later(self, conn: AsyncConnection, batch: pl.DataFrame, now: int) -> None:
        """A dry run: the generation's writes, in the batch's transaction that the pipeline rolls back, so that the
        next generation plans on what this one leaves, as in the real run. Its welcome messages were counted by the
        dry pass; no log events (self.events is None), no effects kept."""
        welcome, self.enrolments.welcome = self.enrolments.welcome, None
        try:
            await self._generation(conn, batch, now, False, EnrolmentEffects())
        finally:
            self.enrolments.welcome = welcome

    async def _commands(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, dry_run: bool, effects: EnrolmentEffects
    ) -> pl.DataFrame:
        """The rows' own outcomes (with ROW, LINE and enrolled_after) for one generation."""
        command, role_mode = pl.col("command"), pl.col(ROLE_MODE)
        parts = [
            await self._add(conn, rows.filter(~role_mode & (command == "add")), now, dry_run, effects),
            await self._shift(conn, rows.filter(~role_mode & (command == "shift")), now, dry_run, effects),
            await self._unenrol(conn, rows.filter(~role_mode & (command == "del")), now, dry_run, effects),
            await self._status(conn, rows.filter(command.is_in(["enable", "disable"])), now, dry_run, effects),
            await self._roles(
                conn, rows.filter(role_mode & command.is_in(["add", "del", "shift"])), now, dry_run, effects
            ),
        ]
        return (
            pl.concat([p for p in parts if p.height], how="vertical_relaxed")
            if any(p.height for p in parts)
            else parts[0]
        )

    def _requests(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.select(
            LINE,
            pl.lit(None, dtype=pl.String).alias("part"),
            "userid",
            pl.col("cid").alias("course"),
            pl.col("rolename").alias("role"),
            pl.col("plugin").alias("enrol"),
            pl.col("starttime").alias("start"),
            pl.col("endtime").alias("end"),
        )

    async def _add(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, dry_run: bool, effects: EnrolmentEffects
    ) -> pl.DataFrame:
        """enrol_user() through CourseEnrolments (the users file's course columns do the same)."""
        if rows.is_empty():
            return _empty()
        done, batch_effects = await self.enrolments.apply(
            conn, self._requests(rows), now=now, dry_run=dry_run, instances=self.instances, events=self.events
        )
        if batch_effects.enabled_contexts and not dry_run:
            self.instances = None  # stale: CourseEnrolments reads them again
            self.known_instances.forget()
        effects.update(batch_effects)
        return self._added(rows, done)

    @staticmethod
    def _added(rows: pl.DataFrame, done: pl.DataFrame) -> pl.DataFrame:
        """The add rows' own outcomes from CourseEnrolments' (one per row, in the rows' order)."""
        done = done.with_columns(rows[ROW], rows[LINE], _key_values(rows))
        return done.with_columns(
            (pl.col("outcome") != Outcome.FAILED.value).alias("enrolled_after"),
            pl.when(pl.col("outcome") == Outcome.FAILED.value)
            .then(pl.lit("check"))
            .when(pl.col("outcome") == Outcome.UNCHANGED.value)
            .then(pl.lit("none"))
            .otherwise(pl.lit("enrol"))
            .alias("action"),
        ).select(_COLUMNS)

    async def _shift(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, dry_run: bool, effects: EnrolmentEffects
    ) -> pl.DataFrame:
        """unenrol_user() then enrol_user() with the new role; unchanged when the user is already enrolled, active,
        through that instance with exactly that role (component '') and the dates the row gives."""
        if rows.is_empty():
            return _empty()
        rows = await stored_enrolments(self.gateway, conn, rows)
        roles = await plan_roles(self.gateway, conn, rows.with_columns(pl.lit("shift").alias("command")))
        same = (
            pl.col("ue_id").is_not_null()
            & (pl.col("ue_status") == 0)
            & pl.col("roleid").is_not_null()
            & (pl.col("role_action") == "none")
            & (pl.col("start_given").is_null() | (pl.col("start_given") == pl.col("ue_start")))
            & (pl.col("end_given").is_null() | (pl.col("end_given") == pl.col("ue_end")))
        )
        bad_end = (pl.col("end_given") > 0) & (pl.col("end_given") < pl.coalesce("start_given", pl.lit(now)))
        roles = roles.with_columns(same.fill_null(False).alias("same"), bad_end.fill_null(False).alias("bad_end"))
        unchanged = roles.filter(pl.col("same"))
        failing = roles.filter(~pl.col("same") & pl.col("bad_end"))
        moving = roles.filter(~pl.col("same") & ~pl.col("bad_end"))
        frames = [
            _own(
                outcome_rows(
                    unchanged,
                    Outcome.UNCHANGED,
                    "none",
                    _key(),
                    pl.format(
                        "already enrolled in course '{}' ({}) as {}", shown(pl.col("cid")), "plugin", "role_shortname"
                    ),
                ),
                unchanged,
                enrolled=True,
            ),
            _own(
                outcome_rows(
                    failing,
                    Outcome.FAILED,
                    "check",
                    _key(),
                    pl.format("endtime '{}' is before the start of the enrolment", pl.col("endtime")),
                ),
                failing,
            ),
        ]
        if dry_run:
            # Planned (not written) as enrol_user() after the unenrolment sees it: their welcome messages counted.
            await self.enrolments.apply(
                conn, self._requests(moving), now=now, dry_run=True, instances=self.instances, replacing=True
            )
            frames.append(
                _own(
                    outcome_rows(
                        moving,
                        Outcome.UPDATED,
                        "shift",
                        _key(),
                        pl.format(
                            "would be unenrolled from course '{}' ({}) and enrolled again as {}",
                            shown(pl.col("cid")),
                            "plugin",
                            pl.coalesce("role_shortname", pl.lit("the default role")),
                        ),
                    ),
                    moving,
                    enrolled=True,
                )
            )
            return pl.concat(frames)
        await self._unenrol_rows(conn, moving.filter(pl.col("ue_id").is_not_null()), now, effects)
        again = await self._add(conn, moving, now, dry_run, effects)
        again = again.with_columns(
            pl.when(pl.col("outcome") == Outcome.FAILED.value)
            .then(pl.col("outcome"))
            .otherwise(pl.lit(Outcome.UPDATED.value))
            .alias("outcome"),
            pl.when(pl.col("outcome") == Outcome.FAILED.value)
            .then(pl.col("action"))
            .otherwise(pl.lit("shift"))
            .alias("action"),
            pl.when(pl.col("outcome") == Outcome.FAILED.value)
            .then(pl.col("message"))
            .otherwise(pl.concat_str(pl.lit("shifted: unenrolled, then "), pl.col("message")))
            .alias("message"),
        )
        frames.append(again)
        return pl.concat(frames, how="vertical_relaxed")

    async def _unenrol_rows(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, effects: EnrolmentEffects
    ) -> None:
        if rows.is_empty():
            return
        last = await unenrol(self.gateway, conn, rows, now, events=self.events)
        effects.dirty_users |= set(rows["userid"].to_list())
        # Contact roles may have gone with the enrolment: the course listings' teachers.
        effects.contact_courses |= set(rows["courseid"].to_list())
        left = last.filter("groups_left")
        effects.group_courses |= set(left["courseid"].to_list())
        effects.group_users |= set(left["userid"].to_list())

    async def _unenrol(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, dry_run: bool, effects: EnrolmentEffects
    ) -> pl.DataFrame:
        """unenrol_user() of the instance; a user not enrolled through it is unchanged."""
        if rows.is_empty():
            return _empty()
        rows = await stored_enrolments(self.gateway, conn, rows)
        enrolled = pl.col("ue_id").is_not_null()
        if not dry_run:
            await self._unenrol_rows(conn, rows.filter(enrolled), now, effects)
        would = "would be " if dry_run else ""
        rules = [
            Rule(
                enrolled,
                Outcome.DELETED,
                "unenrol",
                pl.format(
                    f"User '{{}}' {would}unenrolled from course '{{}}' ({{}})", "username", "shortname", "plugin"
                ),
            ),
            Rule(
                pl.lit(True),
                Outcome.UNCHANGED,
                "none",
                pl.format(
                    "not enrolled in course '{}' through its {} instance; nothing to unenrol", "shortname", "plugin"
                ),
            ),
        ]
        return _own(first_match(rows, rules, _key())[0], rows)

    async def _status(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, dry_run: bool, effects: EnrolmentEffects
    ) -> pl.DataFrame:
        """update_user_enrol(): with enrol, the enrolment through the chosen instance; in role mode, every enrolment
        of the user in the course."""
        if rows.is_empty():
            return _empty()
        with_enrol = await stored_enrolments(self.gateway, conn, rows.filter(~pl.col(ROLE_MODE)))
        role_mode = rows.filter(pl.col(ROLE_MODE))
        found = pl.concat(
            [with_enrol.filter(pl.col("ue_id").is_not_null()), await course_enrolments(self.gateway, conn, role_mode)],
            how="diagonal_relaxed",
        )
        none = rows.join(found.select(ROW).unique(), on=ROW, how="anti")
        planned = plan_status(found) if found.height else found
        if not dry_run and planned.height:
            await write_status(self.gateway, conn, planned, now=now, actor_id=self.site.actor_id, events=self.events)
            effects.dirty_users |= set(planned.filter(pl.col("changes") != "")["userid"].to_list())
        would = "would be " if dry_run else ""
        per_row = (
            planned.group_by(ROW, maintain_order=True)
            .agg(
                pl.col("changes").filter(pl.col("changes") != "").alias("changed"),
                pl.col("plugin").filter(pl.col("changes") != "").alias("changed_plugins"),
                pl.col("plugin").alias("plugins"),
            )
            .join(rows, on=ROW)
            if planned.height
            else rows.clear().with_columns(
                pl.lit([], dtype=pl.List(pl.String)).alias(c) for c in ("changed", "changed_plugins", "plugins")
            )
        )
        changed = per_row.filter(pl.col("changed").list.len() > 0)
        same = per_row.filter(pl.col("changed").list.len() == 0)
        word = pl.when(pl.col("command") == "enable").then(pl.lit("active")).otherwise(pl.lit("suspended"))
        how = pl.when(pl.col(ROLE_MODE)).then(pl.lit("any enrolment")).otherwise(pl.format("its {} instance", "plugin"))
        return pl.concat(
            [
                _own(
                    outcome_rows(
                        changed,
                        Outcome.UPDATED,
                        pl.col("command"),
                        _key(),
                        pl.format(
                            f"enrolment of '{{}}' in course '{{}}' {would}updated: {{}} ({{}})",
                            "username",
                            "shortname",
                            pl.col("changed").list.join("; "),
                            pl.col("changed_plugins").list.join(", "),
                        ),
                    ),
                    changed,
                ),
                _own(
                    outcome_rows(
                        same,
                        Outcome.UNCHANGED,
                        "none",
                        _key(),
                        pl.format(
                            "enrolment in course '{}' already {} ({})",
                            "shortname",
                            word,
                            pl.col("plugins").list.join(", "),
                        ),
                    ),
                    same,
                ),
                _own(
                    outcome_rows(
                        none,
                        Outcome.FAILED,
                        "check",
                        _key(),
                        pl.format(
                            "user '{}' is not enrolled in course '{}' through {}: nothing to {} (add enrols)",
                            "username",
                            "shortname",
                            how,
                            "command",
                        ),
                    ),
                    none,
                ),
            ]
        )

    async def _roles(
        self, conn: AsyncConnection, rows: pl.DataFrame, now: int, dry_run: bool, effects: EnrolmentEffects
    ) -> pl.DataFrame:
        """Role mode add/del/shift: role_assign()/role_unassign() in the course context, component '', itemid 0."""
        if rows.is_empty():
            return _empty()
        planned = await plan_roles(self.gateway, conn, rows)
        action = pl.col("role_action")
        changed = planned.filter(action != "none")
        if not dry_run and changed.height:
            await write_roles(self.gateway, conn, changed, now=now, actor_id=self.site.actor_id, events=self.events)
            effects.dirty_users |= set(changed["userid"].to_list())
            contacts = sorted(self.enrolments.site.contact_roles)
            touches_contact = (
                pl.col("roleid").is_in(contacts)
                | pl.col("other_roles").list.eval(pl.element().is_in(contacts)).list.any()
            )
            effects.contact_courses |= set(changed.filter(touches_contact)["courseid"].to_list())
        would = "would be " if dry_run else ""
        role, course = pl.col("role_shortname"), pl.col("shortname")
        others = pl.col("other_roles").list.len()
        rules = [
            Rule(
                action == "assign",
                Outcome.CREATED,
                "assign",
                pl.format(f"Role '{{}}' {would}added for '{{}}' in course '{{}}'", role, "username", course),
            ),
            Rule(
                action == "unassign",
                Outcome.DELETED,
                "unassign",
                pl.format(f"Role '{{}}' {would}removed from '{{}}' in course '{{}}'", role, "username", course),
            ),
            Rule(
                action == "shift",
                Outcome.UPDATED,
                "shift",
                pl.format(
                    f"roles of '{{}}' in course '{{}}' {would}shifted to '{{}}' ({{}} other role(s) removed)",
                    "username",
                    course,
                    role,
                    others,
                ),
            ),
            Rule(
                (action == "none") & (pl.col("command") == "del"),
                Outcome.UNCHANGED,
                "none",
                pl.format("'{}' has no role '{}' in course '{}'; nothing to remove", "username", role, course),
            ),
            Rule(
                pl.lit(True),  # role_action "none": add or shift of a role held already
                Outcome.UNCHANGED,
                "none",
                pl.format("'{}' already has the role '{}' in course '{}'", "username", role, course),
            ),
        ]
        return _own(first_match(planned, rules, _key())[0], planned)


_COLUMNS = [ROW, LINE, "line", "part", "outcome", "action", "key", "message", "enrolled_after"]


class KnownInstances:
    """first_instances() of the courses the run's plans of adds have read, for its later plans (as its users, courses
    and groups): forgotten when a write enables an instance, and a read begun before that is not kept."""

    def __init__(self) -> None:
        self.found = pl.DataFrame(schema=INSTANCE_SCHEMA)
        self.courses: set[int] = set()
        self.generation = 0  # forget()s so far

    def forget(self) -> None:
        self.found, self.courses, self.generation = self.found.clear(), set(), self.generation + 1

    async def of(
        self, gateway: MoodleGateway, conn: AsyncConnection, courses: Sequence[int], *, enable_on_disabled: bool
    ) -> pl.DataFrame:
        missing = [c for c in courses if c not in self.courses]
        generation = self.generation
        if not missing:
            return self.found.filter(pl.col("courseid").is_in(courses))
        read = await first_instances(gateway, conn, missing, enable_on_disabled=enable_on_disabled)
        if generation != self.generation:  # forgotten meanwhile: this read is the plan's alone, all of it
            return await first_instances(gateway, conn, courses, enable_on_disabled=enable_on_disabled)
        self.found = pl.concat([self.found, read])
        self.courses.update(missing)
        return self.found.filter(pl.col("courseid").is_in(courses))


def _own(outcomes: pl.DataFrame, rows: pl.DataFrame, *, enrolled: bool | None = None) -> pl.DataFrame:
    """A command's own outcomes with ROW, LINE and enrolled_after (what the group steps may assume; null: ask)."""
    return outcomes.with_columns(
        rows[ROW] if ROW in rows.columns else pl.lit(None, dtype=pl.Int64).alias(ROW),
        rows[LINE],
        pl.lit(enrolled, dtype=pl.Boolean).alias("enrolled_after"),
    ).select(_COLUMNS)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            ROW: pl.Int64,
            LINE: pl.Int64,
            "line": pl.Int64,
            "part": pl.String,
            "outcome": pl.String,
            "action": pl.String,
            "key": pl.String,
            "message": pl.String,
            "enrolled_after": pl.Boolean,
        }
    )


def _key() -> pl.Expr:
    """A row's key in the report: its user and course as the file names them."""
    return pl.format("{} {}", pl.col("uid"), pl.col("cid"))


def _key_values(rows: pl.DataFrame) -> pl.Series:
    return rows.select(_key().alias("key"))["key"]


# The key of what a batch applied generation by generation reads and writes: the whole site, as far as overlapping
# goes (run/overlap.py): the batch after it is planned again once its write has ended, and every plan reads it.
EVERYTHING: frozenset[Hashable] = frozenset([("everything",)])


def _adds_only(req: pl.DataFrame) -> bool:
    """normalised() rows that _plan_adds() plans whole: adds through an enrol method, with no group command, gadd or
    gaddcreate, each user and course named once (GEN 0)."""
    simple = (
        ~pl.col(ROLE_MODE)
        & (pl.col("command") == "add")
        & (pl.col(GEN) == 0)
        & pl.col("group_command").is_in(["", "gadd", "gaddcreate"])
    )
    return bool(req.select(simple.all()).item())


async def _nothing(conn: AsyncConnection) -> None:
    return None
