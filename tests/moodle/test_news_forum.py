"""New courses get the forum mod_forum's observers give them (issue 19, defect 3), as create_course() leaves it on a
real Moodle 4.5 site: the Announcements forum of a topics or weeks course with newsitems, the social forum of a
social course, nothing else. The expected rows were read from a site after create_course() (ids and times aside);
test_news_forum_on_moodle.py compares with create_course() itself."""

from __future__ import annotations

import time

from sqlalchemy import update

from tests.support.course_forums import COURSE_MODULE, NEWS_FORUM, SOCIAL_FORUM, course_id, forums_of, stable
from tests.support.operation_files import Site, report_of, run_file
from tests.support.tables import rows_of

DUMP_FORUM_MODULE = 9  # the forum's row in the dump's `modules`


async def test_new_courses_get_the_forum_of_their_format(dump_site: Site) -> None:
    config, gateway = dump_site
    before = int(time.time())
    result = await run_file(
        config,
        gateway,
        "courses",
        "shortname;fullname;format;newsitems;topic7\n"
        "NEWS1;Default news;;;\n"
        "NEWS0;No news;topics;0;\n"
        "WEEK1;Weeks;weeks;3;\n"
        "SOC1;Social;social;0;\n"
        "ONE1;Single activity;singleactivity;5;\n"
        "MORE1;Eight sections;topics;1;Last week\n",
    )
    assert result.counts == {"created": 6}, report_of(result)
    for shortname in ("NEWS1", "WEEK1", "MORE1"):
        [news] = await forums_of(gateway, shortname)
        assert stable(news["forum"]) == NEWS_FORUM, shortname
        assert stable(news["cm"]) == COURSE_MODULE, shortname
        assert news["cm"]["module"] == DUMP_FORUM_MODULE
        assert news["contexts"] == 0  # Moodle makes the module context when something first asks for it
        assert before <= news["forum"]["timemodified"] == news["cm"]["added"] <= time.time()
        assert news["sequence"] == str(news["cm"]["id"])
    [social] = await forums_of(gateway, "SOC1")
    assert stable(social["forum"]) == SOCIAL_FORUM
    assert stable(social["cm"]) == COURSE_MODULE
    assert social["sequence"] == str(social["cm"]["id"])
    assert await forums_of(gateway, "NEWS0") == []
    assert await forums_of(gateway, "ONE1") == []  # singleactivity makes its activity when it is first opened
    more = await course_id(gateway, "MORE1")
    sections = await rows_of(gateway, gateway.schema.course_sections, course=more)
    assert [(s["section"], s["sequence"]) for s in sections] == [(0, sections[0]["sequence"])] + [
        (n, "") for n in range(1, 8)
    ]
    # The course's cache revision moved on (rebuild_course_cache()).
    courses = [await course_id(gateway, s) for s in ("NEWS1", "WEEK1", "SOC1", "MORE1")]
    for course in await rows_of(gateway, gateway.schema.course, id=courses):
        assert course["cacherev"] > course["timecreated"] >= before


async def test_a_dry_run_writes_no_forum_and_an_update_adds_a_missing_one_once(dump_site: Site) -> None:
    """update_course()'s course_updated observer gives an updated course the forum it lacks, never a second."""
    config, gateway = dump_site
    dry = await run_file(config, gateway, "courses", "shortname;fullname;newsitems\nLATER1;Later;0\n", dry_run=True)
    assert dry.counts == {"created": 1}, report_of(dry)
    assert await rows_of(gateway, gateway.schema.course, shortname="LATER1") == []
    result = await run_file(config, gateway, "courses", "shortname;fullname;newsitems\nLATER1;Later;0\n")
    assert result.counts == {"created": 1}, report_of(result)
    assert await forums_of(gateway, "LATER1") == []
    config.set("operations.courses.forceupdate", True)
    for _ in range(2):
        again = await run_file(config, gateway, "courses", "shortname;fullname;newsitems\nLATER1;Later;4\n")
        [news] = await forums_of(gateway, "LATER1")
        assert stable(news["forum"]) == NEWS_FORUM, report_of(again)
        assert news["sequence"] == str(news["cm"]["id"])


async def test_a_news_forum_takes_the_sites_announcement_settings(dump_site: Site) -> None:
    """forcesubscribe and maxattachments come from forum_announcementsubscription and
    forum_announcementmaxattachments (create_course() on a site with 3 and 5 wrote 3 and 5)."""
    config, gateway = dump_site
    table = gateway.schema.config
    settings = {"forum_announcementsubscription": "3", "forum_announcementmaxattachments": "5"}
    async with gateway.transaction() as conn:
        for name, value in settings.items():
            await conn.execute(update(table).where(table.c.name == name).values(value=value))
    try:
        result = await run_file(config, gateway, "courses", "shortname;fullname\nSET1;Settings\n")
        [news] = await forums_of(gateway, "SET1")
        assert (news["forum"]["forcesubscribe"], news["forum"]["maxattachments"]) == (3, 5), report_of(result)
    finally:
        async with gateway.transaction() as conn:
            await conn.execute(update(table).where(table.c.name.in_(list(settings))).values(value="1"))


async def test_the_forum_module_is_found_by_name(dump_site: Site) -> None:
    config, gateway = dump_site
    modules = gateway.schema.modules
    async with gateway.transaction() as conn:
        await conn.execute(update(modules).where(modules.c.name == "forum").values(id=42))
    try:
        result = await run_file(config, gateway, "courses", "shortname;fullname\nMOD1;Module\n")
        [news] = await forums_of(gateway, "MOD1")
        assert news["cm"]["module"] == 42, report_of(result)
    finally:
        async with gateway.transaction() as conn:
            await conn.execute(update(modules).where(modules.c.name == "forum").values(id=DUMP_FORUM_MODULE))
