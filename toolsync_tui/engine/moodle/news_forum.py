"""The forum a course's format gives it, as forum_get_course_forum() writes it (mod/forum/lib.php).

mod_forum's course_created and course_updated observers give a course whose format supports news (topics, weeks)
and whose `newsitems` is not 0 its Announcements forum (type `news`), and a social-format course its social forum,
when it has no forum of that type yet. Written, in bulk, as Moodle leaves them (traced on a real 4.5 site):

* `forum`: course, type, the name and intro of the type, introformat 1 (HTML), assessed 0, timemodified now; a news
  forum takes forcesubscribe and maxattachments from the site's `forum_announcementsubscription` and
  `forum_announcementmaxattachments`, a social forum forcesubscribe 0; the other columns their table defaults.
* `course_modules`: course, module (the `forum` row of `modules`), instance, section = the id of section 0, added now;
  the other columns their defaults. No module context: Moodle creates it when something asks for it.
* section 0's `sequence` gets the new course module's id appended, and the course's `cacherev` is bumped (Moodle's
  rebuild_course_cache()).

No event and no log row: forum_get_course_forum() triggers none. The name and intro are Moodle's English strings;
Moodle writes them in the acting user's language, which only a site with another language pack makes differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.course_sections import FORMAT_HTML, new_section
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.groups import bump_cacherev

NEWS: Final = "news"
SOCIAL: Final = "social"
# The core formats whose supports_news() is true; singleactivity's is false, social gets its social forum instead.
NEWS_FORMATS: Final = frozenset({"topics", "weeks"})
# mod/forum/lang/en/forum.php: namenews, intronews, namesocial, introsocial.
TEXTS: Final[dict[str, tuple[str, str]]] = {
    NEWS: ("Announcements", "General news and announcements"),
    SOCIAL: ("Social forum", "An open forum for chatting about anything you want to"),
}
# The site settings of news forums, and their defaults in mod/forum/settings.php (FORUM_FORCESUBSCRIBE, 1).
NEWS_SETTINGS: Final = {"forum_announcementsubscription": 1, "forum_announcementmaxattachments": 1}


def course_forum_type(format_name: str, newsitems: int) -> str | None:
    """The type of forum the observers give a course of this format, or None."""
    if format_name in NEWS_FORMATS and newsitems:
        return NEWS
    return SOCIAL if format_name == SOCIAL else None


async def add_course_forums(
    gateway: MoodleGateway, conn: AsyncConnection, wanted: Mapping[int, str], now: int
) -> dict[int, int]:
    """forum_get_course_forum(course, type) for each course id -> forum type: the forum written for the courses that
    have none of that type. Returns course id -> the new course module's id."""
    if not wanted:
        return {}
    module = await _forum_module(gateway, conn)
    missing = await _without_forum(gateway, conn, wanted) if module is not None else {}
    if module is None or not missing:
        return {}
    settings = await _news_settings(gateway, conn) if NEWS in missing.values() else NEWS_SETTINGS
    sections = await _section_zero(gateway, conn, sorted(missing), now)
    rows = [_forum(course, missing[course], settings, now) for course in sorted(missing)]
    # A news forum sets columns a social one leaves to the table's defaults: one INSERT per set of columns.
    given: dict[int, int] | None = {}  # course -> its forum's id, as the server gave them (None: read back)
    for columns in dict.fromkeys(tuple(row) for row in rows):
        same = [r for r in rows if tuple(r) == columns]
        ids = await gateway.insert_many(conn, gateway.schema.forum, same)
        if ids is None or given is None:
            given = None
        else:
            given |= {int(r["course"]): i for r, i in zip(same, ids, strict=True)}
    forums = given if given is not None else await _new_forums(gateway, conn, missing)
    cms = gateway.schema.course_modules
    courses = [c for c in sorted(missing) if c in forums]
    made = await gateway.insert_many(
        conn,
        cms,
        [
            {"course": c, "module": module, "instance": forums[c], "section": sections[c][0], "added": now}
            for c in courses
        ],
    )
    if made is not None:
        added = dict(zip(courses, made, strict=True))
    else:
        found = await gateway.fetch_in(
            conn, cms, "instance", sorted(forums.values()), ["id", "course", "instance"], where=cms.c.module == module
        )
        added = {int(c): int(i) for i, c, f in found.iter_rows() if forums.get(int(c)) == int(f)}
    await gateway.update_many(
        conn,
        gateway.schema.course_sections,
        "id",
        [{"id": sections[c][0], "sequence": _appended(sections[c][1], added[c])} for c in sorted(added)],
    )
    await bump_cacherev(gateway, conn, sorted(added), now)
    return added


