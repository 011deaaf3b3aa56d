<?php
// Test-only: the differential scenario (scenario/manifest.json) applied through Moodle's own APIs, as toolsync's
// contract says each command file behaves (shared docs: CONTRACT.md, tool_sync-reference.md §2). The differential
// test runs it on database B while toolsync runs the same files on database A, then compares the two (tests/support/table_compare.py).
//
// Written independently from toolsync's code: each row does what an administrator would do with Moodle's own PHP
// API (user_create_user(), create_course(), enrol_user(), groups_add_member(), cohort_add_member() ...), and nothing
// when the row asks for what is already there (a re-run is unchanged, as the contract promises).
//
// Usage: php replay.php --config=/path/to/config.php --scenario=/path/to/scenario [--setup-only]
//   --setup-only: only the site set-up both databases get before the baseline (enrol_meta on, a profile field).
// Prints one JSON line per step ({"step": n, "operation": ..., "rows": n}); exits non-zero on an error.

define('CLI_SCRIPT', true);

$options = [];
foreach (array_slice($argv, 1) as $arg) {
    if (preg_match('/^--([a-z-]+)(?:=(.*))?$/', $arg, $m)) {
        $options[$m[1]] = $m[2] ?? true;
    }
}
require($options['config']);
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/user/profile/lib.php');
require_once($CFG->dirroot . '/group/lib.php');
require_once($CFG->dirroot . '/cohort/lib.php');
require_once($CFG->dirroot . '/enrol/cohort/locallib.php');
require_once($CFG->dirroot . '/enrol/meta/locallib.php');
require_once($CFG->libdir . '/enrollib.php');
require_once($CFG->libdir . '/gdlib.php');

\core\session\manager::set_user(get_admin());

// -- the site set-up both sides share ---------------------------------------------------------------------------

function replay_setup(): void {
    global $CFG, $DB;
    $enabled = explode(',', $CFG->enrol_plugins_enabled);
    if (!in_array('meta', $enabled)) {
        $enabled[] = 'meta';
        set_config('enrol_plugins_enabled', implode(',', $enabled));
        core_plugin_manager::reset_caches();
    }
    if (!$DB->record_exists('user_info_field', ['shortname' => 'favcolour'])) {
        $category = $DB->get_record('user_info_category', [], '*', IGNORE_MULTIPLE);
        $categoryid = $category ? $category->id : $DB->insert_record('user_info_category',
            (object) ['name' => 'Other fields', 'sortorder' => 1]);
        $DB->insert_record('user_info_field', (object) [
            'shortname' => 'favcolour', 'name' => 'Favourite colour', 'datatype' => 'text', 'description' => '',
            'descriptionformat' => 1, 'categoryid' => $categoryid, 'sortorder' => 1, 'required' => 0,
            'locked' => 0, 'visible' => 2, 'forceunique' => 0, 'signup' => 0, 'defaultdata' => '',
            'defaultdataformat' => 0, 'param1' => '30', 'param2' => '2048', 'param3' => '0', 'param4' => '',
            'param5' => '',
        ]);
    }
}

// -- reading a command file -------------------------------------------------------------------------------------

// The rows of a ';'-separated command file: header => cell (trimmed), with 'line' => the file's line number.
// Blank lines and comment lines (#, //) are skipped. Headerless files give ['identifier' => the line].
function replay_rows(string $path, bool $headerless = false): array {
    $rows = [];
    $header = null;
    foreach (file($path, FILE_IGNORE_NEW_LINES) as $i => $line) {
        $line = preg_replace('/^\xEF\xBB\xBF/', '', rtrim($line, "\r"));
        if (trim($line) === '' || str_starts_with($line, '#') || str_starts_with($line, '//')) {
            continue;
        }
        if ($headerless) {
            $rows[] = ['line' => $i + 1, 'identifier' => trim($line)];
            continue;
        }
        $cells = array_map('trim', str_getcsv($line, ';', '"', ''));
        if ($header === null) {
            $header = $cells;
            continue;
        }
        $row = ['line' => $i + 1];
        foreach ($header as $j => $name) {
            $row[$name] = $cells[$j] ?? '';  // short rows: the missing trailing cells are empty
        }
        $rows[] = $row;
    }
    return $rows;
}

function replay_cell(array $row, string $name): string {
    return isset($row[$name]) ? (string) $row[$name] : '';
}

// A date cell (YYYY-MM-DD[ hh:mm[:ss]] in the site's timezone, or a unix timestamp) as a timestamp.
function replay_time(string $value): int {
    if (ctype_digit($value)) {
        return (int) $value;
    }
    $date = new DateTime($value, core_date::get_server_timezone_object());
    return $date->getTimestamp();
}

// -- lookups ----------------------------------------------------------------------------------------------------

function replay_user(string $field, string $value): ?stdClass {
    global $DB, $CFG;
    if ($value === '') {
        return null;
    }
    $value = $field === 'username' ? core_text::strtolower($value) : $value;
    $user = $DB->get_record('user', [$field => $value, 'deleted' => 0, 'mnethostid' => $CFG->mnet_localhost_id]);
    return $user ?: null;
}

function replay_course(string $field, string $value): ?stdClass {
    global $DB;
    if ($value === '') {
        return null;
    }
    $course = $DB->get_record('course', [$field => $value]);
    return $course && $course->id != SITEID ? $course : null;
}

function replay_role(string $shortname): ?stdClass {
    global $DB;
    return $DB->get_record('role', ['shortname' => $shortname]) ?: null;
}

// The first enabled instance of an enrol plugin in a course, by sortorder.
function replay_instance(int $courseid, string $enrol): ?stdClass {
    foreach (enrol_get_instances($courseid, true) as $instance) {
        if ($instance->enrol === $enrol) {
            return $instance;
        }
    }
    return null;
}

