"""Groups and group memberships in bulk, as Moodle 4.5's group API writes them (moodle-db-semantics §7).

Shared by the groups file, the group members file and the enrolments file. Every function works inside the caller's
transaction and costs a handful of statements per call (one per chunk of keys), whatever the number of rows:
DataFrames in, DataFrames out.

* groups_create_group(): `groups` with name trimmed, idnumber '' unless given, description NULL unless given,
  descriptionformat 0, enrolmentkey NULL, picture 0, visibility 0, participation 1, timecreated = timemodified = now.
* groups_add_member(): `groups_members (groupid, userid, timeadded = now, component, itemid)` when absent, and
  `groups.timemodified = now` of the group. Moodle refuses a user who is not enrolled in the course (is_enrolled(),
  any enrolment status): callers check with enrolled() first. The component is '' with itemid 0 unless the caller
  names an installed plugin (an enrol instance's `enrol_<plugin>` and its id): Moodle throws on any other component,
  and the Group members page fails on a row holding one. tool_sync tagged its memberships 'tool_sync', a plugin the
  site does not have (LEGACY_COMPONENT); toolsync keeps what it protects in its data directory instead.
* foreign_memberships() / clear_components(): the rows whose component is no installed plugin, and their repair
  (component '', itemid 0).
* groups_remove_member(): the `groups_members` row deleted, `groups.timemodified = now`.
* groups_delete_group(): the group's `event` rows, `groupings_groups`, `groups_members`, then `groups`.
* groups_delete_grouping(): `groupings_groups`, `course.defaultgroupingid` and `course_modules.groupingid` reset
  (and `course.cacherev` bumped where activities changed), then `groupings`.

Names match within a course as Moodle's `get_field('groups', 'id', [courseid, name])` does on the site's database
(text_match.py: case and accents ignored on MariaDB, lower-cased on SQLite, exact on PostgreSQL); the lowest id wins
when several groups share a name. The caches these writes make stale (core/groupdata per course,
core/user_group_groupings per user) are the caller's to purge (§11).

The writing functions take `events`: a list (course_events.collecting()) gets the standard-log events of what they
wrote (group_created, group_member_added ...; course_events.py), for the caller to record with the batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Table, and_, case, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import course_events, recording
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.contexts import ContextLevel
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import CHUNK, MoodleGateway, chunks, rows_frame
from toolsync_tui.engine.moodle.text_match import TextMatch

# What tool_sync, and earlier versions of toolsync, wrote on the memberships they protected. Not a plugin of the site:
# never written, only recognised in the rows earlier runs left (`toolsync groups repair-components` clears them).
LEGACY_COMPONENT = "tool_sync"
KEY = "__key"  # the name's key (TextMatch): how a name matches within a course

PAIR_SCHEMA: dict[str, type[pl.DataType]] = {"courseid": pl.Int64, "userid": pl.Int64}
MEMBERSHIP_SCHEMA: dict[str, type[pl.DataType]] = {
    "courseid": pl.Int64,
    "userid": pl.Int64,
    "groupid": pl.Int64,
    "groupname": pl.String,
    "component": pl.String,
    "itemid": pl.Int64,
}


def _wanted_pairs(wanted: pl.DataFrame, match: TextMatch) -> pl.DataFrame:
    """Distinct (courseid, name) pairs with their match key; null courses or names left out."""
    return (
        wanted.select(pl.col("courseid").cast(pl.Int64), pl.col("name").cast(pl.String))
        .drop_nulls()
        .unique(maintain_order=True)
        .with_columns(match.given(pl.col("name")).alias(KEY))
    )


async def _groups_named(gateway: MoodleGateway, conn: AsyncConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """id, courseid, KEY of the groups named as the (courseid, name) pairs say (as the site compares names).

    On MariaDB exactly those pairs, `(courseid, name) IN (...)` through the course index. Elsewhere the groups of the
    pairs' courses whose name is one of theirs: the cross product of the two, which the callers' join on the key
    narrows (an enrolments batch touching 2,000 courses and their 10 group names then reads 20,000 groups for its
    5,000 pairs, each row parsed by the driver)."""
    schema = {"id": pl.Int64, "courseid": pl.Int64, "name": pl.String}
    pairs = pairs.select(pl.col("courseid").cast(pl.Int64), pl.col("name").cast(pl.String)).drop_nulls().unique()
    if pairs.is_empty():
        return pl.DataFrame(schema=schema).with_columns(pl.lit(None, dtype=pl.String).alias(KEY))
    groups = gateway.schema.groups
    match = TextMatch(gateway.kind)
    if gateway.kind == "mariadb":
        rows: list[Any] = []
        for part in chunks(list(pairs.sort("courseid", "name").iter_rows())):
            query = select(groups.c.id, groups.c.courseid, groups.c.name).where(
                tuple_(groups.c.courseid, groups.c.name).in_(part)
            )
            rows.extend(await conn.execute(gateway.force_index(query, groups, ["courseid"])))
        found = rows_frame(rows, schema)
    else:
        names, casefold = _distinct(pairs, "name"), match.casefold
        found = pl.concat(
            [
                await gateway.fetch_in(conn, groups, "name", names, list(schema), groups.c.courseid.in_(part), casefold)
                for part in chunks(_distinct(pairs, "courseid"))
            ],
            how="diagonal_relaxed",
        )
        if found.is_empty():
            found = pl.DataFrame(schema=schema)
    return found.cast(dict(schema)).with_columns(match.stored(pl.col("name")).alias(KEY))  # type: ignore[arg-type]


async def find_groups(gateway: MoodleGateway, conn: AsyncConnection, wanted: pl.DataFrame) -> pl.DataFrame:
    """wanted's distinct (courseid, name) pairs and `groupid` (null when the course has no group of that name)."""
    pairs = _wanted_pairs(wanted, TextMatch(gateway.kind))
    found = await _groups_named(gateway, conn, pairs)
    first = (
        found.sort("id")
        .unique(["courseid", KEY], keep="first", maintain_order=True)
        .select("courseid", KEY, pl.col("id").alias("groupid"))
    )
    return pairs.join(first, on=["courseid", KEY], how="left", maintain_order="left").select(
        "courseid", "name", "groupid"
    )


