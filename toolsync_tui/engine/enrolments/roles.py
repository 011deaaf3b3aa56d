"""Rows without an `enrol` column: role_assign() / role_unassign() in the course context, component '' and itemid 0
(moodle-db-semantics §6.4), no enrolment. Only assignments of component '' are looked at or removed: those of an
enrol plugin (cohort, meta ...) belong to it."""

from __future__ import annotations

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import course_events
from toolsync_tui.engine.moodle.contexts import ContextLevel
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway

RA_KEY = ["contextid", "userid"]


async def plan_roles(gateway: MoodleGateway, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
    """Per row (userid, contextid, roleid, command add/del/shift): `held` (the role is assigned), `others` (ids of
    the user's other component '' assignments in the context, list), `other_roles` (their role ids)."""
    ra = gateway.schema.role_assignments
    users = sorted(rows["userid"].unique().to_list())
    contexts = sorted(rows["contextid"].unique().to_list())
    schema = {"id": pl.Int64, "roleid": pl.Int64, "contextid": pl.Int64, "userid": pl.Int64}
    found = await gateway.fetch_in(
        conn,
        ra,
        "userid",
        users,
        list(schema),
        where=ra.c.contextid.in_(contexts) & (ra.c.component == "") & (ra.c.itemid == 0),
    )
    stored = pl.DataFrame(found.rows(), schema=schema, orient="row") if found.height else pl.DataFrame(schema=schema)
    keyed = rows.select("__row", *RA_KEY, "roleid").join(stored.rename({"roleid": "held_role"}), on=RA_KEY)
    summary = keyed.group_by("__row").agg(
        (pl.col("held_role") == pl.col("roleid")).any().alias("held"),
        pl.col("id").filter(pl.col("held_role") != pl.col("roleid")).alias("others"),
        pl.col("held_role").filter(pl.col("held_role") != pl.col("roleid")).alias("other_roles"),
    )
    planned = rows.join(summary, on="__row", how="left", maintain_order="left")
    return planned.with_columns(
        pl.col("held").fill_null(False),
        pl.col("others").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
        pl.col("other_roles").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
    ).with_columns(
        pl.when(pl.col("command") == "add")
        .then(pl.when(pl.col("held")).then(pl.lit("none")).otherwise(pl.lit("assign")))
        .when(pl.col("command") == "del")
        .then(pl.when(pl.col("held")).then(pl.lit("unassign")).otherwise(pl.lit("none")))
        .otherwise(
            pl.when(pl.col("held") & (pl.col("others").list.len() == 0)).then(pl.lit("none")).otherwise(pl.lit("shift"))
        )
        .alias("role_action")
    )


async def write_roles(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    planned: pl.DataFrame,
    *,
    now: int,
    actor_id: int,
    events: list[Event] | None = None,
) -> None:
    """Remove what role_action removes (the role itself for unassign, the others for shift), assign what it adds;
    role_unassigned then role_assigned in `events`."""
    ra = gateway.schema.role_assignments
    action = pl.col("role_action")
    unassigned = planned.filter(action == "unassign").select(*RA_KEY, "roleid")
    shifted = planned.filter(action == "shift").select(
        "contextid", "courseid", "userid", pl.col("others").alias("ra_id"), pl.col("other_roles").alias("roleid")
    )
    # (ra_id, roleid, contextid, courseid, userid) of every assignment removed.
    gone = [shifted.explode("ra_id", "roleid").drop_nulls("ra_id")]
    removed = gone[0]["ra_id"].to_list()
    if unassigned.height:
        held = await gateway.fetch_in(
            conn,
            ra,
            "userid",
            sorted(unassigned["userid"].unique().to_list()),
            ["id", "roleid", "contextid", "userid"],
            where=ra.c.contextid.in_(sorted(unassigned["contextid"].unique().to_list()))
            & (ra.c.component == "")
            & (ra.c.itemid == 0),
        )
        held = held.cast({"id": pl.Int64, "roleid": pl.Int64, "contextid": pl.Int64, "userid": pl.Int64})
        held = held.join(unassigned, on=[*RA_KEY, "roleid"], how="semi")
        removed += held["id"].to_list()
        courses = planned.select("contextid", "courseid").unique()
        gone.append(held.rename({"id": "ra_id"}).join(courses, on="contextid"))
    await gateway.delete_in(conn, ra, "id", sorted(set(removed)))
    if events is not None:
        events += course_events.roles_unassigned(_in_course(pl.concat(gone, how="diagonal_relaxed")))
    new = planned.filter((action == "assign") | ((action == "shift") & ~pl.col("held")))
    await gateway.insert_many(
        conn,
        ra,
        [
            {
                "roleid": role,
                "contextid": context,
                "userid": user,
                "timemodified": now,
                "modifierid": actor_id,
                "component": "",
                "itemid": 0,
                "sortorder": 0,
            }
            for role, context, user in new.select("roleid", "contextid", "userid").unique().rows()
        ],
    )
    if events is not None and new.height:
        # The new assignments' ids, read back (role_assign() logs each with its id).
        stored = await gateway.fetch_in(
            conn,
            ra,
            "userid",
            sorted(new["userid"].unique().to_list()),
            ["id", "roleid", "contextid", "userid"],
            where=ra.c.contextid.in_(sorted(new["contextid"].unique().to_list()))
            & ra.c.roleid.in_(sorted(new["roleid"].unique().to_list()))
            & (ra.c.component == "")
            & (ra.c.itemid == 0),
        )
        stored = stored.cast({"id": pl.Int64, "roleid": pl.Int64, "contextid": pl.Int64, "userid": pl.Int64})
        stored = stored.sort("id").unique([*RA_KEY, "roleid"], keep="first").rename({"id": "ra_id"})
        made = new.select(*RA_KEY, "roleid", "courseid").unique(maintain_order=True)
        events += course_events.roles_assigned(made.join(stored, on=[*RA_KEY, "roleid"], maintain_order="left"))


def _in_course(removed: pl.DataFrame) -> pl.DataFrame:
    """Assignments removed in course contexts (component '', itemid 0), as roles_unassigned() takes them; by id."""
    return (
        removed.unique("ra_id")
        .sort("ra_id")
        .with_columns(
            pl.lit("").alias("component"),
            pl.lit(0, dtype=pl.Int64).alias("itemid"),
            pl.lit(int(ContextLevel.COURSE), dtype=pl.Int64).alias("contextlevel"),
            pl.col("courseid").alias("instanceid"),
        )
    )
