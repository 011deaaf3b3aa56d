"""Course rows written as `create_course()` and `update_course()` write them (moodle-db-semantics §3), in bulk.

A new course: the course row (sortorder 0 until fix_course_sortorder() places it), its context, the format's options,
sections 0..numsections (or up to the highest topicN), and the default enrolment methods of the site's enabled
plugins; its Announcements or social forum comes from engine/moodle/news_forum.py. Not written: the gradebook, which
Moodle creates on first use, and logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import and_, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.courses.log_events import CourseLog
from toolsync_tui.engine.courses.site import CourseSite
from toolsync_tui.engine.moodle import recording
from toolsync_tui.engine.moodle.categories import Category
from toolsync_tui.engine.moodle.contexts import ContextLevel, create_contexts
from toolsync_tui.engine.moodle.course_sections import new_section
from toolsync_tui.engine.moodle.enrol_instances import course_instances, next_sortorders, set_status
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# summaryformat's DB default: create_course() is given no format by tool_sync (the file has no such column), with a
# summary or without one.
FORMAT_MOODLE: Final = 0
ONE_HOUR: Final = 3600


@dataclass
class Sections:
    """What a course's sections should become: created up to `last`, and named from topicN columns."""

    last: int
    topics: dict[int, tuple[str, str | None]] = field(default_factory=dict)


def new_course_record(values: Mapping[str, Any], category: Category, site: CourseSite, now: int) -> dict[str, Any]:
    """The course row of create_course(): the file's values over the site's defaults (`moodlecourse`)."""

    def given(name: str, default: Any) -> Any:
        return values.get(name, default)

    def setting(name: str) -> int:
        value = site.default(name)
        return int(value) if value.isdigit() else 0

    startdate = given("startdate", now + 86400)  # tool_uploadcourse's default: this time tomorrow
    duration = setting("courseduration") if site.default("courseenddateenabled") == "1" else 0
    completion = given("enablecompletion", setting("enablecompletion") if site.completion else 0)
    visible = given("visible", setting("visible"))
    created = given("timecreated", now)
    # No summary (no column, or an empty cell): create_course() inserts none, so the column stays NULL.
    summary = values.get("summary")
    return {
        "category": category.id,
        "sortorder": 0,
        "fullname": values["fullname"],
        "shortname": values["shortname"],
        "idnumber": given("idnumber", ""),
        "summary": summary,
        "summaryformat": FORMAT_MOODLE,
        "format": given("format", site.default("format") or "topics"),
        "showgrades": given("showgrades", setting("showgrades")),
        "newsitems": given("newsitems", setting("newsitems")),
        "startdate": startdate,
        "enddate": given("enddate", startdate + duration if duration else 0),
        "relativedatesmode": 0,
        "marker": given("marker", 0),
        "maxbytes": given("maxbytes", setting("maxbytes")),
        "legacyfiles": given("legacyfiles", 0),
        "showreports": given("showreports", setting("showreports")),
        "visible": visible,
        "visibleold": visible,
        "downloadcontent": None,
        "groupmode": given("groupmode", setting("groupmode")),
        "groupmodeforce": given("groupmodeforce", setting("groupmodeforce")),
        "defaultgroupingid": given("defaultgroupingid", 0),
        "lang": given("lang", site.default("lang")),
        "calendartype": "",
        "theme": given("theme", ""),
        "timecreated": created,
        "timemodified": created,
        "requested": 0,
        "enablecompletion": completion,
        "completionnotify": 0,
        "cacherev": now,
        "originalcourseid": None,
        "showactivitydates": given("showactivitydates", setting("showactivitydates")),
        "showcompletionconditions": setting("showcompletionconditions") if completion else None,
        "pdfexportfont": None,
    }


def weeks_end_date(startdate: int, last_section: int, timezone: str) -> int:
    """format_weeks' automatic end date: the end of the last section's week, counted in the site's local time."""
    zone = ZoneInfo(timezone)
    start = datetime.fromtimestamp(startdate, UTC).astimezone(zone).replace(tzinfo=None)
    return int((start + timedelta(days=7 * max(last_section, 1))).replace(tzinfo=zone).timestamp())


def next_cacherev(stored: int | None, now: int) -> int:
    """increment_revision_number() (moodle-db-semantics §1.3)."""
    if stored is None or stored < now or stored > now + ONE_HOUR:
        return now
    return stored + 1


