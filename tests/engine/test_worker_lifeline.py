"""Worker processes die with the process that started them, kill -9 included: the password hashers (forkserver: the
server and the resource tracker too) and the picture workers (spawn). Issue 20, item 9."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support.headless_runs import cleaned_up, descendants, still_running

HASHING = """
    import asyncio
    from toolsync_tui.engine.moodle.passwords import PasswordHasher

    async def main() -> None:
        hasher = PasswordHasher(workers=2)
        await hasher.start()
        print("busy", flush=True)
        await hasher.hash_many(["Secret-pass!"] * 1_000_000)

    if __name__ == "__main__":
        asyncio.run(main())
"""

PICTURES = """
    import asyncio
    from toolsync_tui.engine.pictures.workers import IconMaker

    async def main() -> None:
        maker = IconMaker(workers=2)
        await maker.make([b"not a picture"] * 4)
        print("busy", flush=True)
        await asyncio.sleep(600)

    if __name__ == "__main__":
        asyncio.run(main())
"""


@pytest.mark.parametrize("program", [HASHING, PICTURES], ids=["passwords", "pictures"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_process_that_started_them(program: str, sig: signal.Signals) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(program)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with cleaned_up(child) as processes:
        assert child.stdout is not None
        assert child.stdout.readline() == "busy\n", child.stderr.read() if child.stderr else ""
        processes.extend(descendants(child.pid))
        assert len(processes) >= 2, processes
        child.send_signal(sig)
        child.wait(timeout=30)
        assert still_running(processes, within=5) == []
