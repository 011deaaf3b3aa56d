"""`toolsync run` in a child process, stopped from outside (SIGINT, SIGTERM, kill -9), and what it leaves running.

The child runs in a session of its own, so that a signal the test sends reaches it alone, as cron's or a terminal's
would reach toolsync; whatever it leaves behind is killed once the test has looked (no test leaves processes).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from toolsync_tui.engine.run.log import RunLog, RunRecord

RUN_TIMEOUT = 240.0  # seconds a run of the tests' files may take on a loaded machine


def users_file(path: Path, prefix: str, count: int) -> Path:
    """A users file creating `count` accounts, each with a password to hash (the slow part: batches take time)."""
    lines = ["username;firstname;lastname;email;password"]
    lines += [f"{prefix}{n:05d};F{n};L{n};{prefix}{n}@example.org;Secret-{n}-pass!" for n in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_run(
    config: Path, operation: str, file: Path, preexec: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", operation, str(file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec,
    )


def finish(run: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    out, err = run.communicate(timeout=timeout)
    return run.returncode, out, err


def wait_for(what: str, ready: Callable[[], bool], run: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> None:
    """Until `ready()`; fails when the run ends first (it never got there) or the time is up."""
    deadline = time.monotonic() + timeout
    while not ready():
        if run.poll() is not None:
            _, err = run.communicate()
            raise AssertionError(f"the run ended (exit {run.returncode}) before {what}; stderr: {err[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.02)


def progress(data_dir: Path) -> RunRecord | None:
    """The run's progress page (run/log.py): what it had committed at its last batch."""
    return RunLog(data_dir).progress()


def descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    return []


def still_running(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of `processes` still alive after `within` seconds (a zombie waiting for its reaper is not)."""
    deadline = time.monotonic() + within
    while True:
        alive = [process for process in processes if _alive(process)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def cleaned_up(run: subprocess.Popen[str]) -> Iterator[list[psutil.Process]]:
    """The run's processes, gathered while it runs (append to the list); all killed at the end, whatever happened."""
    seen: list[psutil.Process] = []
    try:
        yield seen
    finally:
        for process in [*seen, *descendants(run.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, 9)
        with contextlib.suppress(ValueError):  # already read by finish()
            run.communicate()