async def insert_courses(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    records: Sequence[dict[str, Any]],
    categories: Mapping[int, Category],
) -> tuple[dict[str, int], dict[int, int]]:
    """The course rows and their contexts; shortname -> course id, and course id -> context id. The shortnames are
    free (checked before)."""
    if not records:
        return {}, {}
    course = gateway.schema.course
    given = await gateway.insert_many(conn, course, records)
    if given is not None:  # the server's ids, in order
        ids = {str(r["shortname"]): ident for r, ident in zip(records, given, strict=True)}
    else:
        # Read back by shortname among the unsorted rows: fix_course_sortorder() has not placed them yet.
        found = await gateway.fetch_in(
            conn,
            course,
            "shortname",
            [r["shortname"] for r in records],
            ["id", "shortname"],
            where=course.c.sortorder == 0,
        )
        ids = {str(shortname): int(ident) for ident, shortname in found.iter_rows()}
    contexts = await create_contexts(
        gateway,
        conn,
        ContextLevel.COURSE,
        [(ids[r["shortname"]], categories[r["category"]].context_path) for r in records],
    )
    return {r["shortname"]: ids[r["shortname"]] for r in records}, {c: ctx.id for c, ctx in contexts.items()}


async def add_format_options(
    gateway: MoodleGateway, conn: AsyncConnection, site: CourseSite, courses: Mapping[int, tuple[str, int | None]]
) -> None:
    """The options of each course's format (course id -> format, coursedisplay) that it has no row for yet."""
    table = gateway.schema.course_format_options
    stored = await gateway.fetch_in(conn, table, "courseid", sorted(courses), ["courseid", "format", "name"])
    have = {(int(c), str(f), str(n)) for c, f, n in stored.iter_rows()}
    rows = [
        {"courseid": ident, "format": fmt, "sectionid": 0, "name": name, "value": value}
        for ident, (fmt, display) in courses.items()
        for name, value in site.format_options(fmt, display).items()
        if (ident, fmt, name) not in have
    ]
    await gateway.insert_many(conn, table, rows)


async def set_coursedisplay(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Mapping[int, tuple[str, int]], log: CourseLog | None = None
) -> int:
    """The coursedisplay option of existing courses (id -> format, value); how many changed (noted in `log`)."""
    table = gateway.schema.course_format_options
    stored = await gateway.fetch_in(
        conn,
        table,
        "courseid",
        sorted(courses),
        ["id", "courseid", "format", "value"],
        where=table.c.name == "coursedisplay",
    )
    changed = [
        (int(ident), int(course))
        for ident, course, fmt, value in stored.iter_rows()
        if fmt == courses[int(course)][0] and str(value) != str(courses[int(course)][1])
    ]
    changes = [{"id": ident, "value": str(courses[course][1])} for ident, course in changed]
    await gateway.update_many(conn, table, "id", changes)
    if log is not None:
        for _, course in changed:
            log.course_updated(course, {"coursedisplay": courses[course][1]}, [])
    return len(changes)


async def write_sections(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    wanted: Mapping[int, Sections],
    now: int,
    log: CourseLog | None = None,
    added: dict[int, list[tuple[int, int]]] | None = None,
) -> tuple[dict[int, int], set[int]]:
    """Create missing sections up to each course's `last`, and set the names and summaries of topicN columns (no
    summary part keeps the stored summary). Returns course id -> its highest section number afterwards, and the
    courses whose sections changed; `log` notes the sections added and changed, `added` learns course id -> (number,
    id) of the sections created, when the server gave their ids (else it stays empty)."""
    table = gateway.schema.course_sections
    stored = await gateway.fetch_in(
        conn, table, "course", sorted(wanted), ["id", "course", "section", "name", "summary"]
    )
    existing = {(int(c), int(n)): (int(i), name, summary) for i, c, n, name, summary in stored.iter_rows()}
    new, changes = [], []
    highest: dict[int, int] = {}
    changed: set[int] = set()
    for course, sections in wanted.items():
        last = max([sections.last, *sections.topics, *(n for c, n in existing if c == course)])
        highest[course] = last
        for number in range(last + 1):
            name, summary = sections.topics.get(number, (None, None))
            if (course, number) not in existing:
                new.append(new_section(course, number, now, name or None, summary or ""))
                changed.add(course)
                if log is not None:
                    log.new_sections.append((course, number))
                continue
            ident, stored_name, stored_summary = existing[(course, number)]
            change: dict[str, Any] = {}
            if number in sections.topics and (name or None) != stored_name:
                change["name"] = name or None
            if summary is not None and summary != (stored_summary or ""):
                change["summary"] = summary
            if change:
                changes.append({"id": ident, **change, "timemodified": now})
                changed.add(course)
                if log is not None:
                    log.changed_sections.append((ident, course, number))
    ids = await gateway.insert_many(conn, table, new)
    if added is not None and ids is not None:
        for section, ident in zip(new, ids, strict=True):
            added.setdefault(int(section["course"]), []).append((int(section["section"]), ident))
    await gateway.update_many(conn, table, "id", changes)
    return highest, changed