function replay_group_by_name(int $courseid, string $name): ?stdClass {
    global $DB;
    $groups = $DB->get_records('groups', ['courseid' => $courseid, 'name' => $name], 'id');
    return $groups ? reset($groups) : null;
}

// The category of a `Top/Sub` path of names (created when missing, visible or not), or of a numeric id.
function replay_category_path(string $path, bool $visible): int {
    global $DB;
    if (ctype_digit($path)) {
        return (int) $path;
    }
    $parent = 0;
    foreach (explode('/', trim($path, '/')) as $name) {
        $found = $DB->get_records('course_categories', ['parent' => $parent, 'name' => $name], 'id');
        if ($found) {
            $parent = (int) reset($found)->id;
        } else {
            $parent = (int) core_course_category::create(['name' => $name, 'parent' => $parent,
                'visible' => $visible ? 1 : 0])->id;
        }
    }
    return $parent;
}

// -- memberships toolsync protects (enrolments file with protect_groups, group members file) -------------------

$REPLAY_PROTECTED = [];  // "groupid:userid" => true

function replay_protect(int $groupid, int $userid): void {
    global $REPLAY_PROTECTED;
    $REPLAY_PROTECTED["$groupid:$userid"] = true;
}

function replay_is_protected(int $groupid, int $userid): bool {
    global $REPLAY_PROTECTED;
    return isset($REPLAY_PROTECTED["$groupid:$userid"]);
}

function replay_leave_group(int $groupid, int $userid): void {
    global $REPLAY_PROTECTED;
    if (groups_is_member($groupid, $userid)) {
        groups_remove_member($groupid, $userid);
    }
    unset($REPLAY_PROTECTED["$groupid:$userid"]);
}

// -- course enrolment requests (users file course parts, enrolments file add, course teachers) ------------------

// enrol_user() through the first enabled instance of $enrol, as the contract says: an empty role is the instance's
// default role (else student); for an existing enrolment, an empty start or end keeps the stored value.
// Returns the instance used, or null when nothing could be done.
function replay_enrol(stdClass $course, stdClass $user, string $role, string $enrol, string $start, string $end): ?stdClass {
    global $DB;
    $instance = replay_instance($course->id, $enrol === '' ? 'manual' : $enrol);
    if (!$instance) {
        return null;
    }
    $roleid = $role !== '' ? (int) replay_role($role)->id : ((int) $instance->roleid ?: (int) replay_role('student')->id);
    $ue = $DB->get_record('user_enrolments', ['enrolid' => $instance->id, 'userid' => $user->id]);
    $timestart = $start !== '' ? replay_time($start) : ($ue ? (int) $ue->timestart : time());
    $timeend = $end !== '' ? replay_time($end) : ($ue ? (int) $ue->timeend : 0);
    $context = context_course::instance($course->id);
    $hasrole = $DB->record_exists('role_assignments', ['roleid' => $roleid, 'userid' => $user->id,
        'contextid' => $context->id, 'component' => '', 'itemid' => 0]);
    if ($ue && (int) $ue->status === ENROL_USER_ACTIVE && (int) $ue->timestart === $timestart
            && (int) $ue->timeend === $timeend && $hasrole) {
        return $instance;  // unchanged
    }
    enrol_get_plugin($instance->enrol)->enrol_user($instance, $user->id, $roleid, $timestart, $timeend,
        ENROL_USER_ACTIVE);
    return $instance;
}

function replay_join_group(stdClass $course, stdClass $user, string $name, bool $create, bool $protect): void {
    $group = replay_group_by_name($course->id, $name);
    if (!$group) {
        if (!$create) {
            return;
        }
        $group = groups_get_group(groups_create_group((object) ['courseid' => $course->id, 'name' => $name]));
    }
    if (!groups_is_member($group->id, $user->id) && groups_add_member($group, $user) && $protect) {
        replay_protect($group->id, $user->id);
    }
}

// -- courses (uploadcourses.csv) --------------------------------------------------------------------------------

const REPLAY_COURSE_COLUMNS = ['fullname', 'shortname', 'idnumber', 'summary', 'format', 'showgrades', 'newsitems',
    'startdate', 'enddate', 'marker', 'maxbytes', 'legacyfiles', 'showreports', 'visible', 'groupmode',
    'groupmodeforce', 'defaultgroupingid', 'enablecompletion', 'showactivitydates', 'lang', 'theme'];
const REPLAY_DATE_COLUMNS = ['startdate', 'enddate'];
const REPLAY_TEXT_COLUMNS = ['fullname', 'shortname', 'idnumber', 'summary', 'format', 'lang', 'theme'];

function replay_courses(array $rows, array $settings): void {
    global $DB;
    $identifier = $settings['identifier'];
    foreach ($rows as $row) {
        $data = new stdClass();
        foreach (REPLAY_COURSE_COLUMNS as $column) {
            $value = replay_cell($row, $column);
            if ($value !== '') {
                // Numbers as the course form cleans them (PARAM_INT): course_updated's log lists them so.
                $data->$column = in_array($column, REPLAY_DATE_COLUMNS) ? replay_time($value)
                    : (in_array($column, REPLAY_TEXT_COLUMNS) ? $value : (int) $value);
            }
        }
        $course = replay_course($identifier, replay_cell($row, $identifier));
        $category = replay_cell($row, 'category');
        if (!$course) {
            $data->category = $category !== '' ? replay_category_path($category, $settings['new_categories_visible'] ?? true)
                : core_course_category::get_default()->id;
            $course = create_course(replay_course_defaults($data));
        } else if (!empty($settings['forceupdate'])) {
            $changed = new stdClass();
            foreach ((array) $data as $column => $value) {
                if ((string) $course->$column !== (string) $value) {
                    $changed->$column = $value;
                }
            }
            if ($category !== '' && empty($settings['protect_category'])) {
                $categoryid = replay_category_path($category, $settings['new_categories_visible'] ?? true);
                if ($categoryid != $course->category) {
                    $changed->category = $categoryid;
                }
            }
            if ((array) $changed) {
                $changed->id = $course->id;
                update_course($changed);
            }
            $course = get_course($course->id);
        } else {
            continue;
        }
        replay_course_sections($course, $row);
        replay_course_methods($course, $row);
        replay_course_teachers($course, $row);
    }
}

