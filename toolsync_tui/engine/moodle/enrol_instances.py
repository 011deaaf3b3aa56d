"""Enrolment methods (`enrol` rows) added, enabled, disabled and deleted as Moodle 4.5's enrol_plugin API writes them.

* add_instance() (moodle-db-semantics §6.5): status 0 (enabled), enrolstartdate = enrolenddate = 0, sortorder = the
  course's highest + 1, timecreated = timemodified = now, and the plugin's fields (roleid, customint1 ...); the other
  columns keep their defaults.
* update_status(): the status column only, and the course context marked dirty (context::mark_dirty()).
* delete_instance(): unenrol_user() of every user enrolled through the instance (engine/enrolments/unenrol.py), then
  what is left of the instance's own group memberships and role assignments (component 'enrol_<plugin>', itemid =
  the instance), its user_enrolments, the row itself, and the course context marked dirty.

The user enrolments of cohort and meta instances are their plugins' business: Moodle's sync materialises them
(engine/enrol_sync.py), here only the instances are written.

Standard-log events (course_events.py): set_status() and delete_instances() add enrol_instance_updated and
enrol_instance_deleted (after the unenrolments' own events) to `events` when given one; instances_logged() gives the
enrol_instance_created of instances the caller added (add_instance() inserts one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import course_events, recording
from toolsync_tui.engine.moodle.contexts import course_contexts
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.groups import remove_members, touch_groups
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects, mark_contexts_dirty, mark_users_dirty
from toolsync_tui.engine.moodle.unenrol import unenrol

ENABLED, DISABLED = 0, 1  # ENROL_INSTANCE_ENABLED, ENROL_INSTANCE_DISABLED
INSTANCE_COLUMNS = ["id", "enrol", "courseid", "status", "roleid", "customint1", "customint2"]


async def course_instances(
    gateway: MoodleGateway, conn: AsyncConnection, plugin: str, course_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """The plugin's instances in these courses (INSTANCE_COLUMNS), by id."""
    enrol = gateway.schema.enrol
    found = await gateway.fetch_in(
        conn, enrol, "courseid", sorted(set(course_ids)), INSTANCE_COLUMNS, where=enrol.c.enrol == plugin
    )
    rows = found.to_dicts() if found.height else []
    return sorted(rows, key=lambda row: int(row["id"]))


async def next_sortorders(gateway: MoodleGateway, conn: AsyncConnection, course_ids: Sequence[int]) -> dict[int, int]:
    """course id -> the sortorder add_instance() gives a new instance: the course's highest + 1 (0 when none)."""
    enrol = gateway.schema.enrol
    wanted = sorted(set(course_ids))
    found: dict[int, int] = dict.fromkeys(wanted, 0)
    if wanted:
        query = (
            select(enrol.c.courseid, func.max(enrol.c.sortorder))
            .where(enrol.c.courseid.in_(wanted))
            .group_by(enrol.c.courseid)
        )
        found.update({int(c): int(s) + 1 for c, s in await conn.execute(query)})
    return found


async def add_instance(
    gateway: MoodleGateway, conn: AsyncConnection, plugin: str, course_id: int, sortorder: int, now: int, **fields: Any
) -> int:
    """Insert one instance as add_instance() does; its id (instances are few: one statement each, for the id)."""
    row = {
        "enrol": plugin,
        "status": ENABLED,
        "courseid": course_id,
        "sortorder": sortorder,
        "enrolstartdate": 0,
        "enrolenddate": 0,
        "timecreated": now,
        "timemodified": now,
        **fields,
    }
    result = await conn.execute(insert(gateway.schema.enrol).values(row))
    await recording.inserted_one(conn, gateway.schema.enrol, int(result.inserted_primary_key[0]), row)  # type: ignore[index]
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def instances_logged(
    gateway: MoodleGateway, conn: AsyncConnection, instances: Sequence[tuple[int, str, int]]
) -> pl.DataFrame:
    """enrolid, plugin, courseid, contextid of (instance id, plugin, course id) triples, in their order: the frame the
    instance events of course_events.py take."""
    frame = pl.DataFrame(
        list(instances), schema={"enrolid": pl.Int64, "plugin": pl.String, "courseid": pl.Int64}, orient="row"
    )
    contexts = await course_contexts(gateway, conn, frame["courseid"].unique().to_list())
    return frame.join(contexts.select("courseid", "contextid"), on="courseid", maintain_order="left")


