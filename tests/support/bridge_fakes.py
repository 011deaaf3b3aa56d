"""Stand-ins for PHP in bridge tests: a site directory that passes toolsync's checks, and `php` commands (Python
scripts) that answer what a test needs, logging the requests they were given."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.bridge.client import PROTOCOL


@pytest.fixture(name="fake_site")
def fake_site_fixture(tmp_path: Path) -> Path:
    """A site directory that passes toolsync's checks (its config.php is never read: php is a fake)."""
    site = tmp_path / "moodle"
    site.mkdir()
    (site / "config.php").write_text("<?php // never read: the php commands here are fakes\n")
    return site


def fake_php(tmp_path: Path, body: str, name: str = "php") -> str:
    """An executable standing in for php: a Python script given the bridge's argv and stdin."""
    script = tmp_path / name
    script.write_text(f"#!{sys.executable}\nimport json, sys, time\n{body}\n")
    script.chmod(0o755)
    return str(script)


def read_pid(path: str) -> int:
    return int(Path(path).read_text())


def requests_seen(php: str) -> list[dict[str, Any]]:
    log = Path(php + ".log")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# A Moodle site's bridge, faked: `info` names the test's database and some activity modules; delete_courses and
# reset_courses answer per course (the ids in `refuse` are refused; `die_after` items, then PHP dies; with
# `answer_error`, the final answer is that failure).
FAKE_MOODLE = """
request = json.load(sys.stdin)
with open(sys.argv[0] + ".log", "a") as log:
    log.write(json.dumps(request) + "\\n")
command = request["command"]
if command == "info":
    print(json.dumps({"ok": True, "protocol": %(protocol)d, "dbname": %(dbname)r, "dbprefix": "mdl_",
                      "modules": ["assign", "forum", "page", "quiz"]}))
    sys.exit(0)
ids = request.get("courseids") or [r["course"] for r in request.get("resets", [])]
for n, course in enumerate(ids):
    if n == %(die_after)d:
        print("PHP Fatal error: Allowed memory size exhausted", file=sys.stderr)
        sys.exit(255)
    if course in %(refuse)r:
        print(json.dumps({"item": course, "ok": False, "error": f"{command} refused course {course}"}))
    else:
        print(json.dumps({"item": course, "ok": True, "statuses": ["General: Events: OK", "Forums: All posts: OK"]}))
if %(answer_error)r:
    print(json.dumps({"ok": False, "error": %(answer_error)r}))
    sys.exit(1)
print(json.dumps({"ok": True, "done": True}))
"""


def fake_moodle(
    config: Config, tmp_path: Path, *, refuse: tuple[int, ...] = (), die_after: int = -1, answer_error: str = ""
) -> str:
    """Configure `config`'s bridge with a fake site and PHP answering as FAKE_MOODLE; returns the fake php's path."""
    site = tmp_path / "fake-moodle"
    site.mkdir(exist_ok=True)
    (site / "config.php").write_text("<?php // never read: php is a fake\n")
    body = FAKE_MOODLE % {
        "protocol": PROTOCOL,
        "dbname": config.settings.database.name,
        "refuse": list(refuse),
        "die_after": die_after,
        "answer_error": answer_error,
    }
    php = fake_php(tmp_path, body, name="fake-moodle-php")
    config.set("bridge.moodle_dir", str(site))
    config.set("bridge.php", php)
    return php
