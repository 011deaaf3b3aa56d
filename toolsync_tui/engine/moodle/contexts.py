"""Context rows as Moodle writes them: path of context ids from the system context, depth = path length.

Every operation that creates a user, category or course creates its context through here, and every lookup of a
context goes through `system_context` and `instance_contexts`: read from the database, never assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import polars as pl
from sqlalchemy import String, Table, cast, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import recording
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway, chunks

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


class Context(NamedTuple):
    id: int
    path: str  # of context ids from the system context: /1/12/15


def child_path(parent_path: str, context_id: int) -> str:
    return f"{parent_path}/{context_id}"


def depth_of(path: str) -> int:
    return path.count("/")


@dataclass(frozen=True)
class NewContexts:
    """Contexts inserted with depth 0 and no path, as the API first writes them; set_context_paths() sets both."""

    made: dict[int, Context]  # instance id -> (context id, the path it gets)
    table: Table
    parents: dict[str, list[int]]  # parent path -> the new contexts' ids under it


async def create_contexts(
    gateway: MoodleGateway, conn: AsyncConnection, level: ContextLevel, children: Sequence[tuple[int, str]]
) -> dict[int, Context]:
    """Create the contexts of `children` = (instance id, parent context path) pairs, one per instance: inserted, then
    their paths set (a caller with work that needs only their ids does it between the two, while the server sets them).
    Returns instance id -> (context id, path)."""
    new = await insert_contexts(gateway, conn, level, children)
    await set_context_paths(gateway, conn, new)
    return new.made


async def insert_contexts(
    gateway: MoodleGateway, conn: AsyncConnection, level: ContextLevel, children: Sequence[tuple[int, str]]
) -> NewContexts:
    """Like the API: insert with depth 0 and no path (set once the ids are known, by set_context_paths): the ids
    insert_many() gives when the server guarantees them, else read back."""
    table = gateway.schema.context
    if not children:
        return NewContexts({}, table, {})
    parents = dict(children)
    instances = list(parents)
    # Column by column: the instance is the one value that varies (a batch creates thousands of contexts).
    shared = {"contextlevel": int(level), "depth": 0, "path": None, "locked": 0}
    names = ("contextlevel", "instanceid", "depth", "path", "locked")
    ids = await gateway.insert_many(conn, table, ColumnRows(names, {"instanceid": instances}, shared, len(instances)))
    if ids is not None:
        created = dict(zip(instances, ids, strict=True))
    else:
        created = {
            instance: context.id
            for instance, context in (await instance_contexts(gateway, conn, level, instances)).items()
        }
    made: dict[int, Context] = {}
    siblings: dict[str, list[int]] = {}
    for instance, context_id in created.items():
        made[instance] = Context(context_id, child_path(parents[instance], context_id))
        siblings.setdefault(parents[instance], []).append(context_id)
    return NewContexts(made, table, siblings)


async def set_context_paths(gateway: MoodleGateway, conn: AsyncConnection, new: NewContexts) -> None:
    """The depth and path of contexts insert_contexts() inserted."""
    table = new.table
    if len(new.parents) > SET_BASED_PARENTS:
        await gateway.update_many(
            conn,
            table,
            "id",
            [{"id": context_id, "path": path, "depth": depth_of(path)} for context_id, path in new.made.values()],
        )
        return
    # Few parents (every user context is under the system context): path = parent/id computed by the server, one
    # UPDATE per parent and chunk of ids, the same values without sending a path per row.
    for parent, ids in new.parents.items():
        path = literal(f"{parent}/", String) + cast(table.c.id, String)
        # Ids in one unbroken run (as a multi-row INSERT hands them out) are a range: one UPDATE, one index sweep.
        contiguous = max(ids) - min(ids) + 1 == len(ids) == len(set(ids))
        for part in [ids] if contiguous else chunks(ids):
            where = table.c.id.between(min(part), max(part)) if contiguous else table.c.id.in_(part)
            # What the server computes, told to the record: new rows' digests then come from their values.
            known = [{"id": i, "path": child_path(parent, i), "depth": depth_of(parent) + 1} for i in part]
            async with recording.updating(conn, table, where, ["path", "depth"], known):
                await conn.execute(update(table).where(where).values(path=path, depth=depth_of(parent) + 1))


async def system_context(gateway: MoodleGateway, conn: AsyncConnection) -> Context:
    """The system context, the root of every path (id 1, path /1 on every site Moodle installed, but read)."""
    table = gateway.schema.context
    query = (
        select(table.c.id, table.c.path)
        .where(table.c.contextlevel == int(ContextLevel.SYSTEM))
        .order_by(table.c.id)
        .limit(1)
    )
    found = (await conn.execute(query)).first()
    if found is None:
        raise DatabaseError("the database has no system context row: not a Moodle site")
    context_id, path = int(found[0]), found[1]
    return Context(context_id, str(path) if path else child_path("", context_id))


async def instance_contexts(
    gateway: MoodleGateway, conn: AsyncConnection, level: ContextLevel, ids: Sequence[int] | None = None
) -> dict[int, Context]:
    """Instance id -> its context at `level`, for the instances of `ids` that have one (every instance of the level
    when `ids` is None). Moodle keeps one context per level and instance (a unique index)."""
    table = gateway.schema.context
    at_level = table.c.contextlevel == int(level)
    rows: list[tuple[Any, ...]]
    if ids is None:
        query = select(table.c.instanceid, table.c.id, table.c.path).where(at_level)
        rows = [tuple(row) for row in await conn.execute(query)]
    else:
        columns = ["instanceid", "id", "path"]
        found = await gateway.fetch_in(conn, table, "instanceid", sorted(set(ids)), columns, where=at_level)
        rows = list(found.iter_rows())
    return {int(instance): Context(int(context_id), str(path or "")) for instance, context_id, path in rows}


async def course_contexts(gateway: MoodleGateway, conn: AsyncConnection, course_ids: Sequence[int]) -> pl.DataFrame:
    """courseid, contextid, context_path of these courses, as a frame to join."""
    found = await instance_contexts(gateway, conn, ContextLevel.COURSE, course_ids)
    return pl.DataFrame(
        [(course, context.id, context.path) for course, context in found.items()],
        schema={"courseid": pl.Int64, "contextid": pl.Int64, "context_path": pl.String},
        orient="row",
    )


async def move_contexts(gateway: MoodleGateway, conn: AsyncConnection, moves: Sequence[tuple[str, str]]) -> None:
    """(old path, new path) of moved contexts: each, and every context below it, takes the new path prefix, and
    their depth shifts by the difference (moodle-db-semantics §1.1). One UPDATE per moved context."""
    table = gateway.schema.context
    for old, new in moves:
        if old == new:
            continue
        tail = func.substr(table.c.path, len(old) + 1)
        below = (table.c.path == old) | table.c.path.like(f"{old}/%")
        async with recording.updating(conn, table, below, ["path", "depth"]):
            await conn.execute(
                update(table)
                .where(below)
                .values(path=literal(new, String) + tail, depth=table.c.depth + (depth_of(new) - depth_of(old)))
            )
