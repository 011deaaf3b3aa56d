"""Courses written by the course file, opened by Moodle itself: a real Moodle 4.5 site (the suite's own, or
TOOLSYNC_TEST_MOODLE_DIRROOT: see tests/support/moodle_site.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.moodle_site import Site, moodle_site_fixture, site_config, site_db_fixture
from tests.support.operation_files import inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

__all__ = ["moodle_site_fixture", "site_db_fixture"]

OPEN_COURSE = """
require_once($CFG->dirroot . '/course/lib.php');
$before = $DB->get_records_menu('course', null, 'id', 'id, sortorder');
$cats = $DB->get_records_menu('course_categories', null, 'id', 'id, sortorder');
fix_course_sortorder();
$course = get_course(%(id)d);
$modinfo = get_fast_modinfo($course);
$PAGE->set_url('/course/view.php', ['id' => $course->id]);
$PAGE->set_course($course);
$format = course_get_format($course);
$renderer = $PAGE->get_renderer('format_' . $course->format);
$class = $format->get_output_classname('content');
$html = $renderer->render(new $class($format));
$category = core_course_category::get($course->category);
$parent = core_course_category::get($category->parent);
$result = [
    'sections' => array_map(fn($s) => [$s->section, $s->name], array_values($modinfo->get_section_info_all())),
    'html_has_section_name' => str_contains($html, 'Opening week'),
    'children_of_parent' => array_values(array_map(fn($c) => $c->name, $parent->get_children())),
    'courses_moved_by_moodle_fix' => array_keys(array_diff_assoc($DB->get_records_menu('course', null, 'id',
        'id, sortorder'), $before)),
    'categories_moved_by_moodle_fix' => array_keys(array_diff_assoc($DB->get_records_menu('course_categories',
        null, 'id', 'id, sortorder'), $cats)),
    'manual' => enrol_get_instances($course->id, true) ? array_values(array_map(fn($i) => $i->enrol,
        enrol_get_instances($course->id, false))) : [],
    'teachers' => array_values(array_map(fn($u) => $u->username,
        get_enrolled_users(context_course::instance($course->id)))),
];
"""


async def test_a_created_course_opens_in_moodle(moodle_site: Site, site_db: MoodleGateway, tmp_path: Path) -> None:
    config = site_config(moodle_site, tmp_path, bridge=True)
    tag = uuid.uuid4().hex[:8]
    inbox_file(
        config,
        "uploadcourses.csv",
        "shortname;fullname;category;topic1;teacher1_account;teacher1_role\n"
        f"OPEN{tag};Opened {tag};Toolsync {tag}/Sub;Opening week|First steps;admin;editingteacher\n",
    )
    result = await run_operation(config, site_db, "courses")
    report = report_of(result)
    assert result.counts == {"created": 1}, report
    assert "course and category caches were purged through the bridge" in report
    course_id = int(report.split("created with id ")[1].split()[0])
    seen = await moodle_site.run_php(OPEN_COURSE % {"id": course_id})
    assert seen["sections"][:2] == [[0, None], [1, "Opening week"]]
    assert len(seen["sections"]) == 5
    assert seen["html_has_section_name"] is True
    assert "Sub" in seen["children_of_parent"]  # the category tree cache was purged
    # Moodle's own fix_course_sortorder() finds nothing to change after toolsync's.
    assert seen["courses_moved_by_moodle_fix"] == []
    assert seen["categories_moved_by_moodle_fix"] == []
    assert seen["manual"] == ["manual", "guest", "self"]
    assert seen["teachers"] == ["admin"]


MAKE_TEMPLATE = """
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/course/modlib.php');
$course = create_course((object) ['fullname' => 'Template %(tag)s', 'shortname' => 'TPL%(tag)s', 'category' => 1,
    'numsections' => 2]);
$page = (object) ['modulename' => 'page', 'module' => $DB->get_field('modules', 'id', ['name' => 'page']),
    'course' => $course->id, 'section' => 1, 'visible' => 1, 'name' => 'Welcome page %(tag)s',
    'introeditor' => ['text' => '', 'format' => FORMAT_HTML, 'itemid' => 0],
    'content' => 'Hello', 'contentformat' => FORMAT_HTML,
    'display' => 5, 'printintro' => 0, 'printlastmodified' => 1];
create_module($page);
$result = $course->id;
"""

MODULE_NAMES = """
$modinfo = get_fast_modinfo(%(id)d);
$result = ['names' => array_values(array_map(fn($cm) => $cm->name, $modinfo->get_cms())),
           'fullname' => get_course(%(id)d)->fullname];
"""


async def test_template_content_fills_a_new_course_and_an_unknown_template_fails_the_row(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    config = site_config(moodle_site, tmp_path, bridge=True)
    tag = uuid.uuid4().hex[:8]
    await moodle_site.run_php(MAKE_TEMPLATE % {"tag": tag})
    inbox_file(
        config,
        "uploadcourses.csv",
        f"shortname;fullname;template\nFROM{tag};From template {tag};TPL{tag}\nNONE{tag};No template;NOSUCH{tag}\n",
    )
    result = await run_operation(config, site_db, "courses")
    report = report_of(result)
    assert result.counts == {"created": 1, "failed": 1}, report
    assert f"line 3: failed (check) template: no course with shortname 'NOSUCH{tag}' to copy content from" in report
    assert f"line 2, template: updated (template) content of TPL{tag} restored (add)" in report
    course_id = int(report.split("created with id ")[1].split()[0])
    seen = await moodle_site.run_php(MODULE_NAMES % {"id": course_id})
    assert f"Welcome page {tag}" in seen["names"]
    assert seen["fullname"] == f"From template {tag}"  # the file's settings, not the template's
    assert await rows_of(site_db, site_db.schema.course, shortname=f"NONE{tag}") == []
