"""Course enrolment requests: a user into a course with a role, and optionally into a group of that course.

Shared by the users file's `courseN/roleN/groupN/enrolN/startN/endN` columns and the enrolments file. Rows are
written as Moodle 4.5's own APIs write them (moodle-db-semantics §6.1, §6.2, §7):

* the enrolment goes to the first *enabled* instance (status 0, by sortorder) of the requested plugin in the course;
  only `manual` and `self` take direct enrolments (cohort, meta, guest, payment ... are fed by their own code);
* `user_enrolments` as enrol_user() writes it: status 0, timestart, timeend (0 = no end), modifierid = the actor,
  timecreated = timemodified = now. An existing row changes only when status, timestart or timeend differ, as
  update_user_enrol() writes it (modifierid and timemodified too);
* `role_assignments` in the course context, component '' and itemid 0 (manual and self do not protect their roles),
  sortorder 0, de-duplicated on (roleid, contextid, userid, component, itemid) as role_assign() does;
* a group is found by name in the course, case-insensitively as MariaDB's collation compares (the lowest id when
  several match), and created as groups_create_group() writes it when missing. groups_add_member() writes
  `groups_members` (component '', itemid 0, timeadded now) and touches `groups.timemodified`. Moodle refuses members
  who are not enrolled; here a membership only follows the successful enrolment of the same request, so the user is.

Decisions (the contract wins over the original's quirks; where both are silent, what an administrator expects):

* enrol empty = `manual` (the original's users file role-assigned without enrolling; CONTRACT §3).
* role empty = the instance's default role (`enrol.roleid`, the "Default role" setting of the instance), which is
  what core's own user upload (tool_uploaduser) does; `student` (tool_sync's choice) when the instance has none.
* a role must be assignable in a course context (`role_context_levels`), as Moodle's enrolment screens require.
* start/end: `YYYY-MM-DD hh:mm:ss`, `YYYY-MM-DD hh:mm`, `YYYY-MM-DD` (local time of the site's timezone) or a unix
  timestamp, up to ENROL_MAX_TIMESTAMP. For a new enrolment an empty start is now and an empty end is 0 (no end).
  For an *existing* enrolment an empty start or end leaves the stored value alone: the original wrote start = now on
  every run, so no re-run could ever be `unchanged`. An end of 0 clears a stored end.
* an end before the start (the request's own, else the stored one, else now) fails the request.
* an existing suspended enrolment is reactivated: tool_sync passes ENROL_USER_ACTIVE to enrol_user().
* a course identifier matching several courses (a repeated idnumber) fails rather than picking one.

Within a batch, requests apply in order: a second request for the same user and course sees the first one's result
(so it may be `updated` or `unchanged`), and a group named twice is created once. Everything is read and written in
bulk: a handful of statements per batch, whatever its size.

Given a list of `events` (course_events.collecting()), apply() adds the standard-log events of what it wrote, as
those APIs log them (course_events.py): group_created, enrol_instance_updated (an instance enabled),
user_enrolment_created / _updated, role_assigned, group_member_added; the caller records them with its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import course_events
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.contexts import ContextLevel, course_contexts
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway, WrittenInsert
from toolsync_tui.engine.moodle.groups import add_members, create_groups, find_groups, stored_members
from toolsync_tui.engine.moodle.lookup import KeyLookup
from toolsync_tui.engine.moodle.pairs import fetch_tuples
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.moodle.welcome_messages import WelcomeQueue
from toolsync_tui.engine.rows import LINE, Outcome, Rule, first_match, outcome_rows, shown

ENROL_MAX_TIMESTAMP = 2147483647
DIRECT_PLUGINS = ("manual", "self")
DEFAULT_PLUGIN = "manual"
FALLBACK_ROLE = "student"
GROUP_NAME_MAX = 254  # groups.name
ACTIVE = 0  # user enrolment status ENROL_USER_ACTIVE; also ENROL_INSTANCE_ENABLED
COURSE_IDENTITIES = ("id", "idnumber", "shortname")
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
DATE_EXPECTED = "a date YYYY-MM-DD, YYYY-MM-DD hh:mm:ss or a unix timestamp (up to 2038-01-19)"
ACTION = "enrol"

REQ = "__req"  # position of a request in the batch: the order requests apply in
TEXT_COLUMNS = ("course", "role", "group", "enrol", "start", "end")
REQUEST_COLUMNS: dict[str, type[pl.DataType]] = {
    LINE: pl.Int64,
    "part": pl.String,
    "userid": pl.Int64,
    **dict.fromkeys(TEXT_COLUMNS, pl.String),
}
UE_KEY = ["enrolid", "userid"]
RA_KEY = ["roleid", "contextid", "userid"]
RA_INDEX = ["userid", "contextid", "roleid"]  # role_assignments' compound index
GROUP_KEY = ["courseid", "groupkey"]
MEMBER_KEY = ["courseid", "groupkey", "userid"]


@dataclass(frozen=True)
class EnrolmentSite:
    """What prepare() reads once per run."""

    roles: pl.DataFrame  # rolekey (the shortname as `match` compares it), roleid, rolename, in_course
    course_roles: str  # the roles assignable in a course, listed for messages
    contact_roles: frozenset[int]
    enabled_plugins: frozenset[str]
    installed_plugins: frozenset[str]
    match: TextMatch = field(default_factory=lambda: TextMatch("mariadb"))  # role shortnames as the site compares


@dataclass(frozen=True)
class InsertsAhead:
    """A plan's new user enrolments and role assignments, the rows of their INSERTs and (MariaDB) the statements,
    written while the plan is made: the write only sends them."""

    enrolments: ColumnRows
    roles: ColumnRows
    enrolments_written: WrittenInsert | None
    roles_written: WrittenInsert | None


@dataclass(frozen=True)
class PlannedEnrolments:
    """A batch of requests planned, not written (CourseEnrolments.plan()); write() writes it."""

    outcomes: pl.DataFrame  # one detail outcome per request, in request order
    plan: pl.DataFrame  # the valid requests with their decisions, in request order
    effects: EnrolmentEffects  # what write() makes stale
    # ("pair", courseid, userid), ("instance", courseid, plugin), ("group", courseid, the name's key) of the
    # requests: the stored state the plan relied on (run/overlap.py)
    reads: frozenset[Hashable]
    ahead: InsertsAhead | None = None  # what write() inserts that needs nothing of it (None: a dry run's plan)

    @property
    def writes(self) -> frozenset[Hashable]:
        """The keys of reads that write() changes: the pairs it enrols, assigns or adds to a group, the groups it
        creates, the instances it enables."""
        plan = self.plan
        if plan.is_empty():
            return frozenset()
        changing = (pl.col("ue_action") != Outcome.UNCHANGED.value) | pl.col("role_new") | pl.col("member_new")
        pairs = plan.filter(changing).select("courseid", "userid").unique()
        groups = plan.filter(pl.col("group_create")).select("courseid", "groupkey").unique()
        enabled = _enabling(plan).select("courseid", "plugin").unique()
        return frozenset(
            [
                *(("pair", c, u) for c, u in pairs.iter_rows()),
                *(("group", c, g) for c, g in groups.iter_rows()),
                *(("instance", c, p) for c, p in enabled.iter_rows()),
            ]
        )


class CourseEnrolments:
    """Applies batches of enrolment requests; see the module docstring for the semantics.

    `requests` (one row per file line and N with a non-empty course value):
    `__line` Int64, `part` String ("course1" ...), `userid` Int64 (the user's id; null fails the request),
    `course`, `role`, `group`, `enrol`, `start`, `end` Strings ("" or null when absent; a missing text column
    counts as empty). Values are trimmed.
    """

    def __init__(
        self,
        gateway: MoodleGateway,
        *,
        course_identity: str,
        site_timezone: str,
        actor_id: int,
        enable_on_disabled: bool = False,
        remember_courses: bool = False,
        welcome: WelcomeQueue | None = None,
    ) -> None:
        if course_identity not in COURSE_IDENTITIES:
            raise ValueError(f"course_identity must be one of {', '.join(COURSE_IDENTITIES)}, not {course_identity!r}")
        self.gateway = gateway
        self.schema = gateway.schema
        self.group_match = TextMatch(gateway.kind)  # group names compare as the site's `name = ?` (text_match.py)
        self.course_identity = course_identity
        self.timezone = site_timezone
        self.actor_id = actor_id
        # With no enabled instance of the plugin in the course, enrol through its first disabled one and enable it
        # (the enrolments file's enable_on_disabled setting).
        self.enable_on_disabled = enable_on_disabled
        # The enrolments made or changed, for their welcome messages once the batch has committed (welcome_messages.py).
        self.welcome = welcome

        # remember_courses: each course identifier and course context is read once per run, for a caller that
        # creates, deletes and renames no course (the enrolments file).
        self.courses: KeyLookup = KeyLookup(
            gateway, gateway.schema.course, course_identity, columns=["id", "category"], remember=remember_courses
        )
        self._contexts: pl.DataFrame | None = (
            pl.DataFrame(schema={"contextid": pl.Int64, "courseid": pl.Int64}) if remember_courses else None
        )
        self._site: EnrolmentSite | None = None

    @property
    def site(self) -> EnrolmentSite:
        if self._site is None:
            raise RuntimeError("CourseEnrolments.prepare() must run before apply()")
        return self._site

    async def prepare(self, conn: AsyncConnection) -> None:
        """Read the roles, the course-contact roles and the enrolment plugins, once per run."""
        self._site = await read_enrolment_site(self.gateway, conn)

    # -- one batch --------------------------------------------------------------------------------

    async def apply(
        self,
        conn: AsyncConnection,
        requests: pl.DataFrame,
        *,
        now: int,
        dry_run: bool,
        instances: pl.DataFrame | None = None,
        events: list[Event] | None = None,
        replacing: bool = False,
    ) -> tuple[pl.DataFrame, EnrolmentEffects]:
        """Resolve, plan and (unless dry_run) write one batch; one detail outcome per request, in request order.
        `instances`: first_instances() of (at least) the requests' courses, when the caller has already read them
        and nothing has changed them since. `events`: gets the log events of the writes (module docstring).
        `replacing` (a dry run only): plan the requests as if their stored enrolments and the users' roles in the
        course were gone, as a shift's unenrol_user() leaves them before its enrol_user(), which the dry run does
        not write. plan() then write(), for a caller that writes later (overlapped writes)."""
        if replacing and not dry_run:
            raise ValueError("replacing plans a dry run only: a run writes the unenrolment first")
        planned = await self.plan(conn, requests, now=now, dry_run=dry_run, instances=instances, replacing=replacing)
        if dry_run:
            self.queue_welcome(planned)
        else:
            await self.write(conn, planned, now=now, events=events)
        return planned.outcomes, planned.effects

    async def plan(
        self,
        conn: AsyncConnection,
        requests: pl.DataFrame,
        *,
        now: int,
        dry_run: bool = False,
        instances: pl.DataFrame | None = None,
        replacing: bool = False,
    ) -> PlannedEnrolments:
        """The reads and decisions of apply(), nothing written: the outcomes (worded for a dry run or not) are those
        of write() on the same connection's transaction, as long as nothing else has changed the requests' pairs,
        groups and instances since (PlannedEnrolments.reads)."""
        req = _normalised(requests)
        if req.is_empty():
            empty = outcome_rows(req, Outcome.FAILED, ACTION, "", "", part=pl.col("part"))
            return PlannedEnrolments(empty, req, EnrolmentEffects(), frozenset())
        req = _parse_values(req, self.site, self.timezone)
        req = await self._resolve_courses(conn, req)
        req = await self._resolve_instances(conn, req, instances)
        req = await self._join_enrolments(conn, req, now, replacing)
        req = req.with_columns(_problem(self.site, self.course_identity, self.timezone, self.enable_on_disabled))
        failed = req.filter(pl.col("problem").is_not_null())
        plan = await self._plan(conn, req.filter(pl.col("problem").is_null()), now, replacing)
        outcomes = pl.concat([_failed_outcomes(failed), _success_outcomes(plan, dry_run)])
        reads = _read_keys(req, self.group_match)
        await asyncio.sleep(0)  # the write in flight takes its answers before the INSERTs are written
        ahead = None if dry_run else await self._inserts_ahead(conn, plan, now)
        return PlannedEnrolments(outcomes.sort(REQ).drop(REQ), plan, self._effects(plan), reads, ahead)

    async def _inserts_ahead(self, conn: AsyncConnection, plan: pl.DataFrame, now: int) -> InsertsAhead:
        enrolments = _net_enrolments(plan)[0].select(
            pl.lit(ACTIVE).alias("status"),
            "enrolid",
            "userid",
            pl.col("eff_start").alias("timestart"),
            pl.col("eff_end").alias("timeend"),
            pl.lit(self.actor_id).alias("modifierid"),
            pl.lit(now).alias("timecreated"),
            pl.lit(now).alias("timemodified"),
        )
        roles = plan.filter(pl.col("role_new")).select(
            "roleid",
            "contextid",
            "userid",
            pl.lit(now).alias("timemodified"),
            pl.lit(self.actor_id).alias("modifierid"),
            pl.lit("").alias("component"),
            pl.lit(0).alias("itemid"),
            pl.lit(0).alias("sortorder"),
        )
        written = self.gateway.written_insert
        ue, ra = ColumnRows.of_frame(enrolments), ColumnRows.of_frame(roles)
        return InsertsAhead(
            ue,
            ra,
            await written(conn, self.schema.user_enrolments, ue) if ue else None,
            await written(conn, self.schema.role_assignments, ra) if ra else None,
        )

    def queue_welcome(self, planned: PlannedEnrolments) -> None:
        """The planned requests' welcome messages, queued (write() does it; a dry run counts them)."""
        if self.welcome is not None and planned.plan.height:
            self.welcome.add(*_welcomed(planned.plan, self.site.contact_roles))

    async def write(
        self, conn: AsyncConnection, planned: PlannedEnrolments, *, now: int, events: list[Event] | None = None
    ) -> None:
        """What plan() decided, written in bulk on `conn`; its welcome messages queued (they follow the commit)."""
        if planned.plan.height:
            ahead = planned.ahead or await self._inserts_ahead(conn, planned.plan, now)
            await self._write(conn, planned.plan, now, events, ahead)
        self.queue_welcome(planned)

    async def _resolve_courses(self, conn: AsyncConnection, req: pl.DataFrame) -> pl.DataFrame:
        """courseid, course_category, matches, course_problem; then contextid of the course context."""
        found = await self.courses.resolve(conn, req["course"])
        found = found.select(
            "course",
            pl.col("problem").alias("course_problem"),
            pl.col("id").cast(pl.Int64).alias("courseid"),
            pl.col("category").cast(pl.Int64).alias("course_category"),
            pl.col("matches").cast(pl.Int64),
        )
        req = req.join(found, on="course", how="left", maintain_order="left")
        ids = req["courseid"].drop_nulls().unique()
        if self._contexts is not None:
            ids = ids.filter(~ids.is_in(self._contexts["courseid"].implode()))
        contexts = (await course_contexts(self.gateway, conn, ids.to_list())).select("contextid", "courseid")
        if self._contexts is not None:
            contexts = self._contexts = pl.concat([self._contexts, contexts])
        return req.join(contexts, on="courseid", how="left", maintain_order="left")

    async def _resolve_instances(
        self, conn: AsyncConnection, req: pl.DataFrame, instances: pl.DataFrame | None
    ) -> pl.DataFrame:
        """enrolid, instance_roleid and instance_status (first_instances(); read here unless the caller passes them),
        then roleid and rolename: the given role, else the instance's default one."""
        if instances is None:
            instances = await first_instances(
                self.gateway, conn, _distinct(req, "courseid"), enable_on_disabled=self.enable_on_disabled
            )
        req = req.join(instances, on=["courseid", "plugin"], how="left", maintain_order="left")
        # No role given: the instance's default role, else student (module docstring).
        roles = self.site.roles.select("roleid", "rolename")
        default = roles.rename({"roleid": "instance_roleid", "rolename": "default_name"})
        fallback = roles.filter(pl.col("rolename") == FALLBACK_ROLE)
        fallback_id = fallback["roleid"][0] if fallback.height else None
        fallback_name = fallback["rolename"][0] if fallback.height else None
        req = req.join(default, on="instance_roleid", how="left", maintain_order="left")
        use_default = pl.col("role") == ""
        return req.with_columns(
            pl.when(use_default)
            .then(pl.when(pl.col("default_name").is_not_null()).then("instance_roleid").otherwise(pl.lit(fallback_id)))
            .otherwise("given_roleid")
            .cast(pl.Int64)
            .alias("roleid"),
            pl.when(use_default)
            .then(pl.coalesce("default_name", pl.lit(fallback_name, dtype=pl.String)))
            .otherwise("given_rolename")
            .alias("rolename"),
            use_default.alias("default_role"),
        )

    async def _join_enrolments(
        self, conn: AsyncConnection, req: pl.DataFrame, now: int, replacing: bool
    ) -> pl.DataFrame:
        """The stored user_enrolments row of each request (ue_id null when none, or `replacing`), and the start an end
        is checked against: the request's own, else the stored one, else now."""
        ue = self.schema.user_enrolments
        stored = await fetch_tuples(
            self.gateway,
            conn,
            ue,
            UE_KEY,
            req.select(UE_KEY).clear() if replacing else req.select(UE_KEY),
            {
                "id": pl.Int64,
                "enrolid": pl.Int64,
                "userid": pl.Int64,
                "status": pl.Int64,
                "timestart": pl.Int64,
                "timeend": pl.Int64,
            },
        )
        stored = stored.rename({"id": "ue_id", "status": "db_status", "timestart": "db_start", "timeend": "db_end"})
        req = req.join(stored, on=UE_KEY, how="left", maintain_order="left")
        return req.with_columns(pl.coalesce("start_given", "db_start", pl.lit(now)).alias("start_checked"))

    # -- planning -----------------------------------------------------------------------------------

    async def _plan(self, conn: AsyncConnection, valid: pl.DataFrame, now: int, replacing: bool) -> pl.DataFrame:
        """Per valid request: ue_action (created/updated/unchanged) with the resulting times, role_new (every role
        new when `replacing`), and the group columns (groupid, group_create, member_new)."""
        planned = _plan_enrolments(valid.sort(REQ), now)
        planned = await self._plan_roles(conn, planned, replacing)
        return await self._plan_groups(conn, planned)

    async def _plan_roles(self, conn: AsyncConnection, req: pl.DataFrame, replacing: bool) -> pl.DataFrame:
        ra = self.schema.role_assignments
        stored = await fetch_tuples(
            self.gateway,
            conn,
            ra,
            RA_INDEX,
            req.select(RA_INDEX).clear() if replacing else req.select(RA_INDEX),
            {"roleid": pl.Int64, "contextid": pl.Int64, "userid": pl.Int64},
            where=[("component", ""), ("itemid", 0)],
        )
        stored = stored.unique().with_columns(pl.lit(True).alias("role_stored"))
        req = req.join(stored, on=RA_KEY, how="left", maintain_order="left")
        return req.with_columns((pl.col("role_stored").is_null() & _first(RA_KEY)).alias("role_new"))

    async def _plan_groups(self, conn: AsyncConnection, req: pl.DataFrame) -> pl.DataFrame:
        """groupid (null when the group is still to be created), group_create and member_new, through the shared
        group functions (group_membership.py)."""
        req = req.with_columns(self.group_match.given(pl.col("group")).alias("groupkey"))
        grouped = pl.col("group") != ""
        wanted = req.filter(grouped)
        found = await find_groups(self.gateway, conn, wanted.select("courseid", pl.col("group").alias("name")))
        req = req.join(_by_key(found, self.group_match), on=GROUP_KEY, how="left", maintain_order="left")
        req = req.with_columns((grouped & pl.col("groupid").is_null() & _first(GROUP_KEY)).alias("group_create"))
        known = req.filter(pl.col("groupid").is_not_null()).select("groupid", "userid").unique()
        stored = await stored_members(self.gateway, conn, known)
        stored = stored.select("groupid", "userid").unique().with_columns(pl.lit(True).alias("member_stored"))
        # A group still to be created has no id: its members are all new (a null key never joins).
        req = req.join(stored, on=["groupid", "userid"], how="left", maintain_order="left")
        return req.with_columns((grouped & pl.col("member_stored").is_null() & _first(MEMBER_KEY)).alias("member_new"))

    # -- writing ------------------------------------------------------------------------------------

    async def _write(
        self, conn: AsyncConnection, plan: pl.DataFrame, now: int, events: list[Event] | None, ahead: InsertsAhead
    ) -> pl.DataFrame:
        """Write the plan in bulk (its inserts `ahead`); returns it with the ids of the groups it created."""
        plan = await self._create_groups(conn, plan, now, events)
        enabling = _enabling(plan).unique("enrolid", maintain_order=True)
        await self.gateway.update_many(
            conn,
            self.schema.enrol,
            "id",
            [{"id": i, "status": ACTIVE, "timemodified": now} for i in _distinct(enabling, "enrolid")],
        )
        if events is not None:  # update_status()
            events += course_events.instances_updated(enabling.sort("enrolid"))
        await self._write_enrolments(conn, plan, now, events, ahead)
        new_roles = plan.filter(pl.col("role_new"))
        ra_ids = await self.gateway.insert_many(conn, self.schema.role_assignments, ahead.roles, ahead.roles_written)
        if events is not None and new_roles.height:
            if ra_ids is not None:  # the server gave them (MoodleGateway.insert_many): no read-back
                assigned = new_roles.select(*RA_KEY, "courseid", pl.Series("ra_id", ra_ids, dtype=pl.Int64))
            else:
                assigned = await self._assignment_ids(conn, new_roles)
            events += course_events.roles_assigned(assigned)
        await self._write_members(conn, plan, now, events)
        return plan

    async def _assignment_ids(self, conn: AsyncConnection, new_roles: pl.DataFrame) -> pl.DataFrame:
        """new_roles (roleid, contextid, userid, courseid) with ra_id: the assignments just inserted, read back on the
        compound index (one of each key: role_assign() de-duplicates)."""
        ra = self.schema.role_assignments
        stored = await fetch_tuples(
            self.gateway,
            conn,
            ra,
            RA_INDEX,
            new_roles.select(RA_INDEX),
            {"id": pl.Int64, "roleid": pl.Int64, "contextid": pl.Int64, "userid": pl.Int64},
            where=[("component", ""), ("itemid", 0)],
        )
        stored = stored.sort("id").unique(RA_KEY, keep="first").rename({"id": "ra_id"})
        return new_roles.select(*RA_KEY, "courseid").join(stored, on=RA_KEY, maintain_order="left")

    async def _create_groups(
        self, conn: AsyncConnection, plan: pl.DataFrame, now: int, events: list[Event] | None
    ) -> pl.DataFrame:
        """groups_create_group() for the groups the plan creates (none existed under these names); their new ids."""
        created = plan.filter(pl.col("group_create"))
        if created.is_empty():
            return plan
        made = await create_groups(
            self.gateway, conn, created.select("courseid", pl.col("group").alias("name")), now, events=events
        )
        return plan.join(
            _by_key(made, self.group_match).rename({"groupid": "new_groupid"}),
            on=GROUP_KEY,
            how="left",
            maintain_order="left",
        ).select(pl.exclude("new_groupid", "groupid"), pl.coalesce("groupid", "new_groupid").alias("groupid"))

    async def _write_enrolments(
        self, conn: AsyncConnection, plan: pl.DataFrame, now: int, events: list[Event] | None, ahead: InsertsAhead
    ) -> None:
        """The last state of each (instance, user) of the batch: inserted (`ahead`), or updated where it differs."""
        new, changed = _net_enrolments(plan)
        table = self.schema.user_enrolments
        ue_ids = await self.gateway.insert_many(conn, table, ahead.enrolments, ahead.enrolments_written)
        await self.gateway.update_many(
            conn,
            table,
            "id",
            changed.select(
                pl.col("ue_id").alias("id"),
                pl.lit(ACTIVE).alias("status"),
                pl.col("eff_start").alias("timestart"),
                pl.col("eff_end").alias("timeend"),
                pl.lit(self.actor_id).alias("modifierid"),
                pl.lit(now).alias("timemodified"),
            ).to_dicts(),
        )
        if events is None:
            return
        if new.height and ue_ids is not None:  # the server gave the new rows' ids (MoodleGateway.insert_many)
            events += course_events.enrolments_created(new.with_columns(pl.Series("ue_id", ue_ids, dtype=pl.Int64)))
        elif new.height:  # read back on the unique (enrolid, userid) key
            schema: dict[str, type[pl.DataType]] = {"id": pl.Int64, "enrolid": pl.Int64, "userid": pl.Int64}
            ids = await fetch_tuples(self.gateway, conn, table, UE_KEY, new.select(UE_KEY), schema)
            new = new.join(ids.rename({"id": "new_ue_id"}), on=UE_KEY, maintain_order="left").with_columns(
                pl.col("new_ue_id").alias("ue_id")
            )
            events += course_events.enrolments_created(new)
        events += course_events.enrolments_updated(changed)

    async def _write_members(
        self, conn: AsyncConnection, plan: pl.DataFrame, now: int, events: list[Event] | None
    ) -> None:
        """groups_add_member() (component '', itemid 0) after the request's enrolment: the user is enrolled."""
        added = plan.filter(pl.col("member_new"))
        if added.height:  # absent: member_new was read in this transaction (_plan_groups)
            await add_members(
                self.gateway, conn, added.select("groupid", "userid"), now=now, events=events, absent=True
            )

    def _effects(self, plan: pl.DataFrame) -> EnrolmentEffects:
        """From the net writes: requests undoing each other within a batch leave nothing stale."""
        new, changed = _net_enrolments(plan)
        contact = pl.col("role_new") & pl.col("roleid").is_in(sorted(self.site.contact_roles))
        group_changed = pl.col("group_create") | pl.col("member_new")
        dirty = [
            *_distinct(new, "userid"),
            *_distinct(changed, "userid"),
            *_distinct(plan.filter("role_new"), "userid"),
        ]
        return EnrolmentEffects(
            enabled_contexts=set(_distinct(_enabling(plan), "contextid")),
            dirty_users=set(dirty),
            group_courses=set(_distinct(plan.filter(group_changed), "courseid")),
            group_users=set(_distinct(plan.filter(pl.col("member_new")), "userid")),
            contact_courses=set(_distinct(plan.filter(contact), "courseid")),
        )


# -- requests and their values (pure, vectorised) ------------------------------------------------------


async def read_enrolment_site(gateway: MoodleGateway, conn: AsyncConnection) -> EnrolmentSite:
    """The roles (and which are assignable in a course), the course-contact roles and the enrolment plugins."""
    schema = gateway.schema
    role, levels = schema.role, schema.role_context_levels
    rows = await conn.execute(select(role.c.id, role.c.shortname, role.c.sortorder).order_by(role.c.sortorder))
    match = TextMatch(gateway.kind)
    in_course = {
        int(r[0])
        for r in await conn.execute(select(levels.c.roleid).where(levels.c.contextlevel == int(ContextLevel.COURSE)))
    }
    roles = pl.DataFrame(
        [(match.stored_text(str(name)), int(rid), str(name), int(rid) in in_course) for rid, name, _ in rows],
        schema={"rolekey": pl.String, "roleid": pl.Int64, "rolename": pl.String, "in_course": pl.Boolean},
        orient="row",
    ).unique("rolekey", keep="first", maintain_order=True)
    config = schema.config
    found = await conn.execute(
        select(config.c.name, config.c.value).where(config.c.name.in_(["coursecontact", "enrol_plugins_enabled"]))
    )
    settings = {str(name): str(value) for name, value in found}
    plugins = schema.config_plugins
    versions = await conn.execute(select(plugins.c.plugin).where(plugins.c.name == "version"))
    return EnrolmentSite(
        roles=roles,
        course_roles=", ".join(roles.filter(pl.col("in_course"))["rolename"].to_list()),
        contact_roles=frozenset(_ints(settings.get("coursecontact", ""))),
        enabled_plugins=frozenset(_names(settings.get("enrol_plugins_enabled", ""))),
        installed_plugins=frozenset(
            str(r[0]).removeprefix("enrol_") for r in versions if str(r[0]).startswith("enrol_")
        ),
        match=match,
    )


def _normalised(requests: pl.DataFrame) -> pl.DataFrame:
    """The request columns with their types, text trimmed ("" for null or absent), and the batch position REQ."""
    missing = [c for c in (LINE, "part", "userid", "course") if c not in requests.columns]
    if missing:
        raise ValueError(f"enrolment requests lack the column(s) {', '.join(missing)}")
    texts = [
        (pl.col(c).cast(pl.String).fill_null("").str.strip_chars() if c in requests.columns else pl.lit("")).alias(c)
        for c in TEXT_COLUMNS
    ]
    return requests.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias(REQ),
        pl.col(LINE).cast(pl.Int64),
        pl.col("part").cast(pl.String),
        pl.col("userid").cast(pl.Int64),
        *texts,
    )


