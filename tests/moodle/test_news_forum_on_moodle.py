"""The forum toolsync gives a new course against the one create_course() gives the same course on a real Moodle 4.5
site (tests/support/moodle_site.py), row for row; and a course filled from a template ends with one Announcements
forum, whether the template brought its own or not."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.support.course_forums import COURSE_MODULE, NEWS_FORUM, SOCIAL_FORUM, course_id, forums_of, stable
from tests.support.moodle_site import Site, moodle_site_fixture, site_config, site_db_fixture
from tests.support.operation_files import report_of, run_file
from toolsync_tui.engine.moodle.gateway import MoodleGateway

__all__ = ["moodle_site_fixture", "site_db_fixture"]

CREATE_COURSES = """
require_once($CFG->dirroot . '/course/lib.php');
$result = [];
foreach (json_decode(%(courses)s, true) as $data) {
    $result[] = create_course((object) ($data + ['category' => 1]))->id;
}
"""

# What Moodle makes of a course once it opens it: its activities, and the forum the news block would create.
OPENED = """
require_once($CFG->dirroot . '/mod/forum/lib.php');
$course = get_course(%(id)d);
$names = array_values(array_map(fn($cm) => $cm->name, get_fast_modinfo($course)->get_cms()));
$forum = forum_get_course_forum($course->id, 'news');
$result = ['names' => $names, 'news_forum' => (int) $forum->id, 'forums' => $DB->count_records('forum',
    ['course' => $course->id])];
"""

# The file's rows (format, newsitems, topic7) and what create_course() is given for the same course (the upload
# tool's defaults: newsitems and numsections from moodlecourse, 5 and 4).
COURSES: dict[str, tuple[str, dict[str, Any]]] = {
    "NEWS": (";;", {"newsitems": 5, "numsections": 4}),
    "NONEWS": ("topics;0;", {"newsitems": 0, "numsections": 4}),
    "WEEKS": ("weeks;3;", {"format": "weeks", "newsitems": 3, "numsections": 4}),
    "SOCIAL": ("social;0;", {"format": "social", "newsitems": 0}),
    "SINGLE": ("singleactivity;5;", {"format": "singleactivity", "newsitems": 5, "activitytype": "forum"}),
    "MORE": ("topics;1;Last", {"newsitems": 1, "numsections": 7}),
}
EXPECTED = {"NEWS": NEWS_FORUM, "WEEKS": NEWS_FORUM, "MORE": NEWS_FORUM, "SOCIAL": SOCIAL_FORUM}


async def test_new_courses_get_the_forum_create_course_gives_them(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    given = [{"shortname": f"MO{name}{tag}", "fullname": name, **data} for name, (_, data) in COURSES.items()]
    await moodle_site.run_php(CREATE_COURSES % {"courses": json.dumps(json.dumps(given))})
    config = site_config(moodle_site, tmp_path, bridge=False)
    rows = "".join(f"TS{name}{tag};{name};{cells}\n" for name, (cells, _) in COURSES.items())
    result = await run_file(config, site_db, "courses", f"shortname;fullname;format;newsitems;topic7\n{rows}")
    assert result.counts == {"created": len(COURSES)}, report_of(result)
    for name in COURSES:
        moodle, ours = await forums_of(site_db, f"MO{name}{tag}"), await forums_of(site_db, f"TS{name}{tag}")
        assert [stable(f["forum"]) for f in ours] == [stable(f["forum"]) for f in moodle], name
        assert [stable(f["forum"]) for f in moodle] == ([EXPECTED[name]] if name in EXPECTED else []), name
        for made in (moodle, ours):
            assert [stable(f["cm"]) for f in made] == [COURSE_MODULE] * len(made), name
            assert [f["sequence"] for f in made] == [str(f["cm"]["id"]) for f in made], name
            assert [f["contexts"] for f in made] == [0] * len(made), name
            assert {f["cm"]["module"] for f in made} <= {f["cm"]["module"] for f in moodle + ours}


MAKE_TEMPLATES = """
require_once($CFG->dirroot . '/course/lib.php');
$result = [];
foreach ([5, 0] as $newsitems) {
    $result[] = create_course((object) ['fullname' => "Template $newsitems", 'shortname' => "TPL{$newsitems}%(tag)s",
        'category' => 1, 'newsitems' => $newsitems, 'numsections' => 1])->id;
}
"""


async def test_a_course_filled_from_a_template_has_one_announcements_forum(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    """The restore brings the template's own forum (Moodle's upload tool, restoring after create_course(), leaves two);
    a template without one leaves the course toolsync's, written after the restore."""
    tag = uuid.uuid4().hex[:8]
    await moodle_site.run_php(MAKE_TEMPLATES % {"tag": tag})
    config = site_config(moodle_site, tmp_path, bridge=True)
    content = f"shortname;fullname;template\nWITH{tag};With;TPL5{tag}\nWITHOUT{tag};Without;TPL0{tag}\n"
    result = await run_file(config, site_db, "courses", content)
    report = report_of(result)
    assert result.counts == {"created": 2}, report
    assert report.count("restored (add)") == 2, report
    for shortname in (f"WITH{tag}", f"WITHOUT{tag}"):
        [news] = await forums_of(site_db, shortname)
        assert stable(news["forum"]) == NEWS_FORUM
        assert news["cm"]["id"] in {int(cm) for cm in news["sequence"].split(",")}
        opened = await moodle_site.run_php(OPENED % {"id": await course_id(site_db, shortname)})
        assert opened == {"names": ["Announcements"], "news_forum": news["forum"]["id"], "forums": 1}
