"""A course's forums read back with their course modules, and the rows create_course() wrote on a real Moodle 4.5
site (issue 19, defect 3): tests/moodle/test_news_forum.py and test_news_forum_on_moodle.py share them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.support.tables import rows_of
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# Every column of the forum create_course() wrote for a topics course with newsitems, ids and times aside.
NEWS_FORUM: dict[str, Any] = {
    "type": "news",
    "name": "Announcements",
    "intro": "General news and announcements",
    "introformat": 1,
    "duedate": 0,
    "cutoffdate": 0,
    "assessed": 0,
    "assesstimestart": 0,
    "assesstimefinish": 0,
    "scale": 0,
    "grade_forum": 0,
    "grade_forum_notify": 0,
    "maxbytes": 0,
    "maxattachments": 1,  # forum_announcementmaxattachments
    "forcesubscribe": 1,  # forum_announcementsubscription
    "trackingtype": 1,
    "rsstype": 0,
    "rssarticles": 0,
    "warnafter": 0,
    "blockafter": 0,
    "blockperiod": 0,
    "completiondiscussions": 0,
    "completionreplies": 0,
    "completionposts": 0,
    "displaywordcount": 0,
    "lockdiscussionafter": 0,
}
# ... and for a social-format course.
SOCIAL_FORUM = NEWS_FORUM | {
    "type": "social",
    "name": "Social forum",
    "intro": "An open forum for chatting about anything you want to",
    "forcesubscribe": 0,
}
# The course module of either (its module: the site's forum module).
COURSE_MODULE: dict[str, Any] = {
    "idnumber": None,
    "score": 0,
    "indent": 0,
    "visible": 1,
    "visibleoncoursepage": 1,
    "visibleold": 1,
    "groupmode": 0,
    "groupingid": 0,
    "completion": 0,
    "completiongradeitemnumber": None,
    "completionview": 0,
    "completionexpected": 0,
    "completionpassgrade": 0,
    "showdescription": 0,
    "availability": None,
    "deletioninprogress": 0,
    "downloadcontent": 1,
    "lang": None,
}
UNSTABLE = {"id", "course", "module", "instance", "section", "added", "timemodified"}


def stable(row: dict[str, Any]) -> dict[str, Any]:
    """The row without ids, references and times."""
    return {k: v for k, v in row.items() if k not in UNSTABLE}


async def course_id(gateway: MoodleGateway, shortname: str) -> int:
    found = await rows_of(gateway, gateway.schema.course, shortname=shortname)
    assert len(found) == 1, f"{len(found)} courses named {shortname}"
    return int(found[0]["id"])


async def forum_module(gateway: MoodleGateway) -> int:
    modules = gateway.schema.modules
    async with gateway.reading() as conn:
        return int((await conn.execute(select(modules.c.id).where(modules.c.name == "forum"))).scalar_one())


async def forums_of(gateway: MoodleGateway, shortname: str) -> list[dict[str, Any]]:
    """The course's forums by id, each as {forum, cm, sequence (of section 0), contexts (module contexts of the cm)}.
    Fails on a forum course module outside section 0 or of no forum."""
    schema = gateway.schema
    course = await course_id(gateway, shortname)
    module = await forum_module(gateway)
    sections = {s["id"]: s for s in await rows_of(gateway, schema.course_sections, course=course)}
    zero = next(s for s in sections.values() if s["section"] == 0)
    cms = {cm["instance"]: cm for cm in await rows_of(gateway, schema.course_modules, course=course, module=module)}
    found = []
    for forum in await rows_of(gateway, schema.forum, course=course):
        cm = cms.pop(forum["id"])
        assert cm["section"] == zero["id"], "the forum lives in section 0"
        contexts = await rows_of(gateway, schema.context, contextlevel=70, instanceid=cm["id"])
        found.append({"forum": forum, "cm": cm, "sequence": zero["sequence"], "contexts": len(contexts)})
    assert cms == {}, "a forum course module of no forum"
    return found
