"""What direct writes leave stale in Moodle, and how it learns of it (moodle-db-semantics §1.4, §6.6, §7, §11.5).

Written in the batch's own transaction: `accesslib/dirtyusers` and `accesslib/dirtycontexts` flags (open sessions
reload capabilities and enrolments; context::mark_dirty() for an enabled enrol instance's course), and ended sessions
(`mdl_sessions` rows deleted: suspended and deleted accounts are logged out on their next request).

After the run: Moodle's cache stores (the enrolment event's session caches, course contacts, the group caches that
never expire), which only Moodle's own PHP reaches, purged through the bridge (contract §4); without a bridge the
report says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ARRAY, ColumnElement, Select, Table, Text, bindparam, delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import recording
from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks

DIRTY_USERS = "accesslib/dirtyusers"
DEFAULT_SESSION_TIMEOUT = 28800  # $CFG->sessiontimeout of a fresh site, in seconds


async def mark_users_dirty(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    user_ids: Iterable[int],
    now: int,
    session_timeout: int,
    *,
    new_users: Iterable[int] = (),
) -> int:
    """Upsert one dirty flag per user, as mark_user_dirty() does: value 1, expiry now + sessiontimeout.
    `new_users`: accounts created in this transaction, which have no flag to replace."""
    ids = sorted({int(i) for i in user_ids})
    if not ids:
        return 0
    flags = gateway.schema.cache_flags
    fresh = set(new_users)
    await _drop_flags(gateway, conn, DIRTY_USERS, [str(i) for i in ids if i not in fresh])
    await gateway.insert_many(conn, flags, _flag_rows(DIRTY_USERS, [str(i) for i in ids], now, session_timeout))
    return len(ids)


def _flag_rows(flagtype: str, names: list[str], now: int, session_timeout: int) -> ColumnRows:
    """One flag a name, value 1, expiring after a session. Column by column: only the name varies (a batch flags
    thousands of users, on the write's critical path)."""
    shared = {"flagtype": flagtype, "value": "1", "expiry": now + session_timeout, "timemodified": now}
    return ColumnRows(("flagtype", "name", "value", "expiry", "timemodified"), {"name": names}, shared, len(names))


async def end_sessions(gateway: MoodleGateway, conn: AsyncConnection, user_ids: Iterable[int]) -> int:
    """Log users out: Moodle resets a session whose mdl_sessions row is gone."""
    return await gateway.delete_in(conn, gateway.schema.sessions, "userid", sorted({int(i) for i in user_ids}))


DIRTY_CONTEXTS = "accesslib/dirtycontexts"


async def mark_contexts_dirty(
    gateway: MoodleGateway, conn: AsyncConnection, context_ids: Iterable[int], now: int, session_timeout: int
) -> None:
    """Upsert one flag per context: name = the context's path, value 1, expiry now + sessiontimeout."""
    ids = sorted({int(i) for i in context_ids})
    if not ids:
        return
    schema = gateway.schema
    paths = [str(p) for p in (await gateway.fetch_in(conn, schema.context, "id", ids, ["path"]))["path"].to_list()]
    flags = schema.cache_flags
    await _drop_flags(gateway, conn, DIRTY_CONTEXTS, paths)
    await gateway.insert_many(conn, flags, _flag_rows(DIRTY_CONTEXTS, paths, now, session_timeout))


async def _drop_flags(gateway: MoodleGateway, conn: AsyncConnection, flagtype: str, names: Sequence[str]) -> None:
    """The stored flags of these names deleted, to be written anew: set_cache_flag() updates a flag in place, which
    leaves the same row but for its id. No read of them first: one DELETE per chunk of names finds them."""
    flags = gateway.schema.cache_flags
    for part in chunks(list(names)):
        where: ColumnElement[bool]
        if gateway.kind == "postgresql":
            where = flags.c.id.in_(_flag_ids(flags, flagtype, part))
        elif gateway.kind == "mariadb":
            # The ids first, through the name index (fetch_in forces it): MariaDB, asked by flagtype and name,
            # went through the flagtype index, every dirty-user flag of the site for each chunk.
            found = await gateway.fetch_in(conn, flags, "name", part, ["id"], where=flags.c.flagtype == flagtype)
            if found.is_empty():
                continue
            where = flags.c.id.in_(found["id"].to_list())
        else:
            where = (flags.c.flagtype == flagtype) & flags.c.name.in_(part)
        await recording.deleting(conn, flags, where)  # the rows, for an undo of the run (when it records)
        await conn.execute(delete(flags).where(where))


def _flag_ids(flags: Table, flagtype: str, names: Sequence[str]) -> Select[tuple[int]]:
    """PostgreSQL: the ids of the flags of these names, one probe of the name index a name (`OFFSET 0` keeps the
    planner from merging the probe into a join). Asked `flagtype = X AND name IN (...)`, it read every flag of the
    type through the flagtype index (one value for most flags of a site) on a table it had no statistics of."""
    stored = flags.alias("toolsync_f")
    given = func.unnest(bindparam("toolsync_names", list(names), type_=ARRAY(Text)))
    wanted = given.table_valued("name").render_derived("toolsync_k")
    probe = select(stored.c.id, stored.c.flagtype).where(stored.c.name == wanted.c.name).offset(0).lateral("toolsync_t")
    return select(probe.c.id).select_from(wanted.join(probe, true())).where(probe.c.flagtype == flagtype)


class FlaggedUsers:
    """The users whose dirty flag a run has written, so that a later batch of the run writes no flag again for them:
    one flag per user and run, in the batch that first changed the user's enrolments (a run stopped half-way leaves
    the flags of what it committed). Moodle's mark_user_dirty() of a later change would only move its expiry on."""

    def __init__(self) -> None:
        self.done: set[int] = set()

    async def mark(
        self,
        gateway: MoodleGateway,
        conn: AsyncConnection,
        user_ids: Iterable[int],
        now: int,
        session_timeout: int,
        *,
        new_users: Iterable[int] = (),
    ) -> set[int]:
        """Flag the users not flagged yet by the run, in the batch's transaction; those flagged. The caller passes
        them to `written` once that batch's write has gone through (a batch rolled back flags nothing)."""
        fresh = {int(i) for i in user_ids} - self.done
        await mark_users_dirty(gateway, conn, fresh, now, session_timeout, new_users=new_users)
        return fresh

    def written(self, user_ids: Iterable[int]) -> None:
        self.done.update(user_ids)


@dataclass
class EnrolmentEffects:
    """What went stale in the batch (or would, in a dry run), for the caller's invalidation (§1.4, §6.6, §7).

    dirty_users: users whose enrolments or roles changed (accesslib/dirtyusers flags);
    group_courses / group_users: courses whose groups or memberships changed, users whose memberships changed
    (core/groupdata and core/user_group_groupings caches);
    contact_courses: courses where a course-contact role ($CFG->coursecontact) was assigned (core/coursecontacts).
    """

    dirty_users: set[int] = field(default_factory=set)
    group_courses: set[int] = field(default_factory=set)
    group_users: set[int] = field(default_factory=set)
    contact_courses: set[int] = field(default_factory=set)
    # course contexts whose disabled instance was enabled: enrol_plugin::update_status() marks them dirty
    enabled_contexts: set[int] = field(default_factory=set)

    def update(self, other: EnrolmentEffects) -> None:
        """Add another batch's effects to these."""
        self.enabled_contexts |= other.enabled_contexts
        self.dirty_users |= other.dirty_users
        self.group_courses |= other.group_courses
        self.group_users |= other.group_users
        self.contact_courses |= other.contact_courses


async def purge_after_run(bridge: MoodleBridge | None, effects: EnrolmentEffects) -> list[str]:
    """Purge what `effects` made stale; the report's note on it (none when nothing went stale)."""
    enrolments = bool(effects.dirty_users or effects.contact_courses)
    if not (enrolments or effects.group_courses or effects.group_users):
        return []
    what = "enrolment and group caches" if enrolments else "group caches"
    if bridge is None:
        return [
            f"{what} were not purged: no Moodle bridge is configured ([bridge] moodle_dir). Logged-in users see "
            "enrolment changes at once (dirty flags); course listings, groups and memberships may lag until Moodle's "
            "caches are purged (php admin/cli/purge_caches.php)."
        ]
    try:
        await bridge.purge(
            events=["changesincategoryenrolment"] if enrolments else [],
            groupdata_courses=sorted(effects.group_courses),
            user_group_groupings_users=sorted(effects.group_users),
            coursecontacts_courses=sorted(effects.contact_courses),
        )
    except BridgeError as exc:
        return [f"{what} were not purged: {exc}"]
    return [f"Moodle's {what} were purged through the bridge"]
