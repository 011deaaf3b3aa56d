<?php
// This file is part of toolsync (GPL-3.0-or-later).
//
// The toolsync "Moodle bridge": run Moodle's own PHP for what toolsync must not do with SQL, namely
// operations that cascade through every plugin's tables (user delete) and purges of Moodle's caches (MUC).
//
// Usage: php toolsync_bridge.php --moodle=<site dir holding config.php>  < request.json
//
// Protocol: ONE JSON object on stdin, ONE line of JSON on stdout, nothing else on stdout.
//   {"command":"info"}
//   {"command":"delete_users","userids":[3,4]}
//   {"command":"purge","events":[..],"groupdata_courses":[..],"user_group_groupings_users":[..],
//    "coursecontacts_courses":[..]}
//   {"command":"enrol_sync","cohort_courses":[..],"meta_courses":[..]}
// Every answer has "ok". Exit codes: 0 answered (a delete_users answer may still hold per-user failures),
// 1 the command failed inside Moodle, 2 a bad request or no usable site (nothing was done).

define('CLI_SCRIPT', true);

// Bumped when requests or answers change, so the Python side can refuse a mismatched helper.
const TOOLSYNC_BRIDGE_PROTOCOL = 2;

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

function toolsync_bridge_answer(array $answer, int $exitcode = 0): void {
    $flags = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE;
    fwrite(STDOUT, json_encode($answer, $flags) . "\n");
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

function toolsync_bridge_delete_users(array $userids): array {
    global $DB;
    $results = [];
    foreach ($userids as $id) {
        $error = null;
        // Collect what delete_user() prints: its debugging() line is the only reason it gives for returning false.
        ob_start();
        try {
            $user = $DB->get_record('user', ['id' => $id]);
            if (!$user) {
                $error = "no user with id $id";
            } else if ($user->deleted) {
                $error = "user $id is already deleted";
            } else if ($user->username === 'guest' || isguestuser($user)) {
                $error = "user $id is the guest account, which Moodle never deletes";
            } else if (is_siteadmin($user)) {
                // Core refuses only manual-auth admins; toolsync refuses every site administrator.
                $error = "user $id ($user->username) is a site administrator: "
                    . 'remove them from the site administrators first';
            } else if (!delete_user($user)) {
                $error = "delete_user() refused user $id";
            }
        } catch (Throwable $e) {
            // Each user on their own: a failure half-way must not leave a transaction open for the next one.
            if ($DB->is_transaction_started()) {
                $DB->force_transaction_rollback();
            }
            $error = "deleting user $id failed: " . toolsync_bridge_describe($e);
        }
        $printed = trim((string) ob_get_clean());
        if ($printed !== '') {
            fwrite(STDERR, $printed . "\n");
            if ($error !== null && str_starts_with($error, 'delete_user() refused')) {
                $error .= ': ' . strtok($printed, "\n");
            }
        }
        $results[] = $error === null ? ['id' => $id, 'ok' => true] : ['id' => $id, 'ok' => false, 'error' => $error];
    }
    return $results;
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
        ]);
    } else if ($command === 'delete_users') {
        toolsync_bridge_answer(['ok' => true, 'results' => toolsync_bridge_delete_users($userids)]);
    } else if ($command === 'enrol_sync') {
        toolsync_bridge_answer(['ok' => true, 'plugins' => toolsync_bridge_enrol_sync($synccourses)]);
    } else {
        toolsync_bridge_purge($events, $groupdatacourses, $groupingusers, $contactcourses);
        toolsync_bridge_answer(['ok' => true]);
    }
} catch (Throwable $e) {
    toolsync_bridge_answer(['ok' => false, 'error' => "$command failed: " . toolsync_bridge_describe($e)], 1);
}
