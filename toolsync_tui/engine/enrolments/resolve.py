"""File identifiers to ids, in bulk: the row's user, course (with its context) and role; and the enrol instance a
row with an `enrol` column goes through."""

from __future__ import annotations

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.enrolments.rows import ROLE_MODE
from toolsync_tui.engine.moodle.contexts import course_contexts
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup, live_users
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.parts.course_enrolments import DIRECT_PLUGINS
from toolsync_tui.engine.rows import shown

CONTEXT_SCHEMA: dict[str, type[pl.DataType]] = {"contextid": pl.Int64, "courseid": pl.Int64, "context_path": pl.String}


class Resolver:
    """Users by `user_identifier` (accounts not deleted), courses by `course_identifier`, roles by shortname."""

    def __init__(self, gateway: MoodleGateway, *, user_identifier: str, course_identifier: str) -> None:
        schema = gateway.schema
        self.gateway = gateway
        self.user_identifier = user_identifier
        self.course_identifier = course_identifier
        # An enrolments run creates, deletes or renames no user and no course: each identifier is looked up once per
        # run (the safety pre-pass's answers serve the run itself), as are the course contexts.
        self.users = live_users(gateway, user_identifier, ["id", "username"])
        self.courses = KeyLookup(
            gateway, schema.course, course_identifier, ["id", "category", "shortname"], remember=True
        )
        self.contexts = pl.DataFrame(schema=CONTEXT_SCHEMA)

    async def resolve(self, conn: AsyncConnection, rows: pl.DataFrame, roles: pl.DataFrame) -> pl.DataFrame:
        """userid, username, user_problem/user_matches; courseid, shortname, course_category, course_problem/
        course_matches, contextid, context_path; roleid, role_shortname, role_in_course."""
        users = (await self.users.resolve(conn, rows["uid"])).select(
            "uid",
            pl.col("problem").alias("user_problem"),
            pl.col("id").cast(pl.Int64).alias("userid"),
            pl.col("username").cast(pl.String),
            pl.col("matches").cast(pl.Int64).alias("user_matches"),
        )
        courses = (await self.courses.resolve(conn, rows["cid"])).select(
            "cid",
            pl.col("problem").alias("course_problem"),
            pl.col("id").cast(pl.Int64).alias("courseid"),
            pl.col("shortname").cast(pl.String),
            pl.col("category").cast(pl.Int64).alias("course_category"),
            pl.col("matches").cast(pl.Int64).alias("course_matches"),
        )
        rows = rows.join(users, on="uid", how="left", maintain_order="left")
        rows = rows.join(courses, on="cid", how="left", maintain_order="left")
        contexts = await self._contexts(conn, rows["courseid"])
        rows = rows.join(contexts, on="courseid", how="left", maintain_order="left")
        named = roles.select(
            "rolekey",
            pl.col("roleid"),
            pl.col("rolename").alias("role_shortname"),
            pl.col("in_course").alias("role_in_course"),
        )
        given = TextMatch(self.gateway.kind).given(pl.col("rolename"))  # as read_enrolment_site() keys the roles
        return rows.with_columns(given.alias("rolekey")).join(named, on="rolekey", how="left", maintain_order="left")

    async def _contexts(self, conn: AsyncConnection, courses: pl.Series) -> pl.DataFrame:
        """contextid, courseid, context_path of the course contexts, each course's read once per run."""
        ids = courses.drop_nulls().unique()
        missing = sorted(ids.filter(~ids.is_in(self.contexts["courseid"].implode())).to_list())
        if missing:
            found = await course_contexts(self.gateway, conn, missing)
            self.contexts = pl.concat([self.contexts, found.select(self.contexts.columns)])
        return self.contexts

    def problem(self, course_roles: str, installed: frozenset[str], enabled: frozenset[str]) -> pl.Expr:
        """Why a resolved row cannot go on (user, course, role, enrol method), null when it can."""
        uid, cid, role = shown(pl.col("uid")), shown(pl.col("cid")), shown(pl.col("rolename"))
        command = pl.col("command")
        role_mode = pl.col(ROLE_MODE)
        # Enrol mode: add and shift take the instance's default role when rolename is empty; role mode needs one.
        needs_role = command.is_in(["add", "shift"]) | (role_mode & (command == "del"))
        methods = " or ".join(DIRECT_PLUGINS)
        plugin = pl.col("plugin")
        return (
            pl.when(pl.col("user_problem").is_not_null())
            .then(pl.format("uid: {} (user_identifier)", "user_problem"))
            .when(pl.col("userid").is_null())
            .then(pl.format(f"uid '{{}}': no user has this {self.user_identifier} (user_identifier)", uid))
            .when(pl.col("user_matches") > 1)
            .then(
                pl.format(f"uid '{{}}' is ambiguous: {{}} users have this {self.user_identifier}", uid, "user_matches")
            )
            .when(pl.col("course_problem").is_not_null())
            .then(pl.format("cid: {} (course_identifier)", "course_problem"))
            .when(pl.col("courseid").is_null())
            .then(pl.format(f"cid '{{}}': no course has this {self.course_identifier} (course_identifier)", cid))
            .when(pl.col("course_matches") > 1)
            .then(
                pl.format(
                    f"cid '{{}}' is ambiguous: {{}} courses have this {self.course_identifier}", cid, "course_matches"
                )
            )
            .when(pl.col("course_category") == 0)
            .then(pl.format("cid '{}' is the site's front page, which takes no enrolments", cid))
            .when(pl.col("contextid").is_null())
            .then(pl.format("course '{}' has no context row (Moodle's context cleanup task rebuilds it)", cid))
            .when(needs_role & role_mode & (pl.col("rolename") == ""))
            .then(pl.lit("rolename is empty: a row without an enrol column assigns or removes a role, so it needs one"))
            .when(needs_role & (pl.col("rolename") != "") & pl.col("roleid").is_null())
            .then(pl.format(f"rolename '{{}}' is not a role of the site; expected one of {course_roles}", role))
            .when(needs_role & (pl.col("rolename") != "") & ~pl.col("role_in_course"))
            .then(pl.format(f"rolename '{{}}' cannot be assigned in a course; expected one of {course_roles}", role))
            .when(~role_mode & ~plugin.is_in(sorted(installed)))
            .then(pl.format(f"enrol '{{}}' is not an enrolment method of the site; expected {methods}", shown(plugin)))
            .when(~role_mode & ~plugin.is_in(DIRECT_PLUGINS))
            .then(
                pl.format(
                    f"enrol '{{}}': {{}} enrolments are made by the method itself, not from a file; expected {methods}",
                    plugin,
                    plugin,
                )
            )
            .when(~role_mode & ~plugin.is_in(sorted(enabled)))
            .then(pl.format("enrol '{}': the {} enrolment method is disabled on the site", plugin, plugin))
            .otherwise(pl.lit(None, dtype=pl.String))
        )


def choose_instances(rows: pl.DataFrame, instances: pl.DataFrame) -> pl.DataFrame:
    """enrolid and instance_status per row (enrol mode): the row's instance among `instances` (first_instances() of
    the rows' courses). Null when the course has none."""
    chosen = instances.select("courseid", "plugin", "enrolid", "instance_status")
    return rows.join(chosen, on=["courseid", "plugin"], how="left", maintain_order="left")


def instance_problem(enable_on_disabled: bool) -> pl.Expr:
    enabled = "" if enable_on_disabled else "enabled "
    return (
        pl.when(~pl.col(ROLE_MODE) & pl.col("enrolid").is_null())
        .then(pl.format(f"course '{{}}' has no {enabled}{{}} enrolment instance", shown(pl.col("cid")), "plugin"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