// The site's course defaults (Site administration > Courses > Course default settings) for the columns a new course
// is not given, as Moodle's own course upload (tool_uploadcourse) and course form apply them: create_course() itself
// leaves such columns to the table's defaults.
function replay_course_defaults(stdClass $data): stdClass {
    global $CFG;
    $config = get_config('moodlecourse');
    $names = ['format', 'visible', 'lang', 'newsitems', 'showgrades', 'showreports', 'maxbytes', 'groupmode',
        'groupmodeforce', 'showactivitydates', 'numsections'];
    if (!empty($CFG->enablecompletion)) {
        $names[] = 'enablecompletion';
    }
    $format = $data->format ?? $config->format;
    foreach ($names as $name) {
        // The form offers numsections only for the formats whose lib.php adds it (topics, weeks): a social or
        // single-activity course is created with section 0 alone.
        if ($name === 'numsections' && !in_array($format, ['topics', 'weeks'])) {
            continue;
        }
        if (!isset($data->$name) && isset($config->$name)) {
            $data->$name = $config->$name;
        }
    }
    if (!isset($data->startdate)) {
        $data->startdate = usergetmidnight(time()) + DAYSECS;  // the course form's default: tomorrow
    }
    // The end date the course form proposes: the format's default (start + course duration; weekly formats
    // compute theirs from their sections).
    if (!isset($data->enddate) && !empty($config->courseenddateenabled) && $data->format !== 'weeks') {
        $data->enddate = $data->startdate + ((int) $config->courseduration ?: YEARSECS);
    }
    return $data;
}

// topicN: `name` or `name|summary` of section N, created when missing.
function replay_course_sections(stdClass $course, array $row): void {
    global $DB;
    foreach ($row as $column => $value) {
        if (!preg_match('/^topic(\d+)$/', $column, $m) || $value === '') {
            continue;
        }
        [$name, $summary] = array_pad(explode('|', $value, 2), 2, null);
        $section = $DB->get_record('course_sections', ['course' => $course->id, 'section' => (int) $m[1]]);
        if (!$section) {
            $section = course_create_section($course, (int) $m[1]);
        }
        $changes = [];
        if ($section->name !== trim($name)) {
            $changes['name'] = trim($name);
        }
        if ($summary !== null && $section->summary !== trim($summary)) {
            $changes['summary'] = trim($summary);
        }
        if ($changes) {
            course_update_section($course, $section, $changes);
        }
    }
}

// self / guest: 1 enables the course's method (added when missing), 0 disables it.
function replay_course_methods(stdClass $course, array $row): void {
    global $DB;
    foreach (['self', 'guest'] as $enrol) {
        $value = replay_cell($row, $enrol);
        if ($value === '') {
            continue;
        }
        $plugin = enrol_get_plugin($enrol);
        $instances = $DB->get_records('enrol', ['courseid' => $course->id, 'enrol' => $enrol], 'sortorder, id');
        $status = $value === '1' ? ENROL_INSTANCE_ENABLED : ENROL_INSTANCE_DISABLED;
        if (!$instances) {
            if ($status === ENROL_INSTANCE_ENABLED) {
                $plugin->add_instance($course, ['status' => ENROL_INSTANCE_ENABLED]);
            }
            continue;
        }
        $instance = reset($instances);
        if ((int) $instance->status !== $status) {
            $plugin->update_status($instance, $status);
        }
    }
}

// teacherN_account (id, username or e-mail) enrolled through the manual method as teacherN_role (empty: teacher).
function replay_course_teachers(stdClass $course, array $row): void {
    foreach ($row as $column => $account) {
        if (!preg_match('/^teacher(\d+)_account$/', $column, $m) || $account === '') {
            continue;
        }
        $user = ctype_digit($account) ? replay_user('id', $account)
            : (replay_user('username', $account) ?? replay_user('email', $account));
        if ($user) {
            $role = replay_cell($row, "teacher{$m[1]}_role");
            replay_enrol($course, $user, $role !== '' ? $role : 'teacher', 'manual', '', '');
        }
    }
}

// -- users (userimport.csv) -------------------------------------------------------------------------------------

const REPLAY_USER_COLUMNS = ['firstname', 'lastname', 'idnumber', 'email', 'auth', 'institution', 'department',
    'city', 'country', 'lang', 'timezone', 'phone1', 'phone2', 'address', 'description', 'mailformat',
    'maildisplay', 'maildigest', 'autosubscribe', 'trackforums', 'emailstop', 'firstnamephonetic',
    'lastnamephonetic', 'middlename', 'alternatename', 'suspended'];

