"""Icons made on every core: a pool of worker processes, started on first use.

Processes rather than threads: decoding holds the GIL in parts of Pillow, and make_icons() sets a warnings filter,
which is process-wide. The pool starts its workers fresh ("spawn"), not by forking a process that runs polars'
and the database driver's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker

from toolsync_tui.engine.moodle.lifeline import Lifeline, hold
from toolsync_tui.engine.pictures.images import Icons, ImageProblem, make_icons

WORKER_DIED = "the picture could not be processed: a worker process died (out of memory?); run the tryback again"


class IconMaker:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        self._lifeline: Lifeline | None = None

    async def make(self, images: Sequence[bytes]) -> list[Icons | ImageProblem]:
        """The icons of each image, in order; the pictures of a batch are shared out among the workers."""
        if not images:
            return []
        if self._pool is None:
            _start_resource_tracker()
            context = multiprocessing.get_context("spawn")
            self._lifeline = Lifeline(context)  # the workers die with the run, kill -9 included (lifeline.py)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=hold, initargs=(self._lifeline.reader,)
            )
        loop = asyncio.get_running_loop()
        pool = self._pool
        made = await asyncio.gather(
            *(loop.run_in_executor(pool, make_icons, data) for data in images), return_exceptions=True
        )
        results: list[Icons | ImageProblem] = []
        for result in made:
            if isinstance(result, BrokenProcessPool):
                # Every picture the dead pool held fails; the next batch gets a new pool.
                self.close()
                results.append(ImageProblem(WORKER_DIED))
            elif isinstance(result, BaseException):
                raise result
            else:
                results.append(result)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None


def _start_resource_tracker() -> None:
    """The helper process multiprocessing starts with the first worker inherits sys.stderr's file descriptor; under
    the interface sys.stderr is Textual's capture, which has none: start it with the process's real stderr."""
    with contextlib.redirect_stderr(sys.__stderr__):
        resource_tracker.ensure_running()
