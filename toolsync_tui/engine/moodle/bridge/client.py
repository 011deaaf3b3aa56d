"""The Moodle bridge: Moodle's own PHP, run on the site's server, for what toolsync must not do in SQL.

User and course delete, course reset and restore cascade through every plugin's tables, MUC caches live in Moodle's
cache stores (files, Redis, ...), and cohort and meta enrolments are materialised by their plugins' own sync: these go
through `toolsync_bridge.php`, a small CLI script shipped in this package and run with the site's config.php. So
do what Moodle's APIs do after their rows, once a batch has committed: course welcome messages, and (`[events]
trigger`) Moodle's events, so that other plugins' observers run.
One process per call: one JSON request on stdin; an item command answers one line per item as each finishes, then
every command one final answer line (engine/bridge_process.py).
Settings: `[bridge]` php, moodle_dir (empty: no bridge), run_as (run PHP through `sudo -n -u <user>`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from toolsync_tui.engine.moodle.bridge.process import BridgeError, Launch, OnResult, exchange, item_error

BRIDGE_SCRIPT = Path(__file__).resolve().with_name("toolsync_bridge.php")
PROTOCOL = 4  # must match TOOLSYNC_BRIDGE_PROTOCOL in the PHP script
CHUNK = 500  # users per delete_users call: a PHP process that dies then leaves at most this many users unanswered
TIMEOUT = 120.0  # seconds per call, for bootstrap and purges...
SECONDS_PER_USER = 2.0  # ... plus this per user to delete: a generous ceiling (12 ms each measured on a test site)
SECONDS_PER_SYNCED_COURSE = 5.0  # ... or this per course to sync: a ceiling for courses of thousands of users
# ... or this per course to delete, reset or restore into, or per category to delete: a big course's recycle-bin
# backup or restore takes minutes (a small one about a second).
SECONDS_PER_COURSE = 900.0
SECONDS_PER_MESSAGE = 2.0  # ... or this per welcome message (an email goes out as it is sent)
SECONDS_PER_EVENT = 1.0  # ... or this per event to trigger (its observers run; about 1 ms each on a test site)

__all__ = [
    "BRIDGE_SCRIPT",
    "PROTOCOL",
    "BridgeError",
    "CourseReset",
    "MoodleBridge",
    "OnResult",
    "TemplateItem",
    "Welcome",
    "WelcomeRole",
]


@dataclass(frozen=True)
class TemplateItem:
    """Content of a template course (its shortname) or a .mbz backup, restored into an existing course."""

    course_id: int
    template: str
    mode: Literal["add", "replace"]


@dataclass(frozen=True)
class CourseReset:
    """A course's reset: why it was not done (None: done), and reset_course_userdata()'s status lines
    (`component: item: OK`, or the error in place of OK)."""

    error: str | None
    statuses: tuple[str, ...]

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> CourseReset:
        statuses = line.get("statuses")
        return cls(item_error(dict(line)), tuple(str(s) for s in statuses) if isinstance(statuses, list) else ())


@dataclass(frozen=True)
class WelcomeRole:
    """A course-contact role assigned by the batch whose enrolments are welcomed: the messages of the enrolments
    before `first_seen` (an item number) are sent as if it did not exist yet, as enrol_user() saw the site."""

    courseid: int
    userid: int
    roleid: int
    first_seen: int


@dataclass(frozen=True)
class Welcome:
    """What became of an enrolment's welcome message: sent, or why not ("off": its enrolment method sends none; "no
    sender": the course has no contact to send it from; else what went wrong)."""

    sent: bool
    why: str | None = None

    @property
    def failed(self) -> bool:
        return not self.sent and self.why not in ("off", "no sender")


