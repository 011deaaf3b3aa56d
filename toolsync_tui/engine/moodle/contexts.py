"""Context rows as Moodle writes them: path of context ids from the system context, depth = path length.

Every operation that creates a user, category or course creates its context through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import polars as pl
from sqlalchemy import String, cast, func, literal, update
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks

SYSTEM_CONTEXT_PATH = "/1"  # the system context: id 1, the root of every path
SITE_COURSE = 1  # the front page course, whose context hangs under the system context

# Up to this many distinct parents in one call, the paths are set by one UPDATE per parent; beyond, per row.
SET_BASED_PARENTS = 8


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
    siblings: dict[str, list[int]] = {}
    for context_id, instance in created.iter_rows():
        result[instance] = (context_id, child_path(parents[instance], context_id))
        siblings.setdefault(parents[instance], []).append(context_id)
    if len(siblings) > SET_BASED_PARENTS:
        await gateway.update_many(
            conn,
            table,
            "id",
            [{"id": context_id, "path": path, "depth": depth_of(path)} for context_id, path in result.values()],
        )
        return result
    # Few parents (every user context is under /1): path = parent/id computed by the server, one UPDATE per
    # parent and chunk of ids, the same values without sending a path per row.
    for parent, ids in siblings.items():
        path = literal(f"{parent}/", String) + cast(table.c.id, String)
        for part in chunks(ids):
            await conn.execute(update(table).where(table.c.id.in_(part)).values(path=path, depth=depth_of(parent) + 1))
    return result


async def course_contexts(gateway: MoodleGateway, conn: AsyncConnection, course_ids: Sequence[int]) -> pl.DataFrame:
    """courseid, contextid, context_path of these courses (one context a course)."""
    context = gateway.schema.context
    found = await gateway.fetch_in(
        conn,
        context,
        "instanceid",
        sorted(set(course_ids)),
        ["instanceid", "id", "path"],
        where=context.c.contextlevel == int(ContextLevel.COURSE),
    )
    schema = {"courseid": pl.Int64, "contextid": pl.Int64, "context_path": pl.String}
    if found.is_empty():
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(found.rows(), schema=schema, orient="row").unique("courseid")


async def move_contexts(gateway: MoodleGateway, conn: AsyncConnection, moves: Sequence[tuple[str, str]]) -> None:
    """(old path, new path) of moved contexts: each, and every context below it, takes the new path prefix, and
    their depth shifts by the difference (moodle-db-semantics §1.1). One UPDATE per moved context."""
    table = gateway.schema.context
    for old, new in moves:
        if old == new:
            continue
        tail = func.substr(table.c.path, len(old) + 1)
        await conn.execute(
            update(table)
            .where((table.c.path == old) | table.c.path.like(f"{old}/%"))
            .values(path=literal(new, String) + tail, depth=table.c.depth + (depth_of(new) - depth_of(old)))
        )
