"""The blocks toolsync gives a new course against those create_course() gives the same course on a real Moodle 4.5
site (tests/support/moodle_site.py), row for row, for every core format: with the site's default settings (a social
course gets its social_activities block), and with default-block settings in the site's `config`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.support.course_blocks import SOCIAL_ACTIVITIES, block, blocks_of
from tests.support.moodle_site import Site, moodle_site_fixture, scalar, site_config, site_db_fixture
from tests.support.operation_files import report_of, run_file
from toolsync_tui.engine.moodle.gateway import MoodleGateway

__all__ = ["moodle_site_fixture", "site_db_fixture"]

FORMATS = ("topics", "weeks", "social", "singleactivity")

CREATE_COURSES = """
require_once($CFG->dirroot . '/course/lib.php');
foreach (json_decode(%(settings)s, true) as $name => $value) {
    set_config($name, $value);
}
$result = [];
foreach (json_decode(%(courses)s, true) as $data) {
    $result[] = create_course((object) ($data + ['category' => 1]))->id;
}
"""
UNSET = """
foreach (json_decode(%(names)s, true) as $name) {
    unset_config($name);
}
$result = true;
"""

# The site's settings, and the blocks (name, region, weight) a new course of each format gets with them.
SETTINGS: dict[str, tuple[dict[str, str], dict[str, list[tuple[str, str, int]]]]] = {
    "defaults": ({}, {"social": [("social_activities", "side-post", 0)]}),
    "per format": (
        {
            # Unknown names and names with a space are dropped; a region's weights count the kept ones.
            "defaultblocks_social": "search_forums,calendar_month:social_activities,nonexistent, recent_activity",
            "defaultblocks_weeks": "news_items",
            "defaultblocks_singleactivity": "  :  ",
            "defaultblocks": "calendar_upcoming:html",  # the core formats have their own get_default_blocks()
        },
        {
            "social": [
                ("search_forums", "side-pre", 0),
                ("calendar_month", "side-pre", 1),
                ("social_activities", "side-post", 0),
            ],
            "weeks": [("news_items", "side-pre", 0)],
        },
    ),
    "override": (
        {"defaultblocks_override": "activity_modules,html", "defaultblocks_social": ":social_activities"},
        {f: [("activity_modules", "side-pre", 0), ("html", "side-pre", 1)] for f in FORMATS},
    ),
}


@pytest.mark.parametrize("case", list(SETTINGS))
async def test_new_courses_get_the_blocks_create_course_gives_them(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path, case: str
) -> None:
    settings, expected = SETTINGS[case]
    tag = uuid.uuid4().hex[:8]
    given = [{"shortname": f"MO{f}{tag}", "fullname": f, "format": f} for f in FORMATS]
    code = CREATE_COURSES % {"settings": json.dumps(json.dumps(settings)), "courses": json.dumps(json.dumps(given))}
    try:
        await moodle_site.run_php(code)
        config = site_config(moodle_site, tmp_path, bridge=False)
        rows = "".join(f"TS{f}{tag};{f};{f}\n" for f in FORMATS)
        result = await run_file(config, site_db, "courses", f"shortname;fullname;format\n{rows}")
    finally:
        await moodle_site.run_php(UNSET % {"names": json.dumps(json.dumps(list(settings)))})
    assert result.counts == {"created": len(FORMATS)}, report_of(result)
    for f in FORMATS:
        moodle, ours = await blocks_of(site_db, f"MO{f}{tag}"), await blocks_of(site_db, f"TS{f}{tag}")
        assert ours == moodle, f
        assert moodle == [block(*b) for b in expected.get(f, [])], f
    if case == "defaults":
        assert (await blocks_of(site_db, f"MOsocial{tag}")) == [SOCIAL_ACTIVITIES]
    # Neither logs anything for a block (add_block() triggers no event).
    logged = await scalar(site_db, "SELECT COUNT(*) FROM {p}logstore_standard_log WHERE contextlevel = 80")
    assert logged == 0


MAKE_TEMPLATE = """
require_once($CFG->dirroot . '/course/lib.php');
$result = create_course((object) ['fullname' => 'Social template', 'shortname' => 'STPL%(tag)s', 'category' => 1,
    'format' => 'social'])->id;
"""


async def test_a_social_course_filled_from_a_social_template_has_one_block(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    """The block written with the course stays alone: the restore skips the template's own (social_activities allows
    one instance per page), as after create_course() in Moodle's upload tool."""
    tag = uuid.uuid4().hex[:8]
    await moodle_site.run_php(MAKE_TEMPLATE % {"tag": tag})
    config = site_config(moodle_site, tmp_path, bridge=True)
    content = f"shortname;fullname;format;template\nSFILL{tag};Filled;social;STPL{tag}\n"
    result = await run_file(config, site_db, "courses", content)
    report = report_of(result)
    assert result.counts == {"created": 1}, report
    assert "restored (add)" in report, report
    assert await blocks_of(site_db, f"SFILL{tag}") == [SOCIAL_ACTIVITIES]
