"""`enable` and `disable`: update_user_enrol($instance, $userid, $status, $timestart, $timeend) (moodle-db-semantics
§6.2): status, the dates only when the row gives them (the original also wrote timestart = now on every run, so no
re-run was ever unchanged), modifierid and timemodified. Role assignments stay: Moodle keeps them on suspension."""

from __future__ import annotations

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import course_events
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.unenrol import fetch_user_enrolments

ACTIVE, SUSPENDED = 0, 1  # ENROL_USER_ACTIVE, ENROL_USER_SUSPENDED


async def course_enrolments(gateway: MoodleGateway, conn: AsyncConnection, rows: pl.DataFrame) -> pl.DataFrame:
    """Role mode: every enrolment of the row's user in the row's course, any method: one row per (row, enrolment)
    with ue_id, enrolid, plugin, ue_status, ue_start, ue_end; rows without any are left out."""
    enrol = gateway.schema.enrol
    courses = sorted(rows["courseid"].unique().to_list())
    instances = await gateway.fetch_in(conn, enrol, "courseid", courses, ["id", "courseid", "enrol"])
    if instances.is_empty():
        return (
            rows.clear()
            .with_columns(
                pl.lit(None, dtype=pl.Int64).alias(c) for c in ("ue_id", "enrolid", "ue_status", "ue_start", "ue_end")
            )
            .with_columns(pl.lit(None, dtype=pl.String).alias("plugin"))
        )
    instances = instances.select(
        pl.col("id").cast(pl.Int64).alias("enrolid"),
        pl.col("courseid").cast(pl.Int64),
        pl.col("enrol").cast(pl.String).alias("plugin"),
    )
    users = sorted(rows["userid"].unique().to_list())
    stored = await fetch_user_enrolments(gateway, conn, users, sorted(instances["enrolid"].to_list()))
    stored = stored.join(instances, on="enrolid")
    return rows.drop("enrolid", "plugin", strict=False).join(stored, on=["courseid", "userid"]).sort("__row", "ue_id")


def plan_status(enrolments: pl.DataFrame) -> pl.DataFrame:
    """new_status, new_start, new_end and `changes` (what differs, for the message) per enrolment row."""
    target = pl.when(pl.col("command") == "enable").then(pl.lit(ACTIVE)).otherwise(pl.lit(SUSPENDED))
    planned = enrolments.with_columns(
        target.alias("new_status"),
        pl.coalesce("start_given", "ue_start").alias("new_start"),
        pl.coalesce("end_given", "ue_end").alias("new_end"),
    )
    return planned.with_columns(
        pl.concat_str(
            [
                pl.when(pl.col("new_status") != pl.col("ue_status")).then(
                    pl.when(pl.col("new_status") == ACTIVE).then(pl.lit("enabled")).otherwise(pl.lit("suspended"))
                ),
                pl.when(pl.col("new_start") != pl.col("ue_start")).then(pl.lit("start")),
                pl.when(pl.col("new_end") != pl.col("ue_end")).then(pl.lit("end")),
            ],
            separator=", ",
            ignore_nulls=True,
        ).alias("changes")
    )


async def write_status(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    planned: pl.DataFrame,
    *,
    now: int,
    actor_id: int,
    events: list[Event] | None = None,
) -> None:
    """update_user_enrol() of the rows whose `changes` are not empty; user_enrolment_updated in `events`."""
    changed = planned.filter(pl.col("changes") != "")
    await gateway.update_many(
        conn,
        gateway.schema.user_enrolments,
        "id",
        [
            {
                "id": ue_id,
                "status": status,
                "timestart": start,
                "timeend": end,
                "modifierid": actor_id,
                "timemodified": now,
            }
            for ue_id, status, start, end in changed.select("ue_id", "new_status", "new_start", "new_end").rows()
        ],
    )
    if events is not None:
        events += course_events.enrolments_updated(changed.unique("ue_id", maintain_order=True))