function replay_users(array $rows, array $settings): void {
    global $CFG, $DB;
    $identity = $settings['primary_identity'];
    foreach ($rows as $row) {
        $row['username'] = core_text::strtolower(replay_cell($row, 'username'));
        if (isset($row['country'])) {
            $row['country'] = core_text::strtoupper($row['country']);
        }
        $old = core_text::strtolower(replay_cell($row, 'oldusername'));
        $user = replay_user($identity, replay_cell($row, $identity));
        if (replay_cell($row, 'deleted') === '1') {
            if ($user) {
                delete_user($user);
            }
            continue;
        }
        if (!$user && !empty($settings['allow_rename']) && $old !== '' && ($renamed = replay_user('username', $old))) {
            $user = $renamed;
        }
        $password = replay_cell($row, 'password');
        if ($user) {
            $changes = new stdClass();
            if ($user->username !== $row['username']) {
                $changes->username = $row['username'];
            }
            foreach (REPLAY_USER_COLUMNS as $column) {
                $value = replay_cell($row, $column);
                if ($value === '' || ($column === 'email' && !empty($settings['protect_emails']))) {
                    continue;
                }
                if ((string) $user->$column !== $value) {
                    $changes->$column = $value;
                }
            }
            $newpassword = $password !== '' && $password !== '*NOPASS*' && !password_verify($password, $user->password);
            $profile = replay_profile_changes($user->id, $row);
            if ((array) $changes || $newpassword || $profile) {
                $changes->id = $user->id;
                if ($newpassword) {
                    $changes->password = $password;
                }
                user_update_user($changes, $newpassword);
                if ($profile) {
                    profile_save_data((object) (['id' => $user->id] + $profile));
                }
            }
            $user = $DB->get_record('user', ['id' => $user->id]);
        } else {
            $new = (object) ['username' => $row['username'], 'mnethostid' => $CFG->mnet_localhost_id,
                'confirmed' => 1];
            foreach (REPLAY_USER_COLUMNS as $column) {
                if (replay_cell($row, $column) !== '') {
                    $new->$column = replay_cell($row, $column);
                }
            }
            $hash = $password !== '' && $password !== '*NOPASS*';
            if ($password !== '') {
                $new->password = $password;
            }
            $id = user_create_user($new, $hash);
            $profile = replay_profile_changes($id, $row);
            if ($profile) {
                profile_save_data((object) (['id' => $id] + $profile));
            }
            $user = $DB->get_record('user', ['id' => $id]);
        }
        replay_user_cohort($user, $row);
        replay_user_courses($user, $row, $settings);
    }
}

// The profile_field_<shortname> cells that differ from the stored data.
function replay_profile_changes(int $userid, array $row): array {
    global $DB;
    $changes = [];
    foreach ($row as $column => $value) {
        if (!str_starts_with($column, 'profile_field_') || $value === '') {
            continue;
        }
        $field = $DB->get_record('user_info_field', ['shortname' => substr($column, 14)], '*', MUST_EXIST);
        $stored = $DB->get_field('user_info_data', 'data', ['userid' => $userid, 'fieldid' => $field->id]);
        if ($stored !== $value) {
            $changes[$column] = $value;
        }
    }
    return $changes;
}

// cohort (by name, system context; created with idnumber `cohortid` when missing) membership.
function replay_user_cohort(stdClass $user, array $row): void {
    global $DB;
    $name = replay_cell($row, 'cohort');
    if ($name === '') {
        return;
    }
    $system = context_system::instance();
    $found = $DB->get_records('cohort', ['contextid' => $system->id, 'name' => $name], 'id');
    if ($found) {
        $cohortid = reset($found)->id;
    } else {
        $idnumber = replay_cell($row, 'cohortid');
        $cohortid = cohort_add_cohort((object) ['contextid' => $system->id, 'name' => $name,
            'idnumber' => $idnumber !== '' ? $idnumber : null]);
    }
    if (!$DB->record_exists('cohort_members', ['cohortid' => $cohortid, 'userid' => $user->id])) {
        cohort_add_member($cohortid, $user->id);
    }
}

// courseN, roleN, groupN, enrolN, startN, endN.
function replay_user_courses(stdClass $user, array $row, array $settings): void {
    foreach ($row as $column => $value) {
        if (!preg_match('/^course(\d+)$/', $column, $m) || $value === '') {
            continue;
        }
        $n = $m[1];
        $course = replay_course($settings['course_identity'], $value);
        if (!$course) {
            continue;
        }
        $done = replay_enrol($course, $user, replay_cell($row, "role$n"), replay_cell($row, "enrol$n"),
            replay_cell($row, "start$n"), replay_cell($row, "end$n"));
        if ($done && replay_cell($row, "group$n") !== '') {
            replay_join_group($course, $user, replay_cell($row, "group$n"), true, false);
        }
    }
}

// -- enrolments (enrols.csv) ------------------------------------------------------------------------------------

