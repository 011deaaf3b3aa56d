"""Moodle is the judge of the log rows: two fresh Moodle 4.5 sites made from the same dump, one fed through Moodle's own
APIs (user_create_user, user_update_user, core_course_category::create, create_course, update_course,
course_update_section, update_status), the other by toolsync's users and courses files with the same changes; their
standard log rows, ids translated to natural keys, must be the same rows in the same order (issue 19)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server
from tests.support.log_rows import log_mark, natural_log_since
from tests.support.moodle_site import provision_site, site_config
from tests.support.operation_files import inbox_file, report_of
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

THROUGH_MOODLE = """
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/course/lib.php');
$local = $CFG->mnet_localhost_id;
$ann = user_create_user((object)['username' => 'logann', 'firstname' => 'Ann', 'lastname' => 'One',
    'email' => 'logann@example.com', 'password' => 'Aa1!aaaaa', 'auth' => 'manual', 'mnethostid' => $local,
    'confirmed' => 1]);
$bob = user_create_user((object)['username' => 'logbob', 'firstname' => 'Bob', 'lastname' => 'Two',
    'email' => 'logbob@example.com', 'auth' => 'manual', 'mnethostid' => $local, 'confirmed' => 1], false);
user_update_user((object)['id' => $ann, 'firstname' => 'Anna', 'password' => 'Bb2@bbbbb']);
user_update_user((object)['id' => $bob, 'lastname' => 'Deux', 'suspended' => 1], false);
$top = core_course_category::create(['name' => 'LogTop']);
$sub = core_course_category::create(['name' => 'LogSub', 'parent' => $top->id]);
// As tool_uploadcourse gives it: the site's default number of sections.
$course = create_course((object)['shortname' => 'LOG/1', 'fullname' => 'Logged é', 'category' => $sub->id,
    'numsections' => get_config('moodlecourse', 'numsections')]);
update_course((object)['id' => $course->id, 'fullname' => 'Renamed', 'visible' => 0]);
$section = $DB->get_record('course_sections', ['course' => $course->id, 'section' => 1]);
course_update_section($course, $section, ['name' => 'Week one']);
$guest = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'guest']);
enrol_get_plugin('guest')->update_status($guest, ENROL_INSTANCE_ENABLED);
$result = true;
"""

FILES = [
    (
        "users",
        "userimport.csv",
        "username;firstname;lastname;email;password\n"
        "logann;Ann;One;logann@example.com;Aa1!aaaaa\nlogbob;Bob;Two;logbob@example.com;\n",
    ),
    (
        "users",
        "userimport.csv",
        "username;firstname;lastname;password;suspended\nlogann;Anna;One;Bb2@bbbbb;\nlogbob;Bob;Deux;;1\n",
    ),
    ("courses", "uploadcourses.csv", "shortname;fullname;category\nLOG/1;Logged é;LogTop/LogSub\n"),
    ("courses", "uploadcourses.csv", "shortname;fullname;visible;topic1;guest\nLOG/1;Renamed;0;Week one;1\n"),
]


async def test_toolsync_logs_what_moodle_logs_for_the_same_changes(db_server: Server, tmp_path: Path) -> None:
    through_moodle = provision_site(db_server, "log_through_moodle")
    through_toolsync = provision_site(db_server, "log_through_toolsync")
    moodle_db = MoodleGateway.for_url(through_moodle.url, through_moodle.prefix)
    toolsync_db = MoodleGateway.for_url(through_toolsync.url, through_toolsync.prefix)
    try:
        moodle_mark, toolsync_mark = await log_mark(moodle_db), await log_mark(toolsync_db)
        assert await through_moodle.run_php(THROUGH_MOODLE) is True
        config = site_config(through_toolsync, tmp_path, bridge=False)
        config.set("operations.courses.forceupdate", True)
        for operation, name, content in FILES:
            inbox_file(config, name, content)
            result = await run_operation(config, toolsync_db, operation)
            assert "failed" not in result.counts, report_of(result)

        expected = await natural_log_since(moodle_db, moodle_mark)
        logged = await natural_log_since(toolsync_db, toolsync_mark)
    finally:
        await moodle_db.close()
        await toolsync_db.close()
    # Accounts created (3 rows), changed (3); 2 categories, the course, its 5 sections and 3 methods; its update (3).
    assert len(expected) == 3 + 3 + 2 + 1 + 5 + 3 + 3
    assert logged == expected