def _parse_values(req: pl.DataFrame, site: EnrolmentSite, timezone: str) -> pl.DataFrame:
    """plugin, start_given/end_given (null when empty or bad), the given role's id and name."""
    roles = site.roles.select(
        "rolekey",
        pl.col("roleid").alias("given_roleid"),
        pl.col("rolename").alias("given_rolename"),
        pl.col("in_course").alias("given_in_course"),
    )
    return req.with_columns(
        pl.when(pl.col("enrol") == "")
        .then(pl.lit(DEFAULT_PLUGIN))
        .otherwise(pl.col("enrol").str.to_lowercase())
        .alias("plugin"),
        timestamp(pl.col("start"), timezone).alias("start_given"),
        timestamp(pl.col("end"), timezone).alias("end_given"),
        site.match.given(pl.col("role")).alias("rolekey"),
    ).join(roles, on="rolekey", how="left", maintain_order="left")


def timestamp(cell: pl.Expr, timezone: str) -> pl.Expr:
    """Unix time of a trimmed cell: digits are a unix timestamp; `YYYY-MM-DD[ hh:mm[:ss]]` a local time of
    `timezone` (a time in a DST gap moves an hour on, a repeated hour is its second pass, as PHP reads them).
    Null when empty, unreadable or beyond ENROL_MAX_TIMESTAMP."""
    cell = cell.str.replace_all(r"\s+", " ")
    stamp = pl.when(cell.str.contains(r"^\d{1,10}$")).then(cell.cast(pl.Int64, strict=False))
    wall = pl.coalesce([cell.str.to_datetime(f, time_unit="us", strict=False, exact=True) for f in DATE_FORMATS])
    zoned = wall.dt.replace_time_zone(timezone, ambiguous="latest", non_existent="null")
    later = (wall + pl.duration(hours=1)).dt.replace_time_zone(timezone, ambiguous="latest", non_existent="null")
    seconds = pl.coalesce(stamp, pl.coalesce(zoned, later).dt.epoch("s"))
    return pl.when(seconds.is_between(0, ENROL_MAX_TIMESTAMP)).then(seconds)