function replay_enrols(array $rows, array $settings, array $columns): void {
    global $DB;
    $rolemode = !in_array('enrol', $columns);
    foreach ($rows as $row) {
        $cmd = in_array('cmd', $columns) ? replay_cell($row, 'cmd') : ($settings['default_cmd'] ?? 'add');
        $cmd = $cmd === 'delete' ? 'del' : $cmd;
        $user = replay_user($settings['user_identifier'], replay_cell($row, 'uid'));
        $course = replay_course($settings['course_identifier'], replay_cell($row, 'cid'));
        if (!$user || !$course) {
            continue;
        }
        $context = context_course::instance($course->id);
        $role = replay_cell($row, 'rolename');
        $enrolled = false;
        if ($rolemode) {
            replay_role_command($cmd, $context, $user, $role);
            $enrolled = is_enrolled($context, $user);
        } else {
            $enrol = replay_cell($row, 'enrol') !== '' ? replay_cell($row, 'enrol') : 'manual';
            $instance = replay_instance($course->id, $enrol);
            if (!$instance) {
                continue;
            }
            $plugin = enrol_get_plugin($enrol);
            $ue = $DB->get_record('user_enrolments', ['enrolid' => $instance->id, 'userid' => $user->id]);
            $start = replay_cell($row, 'starttime');
            $end = replay_cell($row, 'endtime');
            if ($cmd === 'add') {
                $enrolled = (bool) replay_enrol($course, $user, $role, $enrol, $start, $end);
            } else if ($cmd === 'shift') {
                $roleid = (int) replay_role($role)->id;
                $roles = $DB->get_records('role_assignments', ['userid' => $user->id, 'contextid' => $context->id]);
                $same = $ue && (int) $ue->status === ENROL_USER_ACTIVE && count($roles) === 1
                    && (int) reset($roles)->roleid === $roleid && reset($roles)->component === ''
                    && ($start === '' || replay_time($start) === (int) $ue->timestart)
                    && ($end === '' || replay_time($end) === (int) $ue->timeend);
                if (!$same) {
                    if ($ue) {
                        $plugin->unenrol_user($instance, $user->id);
                    }
                    $plugin->enrol_user($instance, $user->id, $roleid, $start !== '' ? replay_time($start) : time(),
                        $end !== '' ? replay_time($end) : 0, ENROL_USER_ACTIVE);
                }
                $enrolled = true;
            } else if ($cmd === 'del') {
                if ($ue) {
                    $plugin->unenrol_user($instance, $user->id);
                }
            } else if ($cmd === 'enable' || $cmd === 'disable') {
                $status = $cmd === 'enable' ? ENROL_USER_ACTIVE : ENROL_USER_SUSPENDED;
                if ($ue && ((int) $ue->status !== $status || ($start !== '' && replay_time($start) !== (int) $ue->timestart)
                        || ($end !== '' && replay_time($end) !== (int) $ue->timeend))) {
                    $plugin->update_user_enrol($instance, $user->id, $status, $start !== '' ? replay_time($start) : null,
                        $end !== '' ? replay_time($end) : null);
                }
                $enrolled = (bool) $ue;
            }
        }
        replay_group_command($course, $user, $row, !empty($settings['protect_groups']), $enrolled);
    }
}

// Role mode (no enrol column): bare role assignments in the course context, component ''.
function replay_role_command(string $cmd, context $context, stdClass $user, string $role): void {
    global $DB;
    $roleid = (int) replay_role($role)->id;
    $mine = ['userid' => $user->id, 'contextid' => $context->id, 'component' => '', 'itemid' => 0];
    if ($cmd === 'add') {
        if (!$DB->record_exists('role_assignments', $mine + ['roleid' => $roleid])) {
            role_assign($roleid, $user->id, $context->id);
        }
    } else if ($cmd === 'del') {
        role_unassign($roleid, $user->id, $context->id);
    } else if ($cmd === 'shift') {
        foreach ($DB->get_records('role_assignments', $mine) as $ra) {
            if ((int) $ra->roleid !== $roleid) {
                role_unassign($ra->roleid, $user->id, $context->id);
            }
        }
        if (!$DB->record_exists('role_assignments', $mine + ['roleid' => $roleid])) {
            role_assign($roleid, $user->id, $context->id);
        }
    } else if ($cmd === 'enable' || $cmd === 'disable') {
        $status = $cmd === 'enable' ? ENROL_USER_ACTIVE : ENROL_USER_SUSPENDED;
        foreach (enrol_get_instances($context->instanceid, false) as $instance) {
            $ue = $DB->get_record('user_enrolments', ['enrolid' => $instance->id, 'userid' => $user->id]);
            if ($ue && (int) $ue->status !== $status) {
                enrol_get_plugin($instance->enrol)->update_user_enrol($instance, $user->id, $status);
            }
        }
    }
}

// gcmd with g1 ... g9; with protect_groups, greplace and gdel remove only the memberships protected ones.
function replay_group_command(stdClass $course, stdClass $user, array $row, bool $protect, bool $enrolled): void {
    global $DB;
    $gcmd = replay_cell($row, 'gcmd');
    if ($gcmd === '') {
        return;
    }
    $names = [];
    for ($j = 1; $j <= 9; $j++) {
        if (replay_cell($row, "g$j") !== '') {
            $names[] = replay_cell($row, "g$j");
        }
    }
    if ($gcmd === 'greplace' || $gcmd === 'greplacecreate') {
        $keep = array_map('core_text::strtolower', $names);
        foreach (groups_get_all_groups($course->id, $user->id) as $group) {
            if (!in_array(core_text::strtolower($group->name), $keep)
                    && (!$protect || replay_is_protected($group->id, $user->id))) {
                replay_leave_group($group->id, $user->id);
            }
        }
    }
    if ($gcmd === 'gdel') {
        foreach ($names as $name) {
            $group = replay_group_by_name($course->id, $name);
            if ($group && (!$protect || replay_is_protected($group->id, $user->id))) {
                replay_leave_group($group->id, $user->id);
            }
        }
        return;
    }
    if ($enrolled) {
        $create = in_array($gcmd, ['gaddcreate', 'greplacecreate']);
        foreach ($names as $name) {
            replay_join_group($course, $user, $name, $create, $protect);
        }
    }
}

// -- groups and groupings (groups.csv) --------------------------------------------------------------------------

