"""`toolsync cron` told to stop (SIGTERM from a `timeout` around it): the operations not yet started are not
started and stay due for the next call (issue 20, item 8). The run it stops is test_interrupted_runs.py's."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from toolsync_tui.config import Config
from toolsync_tui.engine.run.interrupt import INTERRUPTION, Interruption, Stop
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.unattended.cron import run_cron

PARIS = ZoneInfo("Europe/Paris")


async def cron_lines(config: Config, when: str) -> list[str]:
    lines: list[str] = []
    await run_cron(config, now=datetime.fromisoformat(when).replace(tzinfo=PARIS), emit=lines.append)
    return lines


async def test_operations_not_started_while_stopping_stay_due(sandbox: Config) -> None:
    sandbox.set("cron.timezone", "Europe/Paris")
    sandbox.set("operations.users.schedule", "0 2 * * *")
    sandbox.set("operations.courses.schedule", "0 2 * * *")
    sandbox.save()
    assert await cron_lines(sandbox, "2026-11-25 01:00") == []  # first seen: nothing owed yet
    stopping = Interruption()
    stopping.interrupt(Stop("SIGTERM", 143))
    token = INTERRUPTION.set(stopping)
    try:
        lines = await cron_lines(sandbox, "2026-11-25 02:05")
    finally:
        INTERRUPTION.reset(token)

    assert [line.split(":")[0] for line in lines] == ["courses", "users"]
    assert all("not started, toolsync is stopping (SIGTERM); it stays due" in line for line in lines), lines
    assert RunLog(sandbox.data_dir).recent() == []  # nothing was tried
    assert [line.split(":")[0] for line in await cron_lines(sandbox, "2026-11-25 02:10")] == ["courses", "users"]
