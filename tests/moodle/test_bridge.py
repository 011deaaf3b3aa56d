"""The Moodle bridge: our side of the protocol with fake `php` commands (always), the PHP script's request checks
with the real php (when php is installed), and the real thing against an installed Moodle 4.5 site.

Site-backed tests run on a throwaway site the suite makes, or on an installed one (TOOLSYNC_TEST_MOODLE_DIRROOT): see
tests/support/moodle_site.py.

The courses' commands (delete, reset, restore, categories) are tested in tests/moodle/test_course_bridge.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.bridge_fakes import fake_php, fake_site_fixture, read_pid, requests_seen
from tests.support.moodle_site import Site, moodle_site_fixture, scalar, site_config, site_db_fixture
from toolsync_tui.config import Config, DatabaseSettings, new_config
from toolsync_tui.engine.connect import bridge_from_config
from toolsync_tui.engine.moodle.bridge.client import BRIDGE_SCRIPT, PROTOCOL, BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# A delete_users that answers per user as protocol 3 does: even ids deleted, odd ones refused, 8 left unanswered;
# 13 makes it die as PHP does on a fatal error.
FIXTURES = (fake_site_fixture, moodle_site_fixture, site_db_fixture)  # used by name: fake_site, moodle_site, site_db

ECHO_USERS = """
request = json.load(sys.stdin)
with open(sys.argv[0] + ".log", "a") as log:
    log.write(json.dumps(request) + "\\n")
if request.get("userids") and 13 in request["userids"]:
    print("PHP Fatal error: out of memory", file=sys.stderr)
    sys.exit(255)
for i in request.get("userids", []):
    line = {"item": i, "ok": True} if i % 2 == 0 else {"item": i, "ok": False, "error": f"user {i} is odd"}
    if i != 8:
        print(json.dumps(line))