function replay_groups(array $rows, array $settings, array $columns): void {
    global $DB;
    $updating = in_array('updateid', $columns);
    foreach ($rows as $row) {
        $course = replay_course($settings['course_identifier'], replay_cell($row, 'courseid'));
        if (!$course) {
            continue;
        }
        $grouping = !in_array(replay_cell($row, 'type'), ['', 'group']);
        $table = $grouping ? 'groupings' : 'groups';
        $identifier = $settings[$grouping ? 'grouping_identifier' : 'group_identifier'];
        $found = null;
        if (replay_cell($row, 'updateid') !== '') {
            $found = $DB->get_record($table, ['courseid' => $course->id, $identifier => replay_cell($row, 'updateid')]);
        } else if (replay_cell($row, 'idnumber') !== '') {
            $found = $DB->get_record($table, ['courseid' => $course->id, 'idnumber' => replay_cell($row, 'idnumber')]);
        } else {
            $found = $DB->get_record($table, ['courseid' => $course->id, 'name' => replay_cell($row, 'name')]);
        }
        $cells = [];
        foreach (['name', 'idnumber', 'description'] as $column) {
            if (replay_cell($row, $column) !== '') {
                $cells[$column] = replay_cell($row, $column);
            }
        }
        if ($found && $updating) {
            $changes = array_filter($cells, fn($value, $column) => (string) $found->$column !== $value,
                ARRAY_FILTER_USE_BOTH);
            if ($changes) {
                $record = (object) (['id' => $found->id, 'courseid' => $course->id] + $changes);
                $grouping ? groups_update_grouping($record) : groups_update_group($record);
            }
            $id = $found->id;
        } else if ($found) {
            $id = $found->id;
        } else {
            $record = (object) (['courseid' => $course->id] + $cells);
            $id = $grouping ? groups_create_grouping($record) : groups_create_group($record);
        }
        if ($grouping) {
            continue;
        }
        $group = groups_get_group($id);
        if (!in_array(replay_cell($row, 'selfgrouping'), ['', '0'])) {
            $self = $DB->get_record('groupings', ['courseid' => $course->id, 'name' => $group->name]);
            $selfid = $self ? $self->id : groups_create_grouping((object) ['courseid' => $course->id,
                'name' => $group->name, 'idnumber' => $group->idnumber, 'description' => $group->description,
                'descriptionformat' => $group->descriptionformat]);
            groups_assign_grouping($selfid, $group->id);
        }
        if (replay_cell($row, 'grouping') !== '') {
            $target = $DB->get_record('groupings', ['courseid' => $course->id, 'idnumber' => replay_cell($row, 'grouping')]);
            if ($target) {
                groups_assign_grouping($target->id, $group->id);
            }
        }
    }
}

// -- group members (groupmembers.csv) ---------------------------------------------------------------------------

function replay_groupmembers(array $rows, array $settings): void {
    global $DB;
    $courses = [];
    foreach ($rows as $row) {
        $course = replay_course($settings['course_identifier'], replay_cell($row, 'courseid'));
        if ($course) {
            $courses[$course->id] = $course;
        }
        $user = replay_user($settings['user_identifier'], replay_cell($row, 'userid'));
        if (!$course || !$user) {
            continue;
        }
        $group = $DB->get_record('groups', ['courseid' => $course->id,
            $settings['group_identifier'] => replay_cell($row, 'groupid')]);
        if (!$group) {
            continue;
        }
        $cmd = replay_cell($row, 'cmd') ?: 'add';
        if ($cmd === 'del') {
            replay_leave_group($group->id, $user->id);
            continue;
        }
        if ($cmd === 'shift') {
            foreach (groups_get_all_groups($course->id, $user->id) as $other) {
                if ($other->id != $group->id) {
                    replay_leave_group($other->id, $user->id);
                }
            }
        }
        if (!groups_is_member($group->id, $user->id) && groups_add_member($group, $user)) {
            replay_protect($group->id, $user->id);
        }
    }
    // purge_empty: the empty groups (and then the groupings left without groups) of the file's courses only.
    $purge = $settings['purge_empty'] ?? 'off';
    foreach ($purge === 'off' ? [] : $courses as $course) {
        foreach (groups_get_all_groups($course->id) as $group) {
            if (!$DB->record_exists('groups_members', ['groupid' => $group->id])) {
                groups_delete_group($group);
            }
        }
        if ($purge === 'groups_and_groupings') {
            foreach (groups_get_all_groupings($course->id) as $grouping) {
                if (!$DB->record_exists('groupings_groups', ['groupingid' => $grouping->id])) {
                    groups_delete_grouping($grouping);
                }
            }
        }
    }
}

// -- cohorts (cohorts.csv) --------------------------------------------------------------------------------------

function replay_cohorts(array $rows, array $settings): void {
    global $DB;
    $key = $settings['cohort_identifier'];
    foreach ($rows as $row) {
        $cmd = replay_cell($row, 'cmd') ?: 'add';
        $value = replay_cell($row, 'c' . $key);
        $cohort = $value !== '' ? $DB->get_record('cohort', [$key => $value]) : null;
        $user = replay_user($settings['user_identifier'], replay_cell($row, 'userid'));
        if ($cmd === 'add') {
            if (!$cohort) {
                $context = context_system::instance();
                if (replay_cell($row, 'ccatcontextpath') !== '') {
                    $context = context_coursecat::instance(replay_category_path(replay_cell($row, 'ccatcontextpath'), true));
                } else if (replay_cell($row, 'ccatcontext') !== '') {
                    $context = context_coursecat::instance((int) replay_cell($row, 'ccatcontext'));
                }
                $new = (object) ['contextid' => $context->id, 'name' => replay_cell($row, 'cname'),
                    'idnumber' => replay_cell($row, 'cidnumber') !== '' ? replay_cell($row, 'cidnumber') : null,
                    'description' => replay_cell($row, 'cdescription'), 'component' => replay_cell($row, 'component')];
                if (replay_cell($row, 'cvisible') !== '') {
                    $new->visible = (int) replay_cell($row, 'cvisible');
                }
                $cohort = $DB->get_record('cohort', ['id' => cohort_add_cohort($new)]);
            } else {
                $changes = [];
                foreach (['cname' => 'name', 'cdescription' => 'description', 'cvisible' => 'visible'] as $cell => $column) {
                    if ($cell !== 'c' . $key && replay_cell($row, $cell) !== '' && (string) $cohort->$column !== replay_cell($row, $cell)) {
                        $changes[$column] = replay_cell($row, $cell);
                    }
                }
                if ($changes) {
                    cohort_update_cohort((object) ($changes + (array) $cohort));
                }
            }
            if ($user && !$DB->record_exists('cohort_members', ['cohortid' => $cohort->id, 'userid' => $user->id])) {
                cohort_add_member($cohort->id, $user->id);
            }
        } else if ($cmd === 'del' && $cohort && $user) {
            cohort_remove_member($cohort->id, $user->id);
        } else if ($cmd === 'free' && $cohort) {
            foreach ($DB->get_records('cohort_members', ['cohortid' => $cohort->id], 'id') as $member) {
                cohort_remove_member($cohort->id, $member->userid);
            }
        } else if ($cmd === 'delete' && $cohort) {
            cohort_delete_cohort($cohort);
        }
    }
    enrol_cohort_sync(new null_progress_trace());
}