async def create_groups(
    gateway: MoodleGateway, conn: AsyncConnection, wanted: pl.DataFrame, now: int, *, events: list[Event] | None = None
) -> pl.DataFrame:
    """Create one group per distinct (courseid, name) of `wanted` (names the site deems equal are one group);
    returns courseid, name (as given first), groupid of the new groups.

    Optional columns of `wanted`, taken from the first row of each pair: `idnumber` and `description` (null or
    absent: '' and NULL), and `contextid`, the course's context, for the log events (absent: read). The caller checks
    beforehand that no group of that name or idnumber exists.
    """
    extra = [c for c in ("idnumber", "description") if c in wanted.columns]
    rows = (
        wanted.with_columns(pl.col("courseid").cast(pl.Int64), pl.col("name").cast(pl.String).str.strip_chars())
        .filter(pl.col("courseid").is_not_null() & pl.col("name").is_not_null())
        .with_columns(TextMatch(gateway.kind).given(pl.col("name")).alias(KEY))
        .unique(["courseid", KEY], keep="first", maintain_order=True)
    )
    if rows.is_empty():
        return pl.DataFrame(schema={"courseid": pl.Int64, "name": pl.String, "groupid": pl.Int64})
    idnumbers = rows["idnumber"].to_list() if "idnumber" in extra else [None] * rows.height
    descriptions = rows["description"].to_list() if "description" in extra else [None] * rows.height
    ids = await gateway.insert_many(
        conn,
        gateway.schema.groups,
        [
            {
                "courseid": courseid,
                "idnumber": (idnumber or "").strip(),
                "name": name,
                "description": description,
                "descriptionformat": 0,
                "enrolmentkey": None,
                "picture": 0,
                "visibility": 0,
                "participation": 1,
                "timecreated": now,
                "timemodified": now,
            }
            for (courseid, name), idnumber, description in zip(
                rows.select("courseid", "name").iter_rows(), idnumbers, descriptions, strict=True
            )
        ],
    )
    if ids is not None:  # the server gave them (MoodleGateway.insert_many): no read-back
        created = rows.select("courseid", "name", pl.Series("groupid", ids, dtype=pl.Int64))
    else:
        found = await _groups_named(gateway, conn, rows)
        # The new rows have the highest ids of their name: autoincrement.
        newest = (
            found.sort("id", descending=True)
            .unique(["courseid", KEY], keep="first")
            .select("courseid", KEY, pl.col("id").alias("groupid"))
        )
        created = rows.join(newest, on=["courseid", KEY], how="left", maintain_order="left").select(
            "courseid", "name", "groupid"
        )
    if events is not None:
        in_courses = (
            created.select("groupid", "courseid", rows["contextid"].cast(pl.Int64)).drop_nulls().sort("groupid")
            if "contextid" in rows.columns
            else await group_courses(gateway, conn, _distinct(created, "groupid"))
        )
        events += course_events.groups_created(in_courses)
    return created


