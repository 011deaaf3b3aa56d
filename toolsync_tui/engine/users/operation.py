"""Users file (userimport.csv): create, update, suspend, delete, revive and rename accounts, with passwords, custom
profile fields, cohort membership and course enrolments (tool_sync-reference §2.2.1, contract §3).

Per batch: check the values (no database) -> find the accounts -> hash passwords (all cores) -> plan each row from
what differs -> write in bulk: new users and their contexts, changed columns, profile data, preferences, deletions,
then the rows' cohort and course parts, each with an outcome line of its own.
"""

from __future__ import annotations

import asyncio
import os
import time
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.contexts import (
    Context,
    ContextLevel,
    NewContexts,
    insert_contexts,
    instance_contexts,
    set_context_paths,
    system_context,
)
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway, WrittenInsert
from toolsync_tui.engine.moodle.password_worker import REUSABLE_HASH
from toolsync_tui.engine.moodle.passwords import (
    CREATE_PASSWORD_PREFERENCE,
    NOPASS,
    TO_BE_GENERATED,
    PasswordHasher,
    PasswordRejected,
)
from toolsync_tui.engine.moodle.recording import nothing_more_recorded
from toolsync_tui.engine.moodle.site_settings import UserSite, protected_accounts, site_timezone
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects, FlaggedUsers, end_sessions, purge_after_run
from toolsync_tui.engine.parts.cohort_memberships import CohortMemberships
from toolsync_tui.engine.parts.course_enrolments import CourseEnrolments, PlannedEnrolments
from toolsync_tui.engine.rows import LINE, Outcome, Rule, first_match, outcome_rows, shown
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.operation import BatchPlan, Operation, PreviousWrite, nothing_in_flight
from toolsync_tui.engine.run.value_limits import StoredColumns
from toolsync_tui.engine.users.accounts import PROBLEM as ACCOUNT_PROBLEM
from toolsync_tui.engine.users.accounts import SKIP, USERID, AccountFinder, protected_why
from toolsync_tui.engine.users.batch_keys import read_keys, write_keys
from toolsync_tui.engine.users.changes import CHANGES, CURRENT, changed_columns, current, revived
from toolsync_tui.engine.users.columns import (
    NUMERIC_FIELDS,
    RETIRED_FIELDS,
    USER_COLUMNS,
    USERS_FILE,
    VALUE_COLUMNS,
    course_indexes,
    course_requests,
)
from toolsync_tui.engine.users.lists import check_deletion_path, delete_accounts, delete_through_bridge
from toolsync_tui.engine.users.log_events import INTERNAL_PASSWORD_AUTHS, account_events
from toolsync_tui.engine.users.preferences import PASSWORD_UPDATE_TIME, set_user_preferences
from toolsync_tui.engine.users.profile_fields import (
    PREFIX,
    encode_profile_values,
    load_profile_fields,
    match_profile_columns,
    plan_profile_data,
    profile_column_problems,
    unique_value_problems,
    write_profile_data,
)
from toolsync_tui.engine.users.profile_fields import PROBLEM as PROFILE_PROBLEM
from toolsync_tui.engine.users.validation import PROBLEM, SeenUsernames, UserRules, validate_user_rows

ACTION = "__action"
NEW_PASSWORD = "__password"
# A dry run's NEW_PASSWORD where the real run stores a new hash; never a stored value (NUL is refused there).
NOT_HASHED = "\0not hashed"
FORCE_CHANGE_PREFERENCE = "auth_forcepasswordchange"
# The stored columns every row is planned with (cur_<column>), besides the USER_COLUMNS of the file.
CURRENT_FIELDS = (
    "id",
    "username",
    "deleted",
    "suspended",
    "password",
    "auth",
    "firstname",
    "lastname",
    "idnumber",
    "email",
)
# The actions that write an existing account's changed columns.
UPDATING = ("update", "rename", "suspend", "reactivate", "revive")
# Stored passwords that are no password set: Moodle's password update (and its preference) never sees them.
LITERAL_PASSWORDS = ("", NOPASS, TO_BE_GENERATED)