// -- cohort to course bindings (cohortscourses.csv) -------------------------------------------------------------

function replay_cohortscourses(array $rows, array $settings): void {
    global $DB;
    $plugin = enrol_get_plugin('cohort');
    foreach ($rows as $row) {
        $cohort = $DB->get_record('cohort', [$settings['cohort_identifier'] => replay_cell($row, 'cohort')]);
        $course = replay_course($settings['course_identifier'], replay_cell($row, 'course'));
        if (!$cohort || !$course) {
            continue;
        }
        $cmd = replay_cell($row, 'cmd') ?: 'add';
        $role = replay_cell($row, 'role');
        $where = ['enrol' => 'cohort', 'courseid' => $course->id, 'customint1' => $cohort->id];
        if ($role !== '*') {
            $where['roleid'] = $role !== '' ? $DB->get_field('role', 'id', [$settings['role_identifier'] => $role])
                : ($plugin->get_config('roleid') ?: replay_role('student')->id);
        }
        $instances = $DB->get_records('enrol', $where, 'id');
        if ($cmd === 'add') {
            if (!$instances) {
                $plugin->add_instance($course, ['customint1' => $cohort->id, 'roleid' => $where['roleid'],
                    'customint2' => replay_cell($row, 'makegroup') === '1' ? COHORT_CREATE_GROUP : 0,
                    'status' => ENROL_INSTANCE_ENABLED]);
            }
            foreach ($instances as $instance) {
                if ((int) $instance->status !== ENROL_INSTANCE_ENABLED) {
                    $plugin->update_status($instance, ENROL_INSTANCE_ENABLED);
                }
            }
        } else if ($cmd === 'del' || $cmd === 'restore') {
            $status = $cmd === 'del' ? ENROL_INSTANCE_DISABLED : ENROL_INSTANCE_ENABLED;
            foreach ($instances as $instance) {
                if ((int) $instance->status !== $status) {
                    $plugin->update_status($instance, $status);
                }
            }
        } else if ($cmd === 'fulldel') {
            foreach ($instances as $instance) {
                $plugin->delete_instance($instance);
            }
        }
        enrol_cohort_sync(new null_progress_trace(), $course->id);
    }
}

// -- metacourse bindings (metacourses.csv) ----------------------------------------------------------------------

function replay_metacourses(array $rows, array $settings): void {
    global $DB;
    $plugin = enrol_get_plugin('meta');
    foreach ($rows as $row) {
        $master = replay_course($settings['identifier'], replay_cell($row, 'master'));
        $meta = replay_course($settings['identifier'], replay_cell($row, 'meta'));
        if (!$master || !$meta || $master->id == $meta->id) {
            continue;
        }
        $instance = $DB->get_record('enrol', ['enrol' => 'meta', 'courseid' => $meta->id, 'customint1' => $master->id]);
        $cmd = replay_cell($row, 'cmd') ?: 'add';
        if ($cmd === 'add') {
            if (!$instance) {
                $plugin->add_instance($meta, ['customint1' => $master->id, 'customint2' => 0]);  // 0: no group, as its form
            } else if ((int) $instance->status !== ENROL_INSTANCE_ENABLED) {
                $plugin->update_status($instance, ENROL_INSTANCE_ENABLED);
            }
        } else if ($cmd === 'del' && $instance) {
            $plugin->delete_instance($instance);
        }
        enrol_meta_sync($meta->id);
    }
}

// -- user lists, course reset and deletion ----------------------------------------------------------------------

function replay_suspendusers(array $rows, array $users): void {
    foreach ($rows as $row) {
        $user = replay_user($users['primary_identity'], replay_cell($row, $users['primary_identity']));
        if ($user && !$user->suspended) {
            user_update_user((object) ['id' => $user->id, 'suspended' => 1], false);
            \core\session\manager::kill_user_sessions($user->id);
        }
    }
}

function replay_deleteusers(array $rows, array $users): void {
    foreach ($rows as $row) {
        $user = replay_user($users['primary_identity'], replay_cell($row, $users['primary_identity']));
        if ($user) {
            delete_user($user);
        }
    }
}

function replay_deletecourses(array $rows, array $settings): void {
    $deleted = false;
    foreach ($rows as $row) {
        $course = replay_course($settings['identifier'], $row['identifier']);
        if ($course) {
            $deleted = delete_course($course, false) || $deleted;
        }
    }
    if ($deleted) {
        fix_course_sortorder();
    }
}

