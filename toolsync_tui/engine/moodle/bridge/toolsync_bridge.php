<?php
// This file is part of toolsync (GPL-3.0-or-later).
//
// The toolsync "Moodle bridge": run Moodle's own PHP for what toolsync must not do with SQL, namely
// operations that cascade through every plugin's tables (user and course delete, course reset, course content
// restored from a template), purges of Moodle's caches (MUC), and what Moodle's APIs do after the rows they write:
// course welcome messages, and events triggered so that other plugins' observers run.
//
// Usage: php toolsync_bridge.php --moodle=<site dir holding config.php>  < request.json
//
// Protocol 4: ONE JSON object on stdin; on stdout, lines of JSON and nothing else.
//   {"command":"info"}
//   {"command":"purge","events":[..],"groupdata_courses":[..],"user_group_groupings_users":[..],
//    "coursecontacts_courses":[..]}
//   {"command":"enrol_sync","cohort_courses":[..],"meta_courses":[..]}
// and the item commands, one Moodle call per item:
//   {"command":"delete_users","userids":[3,4]}
//   {"command":"delete_courses","courseids":[12,13]}
//   {"command":"reset_courses","resets":[{"course":12,"options":{"reset_events":1,"unenrol_users":[5],
//    "modules":["forum"]}}]}
//   {"command":"restore_templates","items":[{"course":12,"template":"TPL101","mode":"add"}]}
//   {"command":"delete_categories","categoryids":[7]}
//   {"command":"welcome_messages","enrolments":[{"item":1,"enrolid":4,"userid":9}],
//    "roles":[{"courseid":2,"userid":8,"roleid":3,"from":2}]}
//   {"command":"trigger_events","actor":2,"events":[{"item":1,"eventname":"\\core\\event\\user_created",
//    "objectid":9,"contextid":30,"courseid":0,"relateduserid":9,"other":null}]}
// An item command writes one line per item as soon as it is done, {"item":12,"ok":true,...} or
// {"item":12,"ok":false,"error":"..."}; every command ends with one answer line {"ok":true,"done":true,...} or
// {"ok":false,"error":"..."}. Exit codes: 0 answered (item lines may still hold per-item failures),
// 1 the command failed inside Moodle, 2 a bad request or no usable site (nothing was done).

define('CLI_SCRIPT', true);

// Bumped when requests or answers change, so the Python side can refuse a mismatched helper.
const TOOLSYNC_BRIDGE_PROTOCOL = 4;

// Beyond this many courses, one sync of every course is cheaper than one per course.
const TOOLSYNC_BRIDGE_SYNC_ALL_FROM = 200;

// Moodle may print at any time: debugging() messages, PHP notices, plugin output. Send all of it to stderr
// (chunk size 1: as it happens, so a killed process still leaves its diagnostics) to keep stdout for the answer.
ob_start(function (string $buffer): string {
    if ($buffer !== '') {
        fwrite(STDERR, $buffer);
    }
    return '';
}, 1);

// mtrace() writes to STDOUT directly, past output buffering; Moodle lets a wrapper take over.
function toolsync_bridge_mtrace(string $string, string $eol): void {
    fwrite(STDERR, $string . $eol);
}

// One line of the protocol, flushed at once: the caller shows progress as items finish.
function toolsync_bridge_line(array $line): void {
    $flags = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE;
    fwrite(STDOUT, json_encode($line, $flags) . "\n");
    fflush(STDOUT);
}

function toolsync_bridge_answer(array $answer, int $exitcode = 0): void {
    toolsync_bridge_line($answer['ok'] ? $answer + ['done' => true] : $answer);
    exit($exitcode);
}

function toolsync_bridge_refuse(string $error): void {
    toolsync_bridge_answer(['ok' => false, 'error' => $error], 2);
}

function toolsync_bridge_describe(Throwable $e): string {
    $text = get_class($e) . ': ' . $e->getMessage();
    // Moodle exceptions keep the useful part (the failing SQL, the missing record) in debuginfo.
    if (!empty($e->debuginfo) && is_string($e->debuginfo)) {
        $text .= ' (' . trim($e->debuginfo) . ')';
    }
    return $text;
}

// A list of positive ids from the request, or a refusal naming the field.
function toolsync_bridge_ids(array $request, string $field): array {
    $ids = $request[$field] ?? [];
    if (!is_array($ids) || !array_is_list($ids)) {
        toolsync_bridge_refuse("'$field' must be a list of ids");
    }
    foreach ($ids as $id) {
        if (!is_int($id) || $id <= 0) {
            toolsync_bridge_refuse("'$field' must hold positive integers, not " . json_encode($id));
        }
    }
    return array_values(array_unique($ids));
}

// A list of objects from the request, each with a positive "course" that appears once.
function toolsync_bridge_course_items($items, string $field, array $keys): array {
    if (!is_array($items) || !array_is_list($items)) {
        toolsync_bridge_refuse("'$field' must be a list of objects");
    }
    $seen = [];
    foreach ($items as $item) {
        if (!is_array($item) || array_is_list($item) && $item !== []) {
            toolsync_bridge_refuse("'$field' must hold objects, not " . json_encode($item));
        }
        $unknown = array_diff(array_keys($item), $keys);
        if ($unknown) {
            toolsync_bridge_refuse("unknown key(s) in '$field': " . implode(', ', $unknown));
        }
        $course = $item['course'] ?? null;
        if (!is_int($course) || $course <= 0) {
            toolsync_bridge_refuse("'$field' items need a positive integer 'course', not " . json_encode($course));
        }
        if (isset($seen[$course])) {
            toolsync_bridge_refuse("course $course appears twice in '$field'");
        }
        $seen[$course] = true;
    }
    return $items;
}