print(json.dumps({"ok": True, "done": True}))
"""


# -- configuration ----------------------------------------------------------------------------------------------


def test_no_bridge_without_moodle_dir(tmp_path: Path) -> None:
    assert bridge_from_config(new_config(tmp_path / "toolsync.toml", {})) is None
    blank = new_config(tmp_path / "toolsync.toml", {"bridge": {"moodle_dir": "  "}})
    assert bridge_from_config(blank) is None


def test_settings_make_the_command_line(tmp_path: Path) -> None:
    config: Config = new_config(
        tmp_path / "toolsync.toml", {"bridge": {"moodle_dir": "site/moodle", "php": "/opt/php8.3/bin/php -d x=1"}}
    )
    bridge = bridge_from_config(config)
    assert bridge is not None
    assert bridge.moodle_dir == tmp_path / "site" / "moodle"  # relative to the config file, like other paths
    assert bridge.argv == ["/opt/php8.3/bin/php", "-d", "x=1", str(BRIDGE_SCRIPT), f"--moodle={tmp_path}/site/moodle"]

    config.settings.bridge.run_as = "www-data"
    bridge = bridge_from_config(config)
    assert bridge is not None
    assert bridge.argv[:5] == ["sudo", "-n", "-u", "www-data", "--"]  # never a password prompt
    assert bridge.argv[5] == "/opt/php8.3/bin/php"


def test_the_script_ships_in_the_package() -> None:
    assert BRIDGE_SCRIPT.is_file()
    assert f"const TOOLSYNC_BRIDGE_PROTOCOL = {PROTOCOL};" in BRIDGE_SCRIPT.read_text()


# -- failures, with fake php commands ----------------------------------------------------------------------------


async def test_a_missing_php_binary_is_named(fake_site: Path, tmp_path: Path) -> None:
    bridge = MoodleBridge(fake_site, php=str(tmp_path / "no-such-php"))
    with pytest.raises(BridgeError, match=r"bridge info: '.*no-such-php' not found: install or set the PHP command"):
        await bridge.info()


async def test_a_moodle_dir_without_config_php_is_refused_before_running_php(tmp_path: Path) -> None:
    php = fake_php(tmp_path, "raise SystemExit('must not run')")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BridgeError, match=r"no config\.php in \[bridge\] moodle_dir .*empty: it is not a Moodle site"):
        await MoodleBridge(empty, php=php).delete_users([5])
    code_only = tmp_path / "code"
    (code_only / "lib").mkdir(parents=True)
    (code_only / "lib" / "setup.php").write_text("<?php\n")
    with pytest.raises(BridgeError, match=r"a Moodle code tree without config\.php \(not installed\?\)"):
        await MoodleBridge(code_only, php=php).info()
    with pytest.raises(BridgeError, match=r"moodle_dir .*nowhere is not a directory"):
        await MoodleBridge(tmp_path / "nowhere", php=php).info()
    assert requests_seen(php) == []


async def test_garbage_on_stdout_is_an_error_quoting_it(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "print('<b>Notice</b>: Undefined index'); print('Deprecated: x', file=sys.stderr)")
    with pytest.raises(
        BridgeError, match=r"bridge info: the answer is not the bridge's JSON \(exit code 0\)"
    ) as caught:
        await MoodleBridge(fake_site, php=php).info()
    assert "<b>Notice</b>" in str(caught.value)
    assert "PHP stderr: Deprecated: x" in str(caught.value)


async def test_json_that_is_not_an_answer_is_an_error(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "print('[1, 2]')")
    with pytest.raises(BridgeError, match="not the bridge's JSON"):
        await MoodleBridge(fake_site, php=php).info()


async def test_no_answer_reports_exit_code_and_stderr_tail(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "print('x' * 5000 + 'PHP Fatal error: boom', file=sys.stderr); sys.exit(255)")
    with pytest.raises(BridgeError, match=r"the PHP process exited with code 255 and no answer") as caught:
        await MoodleBridge(fake_site, php=php).purge(events=["changesincourse"])
    message = str(caught.value)
    assert message.endswith("PHP Fatal error: boom")
    assert len(message) < 1700  # the tail, not the whole of stderr


async def test_php_unable_to_open_the_script_gets_a_hint(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "print('Could not open input file: /root/venv/toolsync_bridge.php'); sys.exit(1)")
    with pytest.raises(BridgeError, match=r"(?s)exit code 1\): 'Could not open.*hint: the PHP process cannot read"):
        await MoodleBridge(fake_site, php=php).info()


async def test_a_refusal_from_the_script_is_raised_with_its_words(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "print(json.dumps({'ok': False, 'error': 'Database connection failed'})); sys.exit(1)")
    with pytest.raises(BridgeError, match=r"^bridge info: Database connection failed$"):
        await MoodleBridge(fake_site, php=php).info()


async def test_output_printed_before_the_answer_is_tolerated(fake_site: Path, tmp_path: Path) -> None:
    answer = {"ok": True, "protocol": PROTOCOL, "dbname": "moodle", "dbprefix": "mdl_"}
    php = fake_php(tmp_path, f"print('mtrace from a plugin'); print({json.dumps(json.dumps(answer))})")
    assert (await MoodleBridge(fake_site, php=php).info())["dbname"] == "moodle"


async def test_a_script_of_another_protocol_is_refused(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "print(json.dumps({'ok': True, 'protocol': 99}))")
    with pytest.raises(BridgeError, match="speaks protocol 99"):
        await MoodleBridge(fake_site, php=php).info()


async def test_verify_database_compares_name_and_prefix(fake_site: Path, tmp_path: Path) -> None:
    answer = {"ok": True, "protocol": PROTOCOL, "dbname": "moodle", "dbprefix": "mdl_", "dbhost": "db1"}
    bridge = MoodleBridge(fake_site, php=fake_php(tmp_path, f"print({json.dumps(json.dumps(answer))})"))
    assert (await bridge.verify_database(DatabaseSettings(name="moodle", prefix="mdl_")))["dbhost"] == "db1"
    with pytest.raises(BridgeError, match=r"uses database 'moodle' with prefix 'mdl_' \(on db1:default port\)"):
        await bridge.verify_database(DatabaseSettings(name="moodle", prefix="m_"))
    with pytest.raises(BridgeError, match="not the SQLite sandbox"):
        await bridge.verify_database(DatabaseSettings(driver="sqlite"))


async def test_a_hanging_php_is_stopped_at_the_timeout(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, "open(sys.argv[0] + '.pid', 'w').write(str(__import__('os').getpid())); time.sleep(60)")
    bridge = MoodleBridge(fake_site, php=php, timeout=0.5, seconds_per_user=0)
    started = time.monotonic()
    with pytest.raises(BridgeError, match=r"bridge delete_users: no answer after 0.5 s, PHP stopped \(some of these"):
        await bridge.delete_users([3])
    assert time.monotonic() - started < 10
    pid = read_pid(php + ".pid")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_delete_users_goes_in_chunks_and_maps_outcomes(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, ECHO_USERS)
    bridge = MoodleBridge(fake_site, php=php, chunk_size=3)
    outcomes = await bridge.delete_users([2, 3, 4, 4, 5, 6, 7, 8])
    assert [r["userids"] for r in requests_seen(php)] == [[2, 3, 4], [5, 6, 7], [8]]  # duplicates sent once
    assert outcomes == {
        2: None,
        3: "user 3 is odd",
        4: None,
        5: "user 5 is odd",
        6: None,
        7: "user 7 is odd",
        8: "the bridge gave no outcome for this user",
    }
    assert await bridge.delete_users([]) == {}
    with pytest.raises(ValueError, match="positive integers"):
        await bridge.delete_users([0])


async def test_a_failed_chunk_keeps_the_outcomes_of_the_chunks_before_it(fake_site: Path, tmp_path: Path) -> None:
    bridge = MoodleBridge(fake_site, php=fake_php(tmp_path, ECHO_USERS), chunk_size=2)
    with pytest.raises(BridgeError, match=r"(?s)code 255 .*out of memory") as caught:
        await bridge.delete_users([2, 3, 13, 14])
    assert caught.value.done == {2: None, 3: "user 3 is odd"}


# -- protocol 3: item lines read as they come -----------------------------------------------------------------------

# Answers each course after the previous one's line has been seen by the caller (it creates `<php>.seen<id>`): a
# caller that read only at the end would leave this process waiting, and it gives up after 10 s.
LOCKSTEP = """
import os
request = json.load(sys.stdin)
for i in request["courseids"]:
    print("a plugin's echo, not JSON")
    print(json.dumps({"item": i, "ok": i != 5, **({} if i != 5 else {"error": "no course with id 5"})}), flush=True)
    waited = 0.0
    while not os.path.exists(f"{sys.argv[0]}.seen{i}"):
        time.sleep(0.01)
        waited += 0.01
        if waited > 10:
            print("the caller never read item", i, file=sys.stderr)
            sys.exit(3)
print(json.dumps({"ok": True, "done": True, "deleted": 2}))
"""


async def test_each_item_reaches_the_caller_while_php_still_runs(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, LOCKSTEP)
    seen: list[dict[str, Any]] = []

    def on_result(line: dict[str, Any]) -> None:
        seen.append(line)
        Path(f"{php}.seen{line['item']}").touch()

    started = time.monotonic()
    outcomes = await MoodleBridge(fake_site, php=php).delete_courses([4, 5, 6], on_result)

    assert time.monotonic() - started < 5
    assert outcomes == {4: None, 5: "no course with id 5", 6: None}
    assert [line["item"] for line in seen] == [4, 5, 6]
    assert seen[1] == {"item": 5, "ok": False, "error": "no course with id 5"}


async def test_a_php_dying_half_way_keeps_the_items_it_answered(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(
        tmp_path,
        """request = json.load(sys.stdin)
