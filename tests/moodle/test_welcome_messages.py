"""Course welcome messages: toolsync's enrolments welcomed through the bridge as Moodle's enrol_user() welcomes them,
checked against what Moodle itself writes on the same site (tests/support/moodle_site.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.support.moodle_site import Site, moodle_site_fixture, site_config, site_db_fixture
from tests.support.operation_files import inbox_file, report_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, run_operation

__all__ = ["moodle_site_fixture", "site_db_fixture"]

# Two identical courses with a teacher and two students each; `side` b is enrolled here by Moodle's own enrol_user().
SET_UP = """
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/user/lib.php');
$made = [];
foreach (['a', 'b'] as $side) {
    $course = create_course((object) ['fullname' => "Welcome %(tag)s {$side}", 'shortname' => "W%(tag)s{$side}",
        'category' => 1]);
    $made[$side] = $course->id;
    foreach (['stu1', 'tea', 'stu2'] as $who) {
        user_create_user((object) ['username' => "{$who}%(tag)s{$side}", 'firstname' => ucfirst($who),
            'lastname' => 'L', 'email' => "{$who}{$side}%(tag)s@example.com", 'auth' => 'manual', 'confirmed' => 1,
            'mnethostid' => $CFG->mnet_localhost_id], false);
    }
}
$instance = $DB->get_record('enrol', ['courseid' => $made['b'], 'enrol' => 'manual']);
$plugin = enrol_get_plugin('manual');
$roles = ['stu1' => 'student', 'tea' => 'editingteacher', 'stu2' => 'student'];
foreach ($roles as $who => $role) {
    $user = $DB->get_record('user', ['username' => "{$who}%(tag)sb"]);
    $plugin->enrol_user($instance, $user->id, $DB->get_field('role', 'id', ['shortname' => $role]));
}
$result = $made;
"""

FILE = "cmd;rolename;cid;uid;enrol\n{rows}"


def config_for(site: Site, tmp_path: Path, *, bridge: bool = True) -> Config:
    config = site_config(site, tmp_path, bridge=bridge)
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    return config


async def enrol(config: Config, gateway: MoodleGateway, rows: list[tuple[str, str, str]], **kw: Any) -> RunResult:
    lines = "".join(f"add;{role};{course};{user};manual\n" for role, course, user in rows)
    inbox_file(config, "enrols.csv", FILE.format(rows=lines))
    return await run_operation(config, gateway, "enrols", **kw)


async def messages(gateway: MoodleGateway, course_name: str) -> list[dict[str, Any]]:
    """The welcome notifications of a course, senders and recipients by username, the course's name as <course>."""
    p = gateway.schema.prefix
    sql = (
        "SELECT f.username AS sender, t.username AS recipient, n.subject, n.fullmessage, n.fullmessageformat, "
        "n.fullmessagehtml, n.component, n.eventtype, n.contexturlname, n.contexturl, t.id AS recipient_id, "
        f"(SELECT COUNT(*) FROM {p}message_popup_notifications p WHERE p.notificationid = n.id) AS popups, "
        f"(SELECT COUNT(*) FROM {p}logstore_standard_log l WHERE l.eventname = :sent AND l.objectid = n.id "
        " AND l.userid = f.id AND l.relateduserid = t.id) AS logged "
        f"FROM {p}notifications n JOIN {p}user f ON f.id = n.useridfrom JOIN {p}user t ON t.id = n.useridto "
        "WHERE n.eventtype = 'enrolcoursewelcomemessage' AND n.contexturlname = :name ORDER BY n.id"
    )
    params = {"name": course_name, "sent": "\\core\\event\\notification_sent"}
    async with gateway.reading() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


def same_shape(rows: list[dict[str, Any]], side: str, tag: str, course_id: int) -> list[dict[str, Any]]:
    """Rows of one side with that side's names and ids put back to placeholders, to compare the sides."""
    shaped = []
    for row in rows:
        row = dict(row)
        assert (
            row["contexturl"] == f"http://localhost/user/view.php?id={row.pop('recipient_id')}&amp;course={course_id}"
        )
        del row["contexturl"]
        for key, value in row.items():
            if isinstance(value, str):
                row[key] = value.replace(f"Welcome {tag} {side}", "<course>").replace(f"{tag}{side}", "")
        shaped.append(row)
    return shaped


