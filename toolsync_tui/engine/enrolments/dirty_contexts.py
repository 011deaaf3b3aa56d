"""`accesslib/dirtycontexts` flags, as context::mark_dirty() sets them (moodle-db-semantics §1.4): enabling an enrol
instance marks its course context dirty, so open sessions reload the enrolments it now grants."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from ..gateway import MoodleGateway

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
    existing = await gateway.fetch_in(conn, flags, "name", paths, ["id"], where=flags.c.flagtype == DIRTY_CONTEXTS)
    await gateway.delete_in(conn, flags, "id", existing["id"].to_list())
    await gateway.insert_many(
        conn,
        flags,
        [
            {"flagtype": DIRTY_CONTEXTS, "name": p, "value": "1", "expiry": now + session_timeout, "timemodified": now}
            for p in paths
        ],
    )