// Reset options: reset_course_userdata()'s own names with 0/1 values, "unenrol_users" (role ids, 0 = users with
// no role) and "modules" (module names whose <mod>_reset_course_form_defaults() apply first). The names that
// reset_course_userdata() computes itself are refused.
function toolsync_bridge_resets($resets): array {
    $reserved = ['id', 'courseid', 'timeshift', 'unenrolled', 'reset_start_date', 'reset_start_date_old',
        'reset_end_date', 'reset_end_date_old'];
    $resets = toolsync_bridge_course_items($resets, 'resets', ['course', 'options']);
    foreach ($resets as $i => $reset) {
        $options = $reset['options'] ?? [];
        if (!is_array($options) || array_is_list($options) && $options !== []) {
            toolsync_bridge_refuse("'options' of course {$reset['course']} must be an object");
        }
        foreach ($options as $name => $value) {
            $where = "option '$name' of course {$reset['course']}";
            if (!preg_match('/^[a-z][a-z0-9_]*$/', $name) || in_array($name, $reserved, true)) {
                toolsync_bridge_refuse("$where is not a reset option toolsync may set");
            }
            if ($name === 'unenrol_users' || $name === 'modules') {
                $pattern = $name === 'modules' ? '/^[a-z][a-z0-9_]*$/' : null;
                if (!is_array($value) || !array_is_list($value)) {
                    toolsync_bridge_refuse("$where must be a list");
                }
                foreach ($value as $entry) {
                    $good = $pattern ? is_string($entry) && preg_match($pattern, $entry) : is_int($entry) && $entry >= 0;
                    if (!$good) {
                        toolsync_bridge_refuse("$where must hold " . ($pattern ? 'module names' : 'role ids')
                            . ', not ' . json_encode($entry));
                    }
                }
            } else if (!in_array($value, [0, 1, true, false], true)) {
                toolsync_bridge_refuse("$where must be 0 or 1, not " . json_encode($value));
            }
        }
        $resets[$i]['options'] = $options;
    }
    return $resets;
}

function toolsync_bridge_template_items($items): array {
    $items = toolsync_bridge_course_items($items, 'items', ['course', 'template', 'mode']);
    foreach ($items as $item) {
        if (!is_string($item['template'] ?? null) || trim($item['template']) === '') {
            toolsync_bridge_refuse("the template of course {$item['course']} must be a course shortname or a .mbz path");
        }
        if (!in_array($item['mode'] ?? null, ['add', 'replace'], true)) {
            toolsync_bridge_refuse("the mode of course {$item['course']} must be 'add' or 'replace', not "
                . json_encode($item['mode'] ?? null));
        }
    }
    return $items;
}

// A list of objects from the request whose keys are exactly those of $spec, each value of its kind: 'id' a positive
// integer, 'id?' one or null, 'count' an integer >= 0, 'event' an event class name, 'other' null or an object/list.
// Items (key 'item') must be unique.
function toolsync_bridge_objects(array $request, string $field, array $spec): array {
    $objects = $request[$field] ?? [];
    if (!is_array($objects) || !array_is_list($objects)) {
        toolsync_bridge_refuse("'$field' must be a list of objects");
    }
    $items = [];
    foreach ($objects as $object) {
        if (!is_array($object) || array_is_list($object)) {
            toolsync_bridge_refuse("'$field' must hold objects, not " . json_encode($object));
        }
        $keys = array_keys($object);
        if (array_diff($keys, array_keys($spec)) || array_diff(array_keys($spec), $keys)) {
            toolsync_bridge_refuse("'$field' objects have the keys " . implode(', ', array_keys($spec)) . ', not '
                . implode(', ', $keys));
        }
        foreach ($spec as $key => $kind) {
            $value = $object[$key];
            $good = match ($kind) {
                'id' => is_int($value) && $value > 0,
                'id?' => $value === null || is_int($value) && $value > 0,
                'count' => is_int($value) && $value >= 0,
                'event' => is_string($value) && preg_match('/^\\\\[a-z][a-z0-9_]*\\\\event\\\\[a-z][a-z0-9_]*$/', $value),
                'other' => $value === null || is_array($value),
            };
            if (!$good) {
                toolsync_bridge_refuse("'$key' in '$field' cannot be " . json_encode($value));
            }
        }
        if (isset($object['item'])) {
            if (isset($items[$object['item']])) {
                toolsync_bridge_refuse("item {$object['item']} appears twice in '$field'");
            }
            $items[$object['item']] = true;
        }
    }
    return $objects;
}

if (PHP_VERSION_ID < 80100) {
    toolsync_bridge_refuse('PHP ' . PHP_VERSION . ' is too old: the bridge needs PHP 8.1 or later, as Moodle 4.5 does');
}

// -- read and check the request before loading Moodle: a bad request then costs nothing ----------

$options = getopt('', ['moodle:']);
$moodledir = is_string($options['moodle'] ?? null) ? rtrim($options['moodle'], '/') : '';
if ($moodledir === '') {
    toolsync_bridge_refuse('usage: php toolsync_bridge.php --moodle=<site directory holding config.php>');
}