async def set_status(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    changes: Sequence[tuple[int, int, int]],
    now: int,
    session_timeout: int,
    *,
    events: list[Event] | None = None,
) -> None:
    """update_status() of (instance id, course id, new status) triples: the status, then the course contexts dirty;
    enrol_instance_updated in `events`."""
    if not changes:
        return
    await gateway.update_many(conn, gateway.schema.enrol, "id", [{"id": i, "status": s} for i, _, s in changes])
    contexts = await course_contexts(gateway, conn, [c for _, c, _ in changes])
    await mark_contexts_dirty(gateway, conn, contexts["contextid"].to_list(), now, session_timeout)
    if events is not None:
        enrol = gateway.schema.enrol
        ids = [i for i, _, _ in changes]
        plugins = dict((await gateway.fetch_in(conn, enrol, "id", ids, ["id", "enrol"])).iter_rows())
        triples = [(i, str(plugins[i]), c) for i, c, _ in changes if i in plugins]
        events += course_events.instances_updated(await instances_logged(gateway, conn, triples))


async def delete_instances(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    instances: Sequence[tuple[int, str, int]],
    now: int,
    session_timeout: int,
    effects: EnrolmentEffects,
    *,
    events: list[Event] | None = None,
) -> dict[int, int]:
    """delete_instance() of (instance id, plugin, course id) triples; instance id -> users unenrolled. What went
    stale is added to `effects`, the standard-log events to `events`."""
    if not instances:
        return {}
    schema = gateway.schema
    ids = sorted({i for i, _, _ in instances})
    frame = pl.DataFrame(
        list(instances), schema={"enrolid": pl.Int64, "plugin": pl.String, "courseid": pl.Int64}, orient="row"
    )
    contexts = await course_contexts(gateway, conn, frame["courseid"].to_list())
    ue = await gateway.fetch_in(conn, schema.user_enrolments, "enrolid", ids, ["id", "enrolid", "userid"])
    done = (
        pl.DataFrame(ue.rows(), schema={"ue_id": pl.Int64, "enrolid": pl.Int64, "userid": pl.Int64}, orient="row")
        .join(frame, on="enrolid")
        .join(contexts, on="courseid")
    )
    if not done.is_empty():
        last = await unenrol(gateway, conn, done, now, events=events)
        effects.dirty_users |= set(done["userid"].to_list())
        effects.contact_courses |= set(done["courseid"].to_list())
        left = last.filter("groups_left")
        effects.group_courses |= set(left["courseid"].to_list())
        effects.group_users |= set(left["userid"].to_list())
    # What unenrol_user() left of the instances' own rows: memberships through groups_remove_member() (logged), role
    # assignments deleted as they are (not logged).
    members, ra = schema.groups_members, schema.role_assignments
    for instance, plugin, _ in instances:
        own = and_(members.c.component == f"enrol_{plugin}", members.c.itemid == instance)
        if events is not None:
            pairs = [tuple(r) for r in await conn.execute(select(members.c.groupid, members.c.userid).where(own))]
            gone = pl.DataFrame(pairs, schema={"groupid": pl.Int64, "userid": pl.Int64}, orient="row")
            await remove_members(gateway, conn, gone, now=now, events=events)
        groups = [int(g) for (g,) in await conn.execute(select(members.c.groupid).where(own).distinct())]
        await recording.deleting(conn, members, own)
        await conn.execute(delete(members).where(own))
        await touch_groups(gateway, conn, groups, now)
        assigned = and_(ra.c.component == f"enrol_{plugin}", ra.c.itemid == instance)
        await recording.deleting(conn, ra, assigned)
        await conn.execute(delete(ra).where(assigned))
    await gateway.delete_in(conn, schema.user_enrolments, "enrolid", ids)
    await gateway.delete_in(conn, schema.enrol, "id", ids)
    if events is not None:
        events += course_events.instances_deleted(await instances_logged(gateway, conn, instances))
    await mark_contexts_dirty(gateway, conn, contexts["contextid"].to_list(), now, session_timeout)
    await mark_users_dirty(gateway, conn, done["userid"].to_list(), now, session_timeout)
    counts = done.group_by("enrolid").len() if not done.is_empty() else pl.DataFrame()
    unenrolled = {int(i): int(n) for i, n in counts.iter_rows()} if counts.height else {}
    return {i: unenrolled.get(i, 0) for i in ids}
