"""Moodle is the judge of the log rows of a deletion: two fresh Moodle 4.5 sites made from the same dump and populated
alike through Moodle's own APIs (grades, interests, enrolments through enabled and disabled plugins, groups, roles in
course, module, category and user contexts, cohorts); on one Moodle's delete_user() deletes two of the users, on the
other toolsync's deleteusers file deletes them directly (no bridge). The standard log rows the deletions wrote, ids
translated to natural keys, must be the same rows in the same order, and the interests left must be the same (issue
19). The sites are twins, so the ids left in `other` (assignments, enrolments, grade items, tags) compare as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Server
from tests.support.log_rows import log_mark, natural_log_since
from tests.support.moodle_site import Site, provision_site, site_config
from tests.support.operation_files import inbox_file, report_of
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

# Three users (the last one stays), made so that every event delete_user() logs comes up, in orders Moodle chooses:
# enrolments whose ids run against their instances', a course left with an enrolment of a disabled plugin, a course
# where a cohort enrolment comes last, groups joined against their ids' order, roles below a course and in each
# other's user contexts, grades with and without a final grade, tags that go with the first user, the second, or stay.
POPULATE = """
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/cohort/lib.php');
require_once($CFG->dirroot . '/group/lib.php');
require_once($CFG->dirroot . '/enrol/cohort/locallib.php');
require_once($CFG->libdir . '/gradelib.php');
$category = $DB->get_field_sql('SELECT MIN(id) FROM {course_categories}');
$a = create_course((object) ['fullname' => 'Deletion A', 'shortname' => 'DELA', 'category' => $category]);
$b = create_course((object) ['fullname' => 'Deletion B', 'shortname' => 'DELB', 'category' => $category]);
$c = create_course((object) ['fullname' => 'Deletion C', 'shortname' => 'DELC', 'category' => $category]);
// A site has more courses than a user has enrolments: MariaDB then reads a user's enrolments by user (their order).
for ($n = 1; $n <= 12; $n++) {
    create_course((object) ['fullname' => "Filler $n", 'shortname' => "DELFILL$n", 'category' => $category]);
}
$role = fn($name) => $DB->get_field('role', 'id', ['shortname' => $name], MUST_EXIST);
$instance = fn($course, $plugin) => $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => $plugin], '*',
    MUST_EXIST);