def _local(seconds: pl.Expr, timezone: str) -> pl.Expr:
    """A unix time as the site's local `YYYY-MM-DD hh:mm:ss`, for messages."""
    return (pl.from_epoch(seconds, "s").dt.replace_time_zone("UTC").dt.convert_time_zone(timezone)).dt.strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def _problem(site: EnrolmentSite, identity: str, timezone: str, site_allows_disabled: bool) -> pl.Expr:
    """Why a request fails, the first reason in the order the values are checked; null when it can go ahead."""
    course = shown(pl.col("course"))
    plugin = pl.col("plugin")
    expected_plugins = " or ".join(DIRECT_PLUGINS)
    end_given = pl.col("end_given")
    return (
        pl.when(pl.col("userid").is_null())
        .then(pl.lit("the user was not created or found, so no enrolment was made"))
        .when(pl.col("course") == "")
        .then(pl.lit("empty course value"))
        .when(pl.col("course_problem").is_not_null())
        .then(pl.format("course {}", "course_problem"))
        .when(pl.col("courseid").is_null())
        .then(pl.format(f"course '{{}}' not found (course_identity {identity})", course))
        .when(pl.col("matches") > 1)
        .then(pl.format(f"course '{{}}' is ambiguous: {{}} courses have this {identity}", course, "matches"))
        .when(pl.col("course_category") == 0)
        .then(pl.format("course '{}' is the site's front page, which takes no enrolments", course))
        .when(~plugin.is_in(sorted(site.installed_plugins)))
        .then(
            pl.format(
                f"enrol '{{}}' is not an enrolment plugin of the site; expected {expected_plugins}",
                shown(pl.col("enrol")),
            )
        )
        .when(~plugin.is_in(DIRECT_PLUGINS))
        .then(
            pl.format(
                f"enrol '{{}}': {{}} enrolments are made by the plugin itself, not from a file; "
                f"expected {expected_plugins}",
                plugin,
                plugin,
            )
        )
        .when(~plugin.is_in(sorted(site.enabled_plugins)))
        .then(pl.format("enrol '{}': the {} enrolment plugin is disabled on the site", plugin, plugin))
        .when((pl.col("role") != "") & pl.col("given_roleid").is_null())
        .then(
            pl.format(
                f"role '{{}}' is not a role of the site; expected one of {site.course_roles}", shown(pl.col("role"))
            )
        )
        .when((pl.col("role") != "") & ~pl.col("given_in_course"))
        .then(
            pl.format(
                f"role '{{}}' cannot be assigned in a course; expected one of {site.course_roles}", pl.col("role")
            )
        )
        .when((pl.col("start") != "") & pl.col("start_given").is_null())
        .then(pl.format(f"start '{{}}': expected {DATE_EXPECTED}", shown(pl.col("start"))))
        .when((pl.col("end") != "") & end_given.is_null())
        .then(pl.format(f"end '{{}}': expected {DATE_EXPECTED}", shown(pl.col("end"))))
        .when((end_given > 0) & (end_given < pl.col("start_checked")))
        .then(
            pl.format(
                "end '{}' is before the start of the enrolment ({})",
                pl.col("end"),
                _local(pl.col("start_checked"), timezone),
            )
        )
        .when(pl.col("group").str.len_chars() > GROUP_NAME_MAX)
        .then(pl.format(f"group '{{}}': a group name has at most {GROUP_NAME_MAX} characters", shown(pl.col("group"))))
        .when(pl.col("contextid").is_null())
        .then(pl.format("course '{}' has no context row (Moodle's context cleanup task rebuilds it)", course))
        .when(pl.col("enrolid").is_null())
        .then(
            pl.format(
                "course '{}' has no {}{} enrolment instance",
                course,
                pl.lit("" if site_allows_disabled else "enabled "),
                plugin,
            )
        )
        .when(pl.col("roleid").is_null())
        .then(pl.lit(f"no role given, and neither the enrolment instance's default role nor '{FALLBACK_ROLE}' exists"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("problem")
    )


def _read_keys(req: pl.DataFrame, names: TextMatch) -> frozenset[Hashable]:
    """PlannedEnrolments.reads of resolved requests: their pairs, instances and groups (what another batch's write may
    change under the plan)."""
    known = req.filter(pl.col("courseid").is_not_null())
    pairs = known.filter(pl.col("userid").is_not_null()).select("courseid", "userid").unique()
    instances = known.select("courseid", "plugin").unique()
    groups = known.filter(pl.col("group") != "").select("courseid", names.given(pl.col("group"))).unique()
    return frozenset(
        [
            *(("pair", c, u) for c, u in pairs.iter_rows()),
            *(("instance", c, p) for c, p in instances.iter_rows()),
            *(("group", c, g) for c, g in groups.iter_rows()),
        ]
    )


def _first(key: Sequence[str]) -> pl.Expr:
    """The earliest request of its `key` in the batch."""
    return pl.col(REQ) == pl.col(REQ).min().over(key)


def _plan_enrolments(valid: pl.DataFrame, now: int) -> pl.DataFrame:
    """Each request's enrolment state before and after it, requests of one (instance, user) applied in order.

    A given start/end replaces the stored one, an empty one keeps it (new: now and 0); so the state after a request
    is the last given value so far, else the stored one, else the default: a forward fill within the key.
    """
    after = valid.with_columns(
        pl.coalesce(pl.col("start_given").forward_fill().over(UE_KEY), "db_start", pl.lit(now)).alias("eff_start"),
        pl.coalesce(pl.col("end_given").forward_fill().over(UE_KEY), "db_end", pl.lit(0)).alias("eff_end"),
        _first(UE_KEY).alias("ue_first"),
    )
    first = pl.col("ue_first")
    before_start = pl.when(first).then("db_start").otherwise(pl.col("eff_start").shift(1).over(UE_KEY))
    before_end = pl.when(first).then("db_end").otherwise(pl.col("eff_end").shift(1).over(UE_KEY))
    before_status = pl.when(first).then("db_status").otherwise(pl.lit(ACTIVE))
    reactivated = before_status != ACTIVE
    start_moved = before_start != pl.col("eff_start")
    end_moved = before_end != pl.col("eff_end")
    return after.with_columns(
        pl.when(first & pl.col("ue_id").is_null())
        .then(pl.lit(Outcome.CREATED.value))
        .when(reactivated | start_moved | end_moved)
        .then(pl.lit(Outcome.UPDATED.value))
        .otherwise(pl.lit(Outcome.UNCHANGED.value))
        .alias("ue_action"),
        pl.concat_str(
            [
                pl.when(reactivated).then(pl.lit("reactivated")),
                pl.when(start_moved).then(pl.lit("start")),
                pl.when(end_moved).then(pl.lit("end")),
            ],
            separator=", ",
            ignore_nulls=True,
        ).alias("ue_changes"),
    )


def _welcomed(plan: pl.DataFrame, contact_roles: frozenset[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The requests that call enrol_user() in a row-by-row run, each of which welcomes its user (an enrolment
    created, one reactivated or given other dates, a role added to one; not a request that changes nothing), and the
    course-contact roles the plan assigns, each at its request's place."""
    place = [pl.col(LINE).alias("line"), pl.col(REQ).alias("req")]
    calls = (pl.col("ue_action") != Outcome.UNCHANGED.value) | pl.col("role_new")
    welcomed = plan.filter(calls).select(*place, "enrolid", "userid")
    contacts = plan.filter(pl.col("role_new") & pl.col("roleid").is_in(sorted(contact_roles)))
    return welcomed, contacts.select(*place, "courseid", "userid", "roleid")


def _enabling(plan: pl.DataFrame) -> pl.DataFrame:
    """The planned requests that go through a disabled instance (enable_on_disabled): it is enabled first."""
    return plan.filter(pl.col("instance_status") != ACTIVE)


def _failed_outcomes(failed: pl.DataFrame) -> pl.DataFrame:
    rows = outcome_rows(failed, Outcome.FAILED, ACTION, pl.col("course"), pl.col("problem"), part=pl.col("part"))
    return rows.with_columns(failed[REQ])


def _net_enrolments(plan: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The final state of each (instance, user) of the batch that differs from the stored one: (to insert,
    to update). Compared with the stored row, not request by request: requests undoing each other write nothing."""
    final = plan.unique(UE_KEY, keep="last", maintain_order=True)
    differs = (
        (pl.col("db_status") != ACTIVE)
        | (pl.col("db_start") != pl.col("eff_start"))
        | (pl.col("db_end") != pl.col("eff_end"))
    )
    return final.filter(pl.col("ue_id").is_null()), final.filter(pl.col("ue_id").is_not_null() & differs)


def _success_outcomes(plan: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
    """created / updated / unchanged lines of the planned requests (with REQ), what was (or would be) done."""
    ue_action = pl.col("ue_action")
    created = ue_action == Outcome.CREATED.value
    enabling = pl.col("instance_status") != ACTIVE
    role = pl.when(pl.col("default_role")).then(pl.format("{} (default role)", "rolename")).otherwise("rolename")
    where = pl.format(
        "course '{}' ({}{})",
        shown(pl.col("course")),
        "plugin",
        pl.when(pl.col("instance_status") != ACTIVE)
        .then(pl.lit(", disabled instance " + ("would be enabled" if dry_run else "enabled")))
        .otherwise(pl.lit("")),
    )
    enrolment = (
        pl.when(created)
        .then(pl.format("enrolled in {} as {}", where, role))
        .when(ue_action == Outcome.UPDATED.value)
        .then(pl.format("enrolment in {} updated ({})", where, "ue_changes"))
        .otherwise(pl.format("already enrolled in {}", where))
    )
    role_text = (
        pl.when(created)
        .then(pl.lit(""))
        .when(pl.col("role_new"))
        .then(pl.format("; role {} assigned", role))
        .when(ue_action == Outcome.UPDATED.value)
        .then(pl.format("; role {} already assigned", role))
        .otherwise(pl.format(" as {}", role))
    )
    group = shown(pl.col("group"))
    create_verb = "would be created" if dry_run else "created"
    group_text = (
        pl.when(pl.col("group") == "")
        .then(pl.lit(""))
        .when(pl.col("group_create"))
        .then(pl.format(f"; group '{{}}' {create_verb}, member added", group))
        .when(pl.col("member_new"))
        .then(pl.format("; added to group '{}'", group))
        .otherwise(pl.format("; already in group '{}'", group))
    )
    message = pl.concat_str([enrolment, role_text, group_text])
    rules = [
        Rule(created, Outcome.CREATED, ACTION, message),
        Rule(
            (ue_action == Outcome.UPDATED.value) | pl.col("role_new") | pl.col("member_new") | enabling,
            Outcome.UPDATED,
            ACTION,
            message,
        ),
        Rule(pl.lit(True), Outcome.UNCHANGED, ACTION, message),
    ]
    return first_match(plan, rules, pl.col("course"), part=pl.col("part"), keep=[REQ])[0]


# -- small helpers ---------------------------------------------------------------------------------------


# first_instances()' columns
INSTANCE_SCHEMA: dict[str, type[pl.DataType]] = {
    "courseid": pl.Int64,
    "plugin": pl.String,
    "enrolid": pl.Int64,
    "instance_roleid": pl.Int64,
    "instance_status": pl.Int64,
}


async def first_instances(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Sequence[int], *, enable_on_disabled: bool
) -> pl.DataFrame:
    """courseid, plugin, enrolid, instance_roleid, instance_status: the instance a request for a direct plugin goes
    through in each of the courses: the first enabled instance of the plugin in the course, by sortorder; with
    enable_on_disabled and no enabled one, the first disabled one. No row for a course and plugin without one."""
    enrol = gateway.schema.enrol
    where: ColumnElement[bool] = enrol.c.enrol.in_(DIRECT_PLUGINS)
    if not enable_on_disabled:
        where = where & (enrol.c.status == ACTIVE)
    instances = await _fetch(
        gateway,
        conn,
        enrol,
        "courseid",
        courses,
        {
            "id": pl.Int64,
            "courseid": pl.Int64,
            "enrol": pl.String,
            "sortorder": pl.Int64,
            "roleid": pl.Int64,
            "status": pl.Int64,
        },
        where=where,
    )
    return (
        instances.sort(pl.col("status") != ACTIVE, "sortorder", "id")
        .unique(["courseid", "enrol"], keep="first", maintain_order=True)
        .select(
            "courseid",
            pl.col("enrol").alias("plugin"),
            pl.col("id").alias("enrolid"),
            pl.col("roleid").alias("instance_roleid"),
            pl.col("status").alias("instance_status"),
        )
    )


async def _fetch(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    key: str,
    values: Sequence[Any],
    schema: dict[str, type[pl.DataType]],
    *,
    where: ColumnElement[bool] | None = None,
    casefold: bool = False,
) -> pl.DataFrame:
    """fetch_in with typed columns (an empty answer keeps its types), and no query at all for no keys."""
    if not values:
        return pl.DataFrame(schema=schema)
    found = await gateway.fetch_in(conn, table, key, values, list(schema), where=where, casefold=casefold)
    return found.cast(dict(schema))  # type: ignore[arg-type]


def _by_key(groups: pl.DataFrame, names: TextMatch) -> pl.DataFrame:
    """courseid, groupkey (the name's key), groupid of the shared functions' (courseid, name, groupid) answer."""
    return (
        groups.select("courseid", names.given(pl.col("name")).alias("groupkey"), "groupid")
        .drop_nulls("groupid")
        .unique(GROUP_KEY, keep="first", maintain_order=True)
    )


def _distinct(frame: pl.DataFrame, column: str) -> list[Any]:
    """The distinct non-null values of a column, sorted (stable statements, stable tests)."""
    return sorted(frame[column].drop_nulls().unique().to_list())


def _ints(text: str) -> list[int]:
    return [int(v) for v in _names(text) if v.isdigit()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]