print(json.dumps({"item": 7, "ok": True}))
print(json.dumps({"item": 8, "ok": False, "error": "delete_course() refused course 8"}))
print("PHP Fatal error: Allowed memory size exhausted", file=sys.stderr)
sys.exit(255)""",
    )
    with pytest.raises(BridgeError) as caught:
        await MoodleBridge(fake_site, php=php).delete_courses([7, 8, 9])
    assert str(caught.value).startswith(
        "bridge delete_courses: the PHP process exited with code 255 and no answer after 2 item(s)"
    )
    assert "PHP stderr: PHP Fatal error: Allowed memory size exhausted" in str(caught.value)
    assert caught.value.done == {7: None, 8: "delete_course() refused course 8"}


async def test_the_time_allowed_grows_with_the_items_and_a_stop_keeps_what_was_answered(
    fake_site: Path, tmp_path: Path
) -> None:
    slow = """request = json.load(sys.stdin)
for i in request["categoryids"]:
    time.sleep(0.4)
    print(json.dumps({"item": i, "ok": True}), flush=True)
    if i == 99:
        open(sys.argv[0] + ".pid", "w").write(str(__import__("os").getpid()))
        time.sleep(60)
print(json.dumps({"ok": True, "done": True}))"""
    bridge = MoodleBridge(fake_site, php=fake_php(tmp_path, slow), timeout=0.5, seconds_per_course=1.0)
    # 1.2 s of work: more than the 0.5 s base, within 0.5 + 3 x 1.0.
    assert await bridge.delete_categories([1, 2, 3]) == {1: None, 2: None, 3: None}

    started = time.monotonic()
    with pytest.raises(BridgeError) as caught:
        await bridge.delete_categories([1, 99])
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        "bridge delete_categories: no answer after 2.5 s, PHP stopped (some of these categories may have been "
        "deleted; 2 had answered)"
    )
    assert caught.value.done == {1: None, 99: None}
    with pytest.raises(ProcessLookupError):
        os.kill(read_pid(bridge.php[0] + ".pid"), 0)


async def test_a_failing_answer_after_items_keeps_them(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(
        tmp_path,
        """json.load(sys.stdin)