$context = fn($id) => context_user::instance($id)->id;
$u = [];
foreach (['delfirst', 'delsecond', 'delstays'] as $name) {
    $u[$name] = user_create_user((object) ['username' => $name, 'firstname' => ucfirst($name), 'lastname' => 'Del',
        'email' => "Mixed.Case+$name@Example.org", 'idnumber' => "id-$name", 'auth' => 'manual',
        'password' => 'Secret-pass-1', 'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id], true, false);
}
['delfirst' => $first, 'delsecond' => $second, 'delstays' => $stays] = $u;
$manual = enrol_get_plugin('manual');
// Enrolments in B before A: user_enrolments ids and instance ids in opposite orders.
foreach ([$b, $a] as $course) {
    foreach ($u as $id) {
        $manual->enrol_user($instance($course, 'manual'), $id, $role('student'));
    }
}
$selfa = $instance($a, 'self');
enrol_get_plugin('self')->enrol_user($selfa, $first, $role('student'));
// The second user also comes into B through a cohort instance; the first has an enrolment in C through a plugin
// that is not enabled (flatfile), so no enrolment of theirs in C is their last one.
$cohort = cohort_add_cohort((object) ['contextid' => context_system::instance()->id, 'name' => 'Del cohort',
    'idnumber' => 'delcohort']);
cohort_add_member($cohort, $second);
$other = cohort_add_cohort((object) ['contextid' => context_system::instance()->id, 'name' => 'Del other',
    'idnumber' => 'delother']);
cohort_add_member($other, $first);
$cohortb = enrol_get_plugin('cohort')->add_instance($b, ['customint1' => $cohort, 'roleid' => $role('student'),
    'customint2' => 0]);
enrol_cohort_sync(new null_progress_trace(), $b->id);
$manual->enrol_user($instance($c, 'manual'), $first, $role('student'));
$flat = $DB->insert_record('enrol', ['enrol' => 'flatfile', 'courseid' => $c->id, 'status' => 0, 'sortorder' => 9,
    'timecreated' => time(), 'timemodified' => time()]);
$DB->insert_record('user_enrolments', ['enrolid' => $flat, 'userid' => $first, 'status' => 0, 'timestart' => 0,
    'timeend' => 0, 'modifierid' => 2, 'timecreated' => time(), 'timemodified' => time()]);
// Groups: two in A joined in the opposite order of their ids, one the self instance made, one in B, one in C.
$ga = groups_create_group((object) ['courseid' => $a->id, 'name' => 'Group A']);
$ga2 = groups_create_group((object) ['courseid' => $a->id, 'name' => 'Group A2']);
$gself = groups_create_group((object) ['courseid' => $a->id, 'name' => 'Group A self']);
$gb = groups_create_group((object) ['courseid' => $b->id, 'name' => 'Group B']);
$gc = groups_create_group((object) ['courseid' => $c->id, 'name' => 'Group C']);
foreach ([$ga2, $ga, $gb] as $group) {
    foreach ($u as $id) {
        groups_add_member($group, $id);
    }
}
groups_add_member($gc, $first);
groups_add_member($gself, $first, 'enrol_self', $selfa->id);
// Roles: the self instance's own in A, one in A's Announcements forum, one in the category, one in the second's
// user context; the second and the staying user hold one in the first's user context (delete_content() removes
// them, without an event, before the second's deletion would reach them).
role_assign($role('teacher'), $first, context_course::instance($a->id)->id, 'enrol_self', $selfa->id);
$forum = $DB->get_record('forum', ['course' => $a->id, 'type' => 'news'], '*', MUST_EXIST);
$cm = get_coursemodule_from_instance('forum', $forum->id, $a->id, false, MUST_EXIST);
role_assign($role('teacher'), $first, context_module::instance($cm->id)->id);
role_assign($role('coursecreator'), $first, context_coursecat::instance($category)->id);
role_assign($role('manager'), $first, $context($second));
role_assign($role('manager'), $second, $context($first));
role_assign($role('manager'), $stays, $context($first));
// Grades: two items in A, one in B; one grade overridden, one without a final grade.
foreach ([[$a, 'Item A1', 55], [$a, 'Item A2', null], [$b, 'Item B1', 72.5]] as [$course, $name, $value]) {
    $item = new grade_item(['courseid' => $course->id, 'itemtype' => 'manual', 'itemname' => $name,
        'gradetype' => GRADE_TYPE_VALUE, 'grademax' => 100]);
    $item->insert();
    if ($value === null) {
        (new grade_grade(['itemid' => $item->id, 'userid' => $first, 'feedback' => 'none yet']))->insert();
    } else {
        $item->update_final_grade($first, $value, 'test');
        $item->update_final_grade($second, $value - 10, 'test');
    }
}
$DB->set_field_select('grade_grades', 'overridden', time(), 'userid = ? AND finalgrade = ?', [$first, 72.5]);
// Interests: a tag of the first only, one shared by the two deleted users, one shared with the staying user, a
// standard one.
core_tag_tag::create_if_missing(core_tag_collection::get_default(), ['Standard one'], true);
core_tag_tag::set_item_tags('core', 'user', $first, context_user::instance($first), ['Solo', 'Shared', 'Standard one']);
core_tag_tag::set_item_tags('core', 'user', $second, context_user::instance($second), ['Shared', 'Pair']);
core_tag_tag::set_item_tags('core', 'user', $stays, context_user::instance($stays), ['Pair']);
$result = ['first' => (int) $first, 'second' => (int) $second, 'stays' => (int) $stays];
"""

DELETE = """
foreach (['delfirst', 'delsecond'] as $name) {
    delete_user($DB->get_record('user', ['username' => $name], '*', MUST_EXIST));
}
$result = true;
"""

TIME = re.compile(r"\.\d{10}$")  # the time a deleted username ends with
MEMBERSHIP = frozenset(
    {"\\core\\event\\role_unassigned", "\\core\\event\\group_member_removed", "\\core\\event\\user_enrolment_deleted"}
)


def natural(row: dict[str, Any]) -> dict[str, Any]:
    """A log row without the deletion times: in deleted usernames, and in `other` (enrolment times)."""

    def timeless(value: Any) -> Any:
        if isinstance(value, str):
            return TIME.sub(".<time>", value)
        if isinstance(value, tuple):
            return tuple(timeless(part) for part in value)
        return value

    found = {key: timeless(value) for key, value in row.items()}
    found["other"] = re.sub(r'"\d{10}"', '"<time>"', row["other"] or "")
    return found


def unordered_unenrolments(rows: list[dict[str, Any]]) -> list[Any]:
    """The rows with each run of enrol_user_delete() and role_unassign_all() rows made order-free where PostgreSQL
    leaves the order to its plan: the unenrol_user() blocks (up to their user_enrolment_deleted, each in its own
    order) as a sorted list, then the role_unassigned rows after the last block, sorted.

    Why, on PostgreSQL only: enrol_plugin::user_delete()'s join of enrol and user_enrolments and role_unassign_all()'s
    get_records('role_assignments', ['userid' => ...]) have no ORDER BY, so the rows come in the plan's order. MariaDB
    reads both through the userid indexes here (ids in order: the filler courses make that its plan, as on real
    sites). PostgreSQL's plan follows the statistics (EXPLAIN on this site's twin, populated as here): never analyzed
    (the state these sites are in when delete_user() runs) it drives the join from enrol's (enrol) index (enrol ids in
    order) and reads role_assignments through (userid, contextid, roleid) (contexts in order); ANALYZEd, a hash join
    probed in enrol's heap order and a sequential scan; ANALYZEd with tens of thousands of rows, the userid indexes
    (the ids' order, which toolsync writes: deletion_events.py). So the order depends on when autovacuum last
    analyzed, not on the rows. What each block holds does not depend on that order on this site (no course has two
    instances of one plugin for one user), and inside a block Moodle's order here is that of the (userid, groupid)
    index and of one assignment per context, as on an analyzed site: the blocks compare exactly, only their order
    and the last role_unassigned rows' order are free."""
    result: list[Any] = []
    run: list[dict[str, Any]] = []

    def close_run() -> None:
        blocks: list[tuple[Any, ...]] = []
        block: list[tuple[Any, ...]] = []
        for row in run:
            block.append(tuple(sorted(row.items())))
            if row["eventname"] == "\\core\\event\\user_enrolment_deleted":
                blocks.append(tuple(block))
                block = []
        if run:
            result.append(("unenrolments", sorted(blocks, key=repr), sorted(block, key=repr)))
        run.clear()

    for row in rows:
        if row["eventname"] in MEMBERSHIP:
            run.append(row)
        else:
            close_run()
            result.append(row)
    close_run()
    return result


async def interests(gateway: MoodleGateway) -> tuple[list[Any], list[Any], int]:
    """The tags left, the user interests left (tag name, username) and the tag correlations."""
    s = gateway.schema
    async with gateway.reading() as conn:
        tags = sorted((await conn.execute(select(s.tag.c.name, s.tag.c.isstandard))).all())
        query = (
            select(s.tag.c.name, s.user.c.username)
            .select_from(
                s.tag_instance.join(s.tag, s.tag.c.id == s.tag_instance.c.tagid).join(
                    s.user, s.user.c.id == s.tag_instance.c.itemid
                )
            )
            .where(s.tag_instance.c.itemtype == "user")
        )
        # A deleted account's username ends in the second of its deletion (email.time()): that part aside.
        left = sorted((tag, TIME.sub(".<time>", username)) for tag, username in await conn.execute(query))
        correlations = len((await conn.execute(select(s.tag_correlation.c.id))).all())
    return [tuple(t) for t in tags], [tuple(i) for i in left], correlations


async def populated(db_server: Server, name: str, usetags: bool) -> tuple[Site, MoodleGateway, int]:
    """A new site with the POPULATE users, its gateway and the log mark after the set-up."""
    site = provision_site(db_server, name)
    gateway = MoodleGateway.for_url(site.url, site.prefix)
    made = await site.run_php(POPULATE)
    assert set(made) == {"first", "second", "stays"}
    assert await site.run_php(f"set_config('usetags', {int(usetags)}); $result = true;") is True
    return site, gateway, await log_mark(gateway)


@pytest.mark.parametrize(
    ("operation", "name", "content", "usetags"),
    [
        ("deleteusers", "userdelete.csv", "username\ndelfirst\ndelsecond\n", True),
        # The users file's deleted column on a site that does not use tags: Moodle keeps the interests (tag_cron_task
        # removes them) and logs no tag event.
        ("users", "userimport.csv", "username;firstname;lastname;deleted\ndelfirst;F;D;1\ndelsecond;S;D;1\n", False),
    ],
)
async def test_a_direct_deletion_logs_what_delete_user_logs(
    db_server: Server, server_kind: str, tmp_path: Path, operation: str, name: str, content: str, usetags: bool
) -> None:
    through_moodle, moodle_db, moodle_mark = await populated(db_server, f"deletion_log_moodle_{operation}", usetags)
    through_toolsync, toolsync_db, toolsync_mark = await populated(
        db_server, f"deletion_log_toolsync_{operation}", usetags
    )
    try:
        assert await through_moodle.run_php(DELETE) is True
        config = site_config(through_toolsync, tmp_path, bridge=False)
        inbox_file(config, name, content)
        result = await run_operation(config, toolsync_db, operation)
        assert result.counts == {"deleted": 2}, report_of(result)

        expected = [natural(row) for row in await natural_log_since(moodle_db, moodle_mark)]
        logged = [natural(row) for row in await natural_log_since(toolsync_db, toolsync_mark)]
        expected_interests, left_interests = await interests(moodle_db), await interests(toolsync_db)
    finally:
        await moodle_db.close()
        await toolsync_db.close()
    # The first user: 3 grades, 3 interests and a tag, 4 enrolments with 4 roles and 4 groups, 3 roles left, the
    # account; the second: 2 grades, 2 interests and a tag, 3 enrolments with 3 roles and 3 groups, the account.
    tags = (4 + 3) if usetags else 0
    assert len(expected) == (3 + 4 + 4 + 4 + 3 + 1) + (2 + 3 + 3 + 3 + 1) + tags
    if server_kind == "postgresql":  # see unordered_unenrolments()
        assert unordered_unenrolments(logged) == unordered_unenrolments(expected)
    else:
        assert [row["eventname"] for row in logged] == [row["eventname"] for row in expected]
        assert logged == expected
    assert left_interests == expected_interests