async def test_new_enrolments_are_welcomed_as_enrol_user_welcomes_them(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    courses = await moodle_site.run_php(SET_UP % {"tag": tag})
    config = config_for(moodle_site, tmp_path)
    # In file order, as in Moodle's: the first student before any teacher, the teacher (whose own role comes after
    # their welcome), then a student welcomed by that teacher.
    rows = [("student", f"W{tag}a", f"stu1{tag}a"), ("editingteacher", f"W{tag}a", f"tea{tag}a")]
    rows.append(("student", f"W{tag}a", f"stu2{tag}a"))

    dry = await enrol(config, site_db, rows, dry_run=True)
    assert "welcome messages: 1 would be sent through the bridge" in report_of(dry), report_of(dry)
    assert await messages(site_db, f"Welcome {tag} a") == []

    result = await enrol(config, site_db, rows)
    report = report_of(result)
    assert result.counts == {"created": 3}, report
    assert (
        "welcome messages: 1 sent through the bridge, as Moodle's enrol_user() sends them; 2 not sent: the course "
        "had no contact to send them from (Moodle sends none)"
    ) in report

    theirs = await messages(site_db, f"Welcome {tag} b")
    ours = await messages(site_db, f"Welcome {tag} a")
    assert [(m["sender"], m["recipient"]) for m in ours] == [(f"tea{tag}a", f"stu2{tag}a")]
    assert same_shape(ours, "a", tag, courses["a"]) == same_shape(theirs, "b", tag, courses["b"])
    assert ours[0]["popups"] == 1  # its popup row
    assert ours[0]["logged"] == 1  # Moodle's notification_sent log row

    # A re-run changes nothing, so calls no enrol_user() (tool_sync called it on every row): nothing is sent.
    again = await enrol(config, site_db, rows)
    assert again.counts == {"unchanged": 3}, report_of(again)
    assert "welcome messages" not in report_of(again)
    assert len(await messages(site_db, f"Welcome {tag} a")) == 1


TEACHER = """
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/user/lib.php');
$course = create_course((object) ['fullname' => 'Quiet %(tag)s', 'shortname' => 'Q%(tag)s', 'category' => 1]);
foreach (['tea', 'stu'] as $who) {
    user_create_user((object) ['username' => "{$who}%(tag)s", 'firstname' => $who, 'lastname' => 'L',
        'email' => "{$who}%(tag)s@example.com", 'auth' => 'manual', 'confirmed' => 1,
        'mnethostid' => $CFG->mnet_localhost_id], false);
}
$instance = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'manual']);
enrol_get_plugin('manual')->enrol_user($instance, $DB->get_field('user', 'id', ['username' => "tea%(tag)s"]),
    $DB->get_field('role', 'id', ['shortname' => 'editingteacher']));
$result = $course->id;
"""


async def test_without_the_bridge_the_report_counts_the_messages_not_sent(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    await moodle_site.run_php(TEACHER % {"tag": tag})
    config = config_for(moodle_site, tmp_path, bridge=False)
    result = await enrol(config, site_db, [("student", f"Q{tag}", f"stu{tag}")])
    report = report_of(result)
    assert result.counts == {"created": 1}, report
    assert (
        "welcome messages: 1 not sent, that Moodle's enrol_user() would have sent: no Moodle bridge is configured "
        "([bridge] moodle_dir) (1)"
    ) in report
    assert await messages(site_db, f"Quiet {tag}") == []


async def test_the_setting_turns_welcome_messages_off(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    await moodle_site.run_php(TEACHER % {"tag": tag})
    config = config_for(moodle_site, tmp_path)
    config.set("events.welcome_messages", False)
    dry = await enrol(config, site_db, [("student", f"Q{tag}", f"stu{tag}")], dry_run=True)
    assert (
        "welcome messages: none would be sent ([events] welcome_messages = false); Moodle's enrol_user() would send 1"
    ) in report_of(dry)
    result = await enrol(config, site_db, [("student", f"Q{tag}", f"stu{tag}")])
    assert "1 not sent, that Moodle's enrol_user() would have sent: [events] welcome_messages = false" in report_of(
        result
    )
    assert await messages(site_db, f"Quiet {tag}") == []


async def test_a_users_file_enrolment_is_welcomed(moodle_site: Site, site_db: MoodleGateway, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    await moodle_site.run_php(TEACHER % {"tag": tag})
    config = site_config(moodle_site, tmp_path, bridge=True)
    config.set("operations.users.primary_identity", "username")
    inbox_file(
        config,
        config.operation("users").file,
        f"username;firstname;lastname;email;course1;role1\nnew{tag};New;Comer;new{tag}@example.com;Q{tag};student\n",
    )
    result = await run_operation(config, site_db, "users")
    report = report_of(result)
    assert "welcome messages: 1 sent through the bridge" in report, report
    assert [(m["sender"], m["recipient"]) for m in await messages(site_db, f"Quiet {tag}")] == [
        (f"tea{tag}", f"new{tag}")
    ]


# Two identical courses with a teacher and three enrolled students (the second suspended), enrolled by Moodle.
ENROLLED = """
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/user/lib.php');
$made = [];
$manual = enrol_get_plugin('manual');
$roles = ['tea' => 'editingteacher', 'stu1' => 'student', 'stu2' => 'student', 'stu3' => 'student'];
foreach (['a', 'b'] as $side) {
    $course = create_course((object) ['fullname' => "Welcome %(tag)s {$side}", 'shortname' => "A%(tag)s{$side}",
        'category' => 1]);
    $made[$side] = $course->id;
    $instance = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'manual']);
    foreach ($roles as $who => $role) {
        $id = user_create_user((object) ['username' => "{$who}%(tag)s{$side}", 'firstname' => ucfirst($who),
            'lastname' => 'L', 'email' => "{$who}{$side}%(tag)s@example.com", 'auth' => 'manual', 'confirmed' => 1,
            'mnethostid' => $CFG->mnet_localhost_id], false);
        $manual->enrol_user($instance, $id, $DB->get_field('role', 'id', ['shortname' => $role]), 0, 0,
            $who === 'stu2' ? ENROL_USER_SUSPENDED : ENROL_USER_ACTIVE);
    }
}
$result = $made;
"""

# Side b, by Moodle's own API as the enrolments file's rows below ask: a role added to an enrolment, a suspended
# enrolment made active, a shift (unenrol_user() then enrol_user()). Each enrol_user() call welcomes the user.
AGAIN = """
$manual = enrol_get_plugin('manual');
$instance = $DB->get_record('enrol', ['courseid' => %(course)s, 'enrol' => 'manual']);
$user = fn(string $who) => $DB->get_field('user', 'id', ['username' => "{$who}%(tag)sb"]);
$teacher = $DB->get_field('role', 'id', ['shortname' => 'teacher']);
$student = $DB->get_field('role', 'id', ['shortname' => 'student']);
$manual->enrol_user($instance, $user('stu1'), $teacher, 0, 0, ENROL_USER_ACTIVE);
$manual->enrol_user($instance, $user('stu2'), $student, 0, 0, ENROL_USER_ACTIVE);
$manual->unenrol_user($instance, $user('stu3'));
$manual->enrol_user($instance, $user('stu3'), $teacher, time(), 0, ENROL_USER_ACTIVE);
$result = true;
"""


async def test_every_enrol_user_call_welcomes_an_enrolled_user_too(
    moodle_site: Site, site_db: MoodleGateway, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    courses = await moodle_site.run_php(ENROLLED % {"tag": tag})
    before = {side: len(await messages(site_db, f"Welcome {tag} {side}")) for side in "ab"}
    config = config_for(moodle_site, tmp_path)
    course = f"A{tag}a"
    lines = (
        f"add;teacher;{course};stu1{tag}a;manual\n"  # a role added to an active enrolment
        f"add;student;{course};stu2{tag}a;manual\n"  # a suspended enrolment made active
        f"shift;teacher;{course};stu3{tag}a;manual\n"  # unenrolled, then enrolled again
    )

    inbox_file(config, "enrols.csv", FILE.format(rows=lines))
    dry = await run_operation(config, site_db, "enrols", dry_run=True)
    assert "welcome messages: 3 would be sent through the bridge" in report_of(dry), report_of(dry)

    inbox_file(config, "enrols.csv", FILE.format(rows=lines))
    result = await run_operation(config, site_db, "enrols")
    report = report_of(result)
    assert result.counts == {"updated": 3}, report
    assert "welcome messages: 3 sent through the bridge, as Moodle's enrol_user() sends them" in report, report

    await moodle_site.run_php(AGAIN % {"tag": tag, "course": courses["b"]})
    ours = (await messages(site_db, f"Welcome {tag} a"))[before["a"] :]
    theirs = (await messages(site_db, f"Welcome {tag} b"))[before["b"] :]
    assert [(m["sender"], m["recipient"]) for m in ours] == [(f"tea{tag}a", f"stu{n}{tag}a") for n in (1, 2, 3)]
    assert same_shape(ours, "a", tag, courses["a"]) == same_shape(theirs, "b", tag, courses["b"])

    # A re-run changes nothing, so calls no enrol_user(): nothing is sent.
    inbox_file(config, "enrols.csv", FILE.format(rows=lines))
    again = await run_operation(config, site_db, "enrols")
    assert again.counts == {"unchanged": 3}, report_of(again)
    assert "welcome messages" not in report_of(again)
