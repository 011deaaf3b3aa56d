"""Delete file (userdelete.csv) and suspend file (usersuspend.csv): one account per row, named as in the users file
(the primary_identity column, else username). Manual operations in the original; here they also run from cron.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.contexts import ContextLevel, instance_contexts
from toolsync_tui.engine.moodle.event_log import EventLog
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.site_settings import UserSite, protected_accounts
from toolsync_tui.engine.moodle.staleness import end_sessions
from toolsync_tui.engine.moodle.user_deletion import delete_users, deletion_settings
from toolsync_tui.engine.rows import LINE, Outcome, Rule, first_match, shown
from toolsync_tui.engine.run.command_file import ColumnSpec, FileProblem
from toolsync_tui.engine.run.operation import Operation
from toolsync_tui.engine.users.accounts import PROBLEM, USERID, AccountFinder, protected_why
from toolsync_tui.engine.users.log_events import account_events

IDENTIFYING = ("username", "idnumber", "email")


async def delete_accounts(
    gateway: MoodleGateway,
    bridge: MoodleBridge | None,
    conn: AsyncConnection,
    users: pl.DataFrame,
    site: UserSite,
    now: int,
    event_log: EventLog,
) -> dict[int, str]:
    """Delete the accounts of `users` (id, username, email, in the order Moodle would delete them), through Moodle's own
    delete_user() when the bridge is configured (Moodle logs it), else directly as delete_user() writes
    (moodle-db-semantics §5.2), its standard-log rows recorded in `event_log`. Returns id -> why, for failures."""
    if users.is_empty():
        return {}
    if bridge is not None:
        return await delete_through_bridge(bridge, users["id"].to_list())
    await delete_users(
        gateway,
        conn,
        users.with_columns(pl.lit(site.mnethostid, dtype=pl.Int64).alias("mnethostid")),
        now=now,
        actor_id=site.actor_id,
        session_timeout=site.session_timeout,
        event_log=event_log,
    )
    return {}


async def delete_through_bridge(bridge: MoodleBridge, ids: list[int]) -> dict[int, str]:
    """Moodle's own delete_user() for each account, in PHP's own transactions: id -> why, for failures. Call it with
    no transaction of ours open on these accounts' rows, or delete_user() waits for it (a lock wait timeout)."""
    if not ids:
        return {}
    try:
        answers = await bridge.delete_users(ids)
    except BridgeError as exc:  # the chunks before the failure were done; the rest were not
        answers = {**dict.fromkeys(ids, f"not deleted: the Moodle bridge failed: {exc}"), **exc.done}
    return {user_id: error for user_id, error in answers.items() if error is not None}


async def check_deletion_path(gateway: MoodleGateway, conn: AsyncConnection, bridge: MoodleBridge | None) -> str:
    """How this run deletes accounts, for the report; FileProblem when it cannot (refused before any row)."""
    if bridge is not None:
        return "accounts are deleted through the Moodle bridge, by Moodle's own delete_user()"
    problem = (await deletion_settings(gateway, conn)).problem
    if problem is not None:
        raise FileProblem(f"{problem}; configure the Moodle bridge ([bridge] moodle_dir) to delete users on this site")
    return (
        "accounts were deleted directly in the database as Moodle's delete_user() does; the files, blocks and "
        "comments of their user context are removed by Moodle's hourly context clean-up task (configure the "
        "Moodle bridge to delete through Moodle itself)"
    )


