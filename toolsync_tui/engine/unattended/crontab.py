"""The one crontab line that runs `toolsync cron`: shown, installed and removed without touching any other line.

The managed line is the line after MARKER. A marker whose next line is not a toolsync call (the administrator deleted
the line by hand) manages nothing: it is dropped on the next install or remove, and the line after it is kept.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir import privacy

MARKER: Final = "# toolsync: the next line is managed by `toolsync crontab` (install, remove, show)"
CALL: Final = "-m toolsync_tui "  # what a managed line contains, whatever the interpreter's path
TIMEOUT: Final = 30.0  # seconds for the crontab command


class CrontabProblem(Exception):
    """The crontab cannot be read or written, worded for the administrator."""


def cron_line(config: Config, every_minutes: int = 5) -> str:
    """The crontab line running `toolsync cron` every few minutes, its output to syslog (or <data_dir>/cron.log)."""
    if not 1 <= every_minutes <= 60:
        raise CrontabProblem(f"the interval must be from 1 to 60 minutes, not {every_minutes}")
    command = shlex.join([sys.executable, "-m", "toolsync_tui", "--config", str(config.path.resolve()), "cron"])
    logger = shutil.which("logger")
    output = f"2>&1 | {shlex.quote(logger)} -t toolsync" if logger else f">> {shlex.quote(str(_log(config)))} 2>&1"
    # The shell creates the log before toolsync runs, under cron's umask (022: readable by all): the data directory's.
    umask = "umask 027;" if config.settings.files.group_readable else "umask 077;"
    # cron turns an unescaped % into a newline, even inside the shell's quotes
    return f"{_schedule(every_minutes)} {umask} {command} {output}".replace("%", r"\%")


def _log(config: Config) -> Path:
    """Where the output goes when there is no logger to hand it to syslog."""
    return config.data_dir / "cron.log"


def _schedule(every_minutes: int) -> str:
    minutes = {1: "*", 60: "0"}.get(every_minutes, f"*/{every_minutes}")
    return f"{minutes} * * * *"


def show(config: Config) -> str | None:
    """The installed line, or None."""
    lines = _read(config)
    for index in _markers(lines):
        if _managed(lines, index):
            return lines[index + 1]
    return None


def install(config: Config, every_minutes: int = 5) -> str:
    """Add the managed line, or replace it where it is; every other line stays as it was. Returns the line."""
    line = cron_line(config, every_minutes)
    lines = _read(config)
    dropped = _managed_indexes(lines)
    at = min(dropped, default=len(lines))  # where the first marker was, else the end
    rest = [kept for index, kept in enumerate(lines[at:], at) if index not in dropped]
    # without logger the line appends to a log file, which the shell opens before toolsync can make its folder
    if shutil.which("logger") is None:  # with the data directory's mode, not the umask's
        privacy.make_folder(_log(config).parent, config.settings.files.group_readable)
    _write(config, [*lines[:at], MARKER, line, *rest])
    return line


def remove(config: Config) -> bool:
    """Remove the managed line and its marker; False when there was none (an orphaned marker goes all the same)."""
    lines = _read(config)
    found = any(_managed(lines, index) for index in _markers(lines))
    kept = _without_managed(lines)
    if kept != lines:
        _write(config, kept)
    return found


def _markers(lines: list[str]) -> list[int]:
    return [index for index, line in enumerate(lines) if line.strip() == MARKER]


def _managed(lines: list[str], marker: int) -> bool:
    return marker + 1 < len(lines) and CALL in lines[marker + 1] and not lines[marker + 1].lstrip().startswith("#")


def _managed_indexes(lines: list[str]) -> set[int]:
    """The markers and the lines they manage."""
    indexes: set[int] = set()
    for index in _markers(lines):
        indexes.add(index)
        if _managed(lines, index):
            indexes.add(index + 1)
    return indexes


def _without_managed(lines: list[str]) -> list[str]:
    dropped = _managed_indexes(lines)
    return [line for index, line in enumerate(lines) if index not in dropped]


# --- the crontab command ------------------------------------------------------------------------------------------


def _command(config: Config) -> list[str]:
    setting = config.settings.cron.crontab_command
    try:
        argv = shlex.split(setting)
    except ValueError as exc:
        raise CrontabProblem(f"cron.crontab_command cannot be read ({exc}): {setting!r}") from None
    if not argv:
        raise CrontabProblem("cron.crontab_command is empty: set it to the crontab program, usually crontab")
    return argv


def _run(config: Config, option: str, content: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*_command(config), option]
    shown = shlex.join(argv)
    try:
        return subprocess.run(argv, input=content, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise CrontabProblem(
            f"the crontab command {argv[0]} was not found: install cron, or set cron.crontab_command"
        ) from None
    except subprocess.TimeoutExpired:
        raise CrontabProblem(f"{shown} did not finish within {TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise CrontabProblem(f"{shown} could not be started: {exc.strerror or exc}") from None


def _failure(done: subprocess.CompletedProcess[str]) -> CrontabProblem:
    said = done.stderr.strip() or done.stdout.strip() or "no message"
    return CrontabProblem(f"{shlex.join(done.args)} failed with exit code {done.returncode}: {said}")


def _read(config: Config) -> list[str]:
    done = _run(config, "-l")
    if done.returncode == 1 and "no crontab for" in done.stderr.lower():  # a user without a crontab yet
        return []
    if done.returncode != 0:
        raise _failure(done)
    return done.stdout.splitlines()


def _write(config: Config, lines: list[str]) -> None:
    # cron ignores a last line without its newline
    done = _run(config, "-", "".join(f"{line}\n" for line in lines))
    if done.returncode != 0:
        raise _failure(done)
