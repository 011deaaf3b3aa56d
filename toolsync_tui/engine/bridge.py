"""The Moodle bridge: Moodle's own PHP, run on the site's server, for what toolsync must not do in SQL.

User delete cascades through every plugin's tables, MUC caches live in Moodle's cache stores (files, Redis, ...),
and cohort and meta enrolments are materialised by their plugins' own sync: these go through `toolsync_bridge.php`,
a small CLI script shipped in this package and run with the site's config.php.
One process per call: one JSON request on stdin, one JSON line on stdout.
Settings: `[bridge]` php, moodle_dir (empty: no bridge), run_as (run PHP through `sudo -n -u <user>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config, DatabaseSettings

BRIDGE_SCRIPT = Path(__file__).resolve().parent.parent / "bridge" / "toolsync_bridge.php"
PROTOCOL = 2  # must match TOOLSYNC_BRIDGE_PROTOCOL in the PHP script
CHUNK = 500  # users per delete_users call: a failed call then costs at most this many unknown outcomes
TIMEOUT = 120.0  # seconds per call, for bootstrap and purges...
SECONDS_PER_USER = 2.0  # ... plus this per user to delete: a generous ceiling (12 ms each measured on a test site)
SECONDS_PER_SYNCED_COURSE = 5.0  # ... or this per course to sync: a ceiling for courses of thousands of users
STDERR_TAIL = 1500  # characters of PHP's stderr quoted in errors

# Hints for failures whose raw message does not say what to change.
_HINTS = (
    (
        "Could not open input file",
        "the PHP process cannot read the bridge script: with run_as, that user needs read access to {script}",
    ),
    (
        "a password is required",
        "sudo asks for a password: allow this user to run PHP as {run_as} without one (sudoers NOPASSWD)",
    ),
    ("unknown user", "sudo does not know the user {run_as}: check [bridge] run_as"),
    (
        "Permission denied",
        "permission denied: PHP must run as the user owning the site's files and moodledata "
        "([bridge] run_as, e.g. www-data)",
    ),
)


class BridgeError(Exception):
    """The bridge could not do what was asked; the message names the command and quotes PHP's stderr.

    `done` holds the outcomes of delete_users chunks that finished before the failure (None = deleted).
    """

    def __init__(self, message: str, done: dict[int, str | None] | None = None) -> None:
        super().__init__(message)
        self.done: dict[int, str | None] = done or {}


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
        chunk_size: int = CHUNK,
    ) -> None:
        self.moodle_dir = moodle_dir
        self.php = shlex.split(php) or ["php"]  # a command line ("php8.3 -d memory_limit=1G"), never a shell
        self.run_as = run_as
        self.script = script
        self.timeout = timeout
        self.seconds_per_user = seconds_per_user
        self.chunk_size = chunk_size

    @classmethod
    def from_config(cls, config: Config) -> MoodleBridge | None:
        """The configured bridge, or None when `[bridge] moodle_dir` is empty (no bridge)."""
        settings = config.settings.bridge
        if not settings.moodle_dir.strip():
            return None
        return cls(config.resolve(settings.moodle_dir), php=settings.php, run_as=settings.run_as.strip())

    @property
    def argv(self) -> list[str]:
        command = [*self.php, str(self.script), f"--moodle={self.moodle_dir}"]
        return ["sudo", "-n", "-u", self.run_as, "--", *command] if self.run_as else command

    # -- commands ----------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """The site's release, version, database (dbhost, dbport, dbname, dbprefix), wwwroot and PHP version."""
        answer = await self._call({"command": "info"})
        if answer.get("protocol") != PROTOCOL:
            raise BridgeError(
                f"bridge info: {self.script} speaks protocol {answer.get('protocol')!r}, this toolsync {PROTOCOL}: "
                "reinstall toolsync so that the script and the program match"
            )
        return answer

    async def verify_database(self, database: DatabaseSettings) -> dict[str, Any]:
        """`info`, after checking that the site's config.php names the database toolsync writes to."""
        if database.driver != "mariadb":
            raise BridgeError("the bridge serves a real Moodle site, not the SQLite sandbox: empty [bridge] moodle_dir")
        info = await self.info()
        theirs = (str(info.get("dbname")), str(info.get("dbprefix")))
        if theirs != (database.name, database.prefix):
            raise BridgeError(
                f"the bridge's site {self.moodle_dir} uses database {theirs[0]!r} with prefix {theirs[1]!r} "
                f"(on {info.get('dbhost')}:{info.get('dbport') or 'default port'}), but toolsync writes to "
                f"{database.name!r} with prefix {database.prefix!r}: fix [bridge] moodle_dir or [database]"
            )
        return info

    async def delete_users(self, ids: Sequence[int]) -> dict[int, str | None]:
        """Delete users with Moodle's delete_user(): id -> None when deleted, else why not.

        Site administrators, the guest account, deleted and unknown users are refused per user. A call that
        fails as a whole raises BridgeError, whose `done` holds the outcomes of the chunks before it.
        """
        wanted = list(dict.fromkeys(ids))
        bad = [i for i in wanted if isinstance(i, bool) or not isinstance(i, int) or i <= 0]
        if bad:
            raise ValueError(f"user ids must be positive integers, not {bad[:5]}")
        outcomes: dict[int, str | None] = {}
        for start in range(0, len(wanted), self.chunk_size):
            chunk = wanted[start : start + self.chunk_size]
            timeout = self.timeout + self.seconds_per_user * len(chunk)
            try:
                answer = await self._call({"command": "delete_users", "userids": chunk}, timeout)
            except BridgeError as exc:
                raise BridgeError(str(exc), done=outcomes) from None
            results = answer.get("results")
            if not isinstance(results, list):
                raise BridgeError(f"bridge delete_users: the answer has no results list: {answer!r:.200}", outcomes)
            for result in results:
                if isinstance(result, dict) and isinstance(result.get("id"), int):
                    outcomes[result["id"]] = None if result.get("ok") is True else str(result.get("error") or "failed")
            for missing in (i for i in chunk if i not in outcomes):
                outcomes[missing] = "the bridge gave no outcome for this user"
        return outcomes

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

    # -- one PHP process ---------------------------------------------------------------------

    async def _call(self, request: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
        command = str(request["command"])
        self._check_paths(command)
        argv = self.argv
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            what = "sudo (needed for [bridge] run_as)" if self.run_as else "the PHP command ([bridge] php)"
            raise BridgeError(f"bridge {command}: {argv[0]!r} not found: install or set {what}") from None
        except OSError as exc:
            raise BridgeError(f"bridge {command}: cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        limit = self.timeout if seconds is None else seconds
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(json.dumps(request).encode()), limit)
        except TimeoutError:
            raise BridgeError(
                f"bridge {command}: no answer after {limit:g} s, PHP stopped"
                + (" (some of these users may have been deleted)" if command == "delete_users" else "")
            ) from None
        finally:
            await _stop(process)
        return self._answer(command, process.returncode, stdout, stderr)

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

    def _answer(self, command: str, returncode: int | None, stdout: bytes, stderr: bytes) -> dict[str, Any]:
        # The script writes one line; anything before it came from PHP code writing to STDOUT behind its back.
        out = stdout.decode("utf-8", errors="replace").strip()
        lines = out.splitlines()
        if not lines:
            raise BridgeError(
                f"bridge {command}: the PHP process exited with code {returncode} and no answer{self._note(stderr)}"
            )
        try:
            answer = json.loads(lines[-1])
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise BridgeError(
                f"bridge {command}: the answer is not the bridge's JSON (exit code {returncode}): "
                f"{lines[-1][:200]!r}{self._note(stderr, out)}"
            )
        if not answer["ok"]:
            raise BridgeError(f"bridge {command}: {answer.get('error') or 'failed'}{self._note(stderr)}")
        return answer

    def _note(self, stderr: bytes, stdout: str = "") -> str:
        """A hint when the output says what to fix (php prints some of its own errors on stdout), and stderr's tail."""
        text = stderr.decode("utf-8", errors="replace").strip()
        said = f"{stdout}\n{text}"
        hints = [hint.format(script=self.script, run_as=self.run_as) for needle, hint in _HINTS if needle in said]
        note = "".join(f"\n  hint: {hint}" for hint in hints[:1])
        if text:
            tail = text[-STDERR_TAIL:]
            note += "\n  PHP stderr: " + ("..." if len(text) > len(tail) else "") + tail.replace("\n", "\n    ")
        return note


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End a PHP process still running (timeout, or the caller was cancelled): TERM, which sudo passes on, then KILL."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def open_bridge(config: Config) -> MoodleBridge | None:
    """The configured bridge, checked to serve the database toolsync writes to; None when there is none."""
    bridge = MoodleBridge.from_config(config)
    if bridge is not None:
        await bridge.verify_database(config.settings.database)
    return bridge
