"""Context rows as Moodle writes them: path of context ids from the system context, depth = path length.

Every operation that creates a user, category or course creates its context through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from .gateway import MoodleGateway


class ContextLevel(IntEnum):
    SYSTEM = 10
    USER = 30
    COURSECAT = 40
    COURSE = 50
    MODULE = 70
    BLOCK = 80


def child_path(parent_path: str, context_id: int) -> str:
    return f"{parent_path}/{context_id}"


def depth_of(path: str) -> int:
    return path.count("/")


async def create_contexts(
    gateway: MoodleGateway, conn: AsyncConnection, level: ContextLevel, children: Sequence[tuple[int, str]]
) -> dict[int, tuple[int, str]]:
    """Create the contexts of `children` = (instance id, parent context path) pairs.

    Like the API: insert with depth 0 and no path, then set both once the ids are known.
    Returns instance id -> (context id, path).
    """
    if not children:
        return {}
    table = gateway.schema.context
    await gateway.insert_many(
        conn,
        table,
        [
            {"contextlevel": int(level), "instanceid": instance, "depth": 0, "path": None, "locked": 0}
            for instance, _ in children
        ],
    )
    parents = dict(children)
    created = await gateway.fetch_in(
        conn, table, "instanceid", list(parents), ["id", "instanceid"], where=table.c.contextlevel == int(level)
    )
    result: dict[int, tuple[int, str]] = {}
    for context_id, instance in created.iter_rows():
        result[instance] = (context_id, child_path(parents[instance], context_id))
    await gateway.update_many(
        conn,
        table,
        "id",
        [{"id": context_id, "path": path, "depth": depth_of(path)} for context_id, path in result.values()],
    )
    return result