$request = json_decode((string) stream_get_contents(STDIN), true);
if (!is_array($request) || !is_string($request['command'] ?? null)) {
    $why = json_last_error() === JSON_ERROR_NONE ? '' : ' (' . json_last_error_msg() . ')';
    toolsync_bridge_refuse('the request must be one JSON object with a "command" string' . $why);
}
$command = $request['command'];
$allowed = [
    'info' => [],
    'delete_users' => ['userids'],
    'purge' => ['events', 'groupdata_courses', 'user_group_groupings_users', 'coursecontacts_courses'],
    'enrol_sync' => ['cohort_courses', 'meta_courses'],
    'delete_courses' => ['courseids'],
    'reset_courses' => ['resets'],
    'restore_templates' => ['items'],
    'delete_categories' => ['categoryids'],
    'welcome_messages' => ['enrolments', 'roles'],
    'trigger_events' => ['actor', 'events'],
];
if (!array_key_exists($command, $allowed)) {
    toolsync_bridge_refuse("unknown command '$command' (known: " . implode(', ', array_keys($allowed)) . ')');
}
// Unknown fields are refused rather than ignored: a misspelt field would otherwise purge nothing, silently.
$unknown = array_diff(array_keys($request), ['command'], $allowed[$command]);
if ($unknown) {
    toolsync_bridge_refuse("unknown field(s) for '$command': " . implode(', ', $unknown));
}
if ($command === 'delete_users') {
    $userids = toolsync_bridge_ids($request, 'userids');
} else if ($command === 'purge') {
    $events = $request['events'] ?? [];
    if (!is_array($events) || !array_is_list($events)) {
        toolsync_bridge_refuse("'events' must be a list of cache event names");
    }
    foreach ($events as $event) {
        if (!is_string($event) || !preg_match('/^[a-z0-9_]+$/', $event)) {
            toolsync_bridge_refuse("'events' must hold cache event names, not " . json_encode($event));
        }
    }
    $groupdatacourses = toolsync_bridge_ids($request, 'groupdata_courses');
    $groupingusers = toolsync_bridge_ids($request, 'user_group_groupings_users');
    $contactcourses = toolsync_bridge_ids($request, 'coursecontacts_courses');
} else if ($command === 'enrol_sync') {
    $synccourses = [
        'cohort' => toolsync_bridge_ids($request, 'cohort_courses'),
        'meta' => toolsync_bridge_ids($request, 'meta_courses'),
    ];
} else if ($command === 'delete_courses') {
    $courseids = toolsync_bridge_ids($request, 'courseids');
} else if ($command === 'delete_categories') {
    $categoryids = toolsync_bridge_ids($request, 'categoryids');
} else if ($command === 'reset_courses') {
    $resets = toolsync_bridge_resets($request['resets'] ?? []);
} else if ($command === 'restore_templates') {
    $templateitems = toolsync_bridge_template_items($request['items'] ?? []);
} else if ($command === 'welcome_messages') {
    $welcomes = toolsync_bridge_objects($request, 'enrolments', ['item' => 'id', 'enrolid' => 'id', 'userid' => 'id']);
    $batchroles = toolsync_bridge_objects($request, 'roles',
        ['courseid' => 'id', 'userid' => 'id', 'roleid' => 'id', 'from' => 'id']);
} else if ($command === 'trigger_events') {
    $actor = $request['actor'] ?? null;
    if (!is_int($actor) || $actor <= 0) {
        toolsync_bridge_refuse("'actor' must be the id of the user the events name as acting, not " . json_encode($actor));
    }
    $triggerevents = toolsync_bridge_objects($request, 'events', ['item' => 'id', 'eventname' => 'event', 'objectid' => 'id?',
        'contextid' => 'id', 'courseid' => 'count', 'relateduserid' => 'id?', 'other' => 'other']);
}

$configfile = $moodledir . '/config.php';
if (!is_file($configfile)) {
    $what = is_file($moodledir . '/lib/setup.php') ? 'a Moodle code tree without config.php (not installed?)'
        : (is_dir($moodledir) ? 'not a Moodle site directory' : 'not a directory');
    toolsync_bridge_refuse("$configfile not found: $moodledir is $what");
}
if (!is_readable($configfile)) {
    $me = function_exists('posix_geteuid') ? (posix_getpwuid(posix_geteuid())['name'] ?? posix_geteuid())
        : get_current_user();
    toolsync_bridge_refuse("$configfile is not readable by user $me: run PHP as the site's user ([bridge] run_as)");
}

// -- load the site ----------------------------------------------------------------------------

require($configfile);

if (empty($CFG->version)) {
    toolsync_bridge_answer(['ok' => false, 'error' => "the site at $moodledir has no version in its database: "
        . 'not installed, or config.php points at another database'], 1);
}
$CFG->mtrace_wrapper = 'toolsync_bridge_mtrace';
// Act as the main administrator, so that events and logs name an actor (as when an admin deletes in the UI).
$admin = get_admin();
if (!$admin) {
    toolsync_bridge_answer(['ok' => false, 'error' => 'the site has no administrator account to act as'], 1);
}
\core\session\manager::set_user($admin);

// -- the commands -----------------------------------------------------------------------------

// A refusal of one item, in words for the report (no exception class in front).
class toolsync_bridge_refusal extends Exception {
}