print(json.dumps({"item": 3, "ok": True, "shortname": "OLD1"}))
print(json.dumps({"ok": False, "error": "delete_courses failed: dml_write_exception: Error writing to database"}))
sys.exit(1)""",
    )
    with pytest.raises(BridgeError, match=r"^bridge delete_courses: delete_courses failed: dml_write") as caught:
        await MoodleBridge(fake_site, php=php).delete_courses([3, 4])
    assert caught.value.done == {3: None}
    assert caught.value.items == [{"item": 3, "ok": True, "shortname": "OLD1"}]


async def test_purge_sends_what_is_stale_and_nothing_when_nothing_is(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(tmp_path, ECHO_USERS)
    bridge = MoodleBridge(fake_site, php=php)
    await bridge.purge()
    assert requests_seen(php) == []
    await bridge.purge(events=["changesincourse", "changesincourse"], coursecontacts_courses=[4])
    assert requests_seen(php) == [
        {
            "command": "purge",
            "events": ["changesincourse"],
            "groupdata_courses": [],
            "user_group_groupings_users": [],
            "coursecontacts_courses": [4],
        }
    ]


async def test_enrol_sync_sends_the_courses_per_plugin_and_reads_the_answer(fake_site: Path, tmp_path: Path) -> None:
    php = fake_php(
        tmp_path,
        ECHO_USERS.replace('print(json.dumps({"ok": True, "done": True}))', "")
        + 'print(json.dumps({"ok": True, "done": True, "plugins": {"cohort": "synced", "meta": "disabled"}}))',
    )
    bridge = MoodleBridge(fake_site, php=php)
    assert await bridge.enrol_sync() == {}
    assert requests_seen(php) == []
    assert await bridge.enrol_sync(cohort_courses=[7, 3, 7], meta_courses=[9]) == {
        "cohort": "synced",
        "meta": "disabled",
    }
    assert requests_seen(php) == [{"command": "enrol_sync", "cohort_courses": [3, 7], "meta_courses": [9]}]


async def test_sync_notes_say_who_enrols_without_a_bridge_and_when_a_plugin_is_off() -> None:
    from toolsync_tui.engine.moodle.enrol_sync import sync_after_run

    assert await sync_after_run(None) == []
    [scheduled] = await sync_after_run(None, cohort_courses=[4, 5, 4])
    assert "cohort enrolments (enrol_cohort) of 2 course(s) changed" in scheduled
    assert "--execute='\\enrol_cohort\\task\\enrol_cohort_sync'" in scheduled
    [off] = await sync_after_run(None, meta_courses=[4], disabled=["meta"])
    assert "the plugin is disabled on this site" in off


# -- the PHP script's own request checks (real php, no Moodle site needed: it refuses before loading one) ------


def run_script(php: str, moodle_dir: Path, request: str) -> tuple[int, dict[str, Any]]:
    import subprocess

    done = subprocess.run(
        [php, str(BRIDGE_SCRIPT), f"--moodle={moodle_dir}"], input=request, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.count("\n") == 1, done.stdout  # one line, whatever happens
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize(
    ("request_text", "error"),
    [
        ("not json", r'one JSON object with a "command" string \(Syntax error\)'),
        ('{"userids": [1]}', r'a "command" string'),
        (
            '{"command": "drop_database"}',
            r"unknown command 'drop_database' \(known: info, delete_users, purge, enrol_sync, delete_courses, "
            r"reset_courses, restore_templates, delete_categories, welcome_messages, trigger_events\)",
        ),
        ('{"command": "delete_users", "userids": [1, "2"]}', r"'userids' must hold positive integers, not \"2\""),
        ('{"command": "delete_users", "userids": {"a": 1}}', r"'userids' must be a list of ids"),
        ('{"command": "purge", "events": ["a b"]}', r"'events' must hold cache event names"),
        ('{"command": "purge", "groupdata": [1]}', r"unknown field\(s\) for 'purge': groupdata"),
        ('{"command": "enrol_sync", "cohort_courses": [0]}', r"'cohort_courses' must hold positive integers"),
        ('{"command": "delete_courses", "courseids": [-1]}', r"'courseids' must hold positive integers, not -1"),
        ('{"command": "delete_categories", "categoryids": "7"}', r"'categoryids' must be a list of ids"),
        ('{"command": "reset_courses", "resets": [{"course": 0}]}', r"need a positive integer 'course', not 0"),
        (
            '{"command": "reset_courses", "resets": [{"course": 3}, {"course": 3}]}',
            r"course 3 appears twice in 'resets'",
        ),
        (
            '{"command": "reset_courses", "resets": [{"course": 3, "options": {"reset_start_date": 1}}]}',
            r"option 'reset_start_date' of course 3 is not a reset option toolsync may set",
        ),
        (
            '{"command": "reset_courses", "resets": [{"course": 3, "options": {"reset_events": "yes"}}]}',
            r"option 'reset_events' of course 3 must be 0 or 1, not \"yes\"",
        ),
        (
            '{"command": "reset_courses", "resets": [{"course": 3, "options": {"unenrol_users": ["student"]}}]}',
            r"option 'unenrol_users' of course 3 must hold role ids, not \"student\"",
        ),
        (
            '{"command": "restore_templates", "items": [{"course": 3, "template": "T", "mode": "merge"}]}',
            r"the mode of course 3 must be 'add' or 'replace', not \"merge\"",
        ),
        (
            '{"command": "restore_templates", "items": [{"course": 3, "template": " ", "mode": "add"}]}',
            r"the template of course 3 must be a course shortname or a \.mbz path",
        ),
        ('{"command": "restore_templates", "items": [{"course": 3, "x": 1}]}', r"unknown key\(s\) in 'items': x"),
        (
            '{"command": "welcome_messages", "enrolments": [{"item": 1, "enrolid": 2}], "roles": []}',
            r"'enrolments' objects have the keys item, enrolid, userid, not item, enrolid",
        ),
        (
            '{"command": "welcome_messages", "enrolments": [{"item": 1, "enrolid": 2, "userid": 3}, '
            '{"item": 1, "enrolid": 2, "userid": 4}], "roles": []}',
            r"item 1 appears twice in 'enrolments'",
        ),
        (
            '{"command": "welcome_messages", "enrolments": [], "roles": [{"courseid": 2, "userid": 3, "roleid": 3, '
            '"from": 0}]}',
            r"'from' in 'roles' cannot be 0",
        ),
        ('{"command": "trigger_events", "actor": 0, "events": []}', r"'actor' must be the id of the user"),
        (
            '{"command": "trigger_events", "actor": 2, "events": [{"item": 1, "eventname": "phpinfo", "objectid": 1, '
            '"contextid": 1, "courseid": 0, "relateduserid": null, "other": null}]}',
            r"'eventname' in 'events' cannot be \"phpinfo\"",
        ),
        (
            '{"command": "trigger_events", "actor": 2, "events": [{"item": 1, "eventname": "\\\\core\\\\event\\\\x", '
            '"objectid": 1, "contextid": 1, "courseid": 0, "relateduserid": null, "other": 5}]}',
            r"'other' in 'events' cannot be 5",
        ),
    ],
)
def test_the_script_refuses_bad_requests_with_exit_code_2(
    php: str, fake_site: Path, request_text: str, error: str
) -> None:
    code, answer = run_script(php, fake_site, request_text)
    assert code == 2
    assert answer["ok"] is False
    assert re.search(error, answer["error"]), answer["error"]


def test_the_script_refuses_a_directory_without_config_php(php: str, tmp_path: Path) -> None:
    code, answer = run_script(php, tmp_path, '{"command": "info"}')
    assert (code, answer["ok"]) == (2, False)
    assert answer["error"] == f"{tmp_path}/config.php not found: {tmp_path} is not a Moodle site directory"


# -- a real Moodle 4.5 site ---------------------------------------------------------------------------------------


# Two users with everything delete_user() has to undo (moodle-db-semantics.md §5.2), made by Moodle's own APIs:
# a manual enrolment (with its role), a cohort, a group, a category role, a preference and profile field data.
POPULATE = """
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/user/profile/lib.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/cohort/lib.php');
require_once($CFG->dirroot . '/group/lib.php');
$tag = '%(tag)s';
$category = $DB->get_field_sql('SELECT MIN(id) FROM {course_categories}');
$course = create_course((object) ['fullname' => "Bridge $tag", 'shortname' => "bridge$tag", 'category' => $category]);
$manual = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'manual'], '*', MUST_EXIST);
$student = $DB->get_field('role', 'id', ['shortname' => 'student'], MUST_EXIST);
$creator = $DB->get_field('role', 'id', ['shortname' => 'coursecreator'], MUST_EXIST);
$cohort = cohort_add_cohort((object) ['contextid' => context_system::instance()->id, 'name' => "Bridge $tag",
    'idnumber' => "bridge$tag"]);
