"""Moodle's standard log (mdl_logstore_standard_log) in tests: its rows since a mark, compared without ids and times.

mark = await log_mark(gateway)          the highest log id now
rows = await log_since(gateway, mark)   the rows written since, oldest first, as `shape()` dicts
await set_log_store(gateway, enabled=False, jsonformat=True)   the site's standard log settings
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.support.user_factories import set_plugin_config
from toolsync_tui.engine.moodle.event_log import LOG_COLUMNS
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# What a log row says, without its id and time (compared on their own).
COLUMNS = tuple(column for column in LOG_COLUMNS if column != "timecreated")


async def log_mark(gateway: MoodleGateway) -> int:
    table = gateway.schema.logstore_standard_log
    async with gateway.reading() as conn:
        return int((await conn.execute(select(func.coalesce(func.max(table.c.id), 0)))).scalar_one())


async def log_since(gateway: MoodleGateway, mark: int, *, with_time: bool = False) -> list[dict[str, Any]]:
    """The log rows written after `mark`, oldest first: COLUMNS (and timecreated when `with_time`)."""
    table = gateway.schema.logstore_standard_log
    names = [*COLUMNS, "timecreated"] if with_time else list(COLUMNS)
    query = select(*(table.c[name] for name in names)).where(table.c.id > mark).order_by(table.c.id)
    async with gateway.reading() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def set_log_store(gateway: MoodleGateway, *, enabled: bool = True, jsonformat: bool = True) -> None:
    """The site's log settings: whether the standard store is enabled (tool_log enabled_stores), its format."""
    async with gateway.transaction() as conn:
        await set_plugin_config(gateway, conn, "tool_log", "enabled_stores", "logstore_standard" if enabled else "")
        await set_plugin_config(gateway, conn, "logstore_standard", "jsonformat", "1" if jsonformat else "0")


def row(
    event: str,
    objecttable: str | None,
    objectid: int | None,
    crud: str,
    edulevel: int,
    context: tuple[int, int, int],
    *,
    courseid: int = 0,
    relateduserid: int | None = None,
    other: str = "null",
    userid: int = 2,
) -> dict[str, Any]:
    """A log row as Moodle writes it from the command line: `event` `core\\event\\target_action`, context (id, level,
    instance)."""
    target, _, action = event.rpartition("\\")[2].rpartition("_")
    return {
        "eventname": "\\" + event.strip("\\"),
        "component": event.strip("\\").split("\\")[0],
        "action": action,
        "target": target,
        "objecttable": objecttable,
        "objectid": objectid,
        "crud": crud,
        "edulevel": edulevel,
        "contextid": context[0],
        "contextlevel": context[1],
        "contextinstanceid": context[2],
        "userid": userid,
        "courseid": courseid,
        "relateduserid": relateduserid,
        "anonymous": 0,
        "other": other,
        "origin": "cli",
        "ip": None,
        "realuserid": None,
    }


async def natural_log_since(gateway: MoodleGateway, mark: int) -> list[dict[str, Any]]:
    """The log rows after `mark` with every id as a natural key (a username, a course's shortname, a context as its
    level and instance's key ...), so that two sites fed the same changes compare equal whatever ids they gave."""
    rows = await log_since(gateway, mark)
    schema = gateway.schema
    async with gateway.reading() as conn:
        users = dict((await conn.execute(select(schema.user.c.id, schema.user.c.username))).all())
        courses = dict((await conn.execute(select(schema.course.c.id, schema.course.c.shortname))).all())
        table = schema.course_categories
        categories = dict((await conn.execute(select(table.c.id, table.c.name))).all())
        table = schema.course_sections
        sections = {
            i: (courses.get(c), n)
            for i, c, n in await conn.execute(select(table.c.id, table.c.course, table.c.section))
        }
        table = schema.enrol
        instances = {
            i: (courses.get(c), e)
            for i, c, e in await conn.execute(select(table.c.id, table.c.courseid, table.c.enrol))
        }
        table = schema.context
        contexts = {
            i: (lv, n) for i, lv, n in await conn.execute(select(table.c.id, table.c.contextlevel, table.c.instanceid))
        }
    by_level = {30: users, 40: categories, 50: courses}
    by_table = {
        "user": users,
        "course": courses,
        "course_categories": categories,
        "course_sections": sections,
        "enrol": instances,
    }

    def instance(level: int, ident: int) -> Any:
        return by_level.get(level, {}).get(ident, ident)

    natural = []
    for found in rows:
        level, ident = contexts.get(found["contextid"], (found["contextlevel"], found["contextinstanceid"]))
        objects = by_table.get(found["objecttable"] or "", {})
        natural.append(
            found
            | {
                "objectid": objects.get(found["objectid"], found["objectid"]),
                "contextid": (level, instance(level, ident)),
                "contextinstanceid": instance(found["contextlevel"], found["contextinstanceid"]),
                "userid": users.get(found["userid"], found["userid"]),
                "courseid": courses.get(found["courseid"], found["courseid"]),
                "relateduserid": users.get(found["relateduserid"], found["relateduserid"]),
            }
        )
    return natural