class _AccountList(Operation):
    columns = ColumnSpec(optional=IDENTIFYING)
    verb: ClassVar[str]

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        identity = self.config.settings.operations.users.primary_identity
        if not any(name in columns for name in IDENTIFYING):
            raise FileProblem(
                f"the header names no account: expected a column {identity} (the users primary_identity setting) "
                "or username"
            )
        self.site = await UserSite.read(self.gateway)
        self.protected = await protected_accounts(self.gateway, conn)
        self.finder = AccountFinder(self.gateway, identity, self.site.mnethostid)

    async def safety_base(self, conn: AsyncConnection) -> int:
        return await self.site.active_accounts(self.gateway, conn)

    async def _accounts(self, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
        """The rows with USERID, PROBLEM, `key` (the value that names the account) and the account's state."""
        rows = rows.with_columns(
            pl.col(name).fill_null("").str.strip_chars() if name in rows.columns else pl.lit("").alias(name)
            for name in IDENTIFYING
        ).with_columns(pl.col("username").str.to_lowercase())
        found = await self.finder.find(conn, rows)
        rows = rows.join(found, on=LINE, how="left")
        key = self.finder.identity
        rows = rows.with_columns(
            pl.when(pl.col(key) != "").then(pl.col(key)).otherwise(pl.col("username")).alias("key")
        )
        user = self.schema.user
        ids = rows[USERID].drop_nulls().unique().to_list()
        stored = await self.gateway.fetch_in(conn, user, "id", ids, ["id", "username", "email", "deleted", "suspended"])
        stored = stored.select(
            pl.col("id").cast(pl.Int64).alias(USERID),
            pl.col("username").cast(pl.String).alias("stored_username"),
            pl.col("email").cast(pl.String).alias("stored_email"),
            pl.col("deleted").cast(pl.Int64),
            pl.col("suspended").cast(pl.Int64),
        )
        return rows.join(stored, on=USERID, how="left")

    def _refused(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The outcomes every list shares (no key, problem, absent, already deleted, protected) and the rows left."""
        key = shown(pl.col("key"))
        why_protected = protected_why(self.protected)
        rules = [
            Rule(
                pl.col("key") == "",
                Outcome.FAILED,
                "check",
                "the row names no account: its username (or identity) is empty",
            ),
            Rule(pl.col(PROBLEM).is_not_null(), Outcome.FAILED, "check", pl.col(PROBLEM)),
            Rule(pl.col(USERID).is_null(), Outcome.SKIPPED, "check", pl.format("no account '{}'; nothing to do", key)),
            Rule(
                pl.col("deleted") == 1,
                Outcome.UNCHANGED,
                "check",
                pl.format("the account '{}' is already deleted", key),
            ),
            Rule(
                why_protected.is_not_null(),
                Outcome.FAILED,
                "check",
                pl.format(f"the account '{{}}' (id {{}}) cannot be {self.verb}: {{}}", key, USERID, why_protected),
            ),
        ]
        return first_match(rows, rules, pl.col("key"))


class DeleteUsers(_AccountList):
    name = "deleteusers"
    title = "Delete users"
    verb = "deleted"
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"delete"})
    uses_bridge = True

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        await super().prepare(conn, columns)
        self.deletion_note = await check_deletion_path(self.gateway, conn, self.bridge)
        self.deleted_any = False

    async def finish(self, dry_run: bool) -> list[str]:
        return [self.deletion_note] if getattr(self, "deleted_any", False) and not dry_run else []

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        refused, left = self._refused(await self._accounts(conn, rows))
        # The same account twice in a batch: the first row deletes it.
        first = pl.col(LINE) == pl.col(LINE).min().over(USERID)
        again, left = first_match(
            left, [Rule(~first, Outcome.UNCHANGED, "none", "the account is deleted by an earlier row")], pl.col("key")
        )
        failures: dict[int, str] = {}
        if not dry_run:
            users = left.sort(LINE).select(
                pl.col(USERID).alias("id"),
                pl.col("stored_username").alias("username"),
                pl.col("stored_email").alias("email"),
            )
            failures = await delete_accounts(
                self.gateway, self.bridge, conn, users, self.site, int(time.time()), self.event_log
            )
            self.deleted_any |= not users.is_empty()
        would = "would be " if dry_run else ""
        deleted, _ = first_match(
            left,
            [
                Rule(
                    pl.col(USERID).is_in(list(failures)),
                    Outcome.FAILED,
                    "delete",
                    pl.col(USERID).replace_strict(failures, default="", return_dtype=pl.String),
                ),
                Rule(
                    pl.lit(True),
                    Outcome.DELETED,
                    "delete",
                    pl.format(f"User {would}deleted: '{{}}' (id {{}})", "stored_username", USERID),
                ),
            ],
            pl.col("key"),
        )
        return pl.concat([refused, again, deleted]).sort("line")


class SuspendUsers(_AccountList):
    name = "suspendusers"
    title = "Suspend users"
    verb = "suspended"
    destructive_actions: ClassVar[frozenset[str]] = frozenset({"suspend"})

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        refused, left = self._refused(await self._accounts(conn, rows))
        first = pl.col(LINE) == pl.col(LINE).min().over(USERID)
        already = (pl.col("suspended") == 1) | ~first
        if not dry_run:
            now = int(time.time())
            suspending = left.filter(~already).sort(LINE)
            suspend = suspending[USERID].to_list()
            await self.gateway.update_many(
                conn,
                self.schema.user,
                "id",
                [{"id": user_id, "suspended": 1, "timemodified": now} for user_id in suspend],
            )
            await end_sessions(self.gateway, conn, suspend)
            await self._log(conn, suspending, now)
        would = "would be " if dry_run else ""
        decided, _ = first_match(
            left,
            [
                Rule(
                    already,
                    Outcome.UNCHANGED,
                    "none",
                    pl.format("the account '{}' (id {}) is already suspended", "stored_username", USERID),
                ),
                Rule(
                    pl.lit(True),
                    Outcome.UPDATED,
                    "suspend",
                    pl.format(f"User {would}suspended and logged out: '{{}}' (id {{}})", "stored_username", USERID),
                ),
            ],
            pl.col("key"),
        )
        return pl.concat([refused, decided]).sort("line")

    async def _log(self, conn: AsyncConnection, suspending: pl.DataFrame, now: int) -> None:
        """Moodle suspends through user_update_user(), which logs user_updated: one row per account suspended, in line
        order, as the users file logs its own (users/log_events.py)."""
        if not self.event_log.active or suspending.is_empty():
            return
        contexts = await instance_contexts(self.gateway, conn, ContextLevel.USER, suspending[USERID].to_list())
        changes = [(line, user_id, False, False) for line, user_id in suspending.select(LINE, USERID).iter_rows()]
        await self.event_log.record(conn, account_events(changes, contexts), now)
