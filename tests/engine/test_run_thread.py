"""The interface's runs: the engine on a loop of its own in another thread, against the real dump on MariaDB."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import pytest

from tests.support.ui import wait_until
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import Progress
from toolsync_tui.engine.run.thread import run_in_thread


def courses_file(config: Config, lines: int) -> Path:
    store = DataStore(config.data_dir)
    store.ensure()
    path = store.inbox / "courses.csv"
    path.write_text("".join(f"C{i:06d}\n" for i in range(lines)))
    return path


async def test_the_engine_runs_in_another_thread_with_the_collector_tuned(
    dump_site: tuple[Config, MoodleGateway],
) -> None:
    config, _ = dump_site
    source = courses_file(config, 12_000)
    seen: list[tuple[int, int, int]] = []  # (thread, objects frozen, youngest generation's threshold) at each report

    def on_progress(progress: Progress) -> None:
        seen.append((threading.get_ident(), gc.get_freeze_count(), gc.get_threshold()[0]))

    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    result = await run_in_thread(config, "check", source, on_progress=on_progress)
    assert result.counts == {"failed": 12_000}  # no such courses on a fresh site
    assert result.report_path is not None
    assert result.report_path.is_file()
    assert seen  # a report after each batch (or two, where one was written while the next was read)
    assert threading.get_ident() not in {thread for thread, _, _ in seen}
    assert all(frozen > 10_000 and young == 10_000 for _, frozen, young in seen)  # the test's objects left alone
    assert gc.get_freeze_count() == 0  # and collected again after the run, as before it
    assert gc.get_threshold() == thresholds


async def test_cancelling_the_caller_stops_the_thread_after_its_batch(dump_site: tuple[Config, MoodleGateway]) -> None:
    config, _ = dump_site
    source = courses_file(config, 300_000)
    cancel = threading.Event()
    started = threading.Event()
    waiting = asyncio.create_task(
        run_in_thread(config, "check", source, on_progress=lambda _: started.set(), cancel=cancel)
    )
    assert await asyncio.to_thread(started.wait, 60)
    waiting.cancel()  # e.g. the interface closing while the run goes on
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cancel.is_set()
    log = RunLog(config.data_dir)
    await wait_until(lambda: bool(log.recent()))  # the thread ends by itself and logs its run
    record = log.recent()[-1]
    assert record.cancelled
    assert 0 < record.counts.get("skipped", 0) < 300_000
    assert sum(record.counts.values()) == 300_000
    assert source.is_file()  # a cancelled run is not archived
