"""A run on an event loop of its own, in a thread of its own: the interface's loop only waits for it.

The engine's own Python work (planning a batch, building its INSERTs, writing the report) then never holds the
interface's loop: keys and repaints are served between the engine's GIL slices instead of after a whole batch.
Garbage collections still stop every thread, so while runs go on the collector is tuned for them (below).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import ProgressCallback, RunResult, run_operation


async def run_in_thread(
    config: Config,
    name: str,
    source: Path,
    *,
    dry_run: bool = False,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """run_operation with a gateway of its own, on a new event loop in a worker thread; raises what it raises.

    `on_progress` is called in that thread: it must only store what it is given. Cancelling the caller (the interface
    closing) does not stop the thread by itself: it sets `cancel`, and the run ends after its batch in flight, its
    report written."""
    stop = cancel or threading.Event()

    async def run(gateway: MoodleGateway) -> RunResult:
        return await run_operation(
            config, gateway, name, source, dry_run=dry_run, force=force, on_progress=on_progress, cancel=stop
        )

    return await job_in_thread(config, run, stop)


T = TypeVar("T")


async def job_in_thread(config: Config, job: Callable[[MoodleGateway], Awaitable[T]], cancel: threading.Event) -> T:
    """`job` (a run, a held run approved, an undo) with a gateway of its own (created on the thread's loop: its
    connections belong to it), on a new event loop in a worker thread; cancelling the caller sets `cancel`, which the
    job is given to stop after its batch."""

    async def run() -> T:
        gateway = open_gateway(config)
        try:
            return await job(gateway)
        finally:
            await gateway.close()

    try:
        with _collector_tuned_for_runs():
            return await asyncio.to_thread(asyncio.run, run())
    except asyncio.CancelledError:
        cancel.set()
        raise


_runs_going = 0  # runs started by the interface's loop and not ended (a run and a dry run may overlap)
_thresholds_before = gc.get_threshold()


@contextmanager
def _collector_tuned_for_runs() -> Iterator[None]:
    """While runs go on, the objects that existed before them (the interface's, ~150,000) are frozen out of the
    collector's walks (gc.freeze), and the youngest generation is collected every 10,000 allocations instead of 700.

    The engine allocates fast; with the defaults its batch-long objects were promoted to the oldest generation by the
    hundred thousand, and a full collection walking everything stopped both threads for 70-300 ms every second or
    so (benchmarks/README.md). Frozen garbage is collected after the runs, when the defaults are back."""
    global _runs_going, _thresholds_before
    if not _runs_going:
        _thresholds_before = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(10_000, *_thresholds_before[1:])
    _runs_going += 1
    try:
        yield
    finally:
        _runs_going -= 1
        if not _runs_going:
            gc.unfreeze()
            gc.set_threshold(*_thresholds_before)