async def add_default_instances(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    site: CourseSite,
    courses: Mapping[int, Mapping[str, int]],
    now: int,
) -> dict[int, list[tuple[int, str]]] | None:
    """The enrolment methods of new courses (id -> status the file asks per plugin): the site's default ones, then
    a guest or self method the file enables that is not a default one. Course id -> (id, plugin) of its methods in
    sortorder, when the server gave their ids; else None."""
    rows = []
    for course, statuses in courses.items():
        plugins = [*site.default_plugins, *(p for p in statuses if p not in site.default_plugins)]
        for sortorder, plugin in enumerate(p for p in plugins if p in site.instance_fields):
            fields = dict(site.instance_fields[plugin])
            if plugin in statuses:
                fields["status"] = statuses[plugin]
            rows.append(_instance(plugin, course, sortorder, now, fields))
    # Rows differ in their columns from plugin to plugin: one INSERT per plugin keeps each statement uniform.
    made: list[tuple[int, int, int, str]] | None = []  # (course, sortorder, id, plugin)
    for plugin in site.instance_fields:
        mine = [r for r in rows if r["enrol"] == plugin]
        ids = await gateway.insert_many(conn, gateway.schema.enrol, mine)
        if ids is None or made is None:
            made = None
        else:
            made += [(int(r["courseid"]), int(r["sortorder"]), i, plugin) for r, i in zip(mine, ids, strict=True)]
    if made is None:
        return None
    methods: dict[int, list[tuple[int, str]]] = {course: [] for course in courses}
    for course, _, ident, plugin in sorted(made):
        methods[course].append((ident, plugin))
    return methods


def _instance(plugin: str, course: int, sortorder: int, now: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "enrol": plugin,
        "courseid": course,
        "sortorder": sortorder,
        "enrolstartdate": 0,
        "enrolenddate": 0,
        "timecreated": now,
        "timemodified": now,
        "name": None,
        **fields,
    }


async def set_enrol_statuses(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    site: CourseSite,
    courses: Mapping[int, Mapping[str, int]],
    now: int,
    log: CourseLog | None = None,
) -> dict[int, list[str]]:
    """guest/self columns on existing courses: the first instance of the plugin enabled or disabled, or one added
    when `1` asks for a method the course lacks. course id -> what changed ("self enabled" ...); `log` notes the
    methods changed and added."""
    done: dict[int, list[str]] = {}
    changes: list[tuple[int, int, int]] = []
    additions: list[tuple[int, str, int]] = []
    for plugin in ("guest", "self"):
        wanted = {c: s[plugin] for c, s in courses.items() if plugin in s}
        if not wanted:
            continue
        first: dict[int, dict[str, Any]] = {}
        for instance in await course_instances(gateway, conn, plugin, sorted(wanted)):
            first.setdefault(int(instance["courseid"]), instance)
        for course, status in wanted.items():
            word = f"{plugin} {'enabled' if status == 0 else 'disabled'}"
            if course in first:
                if int(first[course]["status"]) != status:
                    changes.append((int(first[course]["id"]), course, status))
                    if log is not None:
                        log.changed_instances.append((int(first[course]["id"]), course, plugin))
                    done.setdefault(course, []).append(word)
            elif status == 0 and plugin in site.instance_fields:
                additions.append((course, plugin, status))
                done.setdefault(course, []).append(f"{plugin} method added")
    await set_status(gateway, conn, changes, now, site.session_timeout)
    if additions:
        sortorders = await next_sortorders(gateway, conn, [c for c, _, _ in additions])
        for course, plugin, status in additions:
            fields = {**site.instance_fields[plugin], "status": status}
            instance = _instance(plugin, course, sortorders[course], now, fields)
            added = await conn.execute(insert(gateway.schema.enrol).values(instance))
            if added.inserted_primary_key is not None:
                await recording.inserted_one(conn, gateway.schema.enrol, int(added.inserted_primary_key[0]), instance)
            if log is not None and added.inserted_primary_key is not None:
                log.new_instances.append((int(added.inserted_primary_key[0]), course, plugin))
            sortorders[course] += 1
    return done


async def stored_courses(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """The full course rows of these ids."""
    course = gateway.schema.course
    found = await gateway.fetch_in(conn, course, "id", sorted(set(ids)), list(course.c.keys()))
    return {int(row["id"]): row for row in found.to_dicts()} if found.height else {}


async def automatic_end_courses(gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int]) -> set[int]:
    """Weeks courses whose end date follows their sections (automaticenddate on, the default)."""
    table = gateway.schema.course_format_options
    query = select(table.c.courseid).where(
        and_(table.c.courseid.in_(sorted(set(ids))), table.c.format == "weeks", table.c.name == "automaticenddate")
    )
    off = {int(c) for (c,) in await conn.execute(query.where(table.c.value == "0"))}
    return set(ids) - off
