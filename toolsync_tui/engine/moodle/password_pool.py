"""The processes that hash passwords, and the hashes a run may find made before it asked for them.

Importing this is light (no asyncio, no polars; multiprocessing only once a pool starts): a headless run starts the
workers and hands them its file's passwords before its own imports are done (headstart.py), so that hashing fills
the core the start-up leaves idle.
"""

from __future__ import annotations

import io
import os
import sys
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Final

from toolsync_tui.engine.moodle import password_worker
from toolsync_tui.engine.moodle.lifeline import Lifeline
from toolsync_tui.engine.moodle.password_worker import PasswordRejected

if TYPE_CHECKING:
    from concurrent.futures import Future
    from multiprocessing.context import BaseContext

ChunkResult = tuple[int, list[str | PasswordRejected]]  # the worker's pid, a result per password

# ~40 ms of work per task at 5000 rounds: cheap IPC, smooth progress, and the workers finish a batch together (the
# last task of one is not a long wait for the others).
DEFAULT_CHUNK_SIZE: Final = 16


def usable_cpus() -> int:
    """CPUs this process may run on: os.cpu_count(), narrowed by affinity masks / cpusets where the OS has them."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _start_resource_tracker() -> None:
    """multiprocessing's resource tracker (the pool's locks register with it), started without Textual's stderr.
    The tracker hands sys.stderr's descriptor to the process it spawns; under the interface sys.stderr is Textual's
    capture, whose descriptor is -1, and the spawn refuses it ("bad value(s) in fds_to_keep"): a run with a password
    column failed there, unless something had started the tracker before. Given a stream without a descriptor, the
    tracker goes without one (its warnings would land on the interface's screen)."""
    from multiprocessing import resource_tracker

    try:
        if sys.stderr is None or sys.stderr.fileno() >= 0:
            return  # a real descriptor, or none at all: the tracker copes
    except (OSError, ValueError):
        return
    captured, sys.stderr = sys.stderr, io.StringIO()
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = captured


def _pool_context() -> BaseContext:
    # Not fork: the parent runs Textual's threads and an event loop, and forking a threaded process can copy a lock
    # some other thread holds (Python 3.12+ warns about exactly this). forkserver forks workers from a clean,
    # single-threaded server instead; spawn where forkserver does not exist.
    import multiprocessing

    _start_resource_tracker()
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The worker's module and libxcrypt imported once, in the server, before it forks: each worker starts with them
    # (when the server is already running, for an earlier pool, its preloads stay as they were: workers import on use).
    context.set_forkserver_preload(["crypt_r", password_worker.__name__])
    return context


class WorkerPool:
    """Worker processes hashing with one run's rounds and pepper, which die with the run (lifeline.py)."""

    def __init__(self, rounds: int, pepper: str, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor  # on use: it imports multiprocessing

        context = _pool_context()
        self.rounds = rounds
        self.workers = workers
        self._pepper = pepper  # kept to tell whether a later hasher may adopt this pool; never shown
        self._lifeline = Lifeline(context)
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=password_worker.init_worker,
            initargs=(rounds, pepper, self._lifeline.reader),
        )

    def hashes_with(self, rounds: int, pepper: str) -> bool:
        return self.rounds == rounds and self._pepper == pepper

    def close(self) -> None:
        """Stop the workers once they end the chunk they are on (~40 ms); queued work that has not started is dropped.
        Waited for: a worker killed mid-chunk (by its lifeline) breaks the pool, whose thread then fails on the
        futures cancelled meanwhile, and prints that at exit."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._lifeline.close()


class HashesAhead:
    """Fresh hashes of passwords a run is expected to need, made before it asks (headstart.py).

    Each hash has its own salt and is handed out once: to a password with no stored hash to check against, equal
    text for equal text. When the run first asks for hashes, the work ahead that nobody took and that has not
    started is dropped, so the run's own work never waits behind guesses."""

    def __init__(self, pool: WorkerPool, passwords: list[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.pool = pool
        self._chunks: list[Future[ChunkResult]] = []
        self._taken: set[int] = set()  # indexes into _chunks
        self._waiting: defaultdict[str, deque[tuple[int, int]]] = defaultdict(deque)  # text -> (chunk, position)
        for start in range(0, len(passwords), chunk_size):
            chunk = passwords[start : start + chunk_size]
            self._chunks.append(pool.executor.submit(password_worker.hash_chunk, chunk, [None] * len(chunk)))
            for position, password in enumerate(chunk):
                self._waiting[password].append((len(self._chunks) - 1, position))

    def take(self, password: str) -> tuple[Future[ChunkResult], int] | None:
        """A fresh hash of `password` made ahead, as (its chunk's future, its position there); None if there is none."""
        waiting = self._waiting.get(password)
        while waiting:
            index, position = waiting.popleft()
            if not self._chunks[index].cancelled():
                self._taken.add(index)
                return self._chunks[index], position
        return None

    def drop_untaken(self) -> None:
        """Cancel the chunks nobody took that have not started (those running finish, and may still be taken)."""
        for index, chunk in enumerate(self._chunks):
            if index not in self._taken:
                chunk.cancel()

    def discard(self) -> None:
        """Drop all of it and stop the workers."""
        for chunk in self._chunks:
            chunk.cancel()
        self.pool.close()


_ahead: HashesAhead | None = None  # made by the head start of this process, until a hasher takes it


def hash_ahead(rounds: int, pepper: str, passwords: list[str], workers: int | None = None) -> None:
    """Start the workers and hash `passwords` now, for the run this process is about to make (headstart.py)."""
    global _ahead
    discard_ahead()
    pool = WorkerPool(rounds, pepper, workers or usable_cpus())
    try:
        _ahead = HashesAhead(pool, passwords)
    except BaseException:
        pool.close()
        raise


def take_ahead(rounds: int, pepper: str) -> HashesAhead | None:
    """The hashes made ahead, for a hasher with these rounds and pepper; made with others, they are discarded."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is not None and not ahead.pool.hashes_with(rounds, pepper):
        ahead.discard()
        return None
    return ahead


def discard_ahead() -> None:
    """Stop what a head start began and no run took (a run that stopped before it hashed)."""
    global _ahead
    if _ahead is not None:
        _ahead.discard()
        _ahead = None