class DatabaseTarget(Protocol):
    """The database toolsync writes to, as the bridge checks it against the site's config.php."""

    @property
    def driver(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def prefix(self) -> str: ...


class MoodleBridge:
    def __init__(
        self,
        moodle_dir: Path,
        *,
        php: str = "php",
        run_as: str = "",
        script: Path = BRIDGE_SCRIPT,
        timeout: float = TIMEOUT,
        seconds_per_user: float = SECONDS_PER_USER,
        seconds_per_course: float = SECONDS_PER_COURSE,
        chunk_size: int = CHUNK,
    ) -> None:
        self.moodle_dir = moodle_dir
        self.php = shlex.split(php) or ["php"]  # a command line ("php8.3 -d memory_limit=1G"), never a shell
        self.run_as = run_as
        self.script = script
        self.timeout = timeout
        self.seconds_per_user = seconds_per_user
        self.seconds_per_course = seconds_per_course
        self.chunk_size = chunk_size

    @property
    def argv(self) -> list[str]:
        command = [*self.php, str(self.script), f"--moodle={self.moodle_dir}"]
        return ["sudo", "-n", "-u", self.run_as, "--", *command] if self.run_as else command

    # -- commands ----------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """The site's release, version, database (dbhost, dbport, dbname, dbprefix), wwwroot, PHP version and
        installed activity modules."""
        answer = await self._call({"command": "info"})
        if answer.get("protocol") != PROTOCOL:
            raise BridgeError(
                f"bridge info: {self.script} speaks protocol {answer.get('protocol')!r}, this toolsync {PROTOCOL}: "
                "reinstall toolsync so that the script and the program match"
            )
        return answer

    async def verify_database(self, database: DatabaseTarget) -> dict[str, Any]:
        """`info`, after checking that the site's config.php names the database toolsync writes to."""
        if database.driver == "sqlite":
            raise BridgeError("the bridge serves a real Moodle site, not the SQLite sandbox: empty [bridge] moodle_dir")
        info = await self.info()
        pgsql = str(info.get("dbtype")) == "pgsql"
        if "dbtype" in info and pgsql != (database.driver == "postgresql"):
            raise BridgeError(
                f"the bridge's site {self.moodle_dir} runs on {info.get('dbtype')}, but toolsync's [database] driver "
                f"is {database.driver!r}: fix [bridge] moodle_dir or [database] driver"
            )
        theirs = (str(info.get("dbname")), str(info.get("dbprefix")))
        if theirs != (database.name, database.prefix):
            raise BridgeError(
                f"the bridge's site {self.moodle_dir} uses database {theirs[0]!r} with prefix {theirs[1]!r} "
                f"(on {info.get('dbhost')}:{info.get('dbport') or 'default port'}), but toolsync writes to "
                f"{database.name!r} with prefix {database.prefix!r}: fix [bridge] moodle_dir or [database]"
            )
        return info

    async def delete_users(self, ids: Sequence[int], on_result: OnResult | None = None) -> dict[int, str | None]:
        """Delete users with Moodle's delete_user(): id -> None when deleted, else why not.

        Site administrators, the guest account, deleted and unknown users are refused per user. A call that
        fails as a whole raises BridgeError, whose `done` holds the users answered before the failure.
        """
        wanted = _ids(ids, "user")
        outcomes: dict[int, str | None] = {}
        for start in range(0, len(wanted), self.chunk_size):
            chunk = wanted[start : start + self.chunk_size]
            request = {"command": "delete_users", "userids": chunk}
            try:
                lines = await self._items(request, len(chunk), self.seconds_per_user, on_result, "users", "deleted")
            except BridgeError as exc:
                raise BridgeError(str(exc), {**outcomes, **exc.done}, exc.items) from None
            outcomes.update(_outcomes(lines, chunk, "user"))
        return outcomes

    async def delete_courses(
        self, course_ids: Sequence[int], on_result: OnResult | None = None
    ) -> dict[int, str | None]:
        """Delete courses with Moodle's delete_course(), then one fix_course_sortorder(): id -> None when deleted,
        else why not (the front page and unknown courses are refused per course)."""
        wanted = _ids(course_ids, "course")
        if not wanted:
            return {}
        request = {"command": "delete_courses", "courseids": wanted}
        lines = await self._items(request, len(wanted), self.seconds_per_course, on_result, "courses", "deleted")
        return _outcomes(lines, wanted, "course")

    async def reset_courses(
        self, resets: Sequence[tuple[int, Mapping[str, Any]]], on_result: OnResult | None = None
    ) -> dict[int, CourseReset]:
        """Reset courses with Moodle's reset_course_userdata(): id -> its CourseReset.

        Options are reset_course_userdata()'s own (`reset_events`: 1, `unenrol_users`: [role ids, 0 = users with no
        role], ...), plus `modules`: activity modules whose reset form defaults apply first. Dates are not shifted.
        A course named twice is a ValueError.
        """
        wanted = _ids([course for course, _ in resets], "course", unique=True)
        if not wanted:
            return {}
        request = {"command": "reset_courses", "resets": [{"course": c, "options": dict(o)} for c, o in resets]}
        lines = await self._items(request, len(wanted), self.seconds_per_course, on_result, "courses", "reset")
        answered = {int(line["item"]): CourseReset.from_line(line) for line in lines}
        missing = CourseReset("the bridge gave no outcome for this course", ())
        return {course: answered.get(course, missing) for course in wanted}

    async def restore_templates(
        self, items: Sequence[TemplateItem], on_result: OnResult | None = None
    ) -> dict[int, str | None]:
        """Restore template content into existing courses, without users and keeping each course's own settings:
        course id -> None when restored, else why not.

        A template is a course shortname (its content is backed up afresh, once per call, as Moodle's course import
        does) or a .mbz path, absolute or relative to the site directory (extracted once per call). `add` adds to
        the course's content, `replace` replaces it (keeping its enrolments, roles, groups and groupings). A course
        named twice with different templates or modes is a ValueError.
        """
        distinct = list(dict.fromkeys(items))
        wanted = _ids([item.course_id for item in distinct], "course", unique=True)
        bad = [item.mode for item in distinct if item.mode not in ("add", "replace")]
        if bad:
            raise ValueError(f"template modes are add or replace, not {bad[:5]}")
        if not wanted:
            return {}
        request = {
            "command": "restore_templates",
            "items": [{"course": i.course_id, "template": i.template, "mode": i.mode} for i in distinct],
        }
        lines = await self._items(request, len(wanted), self.seconds_per_course, on_result, "courses", "restored into")
        return _outcomes(lines, wanted, "course")

    async def delete_categories(
        self, category_ids: Sequence[int], on_result: OnResult | None = None
    ) -> dict[int, str | None]:
        """Delete empty categories, in the order given (leaves first), with Moodle's delete_full(): id -> None when
        deleted, else why not (a category holding courses or subcategories is refused)."""
        wanted = _ids(category_ids, "category")
        if not wanted:
            return {}
        request = {"command": "delete_categories", "categoryids": wanted}
        lines = await self._items(request, len(wanted), self.seconds_per_course, on_result, "categories", "deleted")
        return _outcomes(lines, wanted, "category")

    async def purge(
        self,
        events: Sequence[str] = (),
        groupdata_courses: Sequence[int] = (),
        user_group_groupings_users: Sequence[int] = (),
        coursecontacts_courses: Sequence[int] = (),
    ) -> None:
        """Purge MUC caches by event, and delete groupdata, user_group_groupings and coursecontacts keys."""
        request: dict[str, Any] = {
            "command": "purge",
            "events": list(dict.fromkeys(events)),
            "groupdata_courses": list(dict.fromkeys(groupdata_courses)),
            "user_group_groupings_users": list(dict.fromkeys(user_group_groupings_users)),
            "coursecontacts_courses": list(dict.fromkeys(coursecontacts_courses)),
        }
        keys = sum(len(value) for value in request.values() if isinstance(value, list))
        if keys:  # nothing stale, no PHP
            await self._call(request, self.timeout + keys / 1000)

    async def enrol_sync(self, cohort_courses: Sequence[int] = (), meta_courses: Sequence[int] = ()) -> dict[str, str]:
        """Run Moodle's cohort and meta enrolment sync for these courses: plugin -> "synced" or "disabled"."""
        request = {
            "command": "enrol_sync",
            "cohort_courses": sorted(set(cohort_courses)),
            "meta_courses": sorted(set(meta_courses)),
        }
        courses = len(request["cohort_courses"]) + len(request["meta_courses"])
        if not courses:
            return {}
        answer = await self._call(request, self.timeout + courses * SECONDS_PER_SYNCED_COURSE)
        plugins = answer.get("plugins")
        return {str(k): str(v) for k, v in plugins.items()} if isinstance(plugins, dict) else {}

    async def welcome_messages(
        self, enrolments: Sequence[tuple[int, int]], roles: Sequence[WelcomeRole] = ()
    ) -> list[Welcome]:
        """Send the welcome message of each new enrolment (enrolid, userid), in the order they were made, as Moodle's
        enrol_user() does through its after_user_enrolled hook (enrol_manual and enrol_self send one when the method's
        option says so): one Welcome per enrolment, in order. A call that fails as a whole raises BridgeError, whose
        `items` hold the lines answered before the failure."""
        if not enrolments:
            return []
        request = {
            "command": "welcome_messages",
            "enrolments": [
                {"item": item, "enrolid": enrolid, "userid": userid}
                for item, (enrolid, userid) in enumerate(enrolments, start=1)
            ],
            "roles": [
                {"courseid": r.courseid, "userid": r.userid, "roleid": r.roleid, "from": r.first_seen} for r in roles
            ],
        }
        lines = await self._items(request, len(enrolments), SECONDS_PER_MESSAGE, None, "messages", "sent")
        return welcomes(lines, len(enrolments))

    async def trigger_events(self, actor: int, events: Sequence[Mapping[str, Any]]) -> dict[int, str | None]:
        """Trigger Moodle's events, acting as user `actor`: each `create()`d with its eventname, objectid, contextid,
        courseid, relateduserid and other, then `trigger()`ed, so that observers run and the log stores write. Item
        number (1 = the first event) -> None when triggered, else why not."""
        if not events:
            return {}
        keys = ("eventname", "objectid", "contextid", "courseid", "relateduserid", "other")
        request = {
            "command": "trigger_events",
            "actor": actor,
            "events": [
                {"item": item, **{key: event[key] for key in keys}} for item, event in enumerate(events, start=1)
            ],
        }
        lines = await self._items(request, len(events), SECONDS_PER_EVENT, None, "events", "triggered")
        return _outcomes(lines, list(range(1, len(events) + 1)), "event")

    # -- one PHP process ---------------------------------------------------------------------

    async def _call(self, request: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
        """A command's final answer."""
        reply = await exchange(self._launch(str(request["command"])), request, seconds or self.timeout)
        assert reply.answer is not None  # exchange() raises when there is none
        return reply.answer

    async def _items(
        self,
        request: dict[str, Any],
        count: int,
        per_item: float,
        on_result: OnResult | None,
        noun: str,
        verb: str,
    ) -> list[dict[str, Any]]:
        """An item command's item lines; the time allowed grows with the items."""
        reply = await exchange(
            self._launch(str(request["command"])),
            request,
            self.timeout + per_item * count,
            on_result,
            unfinished=f"some of these {noun} may have been {verb}",
        )
        return reply.items

    def _launch(self, command: str) -> Launch:
        self._check_paths(command)
        return Launch(self.argv, self.script, self.run_as)

    def _check_paths(self, command: str) -> None:
        """Fail early and plainly on a wrong moodle_dir. With run_as, PHP (as that user) checks it instead."""
        if not self.script.is_file():
            raise BridgeError(f"bridge {command}: the bridge script {self.script} is missing: reinstall toolsync")
        if self.run_as:
            return
        if not self.moodle_dir.is_dir():
            raise BridgeError(f"bridge {command}: [bridge] moodle_dir {self.moodle_dir} is not a directory")
        if not (self.moodle_dir / "config.php").is_file():
            kind = "a Moodle code tree without config.php (not installed?)"
            if not (self.moodle_dir / "lib" / "setup.php").is_file():
                kind = "not a Moodle site directory"
            raise BridgeError(
                f"bridge {command}: no config.php in [bridge] moodle_dir {self.moodle_dir}: it is {kind}; "
                "moodle_dir must be the site directory holding config.php"
            )


def _ids(ids: Sequence[int], what: str, *, unique: bool = False) -> list[int]:
    """Ids in order, each once; ValueError for one that is not a positive integer (or, with `unique`, repeats)."""
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or i <= 0]
    if bad:
        raise ValueError(f"{what} ids must be positive integers, not {bad[:5]}")
    wanted = list(dict.fromkeys(ids))
    if unique and len(wanted) != len(ids):
        raise ValueError(f"each {what} may be named once per call: {len(ids) - len(wanted)} named again")
    return wanted


def _outcomes(lines: list[dict[str, Any]], wanted: list[int], what: str) -> dict[int, str | None]:
    """Id -> None when done, else why not, for every id asked about."""
    answered = {int(line["item"]): item_error(line) for line in lines}
    return {i: answered.get(i, f"the bridge gave no outcome for this {what}") for i in wanted}


def welcomes(lines: Sequence[Mapping[str, Any]], count: int) -> list[Welcome]:
    """The Welcome of items 1..count from a welcome_messages call's item lines."""
    answered = {int(line["item"]): line for line in lines}
    result = []
    for item in range(1, count + 1):
        line = answered.get(item)
        if line is None:
            result.append(Welcome(False, "the bridge gave no outcome for this message"))
        elif line.get("ok") is not True:
            result.append(Welcome(False, item_error(dict(line))))
        else:
            result.append(Welcome(line.get("sent") is True, None if line.get("sent") else str(line.get("why"))))
    return result
