"""Shared by the schedule tests: a crontab command of our own on a file, the local zone pinned, operations scheduled."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from toolsync_tui.config import Config

# Behaves like crontab(1) for one user: -l prints the crontab or says there is none, - replaces it from stdin.
FAKE_CRONTAB = """#!/bin/sh
table="$(dirname "$0")/crontab.txt"
case "$1" in
  -l) if [ -f "$table" ]; then cat "$table"; else echo "no crontab for test" >&2; exit 1; fi ;;
  -) cat > "$table" ;;
  *) echo "usage: crontab -l | -" >&2; exit 2 ;;
esac
"""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


NOW = datetime(2026, 1, 5, 9, 5)  # a Monday; 10:05 in Paris, the local zone being UTC


@contextmanager
def local_zone(name: str) -> Iterator[None]:
    """The system zone, which the naive clock is read in, pinned (and given back afterwards)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def fake_crontab(config: Config, folder: Path) -> Path:
    """Point cron.crontab_command at the stand-in program; returns the file holding its crontab."""
    program = executable(folder / "crontab", FAKE_CRONTAB)
    config.set("cron.crontab_command", shlex.quote(str(program)))
    return folder / "crontab.txt"


def scheduled(config: Config) -> None:
    """Schedules in Paris time: two enabled, one paused, the rest off."""
    config.set("cron.timezone", "Europe/Paris")
    for name, expression in SCHEDULES.items():
        config.set(f"operations.{name}.schedule", expression)
    config.set("operations.enrols.schedule_enabled", False)
    config.save()


SCHEDULES = {"check": "0 2 * * *", "users": "*/15 * * * *", "enrols": "0 */6 * * *"}
