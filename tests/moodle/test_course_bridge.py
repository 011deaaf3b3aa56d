"""The bridge's course commands: delete_courses, reset_courses, restore_templates, delete_categories.

Requests and answers with fake `php` commands (always); Moodle's own delete_course(), reset_course_userdata(),
backup and restore, and delete_full() on a real Moodle 4.5 site (the suite's own, or
TOOLSYNC_TEST_MOODLE_DIRROOT: see tests/support/moodle_site.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge_fakes import fake_php, fake_site_fixture, requests_seen
from tests.support.moodle_site import Site, moodle_site_fixture, scalar, site_config, site_db_fixture
from toolsync_tui.engine.moodle.bridge.client import CourseReset, MoodleBridge, TemplateItem
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

FIXTURES = (fake_site_fixture, moodle_site_fixture, site_db_fixture)  # used by name: fake_site, moodle_site, site_db

# -- requests and answers, with fake php ------------------------------------------------------------------------------

# Answers every reset and restore item: course 13 fails, the others succeed (resets with two status lines).
ECHO_ITEMS = """
request = json.load(sys.stdin)
with open(sys.argv[0] + ".log", "a") as log:
    log.write(json.dumps(request) + "\\n")
for item in request.get("resets", request.get("items", [])):
    course = item["course"]
    if course == 13:
        print(json.dumps({"item": course, "ok": False, "error": "no course with id 13"}))
    elif "resets" in request:
        print(json.dumps({"item": course, "ok": True, "statuses": ["General: Delete events: OK", "Forums: : Oops"]}))
    else:
        print(json.dumps({"item": course, "ok": True}))
print(json.dumps({"ok": True, "done": True}))
"""


async def test_reset_courses_sends_each_course_options_and_reads_its_status_lines(
    fake_site: Path, tmp_path: Path
) -> None:
    php = fake_php(tmp_path, ECHO_ITEMS)
    bridge = MoodleBridge(fake_site, php=php)
    options = {"reset_events": 1, "unenrol_users": [5, 0], "modules": ["forum"]}
    seen: list[dict[str, Any]] = []

    resets = await bridge.reset_courses([(12, options), (13, {})], seen.append)

    assert resets == {
        12: CourseReset(None, ("General: Delete events: OK", "Forums: : Oops")),
        13: CourseReset("no course with id 13", ()),
    }
    assert [line["item"] for line in seen] == [12, 13]
    assert requests_seen(php) == [
        {"command": "reset_courses", "resets": [{"course": 12, "options": options}, {"course": 13, "options": {}}]}
    ]
    assert await bridge.reset_courses([]) == {}
    with pytest.raises(ValueError, match="each course may be named once per call"):
        await bridge.reset_courses([(12, {}), (12, {"reset_notes": 1})])


async def test_restore_templates_sends_one_item_per_course(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, ECHO_ITEMS)
    bridge = MoodleBridge(fake_site, php=php)
    items = [TemplateItem(12, "TPL", "add"), TemplateItem(13, "/srv/t.mbz", "replace"), TemplateItem(12, "TPL", "add")]

    assert await bridge.restore_templates(items) == {12: None, 13: "no course with id 13"}

    assert requests_seen(php) == [
        {
            "command": "restore_templates",
            "items": [
                {"course": 12, "template": "TPL", "mode": "add"},
                {"course": 13, "template": "/srv/t.mbz", "mode": "replace"},
            ],
        }
    ]
    with pytest.raises(ValueError, match="each course may be named once per call"):
        await bridge.restore_templates([TemplateItem(12, "TPL", "add"), TemplateItem(12, "TPL", "replace")])
    with pytest.raises(ValueError, match="positive integers"):
        await bridge.delete_courses([0])


# -- a real Moodle 4.5 site -------------------------------------------------------------------------------------------

CATEGORY = "$result = (int) core_course_category::create(['name' => '%(name)s', 'parent' => %(parent)d])->id;"
COURSE = """require_once($CFG->dirroot . '/course/lib.php');
$result = (int) create_course((object) ['fullname' => '%(name)s', 'shortname' => '%(name)s',
    'idnumber' => 'id-%(name)s', 'category' => %(category)d])->id;"""
# Activities made by Moodle's own data generator (the one its unit tests use).
ACTIVITY = """require_once($CFG->libdir . '/testing/generator/lib.php');
$result = (int) (new testing_data_generator())->create_module('%(module)s', ['course' => %(course)d,
    'name' => '%(name)s'])->cmid;"""
# What a course shows: its activities as Moodle's course cache lists them ("page:Rules"), sorted.
ACTIVITIES = """$names = array_map(fn($cm) => $cm->modname . ':' . $cm->name, array_values(get_fast_modinfo(%(course)d)
    ->get_cms()));