// Run $work for each item on its own and write the item's line as soon as it is done. $work returns the line's
// extra fields; it throws a refusal for an item it will not touch. With $transaction, each item's writes commit
// or roll back together (Moodle's web services wrap these calls in a transaction too). Returns the items done.
function toolsync_bridge_each(array $ids, string $doing, bool $transaction, callable $work): int {
    global $DB;
    $done = 0;
    foreach ($ids as $id) {
        $line = ['item' => $id, 'ok' => true];
        // Collect what Moodle prints for this item (notifications, debugging) and send it to stderr.
        $level = ob_get_level();
        ob_start();
        try {
            $delegated = $transaction ? $DB->start_delegated_transaction() : null;
            $line += $work($id);
            $delegated?->allow_commit();
            $done++;
        } catch (Throwable $e) {
            // Each item on its own: a failure half-way must not leave a transaction open for the next one.
            if ($DB->is_transaction_started()) {
                $DB->force_transaction_rollback();
            }
            $why = $e instanceof toolsync_bridge_refusal ? $e->getMessage()
                : "$doing $id failed: " . toolsync_bridge_describe($e);
            $line = ['item' => $id, 'ok' => false, 'error' => $why];
        }
        toolsync_bridge_printed_since($level);
        toolsync_bridge_line($line);
    }
    return $done;
}

// Run $call and return its result and what it printed (sent on to stderr): some Moodle functions give the reason
// they refuse only in a debugging() line.
function toolsync_bridge_printing(callable $call): array {
    $level = ob_get_level();
    ob_start();
    try {
        $result = $call();
    } finally {
        $printed = toolsync_bridge_printed_since($level);
    }
    return [$result, $printed === '' ? '' : ': ' . strtok($printed, "\n")];
}

// What was printed into the output buffers opened above $level (code that failed may have left its own open):
// the buffers closed, and the text sent on to stderr.
function toolsync_bridge_printed_since(int $level): string {
    $printed = '';
    while (ob_get_level() > $level) {
        $printed = (string) ob_get_clean() . $printed;
    }
    $printed = trim($printed);
    if ($printed !== '') {
        fwrite(STDERR, $printed . "\n");
    }
    return $printed;
}

function toolsync_bridge_delete_users(array $userids): int {
    global $DB;
    return toolsync_bridge_each($userids, 'deleting user', false, function (int $id) use ($DB): array {
        $user = $DB->get_record('user', ['id' => $id]);
        if (!$user) {
            throw new toolsync_bridge_refusal("no user with id $id");
        } else if ($user->deleted) {
            throw new toolsync_bridge_refusal("user $id is already deleted");
        } else if ($user->username === 'guest' || isguestuser($user)) {
            throw new toolsync_bridge_refusal("user $id is the guest account, which Moodle never deletes");
        } else if (is_siteadmin($user)) {
            // Core refuses only manual-auth admins; toolsync refuses every site administrator.
            throw new toolsync_bridge_refusal("user $id ($user->username) is a site administrator: "
                . 'remove them from the site administrators first');
        }
        [$deleted, $printed] = toolsync_bridge_printing(fn() => delete_user($user));
        if (!$deleted) {
            throw new toolsync_bridge_refusal("delete_user() refused user $id$printed");
        }
        return [];
    });
}

// A course of the site that is not its front page, or a refusal.
function toolsync_bridge_course(int $id, string $doing): stdClass {
    global $DB;
    $course = $DB->get_record('course', ['id' => $id]);
    if (!$course) {
        throw new toolsync_bridge_refusal("no course with id $id");
    }
    if ($id == SITEID) {
        throw new toolsync_bridge_refusal("course $id is the site's front page, which cannot be $doing");
    }
    return $course;
}

// delete_course() per course, as course/delete.php, admin/cli/delete_course.php and the web service do, then one
// fix_course_sortorder() for all (category course counts, sort orders, and the course and category cache purges).
function toolsync_bridge_delete_courses(array $courseids): array {
    $deleted = toolsync_bridge_each($courseids, 'deleting course', true, function (int $id): array {
        $course = toolsync_bridge_course($id, 'deleted');
        [$done, $printed] = toolsync_bridge_printing(fn() => delete_course($course, false));
        if (!$done) {
            throw new toolsync_bridge_refusal("delete_course() refused course $id$printed");
        }
        return ['shortname' => $course->shortname];
    });
    if ($deleted) {
        fix_course_sortorder();
        cache_helper::purge_by_event('changesincourse');
    }
    return ['deleted' => $deleted];
}

// The reset options of one course: every named module's form defaults, then the given options over them; the
// dates stay as they are (reset_start_date 0: no shift).
function toolsync_bridge_reset_data(stdClass $course, array $options): stdClass {
    global $CFG, $DB;
    $data = [];
    $modules = $options['modules'] ?? [];
    unset($options['modules']);
    $installed = $modules ? $DB->get_records_menu('modules', null, '', 'name, id') : [];
    foreach ($modules as $module) {
        $lib = "$CFG->dirroot/mod/$module/lib.php";
        if (!isset($installed[$module]) || !is_file($lib)) {
            throw new toolsync_bridge_refusal("module '$module' is not installed on this site");
        }
        include_once($lib);
        $defaults = "{$module}_reset_course_form_defaults";
        if (function_exists($defaults)) {
            // Some return nothing when the course has no instance (feedback).
            $data = array_merge($data, (array) ($defaults($course) ?: []));
        }
    }
    foreach ($options as $name => $value) {
        $data[$name] = is_bool($value) ? (int) $value : $value;
    }
    if (!empty($data['unenrol_users'])) {
        $roles = $DB->get_records_menu('role', null, '', 'id, shortname');
        foreach ($data['unenrol_users'] as $roleid) {
            if ($roleid && !isset($roles[$roleid])) {
                throw new toolsync_bridge_refusal("no role with id $roleid to unenrol");
            }
        }
    }
    return (object) ([
        'id' => $course->id,
        'reset_start_date' => 0,
        'reset_start_date_old' => $course->startdate,
        'reset_end_date' => 0,
        'reset_end_date_old' => $course->enddate,
    ] + $data);
}