$group = groups_create_group((object) ['courseid' => $course->id, 'name' => "Bridge $tag"]);
if (!$DB->record_exists('user_info_field', ['shortname' => 'toolsyncbridge'])) {
    $cat = $DB->get_field_sql('SELECT MIN(id) FROM {user_info_category}')
        ?: $DB->insert_record('user_info_category', ['name' => 'Other fields', 'sortorder' => 1]);
    $DB->insert_record('user_info_field', ['shortname' => 'toolsyncbridge', 'name' => 'Bridge test',
        'datatype' => 'text', 'categoryid' => $cat, 'sortorder' => 99, 'param1' => 30, 'param2' => 2048]);
}
$result = ['course' => (int) $course->id, 'cohort' => (int) $cohort, 'group' => (int) $group, 'users' => []];
foreach (['victim', 'keeper'] as $who) {
    $id = user_create_user((object) ['username' => "$who$tag", 'firstname' => ucfirst($who), 'lastname' => $tag,
        'email' => "Mixed.Case+$who$tag@Example.org", 'idnumber' => "id-$who$tag", 'auth' => 'manual',
        'password' => 'Secret-pass-1', 'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id], true, false);
    enrol_get_plugin('manual')->enrol_user($manual, $id, $student);
    cohort_add_member($cohort, $id);
    groups_add_member($group, $id);
    role_assign($creator, $id, context_coursecat::instance($category)->id);
    set_user_preference('toolsync_bridge_test', 'yes', $id);
    profile_save_data((object) ['id' => $id, 'profile_field_toolsyncbridge' => "data of $who"]);
    $result['users'][$who] = (int) $id;
}
"""

# What delete_user() removes, by table and user column.
MEMBERSHIPS = [
    ("user_enrolments", "userid"),
    ("role_assignments", "userid"),
    ("cohort_members", "userid"),
    ("groups_members", "userid"),
    ("user_preferences", "userid"),
    ("user_info_data", "userid"),
]


async def test_info_names_the_sites_database(moodle_site: Site) -> None:
    info = await moodle_site.bridge().info()
    assert info["ok"] is True
    assert info["version"].startswith("2024")  # 4.5 is 2024100700; development builds of 4.5 start 202409
    assert info["dbprefix"] == moodle_site.prefix
    assert info["dirroot"] == str(moodle_site.dirroot)
    assert {"assign", "forum", "page", "quiz"} <= set(info["modules"])  # what a reset's modules may name
    db = DatabaseSettings(driver=moodle_site.driver, name=info["dbname"], prefix=moodle_site.prefix)
    assert (await moodle_site.bridge().verify_database(db))["dbname"] == db.name


async def test_delete_users_runs_moodles_delete_user(moodle_site: Site, site_db: MoodleGateway) -> None:
    tag = uuid.uuid4().hex[:8]
    made = await moodle_site.run_php(POPULATE % {"tag": tag})
    victim, keeper = made["users"]["victim"], made["users"]["keeper"]
    for table, column in MEMBERSHIPS:
        count = f"SELECT COUNT(*) FROM {{p}}{table} WHERE {column} = :u"
        assert await scalar(site_db, count, u=victim) >= 1, f"the set-up wrote no {table} row"
    admin = await scalar(site_db, "SELECT id FROM {p}user WHERE username = 'admin'")

    started = time.monotonic()
    outcomes = await moodle_site.bridge().delete_users([victim])
    elapsed = time.monotonic() - started
    assert outcomes == {victim: None}
    print(f"delete_users of one populated user: {elapsed:.2f} s, PHP bootstrap included")

    async with site_db.reading() as conn:
        row = (
            (await conn.execute(text(f"SELECT * FROM {site_db.schema.prefix}user WHERE id = :u"), {"u": victim}))
            .mappings()
            .one()
        )
    assert row["deleted"] == 1
    # The username becomes the cleaned email plus a timestamp, the email the md5 of the old username.
    assert re.fullmatch(rf"mixed\.casevictim{tag}@example\.org\.\d{{10}}", row["username"]), row["username"]
    assert row["email"] == hashlib.md5(f"victim{tag}".encode()).hexdigest()
    assert (row["idnumber"], row["picture"]) == ("", 0)
    assert row["password"] != ""  # the hash stays (soft delete)
    for table, column in MEMBERSHIPS:
        count = f"SELECT COUNT(*) FROM {{p}}{table} WHERE {column} = :u"
        assert await scalar(site_db, count, u=victim) == 0, f"{table} rows of the deleted user remain"
        assert await scalar(site_db, count, u=keeper) >= 1, f"{table} rows of the other user are gone"
    # Moodle's side effects, with the admin as the actor.
    request = "SELECT requestedby FROM {p}tool_dataprivacy_request WHERE userid = :u AND type = 2"
    assert await scalar(site_db, request, u=victim) == admin
    event = "SELECT userid FROM {p}logstore_standard_log WHERE eventname = :e AND relateduserid = :u"
    assert await scalar(site_db, event, e="\\core\\event\\user_deleted", u=victim) == admin
    dirty = "SELECT COUNT(*) FROM {p}cache_flags WHERE flagtype = 'accesslib/dirtyusers' AND name = :u"
    assert await scalar(site_db, dirty, u=str(victim)) == 1
    keeper_state = "SELECT deleted FROM {p}user WHERE id = :u"
    assert await scalar(site_db, keeper_state, u=keeper) == 0


async def test_delete_users_refuses_per_user_and_goes_on(moodle_site: Site, site_db: MoodleGateway) -> None:
    tag = uuid.uuid4().hex[:8]
    made = await moodle_site.run_php(POPULATE % {"tag": tag})
    victim, keeper = made["users"]["victim"], made["users"]["keeper"]
    admin = await scalar(site_db, "SELECT id FROM {p}user WHERE username = 'admin'")
    guest = await scalar(site_db, "SELECT id FROM {p}user WHERE username = 'guest'")
    missing = await scalar(site_db, "SELECT MAX(id) + 1000 FROM {p}user")
    bridge = moodle_site.bridge(chunk_size=3)  # two calls: the refusals do not stop the deletes behind them

    outcomes = await bridge.delete_users([admin, guest, missing, victim, keeper])
    assert (
        outcomes[admin]
        == f"user {admin} (admin) is a site administrator: remove them from the site administrators first"
    )
    assert outcomes[guest] == f"user {guest} is the guest account, which Moodle never deletes"
    assert outcomes[missing] == f"no user with id {missing}"
    assert (outcomes[victim], outcomes[keeper]) == (None, None)
    assert await bridge.delete_users([victim]) == {victim: f"user {victim} is already deleted"}
    deleted = "SELECT deleted FROM {p}user WHERE id = :u"
    assert [await scalar(site_db, deleted, u=u) for u in (admin, guest, victim, keeper)] == [0, 0, 1, 1]


async def test_purge_makes_a_direct_group_write_visible(moodle_site: Site, site_db: MoodleGateway) -> None:
    """groupdata lives in the application cache with no TTL: a group written by SQL stays invisible until purged."""
    tag = uuid.uuid4().hex[:8]
    course = (await moodle_site.run_php(POPULATE % {"tag": tag}))["course"]
    read = f"require_once($CFG->libdir . '/grouplib.php'); $result = count(groups_get_all_groups({course}));"
    assert await moodle_site.run_php(read) == 1  # and now cached
    async with site_db.transaction() as conn:
        insert = (
            "INSERT INTO {p}groups (courseid, name, description, timecreated, timemodified) VALUES (:c, :n, '', 0, 0)"
        )
        await conn.execute(text(insert.format(p=site_db.schema.prefix)), {"c": course, "n": f"direct {tag}"})
    assert await moodle_site.run_php(read) == 1  # stale: this is why the bridge purges

    await moodle_site.bridge().purge(
        events=["changesincategoryenrolment", "changesincourse"],
        groupdata_courses=[course],
        user_group_groupings_users=[2],
        coursecontacts_courses=[course],
    )
    assert await moodle_site.run_php(read) == 2


async def test_a_moodle_failure_reaches_python_as_bridge_error(moodle_site: Site, tmp_path: Path) -> None:
    """A config.php whose database is unreachable: Moodle's own error, through stderr, in the message."""
    if moodle_site.run_as:
        pytest.skip("the copied config.php would have to be readable by the run_as user")
    broken = tmp_path / "moodle"
    broken.mkdir()
    config = (moodle_site.dirroot / "config.php").read_text()
    config = re.sub(r"'dbport'\s*=>\s*[^,]*,", "'dbport' => 1,", config)
    config = config.replace("__DIR__ . '/lib/setup.php'", repr(str(moodle_site.dirroot / "lib" / "setup.php")))
    (broken / "config.php").write_text(config)
    with pytest.raises(
        BridgeError, match=r"bridge info: the PHP process exited with code 1 and no answer(?s:.*)PHP stderr: .*"
    ):
        await MoodleBridge(broken, php=moodle_site.php).info()


# -- toolsync's operations against the real site ------------------------------------------------------------------


async def test_the_deleteusers_file_deletes_through_moodle_with_the_bridge(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    from toolsync_tui.engine.run.pipeline import run_operation

    tag = uuid.uuid4().hex[:8]
    made = await moodle_site.run_php(POPULATE % {"tag": tag})
    config = site_config(moodle_site, tmp_path, bridge=True)
    source = tmp_path / "userdelete.csv"
    source.write_text(f"username\nvictim{tag}\nadmin\n")

    result = await run_operation(config, site_db, "deleteusers", source)

    assert result.counts == {"deleted": 1, "failed": 1}
    assert result.report_path is not None
    report = result.report_path.read_text()
    assert "through the Moodle bridge, by Moodle's own delete_user()" in report
    assert await scalar(site_db, "SELECT deleted FROM {p}user WHERE id = :u", u=made["users"]["victim"]) == 1
    assert await scalar(site_db, "SELECT deleted FROM {p}user WHERE id = :u", u=made["users"]["keeper"]) == 0
    event = "SELECT COUNT(*) FROM {p}logstore_standard_log WHERE eventname LIKE '%user_deleted' AND relateduserid = :u"
    assert await scalar(site_db, event, u=made["users"]["victim"]) == 1  # Moodle's own code ran


async def test_a_users_file_deleting_and_updating_in_one_batch_deletes_through_moodle_after_the_commit(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    """delete_user() runs in PHP's own connection: called while the batch's transaction held the updated accounts'
    locks, it waited for them until MariaDB's lock wait timeout and the deletion failed. After the commit it does not
    wait, and a deletion Moodle refuses fails its row."""
    from toolsync_tui.engine.run.pipeline import run_operation

    tag = uuid.uuid4().hex[:8]
    made = await moodle_site.run_php(POPULATE % {"tag": tag})
    keeper = await scalar(site_db, "SELECT username FROM {p}user WHERE id = :u", u=made["users"]["keeper"])
    source = tmp_path / "userimport.csv"
    source.write_text(
        "username;firstname;lastname;email;password;profile_field_toolsyncbridge;deleted\n"
        f"{keeper};Kept;Renamed;{keeper}@example.com;New-pass-1;changed;0\n"
        f"victim{tag};V;T;victim{tag}@example.com;;;1\nadmin;Admin;User;admin@example.com;;;1\n"
    )
    config = site_config(moodle_site, tmp_path, bridge=True)

    started = time.monotonic()
    result = await run_operation(config, site_db, "users", source)

    assert time.monotonic() - started < 40  # MariaDB's lock wait timeout is 50 s
    assert result.counts == {"updated": 1, "deleted": 1, "failed": 1}, result.report_path
    assert await scalar(site_db, "SELECT deleted FROM {p}user WHERE id = :u", u=made["users"]["victim"]) == 1
    assert await scalar(site_db, "SELECT lastname FROM {p}user WHERE id = :u", u=made["users"]["keeper"]) == "Renamed"


async def test_direct_deletion_leaves_the_rows_moodle_leaves(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    """The same populated user deleted by Moodle's delete_user() and by toolsync's direct path: the same rows."""
    from toolsync_tui.engine.run.pipeline import run_operation

    by_moodle = await moodle_site.run_php(POPULATE % {"tag": uuid.uuid4().hex[:8]})
    by_toolsync = await moodle_site.run_php(POPULATE % {"tag": uuid.uuid4().hex[:8]})
    moodle_id, toolsync_id = by_moodle["users"]["victim"], by_toolsync["users"]["victim"]
    assert await moodle_site.bridge().delete_users([moodle_id]) == {moodle_id: None}
    username = await scalar(site_db, "SELECT username FROM {p}user WHERE id = :u", u=toolsync_id)
    source = tmp_path / "userdelete.csv"
    source.write_text(f"username\n{username}\n")

    result = await run_operation(site_config(moodle_site, tmp_path, bridge=False), site_db, "deleteusers", source)

    assert result.counts == {"deleted": 1}
    tables = [*MEMBERSHIPS, ("user_lastaccess", "userid"), ("sessions", "userid"), ("user_password_history", "userid")]
    for table, column in tables:
        count = f"SELECT COUNT(*) FROM {{p}}{table} WHERE {column} = :u"
        assert await scalar(site_db, count, u=toolsync_id) == await scalar(site_db, count, u=moodle_id), table

    async def user_state(user_id: int) -> tuple[Any, ...]:
        async with site_db.reading() as conn:
            row = (
                (await conn.execute(text(f"SELECT * FROM {site_db.schema.prefix}user WHERE id = :u"), {"u": user_id}))
                .mappings()
                .one()
            )
        # The random tag first: its hex digits may hold the user id's.
        untagged = re.sub(r"[0-9a-f]{8}", "<tag>", re.sub(r"\.\d{10}$", ".<time>", row["username"]))
        return (
            row["deleted"],
            untagged.replace(str(user_id), "<id>"),
            len(row["email"]),
            row["idnumber"],
            row["picture"],
        )

    assert await user_state(toolsync_id) == await user_state(moodle_id)

    request = (
        "SELECT CONCAT_WS('|', type, status, creationmethod, comments, commentsformat, dpo, dpocomment, "
        "dpocommentformat, systemapproved, requestedby, usermodified) FROM {p}tool_dataprivacy_request "
        "WHERE userid = :u"
    )
    assert await scalar(site_db, request, u=toolsync_id) == await scalar(site_db, request, u=moodle_id)
    dirty = "SELECT COUNT(*) FROM {p}cache_flags WHERE flagtype = 'accesslib/dirtyusers' AND name = :u"
    assert await scalar(site_db, dirty, u=str(toolsync_id)) == 1


async def test_enrolments_and_groups_written_by_toolsync_are_what_moodle_sees(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    """The enrolments file (add with gaddcreate) and the group members file (shift), then Moodle's own APIs, after the
    bridge's purge: the user is enrolled with the role, and the groups and memberships are visible (groupdata and
    user_group_groupings have no expiry, so without the purge Moodle would keep the cached answers)."""
    from toolsync_tui.engine.run.pipeline import run_operation

    tag = uuid.uuid4().hex[:8]
    made = await moodle_site.run_php(POPULATE % {"tag": tag})
    course, keeper = made["course"], made["users"]["keeper"]
    seen = f"""
        require_once($CFG->libdir . '/grouplib.php');
        $context = context_course::instance({course});
        $groups = groups_get_user_groups({course}, %(user)d)[0];
        $names = array_map(fn($g) => $g->name, groups_get_all_groups({course}));
        sort($names);
        $result = ['enrolled' => is_enrolled($context, %(user)d), 'groups' => array_map(fn($id) =>
            groups_get_group($id)->name, array_values($groups)), 'names' => array_values($names),
            'student' => user_has_role_assignment(%(user)d, 5, $context->id)];
    """
    newcomer = await moodle_site.run_php(
        f"""require_once($CFG->dirroot . '/user/lib.php');
        $result = user_create_user((object) ['username' => 'newcomer{tag}', 'firstname' => 'New', 'lastname' => 'Comer',
            'email' => 'newcomer{tag}@example.org', 'auth' => 'manual', 'confirmed' => 1,
            'mnethostid' => $CFG->mnet_localhost_id], false, false);"""
    )
    before = await moodle_site.run_php(seen % {"user": newcomer})  # cached now: the purge must reach these
    assert before == {"enrolled": False, "groups": [], "names": [f"Bridge {tag}"], "student": False}
    config = site_config(moodle_site, tmp_path, bridge=True)
    config.set("operations.enrols.course_identifier", "id")
    config.set("operations.enrols.user_identifier", "id")
    enrols = tmp_path / "enrols.csv"
    enrols.write_text(f"rolename;cid;uid;enrol;gcmd;g1\nstudent;{course};{newcomer};manual;gaddcreate;Lab {tag}\n")

    result = await run_operation(config, site_db, "enrols", enrols)

    assert result.counts == {"created": 1}
    assert "Moodle's enrolment and group caches were purged through the bridge" in result.notes
    after = await moodle_site.run_php(seen % {"user": newcomer})
    assert after == {"enrolled": True, "groups": [f"Lab {tag}"], "names": sorted([f"Bridge {tag}", f"Lab {tag}"]),
                     "student": True}  # fmt: skip

    # The group members file moves the keeper (in "Bridge <tag>" through Moodle's API) into the new group.
    config.set("operations.groupmembers.course_identifier", "id")
    config.set("operations.groupmembers.group_identifier", "name")
    config.set("operations.groupmembers.user_identifier", "id")
    members = tmp_path / "groupmembers.csv"
    members.write_text(f"courseid;groupid;userid;cmd\n{course};Lab {tag};{keeper};shift\n")
    assert (await moodle_site.run_php(seen % {"user": keeper}))["groups"] == [f"Bridge {tag}"]

    result = await run_operation(config, site_db, "groupmembers", members)

    assert result.counts == {"updated": 1}
    assert (await moodle_site.run_php(seen % {"user": keeper}))["groups"] == [f"Lab {tag}"]


async def test_cohort_and_meta_bindings_are_materialised_by_moodles_sync_through_the_bridge(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    """A cohort bound to a course by the cohortscourses file, then a new member added by the cohorts file, then a meta
    link to a second course: after each run, Moodle's own sync (run by the bridge) has enrolled the users, with the
    binding's role and group, as Moodle's APIs see them."""
    from toolsync_tui.engine.run.pipeline import run_operation

    tag = uuid.uuid4().hex[:8]
    made = await moodle_site.run_php(POPULATE % {"tag": tag})
    course, keeper = made["course"], made["users"]["keeper"]
    meta = await moodle_site.run_php(
        f"""require_once($CFG->dirroot . '/course/lib.php');
        $category = $DB->get_field_sql('SELECT MIN(id) FROM {{course_categories}}');
        $result = (int) create_course((object) ['fullname' => 'Meta {tag}', 'shortname' => 'meta{tag}',
            'category' => $category])->id;
        $enabled = explode(',', $CFG->enrol_plugins_enabled);
        if (!in_array('meta', $enabled)) {{
            set_config('enrol_plugins_enabled', implode(',', [...$enabled, 'meta']));
        }}"""
    )
    newcomer = await moodle_site.run_php(
        f"""require_once($CFG->dirroot . '/user/lib.php');
        $result = user_create_user((object) ['username' => 'joiner{tag}', 'firstname' => 'Jo', 'lastname' => 'Iner',
            'email' => 'joiner{tag}@example.org', 'idnumber' => 'id-joiner{tag}', 'auth' => 'manual', 'confirmed' => 1,
            'mnethostid' => $CFG->mnet_localhost_id], false, false);"""
    )
    seen = """
        $context = context_course::instance(%(course)d);
        $instance = $DB->get_record('enrol', ['courseid' => %(course)d, 'enrol' => '%(plugin)s'], '*', IGNORE_MULTIPLE);
        $groups = array_map(fn($id) => groups_get_group($id)->name, array_values(groups_get_user_groups(%(course)d,
            %(user)d)[0]));
        $result = ['enrolled' => is_enrolled($context, %(user)d), 'through' => $instance ? $DB->record_exists(
            'user_enrolments', ['enrolid' => $instance->id, 'userid' => %(user)d]) : false,
            'teacher' => user_has_role_assignment(%(user)d, 4, $context->id), 'groups' => $groups];
    """
    config = site_config(moodle_site, tmp_path, bridge=True)
    config.set("operations.cohortscourses.cohort_identifier", "idnumber")
    config.set("operations.cohortscourses.course_identifier", "id")
    bindings = tmp_path / "cohortscourses.csv"
    bindings.write_text(f"cohort;course;role;makegroup\nbridge{tag};{course};teacher;1\n")

    result = await run_operation(config, site_db, "cohortscourses", bindings)

    assert result.counts == {"created": 1}
    assert "cohort enrolments (enrol_cohort) of 1 course(s) synchronised by Moodle through the bridge" in result.notes
    assert await moodle_site.run_php(seen % {"course": course, "plugin": "cohort", "user": keeper}) == {
        "enrolled": True,
        "through": True,
        "teacher": True,
        "groups": [f"Bridge {tag}", f"Bridge {tag} cohort"],
    }

    config.set("operations.cohorts.cohort_identifier", "idnumber")
    config.set("operations.cohorts.user_identifier", "idnumber")
    members = tmp_path / "cohorts.csv"
    members.write_text(f"cidnumber;userid\nbridge{tag};id-joiner{tag}\n")
    result = await run_operation(config, site_db, "cohorts", members)
    assert result.counts == {"created": 1}
    assert (await moodle_site.run_php(seen % {"course": course, "plugin": "cohort", "user": newcomer}))["through"]

    config.set("operations.metacourses.identifier", "id")
    links = tmp_path / "metacourses.csv"
    links.write_text(f"master;meta\n{course};{meta}\n")
    result = await run_operation(config, site_db, "metacourses", links)
    assert result.counts == {"created": 1}
    in_meta = await moodle_site.run_php(seen % {"course": meta, "plugin": "meta", "user": newcomer})
    assert (in_meta["enrolled"], in_meta["through"]) == (True, True)
