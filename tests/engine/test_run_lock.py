"""One run at a time per data directory; a crashed run's lock is detected and cleared."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolsync_tui.engine.run.lock import LockBusy, RunLock


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from toolsync_tui.engine.run.lock import RunLock
        with RunLock(Path({str(tmp_path)!r}), "users"):
            print("locked", flush=True)
            sys.stdin.readline()
    """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(LockBusy, match=r"another run is in progress .*\(users, pid \d+"),
            RunLock(tmp_path, "check"),
        ):
            pass
    finally:
        holder.communicate("\n")
    with RunLock(tmp_path, "check") as lock:  # released by the holder: free again
        assert lock.stale_note is None


def test_a_lock_left_by_a_crashed_run_is_reported_and_cleared(tmp_path: Path) -> None:
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import os
        from pathlib import Path
        from toolsync_tui.engine.run.lock import RunLock
        RunLock(Path({str(tmp_path)!r}), "enrols").__enter__()
        os._exit(9)  # dies holding the lock, as a killed run would
    """),
        ],
        check=False,
    )
    assert crashed.returncode == 9
    with RunLock(tmp_path, "check") as lock:
        assert lock.stale_note is not None
        assert "the previous run did not finish (enrols, pid" in lock.stale_note
        assert json.loads((tmp_path / ".toolsync.lock").read_text())["operation"] == "check"
    assert (tmp_path / ".toolsync.lock").read_text() == ""