// reset_course_userdata() per course; its status lines ("component: item: OK" or the error) come back per item.
function toolsync_bridge_reset_courses(array $resets): array {
    global $CFG;
    // As course/reset.php: reset_course_userdata() calls into the course library.
    require_once($CFG->dirroot . '/course/lib.php');
    $options = [];
    foreach ($resets as $reset) {
        $options[$reset['course']] = $reset['options'] ?? [];
    }
    $reset = toolsync_bridge_each(array_keys($options), 'resetting course', true, function (int $id) use ($options): array {
        $course = toolsync_bridge_course($id, 'reset');
        $data = toolsync_bridge_reset_data($course, $options[$id] ?? []);
        [$status] = toolsync_bridge_printing(fn() => reset_course_userdata($data));
        $lines = [];
        foreach ($status as $entry) {
            $what = implode(': ', array_filter([trim(strip_tags((string) $entry['component'])),
                trim(strip_tags((string) $entry['item']))], 'strlen'));
            $lines[] = $what . ': ' . ($entry['error'] === false ? 'OK' : trim(strip_tags((string) $entry['error'])));
        }
        return ['statuses' => $lines];
    });
    return ['reset' => $reset];
}

// What a restore reads from: a backup directory under $CFG->backuptempdir and its mode, or why there is none.
// A template course is backed up afresh, without users, as Moodle's course import does (MODE_IMPORT: no file, no
// zip); a .mbz path (absolute, or relative to the site directory as tool_sync had it) is extracted.
function toolsync_bridge_template_source(string $template): array {
    global $CFG, $DB, $USER;
    try {
        if (stripos($template, '.mbz') !== false) {
            $path = str_starts_with($template, '/') ? $template : "$CFG->dirroot/$template";
            if (!is_file($path)) {
                return ['error' => "template file $path not found"];
            }
            if (!is_readable($path)) {
                return ['error' => "template file $path is not readable by the user PHP runs as"];
            }
            $dir = restore_controller::get_tempdir_name(SITEID, $USER->id);
            $full = make_backup_temp_directory($dir);
            $extracted = get_file_packer('application/vnd.moodle.backup')->extract_to_pathname($path, $full, null, null,
                true);
            if (!$extracted || !is_file("$full/moodle_backup.xml")) {
                fulldelete($full);
                return ['error' => "template file $path is not a Moodle backup (.mbz) that can be extracted"];
            }
            return ['dir' => $dir, 'mode' => backup::MODE_GENERAL, 'courseid' => 0];
        }
        $course = $DB->get_record('course', ['shortname' => $template], 'id', IGNORE_MULTIPLE);
        if (!$course) {
            return ['error' => "no course with shortname '$template' to use as template"];
        }
        if ($course->id == SITEID) {
            return ['error' => "'$template' is the site's front page, not a template course"];
        }
        $bc = new backup_controller(backup::TYPE_1COURSE, $course->id, backup::FORMAT_MOODLE, backup::INTERACTIVE_NO,
            backup::MODE_IMPORT, $USER->id);
        try {
            $bc->execute_plan();
            $dir = $bc->get_backupid();
        } finally {
            $bc->destroy();
        }
        return ['dir' => $dir, 'mode' => backup::MODE_IMPORT, 'courseid' => (int) $course->id];
    } catch (Throwable $e) {
        if ($DB->is_transaction_started()) {
            $DB->force_transaction_rollback();
        }
        toolsync_bridge_drop_backup_temp_tables();
        return ['error' => "backing up template '$template' failed: " . toolsync_bridge_describe($e)];
    }
}

// A failed backup or restore leaves its temporary id tables behind, and the next restore would reuse their stale
// mappings (restore_controller_dbops::create_restore_temp_tables() keeps tables that exist): drop them.
function toolsync_bridge_drop_backup_temp_tables(): void {
    global $DB;
    $dbman = $DB->get_manager();
    foreach (['backup_ids_temp', 'backup_files_temp'] as $name) {
        $table = new xmldb_table($name);
        if ($dbman->table_exists($table)) {
            $dbman->drop_table($table);
        }
    }
    restore_dbops::reset_backup_ids_cached();
}

// A restore setting to a value, unless the site locks it to another one (the admin's restore defaults).
function toolsync_bridge_restore_setting(restore_controller $rc, string $name, $value): void {
    $plan = $rc->get_plan();
    if (!$plan->setting_exists($name) || $plan->get_setting($name)->get_value() == $value) {
        return;
    }
    $setting = $plan->get_setting($name);
    if (in_array($setting->get_status(), [base_setting::LOCKED_BY_CONFIG, base_setting::LOCKED_BY_PERMISSION])) {
        throw new toolsync_bridge_refusal("the site locks the restore setting '$name' to "
            . json_encode($setting->get_value()) . ' (Site administration > Courses > Backups > General restore defaults)');
    }
    $setting->set_value($value);
}