async def enrolled(gateway: MoodleGateway, conn: AsyncConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """The (courseid, userid) pairs of `pairs` whose user has a user_enrolments row in an enrol instance of the
    course, any status, and is not deleted: Moodle's is_enrolled() as groups_add_member() calls it.

    The pairs are a derived table joined to enrol (courseid), user_enrolments (its unique enrolid, userid key) and
    user: index lookups for the pairs asked about only, not every enrolment of the users in the courses."""
    wanted = _pairs(pairs)
    schema = gateway.schema
    quote = gateway.engine.dialect.identifier_preparer.quote
    enrol, ue, user = (quote(t.name) for t in (schema.enrol, schema.user_enrolments, schema.user))
    found = await _join_pairs(
        gateway,
        conn,
        wanted.select("courseid", "userid"),
        "SELECT DISTINCT v.courseid, v.userid FROM {pairs} "
        f"JOIN {enrol} e ON e.courseid = v.courseid "
        f"JOIN {ue} ue ON ue.enrolid = e.id AND ue.userid = v.userid "
        f"JOIN {user} u ON u.id = ue.userid AND u.deleted = 0",
    )
    hits = pl.DataFrame(found, schema={"courseid": pl.Int64, "userid": pl.Int64}, orient="row")
    return wanted.join(hits, on=["courseid", "userid"], how="semi", maintain_order="left")


async def memberships(gateway: MoodleGateway, conn: AsyncConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """Every current membership of the users of `pairs` in groups of the course paired with them:
    courseid, userid, groupid, groupname, component, itemid (sorted by courseid, userid, groupid)."""
    wanted = _pairs(pairs)
    members, groups = gateway.schema.groups_members, gateway.schema.groups
    found: list[tuple[Any, ...]] = []
    for courses, users in _pair_chunks(wanted):
        query = (
            select(
                groups.c.courseid, members.c.userid, groups.c.id, groups.c.name, members.c.component, members.c.itemid
            )
            .select_from(members.join(groups, groups.c.id == members.c.groupid))
            .where(groups.c.courseid.in_(courses), members.c.userid.in_(users))
        )
        found.extend(tuple(r) for r in await conn.execute(query))
    rows = pl.DataFrame(found, schema=MEMBERSHIP_SCHEMA, orient="row").unique()
    return rows.join(wanted, on=["courseid", "userid"], how="semi").sort("courseid", "userid", "groupid")


async def add_members(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    rows: pl.DataFrame,
    *,
    now: int,
    component: str = "",
    itemid: int = 0,
    absent: bool = False,
    events: list[Event] | None = None,
    courses: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """groups_add_member() for each distinct (groupid, userid) of `rows` not a member yet (whatever the component of
    an existing membership: Moodle keeps the first one). `courses`: groupid, courseid, contextid (the course's) of
    the groups, when the caller knows them, for the log events (else read). Returns the distinct pairs, in first-seen
    order, with `added` (Boolean). Enrolment is the caller's to check (enrolled()). `absent`: the caller has read, in
    this transaction, that none of the pairs is a member (stored_members()): not read again.

    As groups_add_member(), a component must be an installed plugin (or core subsystem) and an itemid needs a component:
    ValueError otherwise, before anything is written."""
    if itemid != 0 and not component:
        raise ValueError("groups_add_member(): a component must be given with an itemid")
    if component and not is_installed(component, await installed_components(gateway, conn)):
        raise ValueError(f"groups_add_member(): component {component!r} is not installed on the site")
    wanted = (
        rows.select(pl.col("groupid").cast(pl.Int64), pl.col("userid").cast(pl.Int64))
        .drop_nulls()
        .unique(maintain_order=True)
    )
    stored = (
        pl.DataFrame(schema={"id": pl.Int64, "groupid": pl.Int64, "userid": pl.Int64})
        if absent
        else await stored_members(gateway, conn, wanted)
    )
    result = wanted.join(
        stored.select("groupid", "userid", pl.lit(False).alias("added")),
        on=["groupid", "userid"],
        how="left",
        maintain_order="left",
    ).with_columns(pl.col("added").fill_null(True))
    new = result.filter("added")
    # Column by column: only the pair varies (a batch adds thousands of members, on the write's critical path).
    shared = {"timeadded": now, "component": component, "itemid": itemid}
    pairs = {"groupid": new["groupid"].to_list(), "userid": new["userid"].to_list()}
    await gateway.insert_many(
        conn, gateway.schema.groups_members, ColumnRows((*pairs, *shared), pairs, shared, new.height)
    )
    await touch_groups(gateway, conn, _distinct(new, "groupid"), now)
    if events is not None:
        in_courses = (
            await _in_courses(gateway, conn, new)
            if courses is None
            else new.select("groupid", "userid").join(
                courses.select("groupid", "courseid", "contextid").unique("groupid"),
                on="groupid",
                maintain_order="left",
            )
        )
        events += course_events.members_added(in_courses, component, itemid)
    return result


async def installed_components(gateway: MoodleGateway, conn: AsyncConnection) -> frozenset[str]:
    """The plugins installed on the site: those with a `version` in config_plugins (frankenstyle names)."""
    plugins = gateway.schema.config_plugins
    found = await conn.execute(select(plugins.c.plugin).distinct().where(plugins.c.name == "version"))
    return frozenset(str(plugin) for (plugin,) in found)


def is_installed(component: str, installed: frozenset[str]) -> bool:
    """Whether Moodle accepts `component` on a membership: '' (none), a core subsystem, or an installed plugin."""
    return component == "" or component == "core" or component.startswith("core_") or component in installed


FOREIGN_SCHEMA: dict[str, type[pl.DataType]] = {
    "id": pl.Int64,
    "groupid": pl.Int64,
    "userid": pl.Int64,
    "component": pl.String,
    "itemid": pl.Int64,
    "groupname": pl.String,
    "courseid": pl.Int64,
    "shortname": pl.String,
}


async def foreign_memberships(gateway: MoodleGateway, conn: AsyncConnection) -> pl.DataFrame:
    """Every membership whose component is not one Moodle accepts (is_installed()): id, groupid, userid, component,
    itemid, groupname, courseid, shortname (of the course), by courseid, groupid, userid. The site's distinct
    components are read first (a handful), then only the rows of the bad ones."""
    members, groups, course = gateway.schema.groups_members, gateway.schema.groups, gateway.schema.course
    installed = await installed_components(gateway, conn)
    used = [str(c) for (c,) in await conn.execute(select(members.c.component).distinct()) if c is not None]
    bad = sorted(c for c in used if not is_installed(c, installed))
    found: list[tuple[Any, ...]] = []
    if bad:
        query = (
            select(
                members.c.id,
                members.c.groupid,
                members.c.userid,
                members.c.component,
                members.c.itemid,
                groups.c.name,
                groups.c.courseid,
                course.c.shortname,
            )
            .select_from(
                members.join(groups, groups.c.id == members.c.groupid, isouter=True).join(
                    course, course.c.id == groups.c.courseid, isouter=True
                )
            )
            .where(members.c.component.in_(bad))
        )
        found = [tuple(r) for r in await conn.execute(query)]
    return pl.DataFrame(found, schema=FOREIGN_SCHEMA, orient="row").sort(
        "courseid", "groupid", "userid", nulls_last=True
    )


async def clear_components(
    gateway: MoodleGateway, conn: AsyncConnection, member_ids: Sequence[int], components: Sequence[str]
) -> int:
    """component '' and itemid 0 on the memberships `member_ids` that still hold one of `components` (a row changed
    meanwhile is left alone); returns how many rows changed."""
    members = gateway.schema.groups_members
    changed = 0
    for part in chunks(sorted({int(i) for i in member_ids})):
        where = members.c.id.in_(part) & members.c.component.in_(list(components))
        async with recording.updating(conn, members, where, ["component", "itemid"]):
            result = await conn.execute(update(members).where(where).values(component="", itemid=0))
        changed += result.rowcount or 0
    return changed


async def remove_members(
    gateway: MoodleGateway, conn: AsyncConnection, rows: pl.DataFrame, *, now: int, events: list[Event] | None = None
) -> int:
    """groups_remove_member() for each (groupid, userid) of `rows` that is a member; returns how many were."""
    wanted = (
        rows.select(pl.col("groupid").cast(pl.Int64), pl.col("userid").cast(pl.Int64))
        .drop_nulls()
        .unique(maintain_order=True)
    )
    stored = await stored_members(gateway, conn, wanted)
    removed = await gateway.delete_in(conn, gateway.schema.groups_members, "id", _distinct(stored, "id"))
    await touch_groups(gateway, conn, _distinct(stored, "groupid"), now)
    if events is not None:
        events += course_events.members_removed(await _in_courses(gateway, conn, stored.sort("id")))
    return removed


async def delete_groups(
    gateway: MoodleGateway, conn: AsyncConnection, group_ids: Iterable[int], *, events: list[Event] | None = None
) -> None:
    """groups_delete_group() as it writes the database: the group's calendar events, its grouping assignments, its
    members, then the group. The files of its description and picture (file areas group/description and group/icon)
    and the per-module group overrides are left to Moodle (its file API and observers): a direct writer cannot
    remove stored files safely, and orphaned file rows are harmless until Moodle's cleanup."""
    ids = sorted({int(i) for i in group_ids})
    if not ids:
        return
    if events is not None:  # group_deleted, read before the groups go; no member removal is logged
        events += course_events.groups_deleted(await group_courses(gateway, conn, ids))
    schema = gateway.schema
    await gateway.delete_in(conn, schema.event, "groupid", ids)
    await gateway.delete_in(conn, schema.groupings_groups, "groupid", ids)
    await gateway.delete_in(conn, schema.groups_members, "groupid", ids)
    await gateway.delete_in(conn, schema.groups, "id", ids)


async def delete_groupings(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    grouping_ids: Iterable[int],
    *,
    now: int | None = None,
    events: list[Event] | None = None,
) -> None:
    """groups_delete_grouping() as it writes the database: the grouping's group assignments, the courses using it as
    their default grouping (defaultgroupingid 0), the activities restricted to it (course_modules.groupingid 0), then
    the grouping. The description files are left to Moodle (see delete_groups()).

    Beyond Moodle: the courses whose activities changed get their `cacherev` bumped (moodle-db-semantics §1.3).
    groups_delete_grouping() does not, and the course's cached modinfo keeps the activities' old grouping until
    something else rebuilds it; a direct writer bumps it after any course_modules change, which costs Moodle only a
    modinfo rebuild of those courses.
    """
    ids = sorted({int(i) for i in grouping_ids})
    if not ids:
        return
    if events is not None:  # grouping_deleted, read before the groupings go
        found = await group_courses(gateway, conn, ids, gateway.schema.groupings)
        events += course_events.groupings_deleted(found.rename({"groupid": "groupingid"}))
    schema = gateway.schema
    course, modules = schema.course, schema.course_modules
    await gateway.delete_in(conn, schema.groupings_groups, "groupingid", ids)
    touched: set[int] = set()
    for part in chunks(ids):
        defaulted = course.c.defaultgroupingid.in_(part)
        async with recording.updating(conn, course, defaulted, ["defaultgroupingid"]):
            await conn.execute(update(course).where(defaulted).values(defaultgroupingid=0))
        using = select(modules.c.course).distinct().where(modules.c.groupingid.in_(part))
        touched |= {int(c) for (c,) in await conn.execute(using)}
        async with recording.updating(conn, modules, modules.c.groupingid.in_(part), ["groupingid"]):
            await conn.execute(update(modules).where(modules.c.groupingid.in_(part)).values(groupingid=0))
    await bump_cacherev(gateway, conn, sorted(touched), int(time.time()) if now is None else now)
    await gateway.delete_in(conn, schema.groupings, "id", ids)


async def bump_cacherev(gateway: MoodleGateway, conn: AsyncConnection, course_ids: Sequence[int], now: int) -> None:
    """increment_revision_number('course', 'cacherev', ...) for these courses: NULL, below now or above now + 1 hour
    becomes now, else cacherev + 1 (moodle-db-semantics §1.3)."""
    course = gateway.schema.course
    rev = course.c.cacherev
    bumped = case((rev.is_(None), now), (rev < now, now), (rev > now + 3600, now), else_=rev + 1)
    for part in chunks(list(course_ids)):
        # A cache revision: never recorded for an undo, which bumps caches forward (recording.NOT_RECORDED_COLUMNS).
        await conn.execute(update(course).where(course.c.id.in_(part)).values(cacherev=bumped))


async def touch_groups(gateway: MoodleGateway, conn: AsyncConnection, group_ids: Sequence[int], now: int) -> None:
    """groups.timemodified = now, as adding or removing a member does."""
    await gateway.update_many(conn, gateway.schema.groups, "id", [{"id": g, "timemodified": now} for g in group_ids])


# -- helpers ---------------------------------------------------------------------------------------------


async def group_courses(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int], table: Table | None = None
) -> pl.DataFrame:
    """groupid, courseid, contextid (the course context) of these groups (or of the groupings of `table`), by id: what
    their log events name."""
    table = gateway.schema.groups if table is None else table
    context = gateway.schema.context
    found: list[tuple[Any, ...]] = []
    if gateway.kind == "postgresql":
        # One probe a group (LATERAL, `OFFSET 0`): PostgreSQL hashed the course contexts for each chunk of ids.
        quote = gateway.engine.dialect.identifier_preparer.quote
        per_group = (
            "SELECT t.* FROM unnest($1::bigint[]) AS toolsync_k(id) CROSS JOIN LATERAL (SELECT g.id, g.courseid, "
            f"x.id AS contextid FROM {quote(table.name)} g JOIN {quote(context.name)} x ON x.contextlevel = "
            f"{int(ContextLevel.COURSE)} AND x.instanceid = g.courseid WHERE g.id = toolsync_k.id OFFSET 0) AS t"
        )
        for part in chunks(sorted({int(i) for i in ids})):
            found.extend(tuple(r) for r in await conn.exec_driver_sql(per_group, (part,)))
        return _group_courses_frame(found)
    for part in chunks(sorted(set(ids))):
        query = (
            select(table.c.id, table.c.courseid, context.c.id)
            .select_from(
                table.join(
                    context,
                    and_(context.c.contextlevel == int(ContextLevel.COURSE), context.c.instanceid == table.c.courseid),
                )
            )
            .where(table.c.id.in_(part))
        )
        found.extend(tuple(r) for r in await conn.execute(query))
    return _group_courses_frame(found)


def _group_courses_frame(found: list[tuple[Any, ...]]) -> pl.DataFrame:
    schema = {"groupid": pl.Int64, "courseid": pl.Int64, "contextid": pl.Int64}
    return pl.DataFrame(found, schema=schema, orient="row").sort("groupid")


async def _in_courses(gateway: MoodleGateway, conn: AsyncConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """(groupid, userid) pairs, in their order, with the courseid and contextid of their group."""
    courses = await group_courses(gateway, conn, _distinct(pairs, "groupid"))
    return pairs.select("groupid", "userid").join(courses, on="groupid", maintain_order="left")


async def stored_members(gateway: MoodleGateway, conn: AsyncConnection, wanted: pl.DataFrame) -> pl.DataFrame:
    """id, groupid, userid of the stored memberships among the (groupid, userid) pairs of `wanted` (one statement a
    chunk of pairs, through the unique (userid, groupid) key)."""
    schema: dict[str, type[pl.DataType]] = {"id": pl.Int64, "groupid": pl.Int64, "userid": pl.Int64}
    members = gateway.engine.dialect.identifier_preparer.quote(gateway.schema.groups_members.name)
    found = await _join_pairs(
        gateway,
        conn,
        wanted.select("groupid", "userid"),
        f"SELECT m.id, m.groupid, m.userid FROM {{pairs}} JOIN {members} m "
        "ON m.groupid = v.groupid AND m.userid = v.userid",
    )
    return pl.DataFrame(found, schema=schema, orient="row")


async def _join_pairs(
    gateway: MoodleGateway, conn: AsyncConnection, pairs: pl.DataFrame, sql: str
) -> list[tuple[Any, ...]]:
    """Run `sql`, whose {pairs} is replaced by the derived table `v` of the integer pairs (the frame's two column
    names), once a chunk of pairs. The values are written as literals: thousands of bound parameters a statement
    cost more to expand, escape and send than the query costs the server; they are only ever integers (int()
    refuses anything else), so there is nothing to escape."""
    first, second = pairs.columns
    found: list[tuple[Any, ...]] = []
    if gateway.kind == "postgresql":
        # The pairs as two bigint arrays, `sql` run once a pair (LATERAL; `OFFSET 0` keeps the planner from merging
        # it into one join): index lookups a pair, whatever the statistics say. Joined to the UNION ALL or to the
        # whole unnest, PostgreSQL hashed the whole of groups_members or user_enrolments for each chunk.
        one = f"(SELECT toolsync_p.{first} AS {first}, toolsync_p.{second} AS {second}) AS v"
        per_pair = (
            f"SELECT toolsync_q.* FROM unnest($1::bigint[], $2::bigint[]) AS toolsync_p({first}, {second}) "
            f"CROSS JOIN LATERAL ({sql.replace('{pairs}', one)} OFFSET 0) AS toolsync_q"
        )
        for start in range(0, pairs.height, CHUNK):
            chunk = pairs.slice(start, CHUNK)
            arrays = (chunk[first].cast(pl.Int64).to_list(), chunk[second].cast(pl.Int64).to_list())
            found.extend(tuple(r) for r in await conn.exec_driver_sql(per_pair, arrays))
        return found
    for part in chunks(list(pairs.iter_rows())):
        if gateway.kind == "sqlite":
            values = ", ".join(f"({int(a)}, {int(b)})" for a, b in part)
            derived = f"(SELECT column1 AS {first}, column2 AS {second} FROM (VALUES {values})) AS v"
        else:
            (a, b), rest = part[0], part[1:]
            others = "".join(f" UNION ALL SELECT {int(x)}, {int(y)}" for x, y in rest)
            derived = f"(SELECT {int(a)} AS {first}, {int(b)} AS {second}{others}) AS v"
        found.extend(tuple(r) for r in await conn.exec_driver_sql(sql.replace("{pairs}", derived)))
    return found


def _pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    return (
        pairs.select(pl.col("courseid").cast(pl.Int64), pl.col("userid").cast(pl.Int64))
        .drop_nulls()
        .unique(maintain_order=True)
    )


def _pair_chunks(pairs: pl.DataFrame) -> Iterable[tuple[list[int], list[int]]]:
    """The distinct courses and users of each chunk of pairs: two IN lists of at most CHUNK keys a statement."""
    for start in range(0, pairs.height, CHUNK):
        part = pairs.slice(start, CHUNK)
        yield _distinct(part, "courseid"), _distinct(part, "userid")


def _distinct(frame: pl.DataFrame, column: str) -> list[Any]:
    """The distinct non-null values of a column, sorted (stable statements)."""
    return sorted(frame[column].drop_nulls().unique().to_list())
