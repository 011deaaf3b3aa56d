"""`toolsync run` in a child process, run to its end or stopped by a signal at a chosen point (tests/faults).

The point is where the run has committed a share of the standard-log rows its clean run writes (every batch of the
users, enrolments and cohorts files logs its changes in its own transaction, so the count of log rows is how far the
committed work has got), then a delay on top, so that the signal lands anywhere: between batches, inside a
transaction, during a commit, while passwords are hashed. Both come from a seed, printed by the tests; the same seed
stops a run at about the same point again (the delay is wall-clock time, so not to the statement).

The child runs in a session of its own; whatever it leaves running (hashing workers) is killed with its process group
once it has ended, so that no test leaves processes behind.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RUN_TIMEOUT = 180.0  # seconds a run may take before the test fails (a few seconds are normal)
POLL = 0.01  # seconds between two looks at the run's progress


@dataclass(frozen=True)
class KillPoint:
    """Where to stop a run: once `share` of the clean run's log rows are committed, `delay` seconds later."""

    seed: int
    sent: signal.Signals
    share: float
    delay: float

    @classmethod
    def drawn(cls, seed: int, sig: signal.Signals) -> KillPoint:
        rng = random.Random(seed)
        return cls(seed, sig, share=rng.uniform(0.02, 0.8), delay=rng.uniform(0.0, 0.25))

    def describe(self) -> str:
        return f"seed {self.seed}: {self.sent.name} {self.delay:.3f} s after {self.share:.1%} of the log rows"


@dataclass(frozen=True)
class Ended:
    """A finished child: exit status (negative: the signal that ended it), output, time taken."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    left_running: bool = False  # processes of its group outlived it (then killed by the test)

    def describe(self) -> str:
        err = self.stderr.strip().splitlines()
        left = "; processes it started outlived it" if self.left_running else ""
        return f"exit {self.returncode} after {self.seconds:.1f} s{left}; stderr: {err[-3:] if err else 'none'}"


def toolsync(config: Path, operation: str, file: Path) -> list[str]:
    """The command line an administrator (or cron) types, run by this interpreter."""
    return [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", operation, str(file)]


def _environment() -> dict[str, str]:
    """This environment without the variables that would change what the run does (a database password, a pepper)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TOOLSYNC_")}


def _collect(child: subprocess.Popen[bytes], out: Path, err: Path, started: float) -> Ended:
    try:
        child.wait(timeout=RUN_TIMEOUT)
    finally:
        left_running = _end_group(child)
    return Ended(
        child.returncode,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
        time.monotonic() - started,
        left_running,
    )


def _end_group(child: subprocess.Popen[bytes]) -> bool:
    """Kill the child's process group (the child itself if it still runs, and whatever it started); whether any
    process of the group was still there."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
        found = True
    except ProcessLookupError:
        found = False
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=10)
    return found


def _start(command: list[str], workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(
            command,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=_environment(),
            start_new_session=True,
            # Python turns SIGINT into KeyboardInterrupt only when the signal is not ignored: a test worker may
            # ignore it, and the child would inherit that.
            preexec_fn=_default_interrupt,
        )
    return child, out, err


def _default_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_to_end(command: list[str], workdir: Path, name: str) -> Ended:
    started = time.monotonic()
    child, out, err = _start(command, workdir, name)
    return _collect(child, out, err, started)


def run_until(point: KillPoint, target: int, progress: Callable[[], int], command: list[str], workdir: Path) -> Ended:
    """Run `command` until `progress()` reaches `target`, wait the point's delay, send its signal, and wait for the
    child to end (a child that ended before the point is not signalled)."""
    started = time.monotonic()
    child, out, err = _start(command, workdir, f"stopped-{point.seed}")
    try:
        while child.poll() is None and progress() < target:
            if time.monotonic() - started > RUN_TIMEOUT:
                raise AssertionError(f"{point.describe()}: the run did not reach its stop point in time")
            time.sleep(POLL)
        time.sleep(point.delay)
        if child.poll() is None:  # a run that has ended (a point past its end) is returned as it ended
            child.send_signal(point.sent)
    except BaseException:
        _end_group(child)
        raise
    return _collect(child, out, err, started)