async def _forum_module(gateway: MoodleGateway, conn: AsyncConnection) -> int | None:
    modules = gateway.schema.modules
    found = (await conn.execute(select(modules.c.id).where(modules.c.name == "forum"))).scalars().first()
    return None if found is None else int(found)


async def _without_forum(gateway: MoodleGateway, conn: AsyncConnection, wanted: Mapping[int, str]) -> dict[int, str]:
    """The courses of `wanted` that have no forum of their type yet (forum_get_course_forum returns that one)."""
    forum = gateway.schema.forum
    found = await gateway.fetch_in(conn, forum, "course", sorted(wanted), ["course", "type"])
    have = {(int(c), str(t)) for c, t in found.iter_rows()}
    return {c: kind for c, kind in wanted.items() if (c, kind) not in have}


async def _news_settings(gateway: MoodleGateway, conn: AsyncConnection) -> dict[str, int]:
    config = gateway.schema.config
    query = select(config.c.name, config.c.value).where(config.c.name.in_(NEWS_SETTINGS))
    stored = {str(name): str(value) for name, value in await conn.execute(query)}
    return {
        name: int(stored[name]) if stored.get(name, "").lstrip("-").isdigit() else default
        for name, default in NEWS_SETTINGS.items()
    }


def _forum(course: int, kind: str, settings: Mapping[str, int], now: int) -> dict[str, Any]:
    name, intro = TEXTS[kind]
    row: dict[str, Any] = {"course": course, "type": kind, "name": name, "intro": intro, "introformat": FORMAT_HTML}
    if kind == NEWS:
        row["forcesubscribe"] = settings["forum_announcementsubscription"]
        row["maxattachments"] = settings["forum_announcementmaxattachments"]
    else:
        row["forcesubscribe"] = 0
    return {**row, "assessed": 0, "timemodified": now}


async def _new_forums(gateway: MoodleGateway, conn: AsyncConnection, written: Mapping[int, str]) -> dict[int, int]:
    """course id -> the id of its forum of the type just written (the only one)."""
    forum = gateway.schema.forum
    found = await gateway.fetch_in(conn, forum, "course", sorted(written), ["id", "course", "type"])
    ids: dict[int, int] = {}
    for ident, course, kind in found.iter_rows():
        if written.get(int(course)) == kind:
            ids[int(course)] = min(int(ident), ids.get(int(course), int(ident)))
    return ids


async def _section_zero(
    gateway: MoodleGateway, conn: AsyncConnection, courses: Sequence[int], now: int
) -> dict[int, tuple[int, str]]:
    """course id -> (id, sequence) of its section 0, written first where missing, as course_add_cm_to_section()
    does (a new course's sections are written before its forum)."""
    table = gateway.schema.course_sections
    columns = ["id", "course", "sequence"]

    async def read() -> dict[int, tuple[int, str]]:
        found = await gateway.fetch_in(conn, table, "course", courses, columns, where=table.c.section == 0)
        return {int(c): (int(i), str(s or "")) for i, c, s in found.iter_rows()}

    sections = await read()
    if len(sections) == len(courses):
        return sections
    await gateway.insert_many(
        conn,
        table,
        [new_section(course, 0, now) for course in courses if course not in sections],
    )
    return await read()


def _appended(sequence: str, cm: int) -> str:
    return f"{sequence},{cm}" if sequence else str(cm)