sort($names);
$result = $names;"""
ENROL = """$instance = $DB->get_record('enrol', ['courseid' => %(course)d, 'enrol' => 'manual'], '*', MUST_EXIST);
$role = $DB->get_field('role', 'id', ['shortname' => '%(role)s'], MUST_EXIST);
enrol_get_plugin('manual')->enrol_user($instance, %(user)d, $role);
$result = true;"""
USER = """require_once($CFG->dirroot . '/user/lib.php');
$result = user_create_user((object) ['username' => '%(name)s', 'firstname' => 'F', 'lastname' => 'L',
    'email' => '%(name)s@example.org', 'auth' => 'manual', 'confirmed' => 1,
    'mnethostid' => $CFG->mnet_localhost_id], false, false);"""
ENROLLED = "$result = is_enrolled(context_course::instance(%(course)d), %(user)d);"
# A .mbz of a course without users, as Moodle's backup page makes it.
BACKUP = """require_once($CFG->dirroot . '/backup/util/includes/backup_includes.php');
$bc = new backup_controller(backup::TYPE_1COURSE, %(course)d, backup::FORMAT_MOODLE, backup::INTERACTIVE_NO,
    backup::MODE_GENERAL, $USER->id);
$bc->get_plan()->get_setting('users')->set_value(false);
$bc->execute_plan();
$file = $bc->get_results()['backup_destination'];
$file->copy_content_to('%(path)s');
$file->delete();
$bc->destroy();
$result = true;"""


def tagged(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def new_category(site: Site, parent: int = 0) -> int:
    return int(await site.run_php(CATEGORY % {"name": tagged("Cat "), "parent": parent}))


async def new_course(site: Site, category: int) -> tuple[int, str]:
    name = tagged("bridgecourse")
    return int(await site.run_php(COURSE % {"name": name, "category": category})), name


async def add_activity(site: Site, course: int, module: str, name: str) -> None:
    await site.run_php(ACTIVITY % {"module": module, "course": course, "name": name})


async def activities(site: Site, course: int) -> list[str]:
    return list(await site.run_php(ACTIVITIES % {"course": course}))


async def course_row(gateway: MoodleGateway, course: int) -> tuple[Any, ...]:
    sql = (
        "SELECT CONCAT_WS('|', fullname, shortname, idnumber, category, startdate, format) FROM {p}course WHERE id = :c"
    )
    return (await scalar(gateway, sql, c=course),)


async def test_delete_courses_runs_delete_course_and_fixes_the_category_counts(
    moodle_site: Site, site_db: MoodleGateway
) -> None:
    category = await new_category(moodle_site)
    doomed, _ = await new_course(moodle_site, category)
    kept, _ = await new_course(moodle_site, category)
    await add_activity(moodle_site, doomed, "page", "Rules")
    count = f"$result = core_course_category::get({category})->get_courses_count();"
    assert await moodle_site.run_php(count) == 2  # and now in Moodle's cache
    missing = int(await scalar(site_db, "SELECT MAX(id) + 1000 FROM {p}course"))
    seen: list[int] = []

    outcomes = await moodle_site.bridge().delete_courses([doomed, 1, missing], lambda line: seen.append(line["item"]))

    assert outcomes == {
        doomed: None,
        1: "course 1 is the site's front page, which cannot be deleted",
        missing: f"no course with id {missing}",
    }
    assert seen == [doomed, 1, missing]
    assert await scalar(site_db, "SELECT COUNT(*) FROM {p}course WHERE id = :c", c=doomed) == 0
    assert await scalar(site_db, "SELECT COUNT(*) FROM {p}course_modules WHERE course = :c", c=doomed) == 0
    assert (
        await scalar(site_db, "SELECT COUNT(*) FROM {p}context WHERE contextlevel = 50 AND instanceid = :c", c=doomed)
        == 0
    )
    # fix_course_sortorder() ran: the stored count, and the one Moodle shows (its category cache was purged).
    assert await scalar(site_db, "SELECT coursecount FROM {p}course_categories WHERE id = :c", c=category) == 1
    assert await moodle_site.run_php(count) == 1
    event = "SELECT COUNT(*) FROM {p}logstore_standard_log WHERE eventname LIKE '%%course_deleted' AND courseid = :c"
    assert await scalar(site_db, event, c=doomed) == 1
    assert await scalar(site_db, "SELECT COUNT(*) FROM {p}course WHERE id = :c", c=kept) == 1


async def test_reset_courses_unenrols_by_role_and_returns_moodles_status_lines(
    moodle_site: Site, site_db: MoodleGateway
) -> None:
    course, _ = await new_course(moodle_site, 1)
    student = int(await moodle_site.run_php(USER % {"name": tagged("student")}))
    teacher = int(await moodle_site.run_php(USER % {"name": tagged("teacher")}))
    await moodle_site.run_php(ENROL % {"course": course, "user": student, "role": "student"})
    await moodle_site.run_php(ENROL % {"course": course, "user": teacher, "role": "editingteacher"})
    role = int(await scalar(site_db, "SELECT id FROM {p}role WHERE shortname = 'student'"))

    resets = await moodle_site.bridge().reset_courses(
        [(course, {"unenrol_users": [role], "reset_events": 1, "modules": ["forum"]}), (1, {})]
    )

    assert resets[1] == CourseReset("course 1 is the site's front page, which cannot be reset", ())
    done = resets[course]
    assert done.error is None
    # The course's only activity is the announcements forum that create_course() made.
    assert done.statuses == ("General: Events: OK", "Roles: Unenrol (1): OK", "Forums: All posts: OK")
    assert await moodle_site.run_php(ENROLLED % {"course": course, "user": student}) is False
    assert await moodle_site.run_php(ENROLLED % {"course": course, "user": teacher}) is True
    event = (
        "SELECT COUNT(*) FROM {p}logstore_standard_log WHERE eventname LIKE '%%course_reset_ended' AND courseid = :c"
    )
    assert await scalar(site_db, event, c=course) == 1

    unknown = await moodle_site.bridge().reset_courses([(course, {"modules": ["nosuchmod"]})])
    assert unknown[course].error == "module 'nosuchmod' is not installed on this site"


async def test_a_template_course_is_restored_into_new_and_existing_courses(
    moodle_site: Site, site_db: MoodleGateway
) -> None:
    template, template_name = await new_course(moodle_site, 1)
    await add_activity(moodle_site, template, "page", "Rules")
    await add_activity(moodle_site, template, "forum", "Questions")
    fresh, _ = await new_course(moodle_site, 1)
    filled, _ = await new_course(moodle_site, 1)
    await add_activity(moodle_site, filled, "page", "Notes of last year")
    student = int(await moodle_site.run_php(USER % {"name": tagged("student")}))
    await moodle_site.run_php(ENROL % {"course": filled, "user": student, "role": "student"})
    before = {c: await course_row(site_db, c) for c in (fresh, filled)}
    own = await activities(moodle_site, fresh)  # what create_course() gave it (the announcements forum)

    results = await moodle_site.bridge().restore_templates(
        [
            TemplateItem(fresh, template_name, "add"),
            TemplateItem(filled, template_name, "replace"),
            TemplateItem(template, template_name, "add"),
        ]
    )

    assert results == {fresh: None, filled: None, template: f"course {template} cannot be restored from itself"}
    template_content = await activities(moodle_site, template)
    assert {"page:Rules", "forum:Questions"} <= set(template_content)
    assert await activities(moodle_site, fresh) == sorted(own + template_content)
    assert await activities(moodle_site, filled) == template_content  # last year's page is gone
    assert await moodle_site.run_php(ENROLLED % {"course": filled, "user": student}) is True  # enrolments kept
    assert {c: await course_row(site_db, c) for c in (fresh, filled)} == before  # names, idnumber, category, dates


async def test_a_mbz_file_is_a_template_and_unknown_templates_fail_per_course(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    source, _ = await new_course(moodle_site, 1)
    await add_activity(moodle_site, source, "page", "From a file")
    backup = tmp_path / "template.mbz"
    await moodle_site.run_php(BACKUP % {"course": source, "path": backup})
    assert backup.stat().st_size > 0
    target, unknown, missing = [(await new_course(moodle_site, 1))[0] for _ in range(3)]

    results = await moodle_site.bridge().restore_templates(
        [
            TemplateItem(target, str(backup), "add"),
            TemplateItem(unknown, "no-such-template", "add"),
            TemplateItem(missing, "/nowhere/template.mbz", "add"),
        ]
    )

    assert results == {
        target: None,
        unknown: "no course with shortname 'no-such-template' to use as template",
        missing: "template file /nowhere/template.mbz not found",
    }
    assert "page:From a file" in await activities(moodle_site, target)
    assert "page:From a file" not in await activities(moodle_site, unknown)


async def test_delete_categories_deletes_empty_ones_leaves_first(moodle_site: Site, site_db: MoodleGateway) -> None:
    parent = await new_category(moodle_site)
    child = await new_category(moodle_site, parent)
    holding = await new_category(moodle_site)
    await new_course(moodle_site, holding)

    outcomes = await moodle_site.bridge().delete_categories([parent, child, holding])

    name = await scalar(site_db, "SELECT name FROM {p}course_categories WHERE id = :c", c=parent)
    assert outcomes[parent] == (
        f"category {parent} ('{name}') is not empty: it holds 1 subcategories; delete or move them first"
    )
    assert outcomes[child] is None
    assert "is not empty: it holds 1 course(s);" in str(outcomes[holding])
    assert await moodle_site.bridge().delete_categories([parent]) == {parent: None}
    exists = "SELECT COUNT(*) FROM {p}course_categories WHERE id IN (:a, :b)"
    assert await scalar(site_db, exists, a=parent, b=child) == 0
    contexts = "SELECT COUNT(*) FROM {p}context WHERE contextlevel = 40 AND instanceid IN (:a, :b)"
    assert await scalar(site_db, contexts, a=parent, b=child) == 0


# -- the course files through the real bridge -------------------------------------------------------------------------


async def test_the_reset_file_unenrols_the_students_through_moodle(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    course, shortname = await new_course(moodle_site, 1)
    student = int(await moodle_site.run_php(USER % {"name": tagged("student")}))
    teacher = int(await moodle_site.run_php(USER % {"name": tagged("teacher")}))
    await moodle_site.run_php(ENROL % {"course": course, "user": student, "role": "student"})
    await moodle_site.run_php(ENROL % {"course": course, "user": teacher, "role": "editingteacher"})
    source = tmp_path / "resetcourses.csv"
    source.write_text(
        "shortname;events;logs;notes;grades;roles;local_roles;groups;groupings;modules\n"
        f"{shortname};yes;no;yes;all;student;all;all;all;forum\n"
    )

    result = await run_operation(site_config(moodle_site, tmp_path, bridge=True), site_db, "resetcourses", source)

    assert result.counts == {"updated": 1}
    assert result.report_path is not None
    report = result.report_path.read_text()
    assert f"line 2: updated (reset) course '{shortname}' (id {course}) reset: General: Events: OK;" in report
    assert "Roles: Unenrol (1): OK" in report
    assert await moodle_site.run_php(ENROLLED % {"course": course, "user": student}) is False
    assert await moodle_site.run_php(ENROLLED % {"course": course, "user": teacher}) is True


async def test_the_delete_file_deletes_through_moodle(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    category = await new_category(moodle_site)
    doomed, shortname = await new_course(moodle_site, category)
    source = tmp_path / "deletecourses.csv"
    source.write_text(f"{shortname}\nno-such-course-{tagged('')}\n")

    result = await run_operation(site_config(moodle_site, tmp_path, bridge=True), site_db, "deletecourses", source)

    assert result.counts == {"deleted": 1, "failed": 1}
    assert await scalar(site_db, "SELECT COUNT(*) FROM {p}course WHERE id = :c", c=doomed) == 0
    assert await scalar(site_db, "SELECT coursecount FROM {p}course_categories WHERE id = :c", c=category) == 0