// One restore into an existing course: add to its content, or replace it (keeping its enrolments, roles, groups
// and groupings); never its users' data, and never its own settings (names, idnumber, category, dates, format).
// $ids gets the restore's id (its log file is named after it).
function toolsync_bridge_restore(array $source, int $courseid, string $mode, array &$ids): void {
    global $USER;
    $target = $mode === 'replace' ? backup::TARGET_EXISTING_DELETING : backup::TARGET_EXISTING_ADDING;
    $rc = new restore_controller($source['dir'], $courseid, backup::INTERACTIVE_NO, $source['mode'], $USER->id, $target);
    try {
        if ($rc->get_status() == backup::STATUS_REQUIRE_CONV) {
            throw new toolsync_bridge_refusal('the template is a backup in an older format that Moodle must convert '
                . 'first: restore it once in Moodle and back that course up again');
        }
        $settings = ['users' => false, 'overwrite_conf' => false];
        if ($mode === 'replace') {
            $settings += ['keep_roles_and_enrolments' => true, 'keep_groups_and_groupings' => true];
        }
        foreach ($settings as $name => $value) {
            toolsync_bridge_restore_setting($rc, $name, $value);
        }
        if (!$rc->execute_precheck()) {
            $results = $rc->get_precheck_results();
            foreach ($results['warnings'] ?? [] as $warning) {
                fwrite(STDERR, "restore precheck warning for course $courseid: " . strip_tags($warning) . "\n");
            }
            if (!empty($results['errors'])) {
                throw new toolsync_bridge_refusal('restore precheck failed: '
                    . implode('; ', array_map('strip_tags', $results['errors'])));
            }
        }
        $rc->execute_plan();
    } catch (Throwable $e) {
        toolsync_bridge_drop_backup_temp_tables();
        throw $e;
    } finally {
        $rc->destroy();
        $ids[] = $rc->get_restoreid();
    }
}

// Template content restored into existing courses (created by toolsync just before): each template is backed up
// or extracted once per call, and that directory is restored into every course that names it.
function toolsync_bridge_restore_templates(array $items): array {
    global $CFG;
    require_once($CFG->dirroot . '/backup/util/includes/backup_includes.php');
    require_once($CFG->dirroot . '/backup/util/includes/restore_includes.php');
    $byid = [];
    foreach ($items as $item) {
        $byid[$item['course']] = $item;
    }
    $sources = [];
    $restores = [];
    // A restore deletes its backup directory when done unless the site keeps them: keep it for the next course,
    // and delete it here at the end, with the (mostly empty) log files of the backup and the restores.
    $keep = !empty($CFG->keeptempdirectoriesonbackup);
    $CFG->keeptempdirectoriesonbackup = true;
    try {
        $restored = toolsync_bridge_each(array_keys($byid), 'restoring into course', false,
            function (int $id) use ($byid, &$sources, &$restores): array {
                toolsync_bridge_course($id, 'restored into');
                $template = trim($byid[$id]['template']);
                $sources[$template] ??= toolsync_bridge_template_source($template);
                $source = $sources[$template];
                if (isset($source['error'])) {
                    throw new toolsync_bridge_refusal($source['error']);
                }
                if ($source['courseid'] === $id) {
                    throw new toolsync_bridge_refusal("course $id cannot be restored from itself");
                }
                toolsync_bridge_restore($source, $id, $byid[$id]['mode'], $restores);
                return [];
            });
    } finally {
        $CFG->keeptempdirectoriesonbackup = $keep;
        $dirs = $keep ? [] : array_filter(array_column($sources, 'dir'));
        foreach ($dirs as $dir) {
            fulldelete("$CFG->backuptempdir/$dir");
        }
        foreach ($keep ? [] : [...$dirs, ...$restores] as $log) {
            @unlink("$CFG->backuptempdir/$log.log");
        }
    }
    return ['restored' => $restored];
}

// The refusal of a category to delete: unknown, or not empty (toolsync deletes empty categories only, leaves
// first, so that no course is ever deleted with its category).
function toolsync_bridge_empty_category(int $id): core_course_category {
    global $DB;
    $record = $DB->get_record('course_categories', ['id' => $id]);
    if (!$record) {
        throw new toolsync_bridge_refusal("no category with id $id");
    }
    $courses = $DB->count_records('course', ['category' => $id]);
    $children = $DB->count_records('course_categories', ['parent' => $id]);
    if ($courses || $children) {
        throw new toolsync_bridge_refusal("category $id ('" . format_string($record->name) . "') is not empty: it holds "
            . implode(' and ', array_filter([$courses ? "$courses course(s)" : '', $children ? "$children subcategories" : '']))
            . '; delete or move them first');
    }
    return core_course_category::get($id, MUST_EXIST, true);
}

function toolsync_bridge_delete_categories(array $categoryids): array {
    $deleted = toolsync_bridge_each($categoryids, 'deleting category', true, function (int $id): array {
        toolsync_bridge_empty_category($id)->delete_full(false);
        return [];
    });
    return ['deleted' => $deleted];
}

function toolsync_bridge_purge(array $events, array $groupdatacourses, array $groupingusers,
        array $contactcourses): void {
    // Only event purges reach the session caches of users who are logged in (a full purge does not).
    foreach ($events as $event) {
        cache_helper::purge_by_event($event);
    }
    // These three caches have no invalidation event: their keys are deleted one by one.
    if ($groupdatacourses) {
        cache_helper::invalidate_by_definition('core', 'groupdata', [], $groupdatacourses);
    }
    if ($groupingusers) {
        cache_helper::invalidate_by_definition('core', 'user_group_groupings', [], $groupingusers);
    }
    if ($contactcourses) {
        cache::make('core', 'coursecontacts')->delete_many($contactcourses);
    }
}