// resetcourses.csv cells as reset_course_userdata() options (tool_sync-reference §2.1.3, CONTRACT §3).
function replay_resetcourses(array $rows, array $settings, array $columns): void {
    global $DB;
    $yes = fn(string $v) => in_array(core_text::strtolower($v), ['yes', '1']);
    $flags = ['events' => 'reset_events', 'notes' => 'reset_notes', 'completion' => 'reset_completion',
        'blog_associations' => 'delete_blog_associations', 'comments' => 'reset_comments'];
    $choices = [
        'local_roles' => ['all' => ['reset_roles_local', 'reset_roles_overrides'], 'roles' => ['reset_roles_local'],
            'overrides' => ['reset_roles_overrides']],
        'grades' => ['all' => ['reset_gradebook_items', 'reset_gradebook_grades'],
            'items' => ['reset_gradebook_items'], 'grades' => ['reset_gradebook_grades']],
        'groups' => ['all' => ['reset_groups_remove', 'reset_groups_members'], 'groups' => ['reset_groups_remove'],
            'members' => ['reset_groups_members']],
        'groupings' => ['all' => ['reset_groupings_remove', 'reset_groupings_members'],
            'groupings' => ['reset_groupings_remove'], 'members' => ['reset_groupings_members']],
    ];
    foreach ($rows as $row) {
        $course = replay_course('shortname', replay_cell($row, 'shortname'));
        if (!$course) {
            continue;
        }
        $data = ['id' => $course->id, 'reset_start_date' => 0, 'reset_start_date_old' => $course->startdate,
            'reset_end_date' => 0, 'reset_end_date_old' => $course->enddate];
        foreach ($flags as $column => $option) {
            if ($yes(replay_cell($row, $column)) || (!in_array($column, $columns)
                    && in_array($column, ['blog_associations', 'comments']))) {
                $data[$option] = 1;
            }
        }
        foreach ($choices as $column => $values) {
            $value = core_text::strtolower(replay_cell($row, $column));
            $value = $yes($value) ? 'all' : $value;
            foreach ($values[$value] ?? [] as $option) {
                $data[$option] = 1;
            }
        }
        $roles = preg_split('/\s+/', replay_cell($row, 'roles'), -1, PREG_SPLIT_NO_EMPTY);
        if ($roles) {
            $data['unenrol_users'] = array_map(fn($r) => (int) replay_role($r)->id, $roles);
        }
        reset_course_userdata((object) $data);
    }
}

// A userpictures_*.zip as admin/tool/uploaduser/picture.php takes it: the archive unpacked by Moodle's zip packer,
// every file of every folder a picture named by `user_field` (its name without the extension), made the user's icon
// by process_new_icon() on the user context and recorded in user.picture (process_file(), my_save_profile_image()).
// Returns the number of pictures.
function replay_pictures(string $path, array $settings): int {
    global $DB;
    $dir = make_request_directory();
    if (!get_file_packer('application/zip')->extract_to_pathname($path, $dir)) {
        throw new moodle_exception("cannot unzip $path");
    }
    $files = new RecursiveIteratorIterator(new RecursiveDirectoryIterator($dir, FilesystemIterator::SKIP_DOTS));
    $count = 0;
    foreach ($files as $file) {
        $count++;
        $user = $DB->get_record('user', [$settings['user_field'] => $file->getBasename('.' . $file->getExtension()),
            'deleted' => 0]);
        if (!$user || ($user->picture && empty($settings['overwrite']))) {
            continue;
        }
        $picture = process_new_icon(context_user::instance($user->id), 'user', 'icon', 0, $file->getPathname());
        if ($picture) {
            $DB->set_field('user', 'picture', $picture, ['id' => $user->id]);
        }
    }
    return $count;
}

// -- the scenario -----------------------------------------------------------------------------------------------

if (!empty($options['setup-only'])) {
    replay_setup();
    exit(0);
}

$scenario = rtrim($options['scenario'], '/');
$manifest = json_decode(file_get_contents("$scenario/manifest.json"), true, 512, JSON_THROW_ON_ERROR);
foreach ($manifest['steps'] as $n => $step) {
    $operation = $step['operation'];
    $settings = ($step['settings'] ?? []) + ($manifest['settings'][$operation] ?? []);
    $path = "$scenario/{$step['file']}";
    $headerless = in_array($operation, ['deletecourses', 'check']);
    if ($operation === 'pictures') {
        $count = replay_pictures($path, $settings);
        echo json_encode(['step' => $n + 1, 'operation' => $operation, 'file' => $step['file'], 'rows' => $count]), "\n";
        continue;
    }
    $rows = replay_rows($path, $headerless);
    $columns = $headerless ? [] : array_keys($rows[0] ?? []);
    $users = $manifest['settings']['users'];
    match ($operation) {
        'courses' => replay_courses($rows, $settings),
        'users' => replay_users($rows, $settings),
        'enrols' => replay_enrols($rows, $settings, $columns),
        'groups' => replay_groups($rows, $settings, $columns),
        'groupmembers' => replay_groupmembers($rows, $settings),
        'cohorts' => replay_cohorts($rows, $settings),
        'cohortscourses' => replay_cohortscourses($rows, $settings),
        'metacourses' => replay_metacourses($rows, $settings),
        'suspendusers' => replay_suspendusers($rows, $users),
        'deleteusers' => replay_deleteusers($rows, $users),
        'resetcourses' => replay_resetcourses($rows, $settings, $columns),
        'deletecourses' => replay_deletecourses($rows, $settings),
        'check' => null,  // read-only
    };
    echo json_encode(['step' => $n + 1, 'operation' => $operation, 'file' => $step['file'], 'rows' => count($rows)]), "\n";
}
