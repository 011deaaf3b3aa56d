"""Database-level invalidation signals, written in the batch's own transaction (moodle-db-semantics §1.4, §11.5).

* `accesslib/dirtyusers` flags make the open sessions of those users reload capabilities and enrolments.
* Deleting `mdl_sessions` rows logs users out on their next request (suspended and deleted accounts).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from .gateway import MoodleGateway

DIRTY_USERS = "accesslib/dirtyusers"
DEFAULT_SESSION_TIMEOUT = 28800  # $CFG->sessiontimeout of a fresh site, in seconds


async def mark_users_dirty(
    gateway: MoodleGateway, conn: AsyncConnection, user_ids: Iterable[int], now: int, session_timeout: int
) -> int:
    """Upsert one dirty flag per user, as mark_user_dirty() does: value 1, expiry now + sessiontimeout."""
    ids = sorted({int(i) for i in user_ids})
    if not ids:
        return 0
    flags = gateway.schema.cache_flags
    existing = await gateway.fetch_in(
        conn, flags, "name", [str(i) for i in ids], ["id"], where=flags.c.flagtype == DIRTY_USERS
    )
    await gateway.delete_in(conn, flags, "id", existing["id"].to_list())
    await gateway.insert_many(
        conn,
        flags,
        [
            {
                "flagtype": DIRTY_USERS,
                "name": str(i),
                "value": "1",
                "expiry": now + session_timeout,
                "timemodified": now,
            }
            for i in ids
        ],
    )
    return len(ids)


async def end_sessions(gateway: MoodleGateway, conn: AsyncConnection, user_ids: Iterable[int]) -> int:
    """Log users out: Moodle resets a session whose mdl_sessions row is gone."""
    return await gateway.delete_in(conn, gateway.schema.sessions, "userid", sorted({int(i) for i in user_ids}))
