"""The enrolments file's rows: their columns, commands and values, checked before anything is looked up or written.

A row is valid or fails as a whole (bad command, bad gcmd, bad date, unknown user/course/role): the original would
run half a row; here a row with a bad value does nothing, so its tryback line can simply be run again.
"""

from __future__ import annotations

import polars as pl

from toolsync_tui.engine.moodle.text_match import collation_key
from toolsync_tui.engine.parts.course_enrolments import DATE_EXPECTED, timestamp
from toolsync_tui.engine.rows import LINE, shown
from toolsync_tui.engine.run.command_file import ColumnSpec

GROUP_COLUMNS = tuple(f"g{n}" for n in range(1, 10))
ENROLS_FILE = ColumnSpec(
    required=("rolename", "cid", "uid"),
    optional=("cmd", "enrol", "starttime", "endtime", "gcmd", *GROUP_COLUMNS),
    short_rows=True,
)
COMMANDS = ("add", "del", "shift", "enable", "disable")
ALIASES = {"delete": "del"}
GROUP_COMMANDS = ("gadd", "gaddcreate", "greplace", "greplacecreate", "gdel")
GEN = "__gen"  # the row's rank among the batch's rows of the same user and course: rows apply generation by generation
ROLE_MODE = "__role_mode"  # no enrol column: role assignments only


def normalised(rows: pl.DataFrame, *, default_cmd: str, timezone: str) -> pl.DataFrame:
    """Trimmed text columns (absent: ""), `command`, `plugin` (null in role mode), `group_command`, the dates as
    `start_given`/`end_given` (null when empty or bad) and GEN."""
    present = rows.columns
    role_mode = "enrol" not in present

    def text(name: str) -> pl.Expr:
        value = pl.col(name).cast(pl.String).fill_null("").str.strip_chars() if name in present else pl.lit("")
        return value.alias(name)

    names = ("rolename", "cid", "uid", "cmd", "enrol", "starttime", "endtime", "gcmd", *GROUP_COLUMNS)
    out = rows.select(pl.col(LINE).cast(pl.Int64), *(text(n) for n in names))
    command = pl.col("cmd").str.to_lowercase() if "cmd" in present else pl.lit(default_cmd)
    return out.with_columns(
        command.replace(ALIASES).alias("command"),
        pl.lit(role_mode).alias(ROLE_MODE),
        # enrol column present but empty: manual, as the original reads it.
        (
            pl.lit(None, dtype=pl.String)
            if role_mode
            else pl.when(pl.col("enrol") == "").then(pl.lit("manual")).otherwise(pl.col("enrol").str.to_lowercase())
        ).alias("plugin"),
        pl.col("gcmd").str.to_lowercase().alias("group_command"),
        timestamp(pl.col("starttime"), timezone).alias("start_given"),
        timestamp(pl.col("endtime"), timezone).alias("end_given"),
        pl.int_range(pl.len(), dtype=pl.Int64)
        # Whatever any site's lookup may deem the same user and course (a superset: a later generation at worst).
        .over(collation_key(pl.col("uid")), collation_key(pl.col("cid")))
        .alias(GEN),
    )


def value_problem() -> pl.Expr:
    """Why a row fails on its own values (no database needed); null when they are fine."""
    commands = ", ".join(COMMANDS[:2]) + "/delete, " + ", ".join(COMMANDS[2:])
    return (
        pl.when(~pl.col("command").is_in(COMMANDS))
        .then(pl.format(f"cmd '{{}}' is not a command; expected {commands}", shown(pl.col("cmd"))))
        .when((pl.col("gcmd") != "") & ~pl.col("group_command").is_in(GROUP_COMMANDS))
        .then(
            pl.format(
                f"gcmd '{{}}' is not a group command; expected {', '.join(GROUP_COMMANDS)}", shown(pl.col("gcmd"))
            )
        )
        .when((pl.col("gcmd") != "") & ~pl.any_horizontal(pl.col(c) != "" for c in GROUP_COLUMNS))
        .then(pl.format("gcmd '{}' names no group: g1 ... g9 are empty", pl.col("gcmd")))
        .when((pl.col("starttime") != "") & pl.col("start_given").is_null())
        .then(pl.format(f"starttime '{{}}': expected {DATE_EXPECTED}", shown(pl.col("starttime"))))
        .when((pl.col("endtime") != "") & pl.col("end_given").is_null())
        .then(pl.format(f"endtime '{{}}': expected {DATE_EXPECTED}", shown(pl.col("endtime"))))
        .when(pl.col("uid") == "")
        .then(pl.lit("empty uid: the row names no user"))
        .when(pl.col("cid") == "")
        .then(pl.lit("empty cid: the row names no course"))
        .when(pl.col("plugin") == "sync")
        .then(pl.lit("enrol 'sync' (the separate enrol_sync plugin) is not supported; expected manual or self"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
