"""User preferences set as Moodle's set_user_preference() sets them, for many users at once (lib/moodlelib.php).

One `mdl_user_preferences` row per (userid, name), unique: an existing row gets the new value in place, the others
are inserted. Then mark_user_preferences_changed(): the `userpreferenceschanged` cache flag of each user (value 1,
expiry now + sessiontimeout), so that the user's open sessions reload their preferences. The guest account keeps no
preferences (set_user_preference() stores nothing for it): the caller leaves it out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway

PREFERENCES_CHANGED = "userpreferenceschanged"
PASSWORD_UPDATE_TIME = "auth_manual_passwordupdatetime"  # auth_plugin_manual::user_update_password(), password expiry


async def set_user_preferences(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    preferences: Iterable[tuple[int, str, str]],
    now: int,
    session_timeout: int,
    *,
    new_users: Collection[int] = (),
) -> None:
    """Set each (userid, name, value), in the caller's transaction; the last value given for a pair wins.
    `new_users`: accounts created in this transaction, which have no preference or flag to look up."""
    wanted = {(int(userid), name): value for userid, name, value in preferences}
    if not wanted:
        return
    table = gateway.schema.user_preferences
    fresh = set(new_users)
    existing = await _stored(
        gateway,
        conn,
        table,
        sorted({userid for userid, _ in wanted} - fresh),
        ["id", "userid", "name"],
        table.c.name.in_(sorted({name for _, name in wanted})),
    )
    stored = {(int(userid), str(name)): int(row_id) for row_id, userid, name in existing}
    await gateway.update_many(
        conn, table, "id", [{"id": stored[key], "value": value} for key, value in wanted.items() if key in stored]
    )
    await gateway.insert_many(
        conn,
        table,
        [
            {"userid": userid, "name": name, "value": value}
            for (userid, name), value in wanted.items()
            if (userid, name) not in stored
        ],
    )
    await _mark_preferences_changed(gateway, conn, {userid for userid, _ in wanted}, fresh, now, session_timeout)


async def _mark_preferences_changed(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    user_ids: Iterable[int],
    fresh: Collection[int],
    now: int,
    session_timeout: int,
) -> None:
    """set_cache_flag('userpreferenceschanged', userid, 1, now + sessiontimeout): the user's flag updated in place,
    or inserted (`fresh` users have none to look up)."""
    ids = set(user_ids)
    names = sorted(str(i) for i in ids)
    flags = gateway.schema.cache_flags
    found = await _stored(
        gateway,
        conn,
        flags,
        sorted(str(i) for i in ids - set(fresh)),
        ["id", "name"],
        flags.c.flagtype == PREFERENCES_CHANGED,
        key="name",
    )
    existing = {str(name): int(row_id) for row_id, name in found}
    values = {"value": "1", "expiry": now + session_timeout, "timemodified": now}
    await gateway.update_many(conn, flags, "id", [{"id": existing[n], **values} for n in names if n in existing])
    await gateway.insert_many(
        conn, flags, [{"flagtype": PREFERENCES_CHANGED, "name": n, **values} for n in names if n not in existing]
    )


async def _stored(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    keys: Sequence[Any],
    columns: Sequence[str],
    where: ColumnElement[bool],
    key: str = "userid",
) -> list[tuple[Any, ...]]:
    """The stored rows (as tuples of `columns`) whose `key` is one of `keys`; no query when there is none."""
    if not keys:
        return []
    return list((await gateway.fetch_in(conn, table, key, keys, columns, where=where)).select(columns).iter_rows())