// Moodle's own sync of cohort and meta enrolments (what their scheduled tasks run), for these courses only: the
// user enrolments, roles and group memberships the instances imply. Per plugin: "synced", or "disabled" (then
// nothing is run: the sync of a disabled plugin unassigns every role it gave).
function toolsync_bridge_enrol_sync(array $synccourses): array {
    global $CFG;
    $answers = [];
    foreach ($synccourses as $plugin => $courseids) {
        if (!$courseids) {
            continue;
        }
        if (!enrol_is_enabled($plugin)) {
            $answers[$plugin] = 'disabled';
            continue;
        }
        require_once("$CFG->dirroot/enrol/$plugin/locallib.php");
        $trace = new null_progress_trace();
        $targets = count($courseids) >= TOOLSYNC_BRIDGE_SYNC_ALL_FROM ? [null] : $courseids;
        foreach ($targets as $courseid) {
            if ($plugin === 'cohort') {
                enrol_cohort_sync($trace, $courseid);
            } else {
                enrol_meta_sync($courseid);
            }
        }
        $trace->finished();
        $answers[$plugin] = 'synced';
    }
    return $answers;
}

// The welcome-message option of an enrolment instance and the option's field, for the plugins whose hook callback
// sends one (enrol_manual and enrol_self, user_enrolment_callbacks::send_course_welcome_message()).
const TOOLSYNC_BRIDGE_WELCOME_FIELDS = ['manual' => 'customint1', 'self' => 'customint4'];

// The plugin of $name with get_welcome_message_contact() seeing the site as enrol_user() saw it for the enrolment
// being welcomed: the role assignments in $hidden (ids) were made after it, by later rows of the same batch.
function toolsync_bridge_welcome_plugin(string $name): enrol_plugin {
    enrol_get_plugin($name); // loads its lib.php
    // An anonymous subclass of the plugin's own class: its get_name() reads "manual" or "self" from the class name.
    return match ($name) {
        'manual' => new class extends enrol_manual_plugin {
            use toolsync_bridge_welcome_contact;
        },
        'self' => new class extends enrol_self_plugin {
            use toolsync_bridge_welcome_contact;
        },
    };
}

// As enrol_plugin::get_welcome_message_contact() (the first user of the first course-contact role that has any), the
// hidden role assignments skipped.
trait toolsync_bridge_welcome_contact {
    /** @var array role assignment id => true, not yet made when the message's enrolment was */
    public array $hidden = [];

    public function get_welcome_message_contact(int $sendoption, context $context): ?stdClass {
        global $CFG;
        if ($sendoption !== ENROL_SEND_EMAIL_FROM_COURSE_CONTACT || !$this->hidden || empty($CFG->coursecontact)) {
            return parent::get_welcome_message_contact($sendoption, $context);
        }
        [$sort, $sortparams] = users_order_by_sql('u');
        $names = \core_user\fields::for_name()->get_sql('u', false, '', '', false)->selects;
        $fields = "u.id, u.confirmed, u.username, $names, u.email, r.sortorder, ra.id AS raid";
        foreach (explode(',', $CFG->coursecontact) as $roleid) {
            $users = get_role_users($roleid, $context, true, $fields, 'r.sortorder, ra.id ASC, ' . $sort, null, '', '',
                '', '', $sortparams);
            foreach ($users as $user) {
                if (!isset($this->hidden[$user->raid])) {
                    return $user;
                }
            }
        }
        return null;
    }
}

// The welcome message Moodle's enrol_user() sends (through the after_user_enrolled hook) for each enrolment, in the
// order the enrolments were made: item -> sent, or why not. $roles are the course-contact role assignments the same
// batch made, each with the first item that saw it ('from'); they are hidden from the items before.
function toolsync_bridge_welcome_messages(array $welcomes, array $roles): array {
    global $DB;
    $raids = [];
    foreach ($roles as $role) {
        $context = context_course::instance($role['courseid'], IGNORE_MISSING);
        $ids = $context ? $DB->get_fieldset_select('role_assignments', 'id',
            "contextid = ? AND userid = ? AND roleid = ? AND component = '' AND itemid = 0",
            [$context->id, $role['userid'], $role['roleid']]) : [];
        foreach ($ids as $id) {
            $raids[] = ['courseid' => $role['courseid'], 'raid' => (int) $id, 'from' => $role['from']];
        }
    }
    $byitem = array_column($welcomes, null, 'item');
    $instances = [];
    $plugins = [];
    $sent = 0;
    toolsync_bridge_each(array_keys($byitem), 'welcoming enrolment', false,
        function (int $item) use ($byitem, $raids, &$instances, &$plugins, &$sent, $DB): array {
            $welcome = $byitem[$item];
            $instance = $instances[$welcome['enrolid']] ??= $DB->get_record('enrol', ['id' => $welcome['enrolid']]);
            if (!$instance) {
                throw new toolsync_bridge_refusal("no enrolment method with id {$welcome['enrolid']}");
            }
            $field = TOOLSYNC_BRIDGE_WELCOME_FIELDS[$instance->enrol] ?? null;
            // As the callbacks: an option of 0 (ENROL_DO_NOT_SEND_EMAIL) or none sends nothing.
            $option = $field ? (int) $instance->$field : ENROL_DO_NOT_SEND_EMAIL;
            if ($option === ENROL_DO_NOT_SEND_EMAIL) {
                return ['sent' => false, 'why' => 'off'];
            }
            if (!$DB->record_exists('user', ['id' => $welcome['userid'], 'deleted' => 0])) {
                throw new toolsync_bridge_refusal("no user with id {$welcome['userid']}");
            }
            $plugin = $plugins[$instance->enrol] ??= toolsync_bridge_welcome_plugin($instance->enrol);
            $plugin->hidden = [];
            foreach ($raids as $ra) {
                if ($ra['courseid'] == $instance->courseid && $ra['from'] > $item) {
                    $plugin->hidden[$ra['raid']] = true;
                }
            }
            $context = context_course::instance($instance->courseid);
            // send_course_welcome_message_to_user() returns nothing: without a sender it sends nothing, silently.
            if (!$plugin->get_welcome_message_contact($option, $context)) {
                return ['sent' => false, 'why' => 'no sender'];
            }
            $plugin->send_course_welcome_message_to_user($instance, $welcome['userid'], $option, $instance->customtext1);
            $sent++;
            return ['sent' => true];
        });
    return ['sent' => $sent];
}