class UsersOperation(Operation):
    name = "users"
    title = "Create and update users"
    columns = USERS_FILE
    value_columns: ClassVar[StoredColumns] = VALUE_COLUMNS
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"delete", "suspend"})
    uses_bridge = True
    overlaps_writes = True  # each batch planned while the one before is written (plan_batch, run/overlap.py)

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        return "deleted" in columns  # deletions choose their way (bridge or SQL) in prepare()

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.users
        # What finish() releases or reports, also when prepare() stops half-way.
        self.hasher: PasswordHasher | None = None
        self.notes: list[str] = []
        self.deleted_any = False
        self.deletion_note = ""
        # line -> user id of the batch's accounts that the bridge deletes once the batch has committed
        self.bridge_deletes: dict[int, int] = {}
        self.effects = EnrolmentEffects(set(), set(), set(), set())
        self.flagged = FlaggedUsers()  # the users given a dirty flag by this run's batches
        self.batch_flagged: set[int] = set()  # those the batch being written flags

    def may_destroy(self, columns: Sequence[str]) -> bool:
        return "deleted" in columns or "suspended" in columns

    def safety_candidates(self, rows: pl.DataFrame) -> pl.DataFrame:
        flags = [pl.col(c).str.strip_chars() == "1" for c in ("deleted", "suspended") if c in rows.columns]
        return rows.filter(pl.any_horizontal(flags)) if flags else rows.clear()

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        settings = self.options
        self.site = await UserSite.read(self.gateway)
        self.protected = await protected_accounts(self.gateway, conn)
        self.system = await system_context(self.gateway, conn)
        self.fields = await load_profile_fields(self.gateway, conn)
        problems = profile_column_problems(columns, self.fields)
        if problems:
            raise FileProblem("; ".join(problems))
        self.profile_columns = match_profile_columns(columns, self.fields)
        self.rules = UserRules.from_site(
            self.site.config,
            self.schema,
            allow_rename=settings.allow_rename,
            timezones=zoneinfo.available_timezones() if "timezone" in columns else None,  # a walk of the zone files
        )
        self.timezone = await site_timezone(self.gateway)
        self.seen = SeenUsernames()
        self.file_columns = list(columns)
        self.stored_columns = [*CURRENT_FIELDS, *(f for f in USER_COLUMNS if f in columns and f not in CURRENT_FIELDS)]
        # isguestuser(): set_user_preference() keeps nothing for the guest account.
        guest = (await self.gateway.config_values(["siteguest"])).get("siteguest") or ""
        self.guest = int(guest) if guest.strip().isdigit() else None
        self.finder = AccountFinder(
            self.gateway, settings.primary_identity, self.site.mnethostid, columns=self.stored_columns
        )
        self.course_indexes = course_indexes(self.file_columns)
        self.enrolments = CourseEnrolments(
            self.gateway,
            course_identity=settings.course_identity,
            site_timezone=self.timezone,
            actor_id=self.site.actor_id,
            welcome=self.welcome,
        )
        if self.course_indexes:
            await self.enrolments.prepare(conn)
        self.cohorts = CohortMemberships(self.gateway)
        if "cohort" in columns:
            await self.cohorts.prepare(conn)
        if "deleted" in columns:
            self.deletion_note = await check_deletion_path(self.gateway, conn, self.bridge)
            # Deletions through the bridge follow each batch's commit (after_commit()): batches in turn.
            self.overlaps_writes = self.bridge is None
        self.notes = [
            f"column {name}: Moodle 4.5 has no such user field; its values were ignored"
            for name in RETIRED_FIELDS
            if name in columns
        ]
        if "password" in columns:
            (await self._hasher()).begin()  # its workers start while the first batch is read (moodle/passwords.py)

    async def finish(self, dry_run: bool) -> list[str]:
        if self.hasher is not None:
            await self.hasher.aclose()
            self.hasher = None
        notes = list(self.notes)
        if self.deleted_any and not dry_run:
            notes.append(self.deletion_note)
        if not dry_run:
            notes += await purge_after_run(self.bridge, self.effects)
        return notes

    async def safety_base(self, conn: AsyncConnection) -> int:
        return await self.site.active_accounts(self.gateway, conn)

    # -- one batch ------------------------------------------------------------------------------

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        return await (await self._planned(conn, rows, dry_run)).apply(conn, dry_run)

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        return await self._planned(conn, rows, False)

    async def _planned(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> BatchPlan:
        """Every read and decision of a batch, and its write: the accounts, then the rows' cohort and course parts,
        which need the new ids and are planned in the write (a dry run plans them here, with stand-in ids)."""
        now = int(time.time())
        checked = self._checked(rows)
        good = checked.filter(pl.col(PROBLEM).is_null())
        found, stored = await self.finder.find_stored(conn, good)
        good = good.join(found, on=LINE, how="left")
        good = await self._with_current(conn, good, stored)
        # The passwords hash on the workers while the batch's other reads go on (moodle/passwords.py).
        hashed = asyncio.ensure_future(self._with_passwords(good, dry_run))
        try:
            problems = pl.coalesce(
                pl.col(ACCOUNT_PROBLEM),
                pl.Series(await unique_value_problems(self.gateway, conn, good, self.fields)),
                await self._email_problems(conn, good),
            )
        except BaseException:
            hashed.cancel()
            raise
        good = (await hashed).with_columns(problems.alias(PROBLEM))
        profile_changes = await plan_profile_data(
            self.gateway, conn, good.filter(pl.col(USERID).is_not_null() & pl.col(PROBLEM).is_null()), self.fields
        )
        planned = self._plan(good, profile_changes)
        failed = outcome_rows(
            checked.filter(pl.col(PROBLEM).is_not_null()), Outcome.FAILED, "check", _key(), pl.col(PROBLEM)
        )
        if dry_run:
            parts = await self._parts(conn, planned, {}, now, dry_run=True)
            return BatchPlan(_sorted([failed, self._outcomes(planned, {}, dry_run=True), *parts]), _never_written)
        writes = await self._writes(conn, planned, profile_changes, now)
        # A batch that creates no account knows every user of its course columns: those are planned now too.
        courses = None if writes.creates.height else await self._plan_courses(conn, planned, now)

        async def write(conn: AsyncConnection) -> pl.DataFrame:
            ids, failures = await self._write(conn, writes, now)
            done = planned
            if failures:
                done = planned.with_columns(
                    pl.when(pl.col(USERID).is_in(list(failures)) & (pl.col(ACTION) == "delete"))
                    .then(pl.col(USERID).replace_strict(failures, default=None, return_dtype=pl.String))
                    .otherwise(pl.col(PROBLEM))
                    .alias(PROBLEM)
                ).with_columns(
                    pl.when(pl.col(PROBLEM).is_not_null()).then(pl.lit("failed")).otherwise(ACTION).alias(ACTION)
                )
            self.batch_flagged = set()
            parts = await self._parts(conn, done, ids, now, dry_run=False, courses=courses)
            self.flagged.written(self.batch_flagged)  # the write went through: its flags stand if it commits
            return _sorted([failed, self._outcomes(done, ids, dry_run=False), *parts])

        keys = write_keys(writes.creates, writes.updates, writes.deleting.height, writes.profile_changes, self.fields)
        return BatchPlan(
            _sorted([failed, self._outcomes(planned, {}, dry_run=False)]),
            write,
            reads=read_keys(good, self.fields) | (courses.reads if courses is not None else frozenset()),
            writes=keys | (courses.writes if courses is not None else frozenset()),
        )

    async def _plan_courses(self, conn: AsyncConnection, planned: pl.DataFrame, now: int) -> PlannedEnrolments | None:
        """The course columns' enrolments of a batch whose users all exist, planned with the batch (None: no course
        column, or none to enrol here)."""
        if not self.course_indexes:
            return None
        requests = course_requests(self._live(planned, {}, dry_run=False), self.course_indexes, USERID)
        requests = requests.filter(pl.col("wwwroot") == "").drop("wwwroot")
        if requests.is_empty():
            return None
        return await self.enrolments.plan(conn, requests, now=now)

    def _live(self, planned: pl.DataFrame, created: dict[int, int], dry_run: bool) -> pl.DataFrame:
        """The rows whose account exists (or, in a dry run, would), with its id."""
        live = planned.filter(
            pl.col(ACTION).is_in(["create", "update", "rename", "suspend", "reactivate", "revive", "none"])
        )
        # In a dry run an account still to create has no id: a negative stand-in, never written.
        stand_in = -pl.col(LINE)
        new_id = pl.col(LINE).replace_strict(created, default=None, return_dtype=pl.Int64)
        return live.with_columns(pl.coalesce(USERID, new_id, stand_in if dry_run else None).alias(USERID))

    def _checked(self, rows: pl.DataFrame) -> pl.DataFrame:
        validated = validate_user_rows(rows, self.rules, self.seen)
        profile = encode_profile_values(validated, self.fields, self.timezone)
        validated = validated.drop([c for c in validated.columns if c.startswith(PREFIX)])
        checked = pl.concat([validated, profile], how="horizontal")
        checked = checked.with_columns(pl.coalesce(PROBLEM, PROFILE_PROBLEM, self._mnet_problem()).alias(PROBLEM))
        return checked.drop(PROFILE_PROBLEM)

    def _mnet_problem(self) -> pl.Expr:
        if "mnethostid" not in self.file_columns:
            return pl.lit(None, dtype=pl.String)
        value, local = pl.col("mnethostid"), str(self.site.mnethostid)
        return pl.when((value != "") & (value != local)).then(
            pl.format(
                f"mnethostid '{{}}': toolsync manages the accounts of this site only (mnet_localhost_id {local})",
                shown(value),
            )
        )

    async def _with_current(self, conn: AsyncConnection, rows: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
        """The stored values of the accounts found, as cur_<column>; `known`: those already read (the finder's),
        the others are read here."""
        wanted = self.stored_columns
        schema = {c: (pl.Int64 if c in ("id", "deleted", "suspended") else pl.String) for c in wanted}

        def typed(frame: pl.DataFrame) -> pl.DataFrame:
            return (frame if frame.height else pl.DataFrame(schema=schema)).cast(schema, strict=False)  # type: ignore[arg-type]

        known = typed(known.select(wanted))
        ids = rows[USERID].drop_nulls().unique()
        missing = ids.filter(~ids.is_in(known["id"].implode())).to_list()
        stored = pl.concat([known, typed(await self.gateway.fetch_in(conn, self.schema.user, "id", missing, wanted))])
        stored = stored.rename({c: CURRENT + c for c in wanted}).rename({CURRENT + "id": USERID})
        return rows.join(stored, on=USERID, how="left")

    async def _email_problems(self, conn: AsyncConnection, rows: pl.DataFrame) -> pl.Series:
        """Unless the site allows accounts to share an e-mail: an e-mail this row would write that another account
        has (case-insensitively, deleted accounts aside), or an earlier row of the batch writes."""
        none = pl.Series(PROBLEM, [None] * rows.height, dtype=pl.String)
        if "email" not in rows.columns or self.site.allow_same_email:
            return none
        email = pl.col("email")
        creating = pl.col(USERID).is_null()
        changing = ~creating & (email.str.to_lowercase() != current("email").str.to_lowercase())
        if self.options.protect_emails:
            changing = pl.lit(False)
        writes = (email != "") & (creating | changing)
        candidates = (
            rows.with_row_index("__row").filter(writes).select("__row", USERID, email.str.to_lowercase().alias("key"))
        )
        if candidates.is_empty():
            return none
        user = self.schema.user
        holders = await self.gateway.fetch_in(
            conn,
            user,
            "email",
            candidates["key"].unique().to_list(),
            ["id", "email"],
            where=(user.c.deleted == 0) & (user.c.mnethostid == self.site.mnethostid),
            casefold=True,
        )
        holders = holders.select(
            pl.col("email").cast(pl.String).str.to_lowercase().alias("key"), pl.col("id").cast(pl.Int64).alias("holder")
        )
        taken = (
            candidates.join(holders, on="key")
            .filter(pl.col(USERID).is_null() | (pl.col("holder") != pl.col(USERID)))
            .group_by("__row")
            .agg(pl.col("holder").min(), pl.col("key").first())
            .select(
                "__row",
                pl.format("email '{}' is already the e-mail of another account (id {})", "key", "holder").alias(
                    "problem"
                ),
            )
        )
        first = candidates.with_columns(pl.col("__row").min().over("key").alias("first"))
        repeated = first.filter(pl.col("__row") != pl.col("first")).select(
            "__row", pl.lit("email is already written by an earlier row of this batch").alias("problem")
        )
        found = pl.concat([taken, repeated]).unique("__row", keep="first")
        problems = (
            rows.with_row_index("__row").select("__row").join(found, on="__row", how="left", maintain_order="left")
        )
        return problems["problem"].alias(PROBLEM)

    async def _with_passwords(self, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        """NEW_PASSWORD: the value to store (a hash, *NOPASS*, 'to be generated'), null to leave the password alone.

        A password that still matches the stored hash keeps it: re-running a file changes nothing. A dry run checks
        those, but makes no new hash, which decides nothing (it differs from anything stored): NOT_HASHED instead."""
        creating = pl.col(USERID).is_null()
        generate = self.options.create_passwords
        if "password" not in rows.columns:
            fallback = pl.when(creating).then(pl.lit(TO_BE_GENERATED if generate else ""))
            return rows.with_columns(fallback.alias(NEW_PASSWORD))
        password = pl.col("password")
        literal = (
            pl.when(password == NOPASS)
            .then(pl.lit(NOPASS))
            .when((password == "") & creating)
            .then(pl.lit(TO_BE_GENERATED if generate else ""))
        )
        rows = rows.with_columns(literal.alias(NEW_PASSWORD))
        hashing = pl.col(PROBLEM).is_null() & (password != "") & (password != NOPASS)
        if dry_run:
            checking = pl.col(CURRENT + "password").str.contains(f"^{REUSABLE_HASH}$").fill_null(False)
            rows = rows.with_columns(
                pl.when(hashing).then(pl.lit(NOT_HASHED)).otherwise(NEW_PASSWORD).alias(NEW_PASSWORD)
            )
            hashing = hashing & checking
        to_hash = rows.select(pl.arange(0, pl.len()).alias("__i"), hashing.alias("__hash"))
        positions = to_hash.filter("__hash")["__i"].to_list()
        if not positions:
            return rows
        hasher = await self._hasher()
        subset = rows[positions]
        results = await hasher.hash_many(subset["password"].to_list(), current=subset[CURRENT + "password"].to_list())
        hashes = [r if isinstance(r, str) else None for r in results]
        problems = [str(r) if isinstance(r, PasswordRejected) else None for r in results]
        values = rows[NEW_PASSWORD].scatter(positions, hashes)
        problem = rows[PROBLEM].scatter(positions, problems) if any(problems) else rows[PROBLEM]
        return rows.with_columns(values.alias(NEW_PASSWORD), pl.coalesce(pl.col(PROBLEM), problem).alias(PROBLEM))

    async def _hasher(self) -> PasswordHasher:
        if self.hasher is None:
            pepper = os.environ.get(self.options.password_pepper_env, "")
            self.hasher = PasswordHasher(rounds=self.options.password_rounds, pepper=pepper)
        return self.hasher

    # -- planning -----------------------------------------------------------------------------

    def _plan(self, rows: pl.DataFrame, profile_changes: pl.DataFrame) -> pl.DataFrame:
        """ACTION per row: failed, skipped, create, update, rename, suspend, reactivate, revive, delete, none; and
        CHANGES, the columns an update writes."""
        fields = [f for f in USER_COLUMNS if f in rows.columns]
        profile_names = (
            profile_changes.join(
                pl.DataFrame(
                    {"fieldid": [f.id for f in self.fields.values()], "name": [f.column for f in self.fields.values()]},
                    schema={"fieldid": pl.Int64, "name": pl.String},
                ),
                on="fieldid",
            )
            .group_by(USERID)
            .agg(pl.col("name").alias("__profile"))
        )
        rows = rows.with_columns(changed_columns(fields, protect_emails=self.options.protect_emails)).join(
            profile_names, on=USERID, how="left"
        )
        password_changed = pl.col(NEW_PASSWORD).is_not_null() & (
            pl.col(NEW_PASSWORD) != current("password").fill_null("")
        )
        changes = pl.concat_list(
            CHANGES,
            pl.when(pl.col(USERID).is_not_null() & password_changed)
            .then(pl.lit(["password"], dtype=pl.List(pl.String)))
            .otherwise(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("__profile").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        rows = rows.with_columns(changes.alias(CHANGES))
        deleting = (pl.col("deleted") == "1") if "deleted" in rows.columns else pl.lit(False)
        found = pl.col(USERID).is_not_null()
        protected = protected_why(self.protected).is_not_null()
        suspending = (
            pl.col(CHANGES).list.contains("suspended") & (pl.col("suspended") == "1")
            if "suspended" in rows.columns
            else pl.lit(False)
        )
        mismatch = (pl.col("via") != "oldusername") & found & (current("username") != pl.col("username"))
        earlier = found & (pl.col(LINE) != pl.col(LINE).min().over(USERID))
        action = (
            pl.when(pl.col(PROBLEM).is_not_null())
            .then(pl.lit("failed"))
            .when(pl.col(SKIP).is_not_null())
            .then(pl.lit("skipped"))
            .when(earlier)
            .then(pl.lit("duplicate"))
            .when(deleting & ~found)
            .then(pl.lit("absent"))
            .when(deleting & (current("deleted") == 1))
            .then(pl.lit("none"))
            .when(deleting & protected)
            .then(pl.lit("protected"))
            .when(deleting)
            .then(pl.lit("delete"))
            .when(~found)
            .then(pl.lit("create"))
            .when(mismatch)
            .then(pl.lit("mismatch"))
            .when(suspending & protected)
            .then(pl.lit("protected"))
            .when(revived())
            .then(pl.lit("revive"))
            .when(pl.col(CHANGES).list.len() == 0)
            .then(pl.lit("none"))
            .when(suspending)
            .then(pl.lit("suspend"))
            .when(pl.col(CHANGES).list.contains("username"))
            .then(pl.lit("rename"))
            .when(pl.col(CHANGES).list.contains("suspended"))
            .then(pl.lit("reactivate"))
            .otherwise(pl.lit("update"))
        )
        return rows.with_columns(action.alias(ACTION))

    # -- writing ------------------------------------------------------------------------------

    async def _writes(
        self, conn: AsyncConnection, planned: pl.DataFrame, profile_changes: pl.DataFrame, now: int
    ) -> _Writes:
        """What the plan writes, worked out before the write (while the batch before is being written): the records,
        the password times, the log rows' contexts of the accounts changed."""
        action = pl.col(ACTION)
        creates = planned.filter(action == "create")
        updates = planned.filter(action.is_in(UPDATING))
        new_times, changed_times = self._password_times(creates, updates)
        contexts: dict[int, Context] = {}
        if self.event_log.active and not updates.is_empty():
            contexts = await instance_contexts(self.gateway, conn, ContextLevel.USER, updates[USERID].to_list())
        records = self._create_records(creates, now)
        return _Writes(
            creates=creates,
            records=records,
            written=await self.gateway.written_insert(conn, self.schema.user, records),
            generated=creates.filter(pl.col(NEW_PASSWORD) == TO_BE_GENERATED)[LINE].to_list(),
            updates=updates,
            changes=self._update_rows(updates, now),
            profile_changes=profile_changes.join(updates.select(USERID), on=USERID, how="semi"),
            new_times=new_times,
            changed_times=changed_times,
            contexts=contexts,
            suspended=planned.filter(action == "suspend")[USERID].to_list(),
            deleting=planned.filter(action == "delete"),
        )

    async def _write(self, conn: AsyncConnection, writes: _Writes, now: int) -> tuple[dict[int, int], dict[int, str]]:
        """Write the plan; returns line -> id of the accounts created, and id -> why for deletions that failed."""
        created, contexts = await self._insert_accounts(conn, writes)
        # The log rows are built while the statements before them run (the new contexts' paths, the batch's digests
        # are read meanwhile): they need only the new ids.
        log_rows = asyncio.ensure_future(self._log_rows(conn, writes, created, contexts.made, now))
        try:
            await self._complete_accounts(conn, writes, created, contexts, now)
            await self.gateway.update_many(conn, self.schema.user, "id", writes.changes)
            ids = [created[line] for line in writes.new_times] + writes.changed_times
            await set_user_preferences(
                self.gateway,
                conn,
                [(uid, PASSWORD_UPDATE_TIME, str(now)) for uid in ids if uid != self.guest],
                now,
                self.site.session_timeout,
                new_users=created.values(),
            )
            if self._records_nothing_after_log(writes):
                await nothing_more_recorded(conn)  # the batch's record is journalled while its log rows are written
            events, written = await log_rows
        except BaseException:
            log_rows.cancel()
            raise
        await self.event_log.record(conn, events, now, written)
        await write_profile_data(self.gateway, conn, writes.profile_changes)
        await end_sessions(self.gateway, conn, writes.suspended)
        deleting = writes.deleting
        self.deleted_any |= not deleting.is_empty()
        if self.bridge is not None:  # after the commit: delete_user() would wait for this batch's own locks
            self.bridge_deletes = dict(deleting.select(LINE, USERID).iter_rows())
            return created, {}
        deletes = deleting.select(
            pl.col(USERID).alias("id"), current("username").alias("username"), current("email").alias("email")
        )
        return created, await delete_accounts(self.gateway, self.bridge, conn, deletes, self.site, now, self.event_log)

    def _records_nothing_after_log(self, writes: _Writes) -> bool:
        """Whether nothing the batch records follows the accounts' log rows: no profile data, no deletion, no cohort or
        course part (ending sessions is never recorded)."""
        return (
            writes.profile_changes.is_empty()
            and writes.deleting.is_empty()
            and not self.course_indexes
            and "cohort" not in self.file_columns
        )

    async def after_commit(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        """The batch's deletions through the bridge; a row whose account Moodle did not delete fails."""
        pending, self.bridge_deletes = self.bridge_deletes, {}
        if not pending or self.bridge is None:
            return outcomes
        failures = await delete_through_bridge(self.bridge, list(pending.values()))
        why = {line: failures[user_id] for line, user_id in pending.items() if user_id in failures}
        if not why:
            return outcomes
        failed = pl.col("line").is_in(list(why)) & pl.col("part").is_null()
        reason = pl.col("line").replace_strict(why, default=None, return_dtype=pl.String)
        return outcomes.with_columns(
            pl.when(failed).then(pl.lit(Outcome.FAILED.value)).otherwise("outcome").alias("outcome"),
            pl.when(failed).then(reason).otherwise("message").alias("message"),
        )

    def _create_records(self, creates: pl.DataFrame, now: int) -> ColumnRows:
        """The mdl_user rows of the new accounts, in the order of `creates`, held column by column: the file's columns
        vary, the site's defaults are one value for every row (a batch's 5,000 rows make no 40-key dict each)."""
        defaults = self.site.new_user_defaults(now)
        present = [f for f in USER_COLUMNS if f in creates.columns]
        user = self.schema.user
        # An empty cell leaves the column as an absent one would: the default, else the table's own (NULL or '');
        # every row gets every column, as one multi-row INSERT needs.
        unset = {name: (None if user.c[name].nullable else "") for name in present if name not in defaults}
        fallback = defaults | unset
        varying: dict[str, list[Any]] = {}
        for name in present:
            empty, numeric = fallback[name], name in NUMERIC_FIELDS
            varying[name] = [empty if v == "" else int(v) if numeric else v for v in creates[name].to_list()]
        varying["password"] = [p or "" for p in creates[NEW_PASSWORD].to_list()]
        shared = {name: value for name, value in fallback.items() if name not in varying}
        return ColumnRows(list(fallback), varying, shared, creates.height)

    async def _insert_accounts(self, conn: AsyncConnection, writes: _Writes) -> tuple[dict[int, int], NewContexts]:
        """The new accounts and their contexts, inserted: line -> id, and the contexts (paths not yet set). Their ids
        are those the INSERT gives when the server guarantees them (gateway.insert_many), else read back by username."""
        creates = writes.creates
        if creates.is_empty():
            return {}, await insert_contexts(self.gateway, conn, ContextLevel.USER, [])
        user = self.schema.user
        new_ids = await self.gateway.insert_many(conn, user, writes.records, writes.written)
        lines = creates[LINE].to_list()
        if new_ids is not None:
            ids = dict(zip(lines, new_ids, strict=True))
        else:
            made = await self.gateway.fetch_in(
                conn,
                user,
                "username",
                creates["username"].to_list(),
                ["id", "username"],
                where=user.c.mnethostid == self.site.mnethostid,
            )
            by_name = dict(zip(made["username"].to_list(), made["id"].to_list(), strict=True))
            ids = {line: by_name[name] for line, name in zip(lines, creates["username"].to_list(), strict=True)}
        contexts = await insert_contexts(
            self.gateway, conn, ContextLevel.USER, [(i, self.system.path) for i in ids.values()]
        )
        return ids, contexts

    async def _complete_accounts(
        self, conn: AsyncConnection, writes: _Writes, ids: dict[int, int], contexts: NewContexts, now: int
    ) -> None:
        """What the new accounts get once inserted: their contexts' paths, profile data and preferences."""
        if not ids:
            return
        await set_context_paths(self.gateway, conn, contexts)
        if self.profile_columns:
            with_ids = writes.creates.with_columns(pl.Series(USERID, list(ids.values()), dtype=pl.Int64))
            await write_profile_data(
                self.gateway,
                conn,
                await plan_profile_data(self.gateway, conn, with_ids, self.fields, new_users=True),
            )
        await set_user_preferences(
            self.gateway,
            conn,
            [
                (ids[line], name, "1")
                for line in writes.generated
                for name in (CREATE_PASSWORD_PREFERENCE, FORCE_CHANGE_PREFERENCE)
            ],
            now,
            self.site.session_timeout,
            new_users=ids.values(),
        )

    def _password_times(self, creates: pl.DataFrame, updates: pl.DataFrame) -> tuple[list[int], list[int]]:
        """The accounts whose preference auth_manual_passwordupdatetime becomes now, because they get a new password
        and their auth is manual (lines of `creates`, ids of `updates`): user_create_user() and user_update_user()
        hand a password to the auth plugin's user_update_password(), and only auth_plugin_manual's sets it (the
        time password expiry counts from).

        Only where a password is really set: a hash, never *NOPASS* or 'to be generated'; on update only where the
        stored hash changes (a password that still matches it is no change, and a re-run stays unchanged)."""
        hashed = pl.col(NEW_PASSWORD).is_not_null() & ~pl.col(NEW_PASSWORD).is_in(LITERAL_PASSWORDS)
        given_auth = pl.col("auth") if "auth" in creates.columns else pl.lit("")
        new = creates.filter(hashed & (given_auth.is_in(["", "manual"])))[LINE].to_list()
        auth = pl.when(given_auth != "").then(given_auth).otherwise(current("auth"))
        changed = updates.filter(hashed & pl.col(CHANGES).list.contains("password") & (auth == "manual"))
        return new, changed[USERID].to_list()

    async def _log_rows(
        self, conn: AsyncConnection, writes: _Writes, created: dict[int, int], contexts: dict[int, Context], now: int
    ) -> tuple[list[Event], WrittenInsert | None]:
        """Moodle's standard log rows of the accounts created and changed (users/log_events.py): their events, and
        their statements written now (while the batch's statements before them run)."""
        events = self._log_events(writes, created, contexts)
        return events, await self.event_log.written(conn, events, now)

    def _log_events(self, writes: _Writes, created: dict[int, int], contexts: dict[int, Context]) -> list[Event]:
        creates, updates = writes.creates, writes.updates
        if not self.event_log.active or (creates.is_empty() and updates.is_empty()):
            return []
        hashed = pl.col(NEW_PASSWORD).is_not_null() & ~pl.col(NEW_PASSWORD).is_in(LITERAL_PASSWORDS)
        internal = list(INTERNAL_PASSWORD_AUTHS)
        given = pl.col("auth") if "auth" in creates.columns else pl.lit("")
        new = creates.select(
            LINE, (hashed & pl.when(given != "").then(given).otherwise(pl.lit("manual")).is_in(internal)).alias("pw")
        )
        auth = pl.when(given != "").then(given).otherwise(current("auth"))
        changed = updates.select(
            LINE, USERID, (hashed & pl.col(CHANGES).list.contains("password") & auth.is_in(internal)).alias("pw")
        )
        known = dict(contexts)
        known.update(writes.contexts)
        written = [(line, created[line], True, bool(pw)) for line, pw in new.iter_rows() if line in created]
        written += [(line, uid, False, bool(pw)) for line, uid, pw in changed.iter_rows()]
        return account_events(written, known)

    def _update_rows(self, updates: pl.DataFrame, now: int) -> list[dict[str, Any]]:
        records = []
        for row in updates.iter_rows(named=True):
            record: dict[str, Any] = {"id": row[USERID], "timemodified": now}
            for name in row[CHANGES]:
                if name == "password":
                    record["password"] = row[NEW_PASSWORD]
                elif not name.startswith(PREFIX):
                    record[name] = int(row[name]) if name in NUMERIC_FIELDS else row[name]
            if row[ACTION] == "revive":
                record["deleted"] = 0
            records.append(record)
        return records

    # -- outcomes -----------------------------------------------------------------------------

    def _outcomes(self, planned: pl.DataFrame, created: dict[int, int], dry_run: bool) -> pl.DataFrame:
        action = pl.col(ACTION)
        would = "would be " if dry_run else ""
        who = pl.format("'{}'", pl.col("username"))
        changed = pl.col(CHANGES).list.join(", ")
        new_id = pl.col(LINE).replace_strict(created, default=None, return_dtype=pl.Int64)
        added = (
            pl.format(f"User account {would}added: {{}}", who)
            if dry_run
            else pl.format("User account added: id {}, {}", new_id, who)
        )
        identity = self.finder.identity
        rules = [
            Rule(action == "failed", Outcome.FAILED, "check", pl.col(PROBLEM)),
            Rule(action == "skipped", Outcome.SKIPPED, "rename", pl.col(SKIP)),
            Rule(
                action == "duplicate",
                Outcome.FAILED,
                "check",
                pl.format("the account {} (id {}) is already changed by an earlier row of this batch", who, USERID),
            ),
            Rule(action == "absent", Outcome.SKIPPED, "delete", pl.format("no account {} to delete", who)),
            Rule(
                action == "protected",
                Outcome.FAILED,
                "check",
                pl.format(
                    "the account {} (id {}) cannot be deleted or suspended: {}",
                    who,
                    USERID,
                    protected_why(self.protected),
                ),
            ),
            Rule(
                action == "delete",
                Outcome.DELETED,
                "delete",
                pl.format(f"User {would}deleted: {{}} (id {{}})", who, USERID),
            ),
            Rule(action == "create", Outcome.CREATED, "create", added),
            Rule(
                action == "mismatch",
                Outcome.FAILED,
                "check",
                pl.format(
                    f"{identity} '{{}}' is the account '{{}}', not {{}}; a username changes only through oldusername"
                    " (setting allow_rename)",
                    shown(pl.col(identity)) if identity in planned.columns else pl.lit(""),
                    current("username"),
                    who,
                ),
            ),
            Rule(
                action == "revive",
                Outcome.UPDATED,
                "revive",
                pl.format(f"User was {would}revived: {{}} (id {{}})", who, USERID),
            ),
            Rule(action == "none", Outcome.UNCHANGED, "none", pl.format("no change: {} (id {})", who, USERID)),
            Rule(
                action.is_in(["update", "rename", "suspend", "reactivate"]),
                Outcome.UPDATED,
                action,
                pl.format(f"User account {would}changed: {{}} (id {{}}): {{}}", who, USERID, changed),
            ),
        ]
        return first_match(planned, rules, _key())[0]

    async def _parts(
        self,
        conn: AsyncConnection,
        planned: pl.DataFrame,
        created: dict[int, int],
        now: int,
        dry_run: bool,
        courses: PlannedEnrolments | None = None,
    ) -> list[pl.DataFrame]:
        """Cohort and course outcomes of the rows whose account exists (or, in a dry run, would); `courses`: the
        course enrolments planned with the batch (_plan_courses()), written here."""
        if "cohort" not in planned.columns and not self.course_indexes:
            return []
        live = self._live(planned, created, dry_run)
        results: list[pl.DataFrame] = []
        events = None if dry_run else self.event_log.ahead(conn, now)
        if "cohort" in planned.columns:
            requests = live.filter(pl.col("cohort") != "").select(
                LINE,
                USERID,
                "cohort",
                (pl.col("cohortid") if "cohortid" in live.columns else pl.lit("")).alias("cohortid"),
            )
            if not requests.is_empty():
                results.append(await self.cohorts.apply(conn, requests, now=now, dry_run=dry_run, events=events))
        if self.course_indexes:
            requests = course_requests(live, self.course_indexes, USERID)
            remote = pl.col("wwwroot") != ""
            results.append(
                outcome_rows(
                    requests.filter(remote),
                    Outcome.FAILED,
                    "enrol",
                    pl.col("course"),
                    pl.format(
                        "wwwroot '{}': enrolment on another (MNET) site is not supported", shown(pl.col("wwwroot"))
                    ),
                    part=pl.col("part"),
                )
            )
            requests = requests.filter(~remote).drop("wwwroot")
            if courses is not None or not requests.is_empty():
                if courses is not None:  # planned with the batch
                    await self.enrolments.write(conn, courses, now=now, events=events)
                    details, effects = courses.outcomes, courses.effects
                else:
                    details, effects = await self.enrolments.apply(
                        conn, requests, now=now, dry_run=dry_run, events=events
                    )
                results.append(details)
                if not dry_run:  # a dirty flag per user and run (staleness.FlaggedUsers)
                    flagged = await self.flagged.mark(
                        self.gateway,
                        conn,
                        effects.dirty_users,
                        now,
                        self.site.session_timeout,
                        new_users=created.values(),
                    )
                    self.effects.update(effects)
                    self.batch_flagged = flagged
        if events:
            await self.event_log.record(conn, events, now)
        return results


def _key() -> pl.Expr:
    return pl.col("username").fill_null("")


def _sorted(outcomes: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(outcomes, how="vertical_relaxed").sort("line", "part", nulls_last=False, maintain_order=True)


async def _never_written(conn: AsyncConnection) -> None:
    raise RuntimeError("a dry run's plan is never written")


@dataclass
class _Writes:
    """A batch's writes as planned (UsersOperation._writes)."""

    creates: pl.DataFrame  # the planned rows that create an account
    records: ColumnRows  # their mdl_user rows, in the same order
    written: WrittenInsert | None  # the INSERT of those rows, written while the batch is planned (MariaDB)
    generated: list[int]  # lines of the creates whose password Moodle's cron generates
    updates: pl.DataFrame  # the planned rows that change an account
    changes: list[dict[str, Any]]  # their mdl_user changes
    profile_changes: pl.DataFrame  # the updated accounts' profile data (plan_profile_data())
    new_times: list[int]  # lines of the creates whose password update time is set
    changed_times: list[int]  # ids of the updated accounts whose password update time is set
    contexts: dict[int, Context]  # user contexts of the updated accounts, for their log rows
    suspended: list[int]  # ids of the accounts suspended (their sessions end)
    deleting: pl.DataFrame  # the planned rows that delete an account
