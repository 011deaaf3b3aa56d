"""Template content restored into many courses through ONE bridge call, on a real Moodle 4.5 site.

    TOOLSYNC_TEST_MOODLE_DIRROOT=/work/moodle-site/moodle .venv/bin/python -m benchmarks.templates

Makes a template course with a few activities (a page, a forum, an assignment, a URL, a label) and `--courses` (50)
empty courses with Moodle's own APIs (untimed), then times `MoodleBridge.restore_templates()` restoring the template
into all of them in one PHP process (the template backed up once, as Moodle's course import does), checks that every
course got the activities, and prints the seconds per course and in all. Then it deletes every course it made through
`MoodleBridge.delete_courses()`, also timed (the site's recycle bin, when enabled, backs each course up first).
Optional: TOOLSYNC_TEST_MOODLE_PHP (PHP command) and TOOLSYNC_TEST_MOODLE_RUN_AS, as for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tests.support.moodle_site import SITE_ENV, Site
from toolsync_tui.engine.moodle.bridge.client import TemplateItem

ACTIVITIES = (("page", "Course rules"), ("forum", "Questions"), ("assign", "First essay"), ("url", "Library"))
MAKE = """require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->libdir . '/testing/generator/lib.php');
$generator = new testing_data_generator();
$category = (int) $DB->get_field_sql('SELECT MIN(id) FROM {course_categories}');
$template = create_course((object) ['fullname' => 'Template %(tag)s', 'shortname' => 'tpl%(tag)s',
    'category' => $category]);
foreach (%(activities)s as [$module, $name]) {
    $generator->create_module($module, ['course' => $template->id, 'name' => $name]);
}
$generator->create_module('label', ['course' => $template->id, 'intro' => 'Welcome']);
$targets = [];
for ($i = 0; $i < %(courses)d; $i++) {
    $targets[] = (int) create_course((object) ['fullname' => "Target %(tag)s $i", 'shortname' => "tgt%(tag)s-$i",
        'category' => $category])->id;
}
$result = ['template' => (int) $template->id, 'shortname' => $template->shortname, 'targets' => $targets];"""
COUNT = """$result = [];
foreach (%(courses)s as $id) {
    $result[] = count(array_filter(get_fast_modinfo($id)->get_cms(), fn($cm) => in_array($cm->name, %(names)s)));
}"""


def php_array(values: Sequence[Any]) -> str:
    """A PHP array literal (JSON's lists are PHP's; the strings here hold no `$`)."""
    return json.dumps(list(values))


async def bench(site: Site, courses: int, mode: Literal["add", "replace"], keep: bool) -> int:
    tag = uuid.uuid4().hex[:8]
    activities = php_array(ACTIVITIES)
    started = time.monotonic()
    made = await site.run_php(MAKE % {"tag": tag, "activities": activities, "courses": courses})
    targets: list[int] = made["targets"]
    print(f"set-up (untimed): template course {made['shortname']} and {courses} empty courses in "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    bridge = site.bridge()
    done = 0

    def progress(line: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if done % 10 == 0 or done == len(targets):
            print(f"  {done}/{len(targets)} restored, {time.monotonic() - clock:.1f} s", flush=True)

    clock = time.monotonic()
    results = await bridge.restore_templates([TemplateItem(t, made["shortname"], mode) for t in targets], progress)
    elapsed = time.monotonic() - clock
    failed = {course: why for course, why in results.items() if why is not None}
    names = php_array([name for _, name in ACTIVITIES])
    counts = await site.run_php(COUNT % {"courses": php_array(targets), "names": names})
    complete = sum(1 for n in counts if n == len(ACTIVITIES))
    print(
        f"restore_templates ({mode}): {len(targets)} courses in {elapsed:.1f} s = {elapsed / len(targets):.2f} s per "
        f"course, one PHP process (bootstrap and the template's backup included)"
    )
    print(f"  verified: {complete} of {len(targets)} courses hold the template's {len(ACTIVITIES)} named activities"
          + (f"; FAILED: {failed}" if failed else ""))  # fmt: skip
    if not keep:
        clock = time.monotonic()
        deleted = await bridge.delete_courses([*targets, made["template"]])
        elapsed = time.monotonic() - clock
        gone = sum(1 for why in deleted.values() if why is None)
        print(f"clean-up: delete_courses of {len(deleted)} courses in {elapsed:.1f} s = "
              f"{elapsed / len(deleted):.2f} s per course ({gone} deleted)")  # fmt: skip
    return 0 if not failed and complete == len(targets) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.templates", description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=50, help="empty courses the template is restored into (50)")
    parser.add_argument("--mode", choices=("add", "replace"), default="add", help="restore mode (add)")
    parser.add_argument("--keep", action="store_true", help="leave the courses on the site")
    args = parser.parse_args(argv)
    dirroot = os.environ.get(SITE_ENV, "")
    if not dirroot or not (Path(dirroot) / "config.php").is_file():
        print(f"{SITE_ENV} must name an installed Moodle 4.5 site's directory (scripts/install_test_moodle.sh)")
        return 2
    site = Site(
        Path(dirroot).resolve(),
        os.environ.get("TOOLSYNC_TEST_MOODLE_PHP", "php"),
        os.environ.get("TOOLSYNC_TEST_MOODLE_RUN_AS", ""),
        url="",
        prefix="",
    )
    return asyncio.run(bench(site, args.courses, args.mode, args.keep))


if __name__ == "__main__":
    sys.exit(main())
