"""unenrol_user($instance, $userid) in bulk, as Moodle 4.5 writes it (moodle-db-semantics §6.3).

1. the memberships and role assignments the instance itself made (component 'enrol_<method>', itemid = instance);
2. the user_enrolments row;
3. when it was the user's last enrolment in the course: every remaining role assignment of the user in the course
   context and below it, every group membership in the course, user_lastaccess of the course, and (mod_forum's
   observer of user_enrolment_deleted) the user's forum_digests, forum_subscriptions, forum_track_prefs and
   forum_read rows of the course's forums.

Grades are kept: grade_user_unenrol() needs the course's grade items, a table toolsync does not hold.

With `events` (a list), the standard-log events unenrol_user() triggers are added to it (course_events.py): for each
enrolment, group_member_removed and role_unassigned of what the instance made, then of what the last enrolment takes
(each role in its own context, the course's or one below it), then user_enrolment_deleted with the deleted row and
`lastenrol`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import course_events, recording
from toolsync_tui.engine.moodle.contexts import ContextLevel
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.moodle.groups import memberships, remove_members

# A role assignment as role_unassigned's event needs it, read before it is deleted.
HELD_SCHEMA: dict[str, type[pl.DataType]] = {
    "ra_id": pl.Int64,
    "roleid": pl.Int64,
    "userid": pl.Int64,
    "component": pl.String,
    "itemid": pl.Int64,
    "contextid": pl.Int64,
    "contextlevel": pl.Int64,
    "instanceid": pl.Int64,
    "path": pl.String,
}

PAIRS = 500  # (a, b) pairs per DELETE ... WHERE (a, b) IN (...)


async def fetch_user_enrolments(
    gateway: MoodleGateway, conn: AsyncConnection, users: Sequence[int], instances: Sequence[int]
) -> pl.DataFrame:
    """The user_enrolments rows of these users through these instances: ue_id, enrolid, userid, ue_status, ue_start,
    ue_end."""
    ue = gateway.schema.user_enrolments
    schema = {
        "ue_id": pl.Int64,
        "enrolid": pl.Int64,
        "userid": pl.Int64,
        "ue_status": pl.Int64,
        "ue_start": pl.Int64,
        "ue_end": pl.Int64,
    }
    found = (
        await gateway.fetch_in(
            conn,
            ue,
            "userid",
            users,
            ["id", "enrolid", "userid", "status", "timestart", "timeend"],
            where=ue.c.enrolid.in_(instances),
        )
        if users and instances
        else pl.DataFrame()
    )
    return pl.DataFrame(found.rows(), schema=schema, orient="row") if found.height else pl.DataFrame(schema=schema)


async def stored_enrolments(gateway: MoodleGateway, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
    """rows (enrolid, userid) joined with their stored user_enrolments: ue_id, ue_status, ue_start, ue_end (null
    when the user is not enrolled through that instance)."""
    users = sorted(rows["userid"].drop_nulls().unique().to_list())
    instances = sorted(rows["enrolid"].drop_nulls().unique().to_list())
    stored = await fetch_user_enrolments(gateway, conn, users, instances)
    return rows.join(stored, on=["enrolid", "userid"], how="left", maintain_order="left")


async def unenrol(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    done: pl.DataFrame,
    now: int,
    *,
    events: list[Event] | None = None,
) -> pl.DataFrame:
    """Unenrol each row of `done` (ue_id, enrolid, plugin, userid, courseid, contextid, context_path; one row per
    enrolment). Returns the (courseid, userid) pairs whose last enrolment in the course it was, with `groups_left`
    (whether group memberships were removed). `events`: see the module docstring."""
    schema = gateway.schema
    component = pl.format("enrol_{}", pl.col("plugin"))
    own = done.select("courseid", "userid", component.alias("component"), pl.col("enrolid").alias("itemid"))
    # The rows user_enrolment_deleted carries, read before they go.
    deleted = await _enrolment_rows(gateway, conn, done) if events is not None else None
    # 1. What the instance itself made (manual and self make none; kept for exactness).
    members = await memberships(gateway, conn, done.select("courseid", "userid"))
    await remove_members(
        gateway,
        conn,
        members.join(own, on=["courseid", "userid", "component", "itemid"], how="semi"),
        now=now,
        events=events,
    )
    ra = schema.role_assignments
    if events is not None:
        events += course_events.roles_unassigned(await _own_roles(gateway, conn, done))
    await _delete_tuples(
        conn,
        ra,
        ("userid", "contextid", "component", "itemid"),
        done.select("userid", "contextid", component, "enrolid").rows(),
    )
    # 2. The enrolments.
    await gateway.delete_in(conn, schema.user_enrolments, "id", sorted(done["ue_id"].to_list()))
    # 3. The last enrolment of the user in the course.
    pairs = done.select("courseid", "userid", "contextid", "context_path").unique(["courseid", "userid"])
    left = await _still_enrolled(gateway, conn, pairs)
    last = pairs.join(left, on=["courseid", "userid"], how="anti")
    if not last.is_empty():
        unassigned = await _unassign_in_course(gateway, conn, last)
        if events is not None:  # role_unassign_all() comes before groups_delete_group_members() in unenrol_user()
            events += course_events.roles_unassigned(unassigned)
        in_course = members.join(last, on=["courseid", "userid"], how="semi")
        await remove_members(gateway, conn, in_course, now=now, events=events)
        await _delete_tuples(
            conn, schema.user_lastaccess, ("userid", "courseid"), last.select("userid", "courseid").rows()
        )
        await _forget_forums(gateway, conn, last)
    else:
        in_course = members.clear()
    if deleted is not None and events is not None:
        lastenrol = last.select("courseid", "userid", pl.lit(True).alias("lastenrol"))
        deleted = deleted.join(lastenrol, on=["courseid", "userid"], how="left", maintain_order="left")
        events += course_events.enrolments_deleted(deleted.with_columns(pl.col("lastenrol").fill_null(False)))
    grouped = in_course.select("courseid", "userid").unique().with_columns(pl.lit(True).alias("groups_left"))
    return (
        last.select("courseid", "userid")
        .join(grouped, on=["courseid", "userid"], how="left")
        .with_columns(pl.col("groups_left").fill_null(False))
    )


async def _enrolment_rows(gateway: MoodleGateway, conn: AsyncConnection, done: pl.DataFrame) -> pl.DataFrame:
    """The user_enrolments rows of `done` as stored (course_events.UE_COLUMNS), with plugin, courseid, contextid;
    by id."""
    columns = list(course_events.UE_COLUMNS)
    found = await gateway.fetch_in(conn, gateway.schema.user_enrolments, "id", sorted(done["ue_id"].to_list()), columns)
    if found.is_empty():
        found = pl.DataFrame(schema=dict.fromkeys(columns, pl.Int64))
    found = found.cast({"id": pl.Int64})
    where = done.select(pl.col("ue_id").alias("id"), "plugin", "courseid", "contextid")
    return found.join(where, on="id").sort("id")


async def _own_roles(gateway: MoodleGateway, conn: AsyncConnection, done: pl.DataFrame) -> pl.DataFrame:
    """The role assignments the instances of `done` made for its users in the course context (component
    'enrol_<plugin>', itemid = the instance), as roles_unassigned() takes them."""
    ra = gateway.schema.role_assignments
    wanted = done.select("userid", "contextid", pl.format("enrol_{}", "plugin").alias("component"), "enrolid")
    found: list[tuple[Any, ...]] = []
    for part in chunks(wanted.rows()):
        query = select(ra.c.id, ra.c.roleid, ra.c.userid, ra.c.component, ra.c.itemid, ra.c.contextid).where(
            tuple_(ra.c.userid, ra.c.contextid, ra.c.component, ra.c.itemid).in_(list(part))
        )
        found.extend(tuple(r) for r in await conn.execute(query))
    schema = {k: HELD_SCHEMA[k] for k in ("ra_id", "roleid", "userid", "component", "itemid", "contextid")}
    held = pl.DataFrame(found, schema=schema, orient="row").sort("ra_id")
    courses = done.select("contextid", "courseid").unique()
    return held.join(courses, on="contextid", maintain_order="left").with_columns(
        pl.lit(int(ContextLevel.COURSE), dtype=pl.Int64).alias("contextlevel"), pl.col("courseid").alias("instanceid")
    )


async def _still_enrolled(gateway: MoodleGateway, conn: AsyncConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """(courseid, userid) of `pairs` with an enrolment left in the course (any instance, any status)."""
    ue, enrol = gateway.schema.user_enrolments, gateway.schema.enrol
    found: list[tuple[Any, ...]] = []
    for part in chunks(pairs.select("courseid", "userid").rows()):
        courses = sorted({c for c, _ in part})
        users = sorted({u for _, u in part})
        query = (
            select(enrol.c.courseid, ue.c.userid)
            .select_from(ue.join(enrol, enrol.c.id == ue.c.enrolid))
            .where(enrol.c.courseid.in_(courses), ue.c.userid.in_(users))
            .distinct()
        )
        found.extend(tuple(r) for r in await conn.execute(query))
    return pl.DataFrame(found, schema={"courseid": pl.Int64, "userid": pl.Int64}, orient="row")


async def _unassign_in_course(gateway: MoodleGateway, conn: AsyncConnection, last: pl.DataFrame) -> pl.DataFrame:
    """role_unassign_all(userid, course context, subcontexts): the course context and every context below it. Returns
    the assignments removed, as roles_unassigned() takes them: the course context's first, then those below, by id."""
    ra, context = gateway.schema.role_assignments, gateway.schema.context
    found: list[tuple[Any, ...]] = []
    for part in chunks(sorted(last["userid"].unique().to_list())):
        query = (
            select(
                ra.c.id,
                ra.c.roleid,
                ra.c.userid,
                ra.c.component,
                ra.c.itemid,
                ra.c.contextid,
                context.c.contextlevel,
                context.c.instanceid,
                context.c.path,
            )
            .select_from(ra.join(context, context.c.id == ra.c.contextid))
            .where(ra.c.userid.in_(part))
        )
        found.extend(tuple(r) for r in await conn.execute(query))
    held = pl.DataFrame(found, schema=HELD_SCHEMA, orient="row")
    below = held.join(last.select("userid", "courseid", "context_path"), on="userid").filter(
        (pl.col("path") == pl.col("context_path")) | pl.col("path").str.starts_with(pl.col("context_path") + "/")
    )
    await gateway.delete_in(conn, ra, "id", sorted(below["ra_id"].unique().to_list()))
    return below.unique("ra_id").sort(pl.col("path") != pl.col("context_path"), "ra_id")


