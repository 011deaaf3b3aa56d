"""User preferences set as Moodle's set_user_preference() sets them, for many users at once (lib/moodlelib.php).

One `mdl_user_preferences` row per (userid, name), unique: an existing row gets the new value in place, the others
are inserted. Then mark_user_preferences_changed(): the `userpreferenceschanged` cache flag of each user (value 1,
expiry now + sessiontimeout), so that the user's open sessions reload their preferences. The guest account keeps no
preferences (set_user_preference() stores nothing for it): the caller leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable

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
) -> None:
    """Set each (userid, name, value), in the caller's transaction; the last value given for a pair wins."""
    wanted = {(int(userid), name): value for userid, name, value in preferences}
    if not wanted:
        return
    table = gateway.schema.user_preferences
    stored = await gateway.fetch_in(
        conn,
        table,
        "userid",
        sorted({userid for userid, _ in wanted}),
        ["id", "userid", "name"],
        where=table.c.name.in_(sorted({name for _, name in wanted})),
    )
    existing = {
        (int(userid), str(name)): int(row_id)
        for row_id, userid, name in stored.select("id", "userid", "name").iter_rows()
    }
    await gateway.update_many(
        conn, table, "id", [{"id": existing[key], "value": value} for key, value in wanted.items() if key in existing]
    )
    await gateway.insert_many(
        conn,
        table,
        [
            {"userid": userid, "name": name, "value": value}
            for (userid, name), value in wanted.items()
            if (userid, name) not in existing
        ],
    )
    await _mark_preferences_changed(gateway, conn, {userid for userid, _ in wanted}, now, session_timeout)


async def _mark_preferences_changed(
    gateway: MoodleGateway, conn: AsyncConnection, user_ids: Iterable[int], now: int, session_timeout: int
) -> None:
    """set_cache_flag('userpreferenceschanged', userid, 1, now + sessiontimeout): the user's flag updated in place,
    or inserted."""
    names = sorted(str(i) for i in set(user_ids))
    flags = gateway.schema.cache_flags
    stored = await gateway.fetch_in(
        conn, flags, "name", names, ["id", "name"], where=flags.c.flagtype == PREFERENCES_CHANGED
    )
    existing = {str(name): int(row_id) for row_id, name in stored.select("id", "name").iter_rows()}
    values = {"value": "1", "expiry": now + session_timeout, "timemodified": now}
    await gateway.update_many(conn, flags, "id", [{"id": existing[n], **values} for n in names if n in existing])
    await gateway.insert_many(
        conn, flags, [{"flagtype": PREFERENCES_CHANGED, "name": n, **values} for n in names if n not in existing]
    )