// Moodle's events for changes toolsync wrote, triggered as the APIs that make them would have: each event class's
// create() with the same data, then trigger(), so that every plugin's observers run and the log stores write.
function toolsync_bridge_trigger_events(int $actor, array $events): array {
    global $CFG, $DB;
    // The libraries of the APIs that trigger these events, which their observers count on (course_get_format() ...).
    foreach (['course/lib.php', 'user/lib.php', 'group/lib.php', 'cohort/lib.php', 'lib/enrollib.php'] as $lib) {
        require_once("$CFG->dirroot/$lib");
    }
    $user = $DB->get_record('user', ['id' => $actor, 'deleted' => 0]);
    if (!$user) {
        toolsync_bridge_answer(['ok' => false, 'error' => "no user with id $actor to act as"], 1);
    }
    \core\session\manager::set_user($user);
    $byitem = array_column($events, null, 'item');
    $triggered = toolsync_bridge_each(array_keys($byitem), 'triggering event', false, function (int $item) use ($byitem): array {
        $event = $byitem[$item];
        $class = $event['eventname'];
        if (!class_exists($class) || !is_subclass_of($class, \core\event\base::class)) {
            throw new toolsync_bridge_refusal("$class is not an event class of this site");
        }
        $data = [
            'context' => context::instance_by_id($event['contextid'], MUST_EXIST),
            'objectid' => $event['objectid'],
            'courseid' => $event['courseid'],
        ];
        // Absent rather than null: create() then takes the user of a user context, as Moodle's callers rely on.
        if ($event['relateduserid'] !== null) {
            $data['relateduserid'] = $event['relateduserid'];
        }
        if ($event['other'] !== null) {
            $data['other'] = $event['other'];
        }
        $class::create($data)->trigger();
        return [];
    });
    return ['triggered' => $triggered];
}

try {
    if ($command === 'info') {
        toolsync_bridge_answer([
            'ok' => true,
            'protocol' => TOOLSYNC_BRIDGE_PROTOCOL,
            'release' => (string) $CFG->release,
            'version' => (string) $CFG->version,
            'dbtype' => (string) $CFG->dbtype,
            'dbhost' => (string) $CFG->dbhost,
            'dbport' => (string) ($CFG->dboptions['dbport'] ?? ''),
            'dbname' => (string) $CFG->dbname,
            'dbprefix' => (string) $CFG->prefix,
            'wwwroot' => (string) $CFG->wwwroot,
            'dirroot' => (string) $CFG->dirroot,
            'php' => PHP_VERSION,
            // The activity modules installed (what a reset's "modules" may name).
            'modules' => array_values(array_filter(array_keys($DB->get_records_menu('modules', null, 'name', 'name, id')),
                fn($name) => is_file("$CFG->dirroot/mod/$name/lib.php"))),
        ]);
    } else if ($command === 'delete_users') {
        toolsync_bridge_answer(['ok' => true, 'deleted' => toolsync_bridge_delete_users($userids)]);
    } else if ($command === 'delete_courses') {
        toolsync_bridge_answer(['ok' => true] + toolsync_bridge_delete_courses($courseids));
    } else if ($command === 'reset_courses') {
        toolsync_bridge_answer(['ok' => true] + toolsync_bridge_reset_courses($resets));
    } else if ($command === 'restore_templates') {
        toolsync_bridge_answer(['ok' => true] + toolsync_bridge_restore_templates($templateitems));
    } else if ($command === 'delete_categories') {
        toolsync_bridge_answer(['ok' => true] + toolsync_bridge_delete_categories($categoryids));
    } else if ($command === 'enrol_sync') {
        toolsync_bridge_answer(['ok' => true, 'plugins' => toolsync_bridge_enrol_sync($synccourses)]);
    } else if ($command === 'welcome_messages') {
        toolsync_bridge_answer(['ok' => true] + toolsync_bridge_welcome_messages($welcomes, $batchroles));
    } else if ($command === 'trigger_events') {
        toolsync_bridge_answer(['ok' => true] + toolsync_bridge_trigger_events($actor, $triggerevents));
    } else {
        toolsync_bridge_purge($events, $groupdatacourses, $groupingusers, $contactcourses);
        toolsync_bridge_answer(['ok' => true]);
    }
} catch (Throwable $e) {
    toolsync_bridge_answer(['ok' => false, 'error' => "$command failed: " . toolsync_bridge_describe($e)], 1);
}