async def _forget_forums(gateway: MoodleGateway, conn: AsyncConnection, last: pl.DataFrame) -> None:
    """mod_forum_observer::user_enrolment_deleted for a last enrolment: the user's rows of the course's forums."""
    schema = gateway.schema
    courses = sorted(last["courseid"].unique().to_list())
    forums = await gateway.fetch_in(conn, schema.forum, "course", courses, ["id", "course"])
    if forums.is_empty():
        return
    forums = forums.select(
        pl.col("id").cast(pl.Int64).alias("forum"), pl.col("course").cast(pl.Int64).alias("courseid")
    )
    pairs = last.join(forums, on="courseid").select("userid", "forum").unique().sort("userid", "forum").rows()
    await _delete_tuples(conn, schema.forum_digests, ("userid", "forum"), pairs)
    await _delete_tuples(conn, schema.forum_subscriptions, ("userid", "forum"), pairs)
    await _delete_tuples(conn, schema.forum_track_prefs, ("userid", "forumid"), pairs)
    await _delete_tuples(conn, schema.forum_read, ("userid", "forumid"), pairs)


async def _delete_tuples(
    conn: AsyncConnection, table: Table, columns: Sequence[str], values: Sequence[tuple[Any, ...]]
) -> None:
    """DELETE the rows whose `columns` are one of `values`: one statement per chunk of tuples."""
    key = tuple_(*(table.c[name] for name in columns))
    for part in chunks(sorted(set(values)), size=PAIRS):
        await recording.deleting(conn, table, key.in_(list(part)))
        await conn.execute(delete(table).where(key.in_(list(part))))
