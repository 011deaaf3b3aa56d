"""Plain passwords from a users file -> exactly what Moodle 4.5 stores in `mdl_user.password`.

Moodle's `hash_internal_user_password()` is SHA-512 crypt with an explicit `rounds=` and a 16-char salt:
`$6$rounds=5000$<salt>$<86 chars>` (118 chars) from the bulk upload tool, `rounds=10000` (119 chars) otherwise.
libxcrypt (through `crypt-r`) writes that text byte for byte, `rounds=5000$` included.

Hashing is CPU-bound and holds the GIL, so `PasswordHasher` runs it in a process pool, in chunks, off the event
loop. Its workers start as soon as a run knows it will hash (`begin`), while the file is still being read, and a
batch's passwords are handed to them as soon as they are known (`submit`), its other work going on meanwhile. A
headless run may have started them before its imports, on its file's passwords (headstart.py): the hasher then takes
those workers and the hashes they made ahead, where they fit (password_pool.py). The pool's imports
(multiprocessing, libxcrypt) are made on use: a run without a password column never pays for them.
Nothing here puts a password (or the pepper) into an exception, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from toolsync_tui.engine.moodle import password_worker
from toolsync_tui.engine.moodle.password_pool import (
    DEFAULT_CHUNK_SIZE,
    ChunkResult,
    HashesAhead,
    WorkerPool,
    take_ahead,
    usable_cpus,
)
from toolsync_tui.engine.moodle.password_worker import (
    FAST_ROUNDS,
    MAX_PASSWORD_BYTES,
    PasswordHashingError,
    PasswordRejected,
    hash_or_reject,
    make_salt,
    password_problem,
)
from toolsync_tui.engine.moodle.tasks import retrieved

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = [
    "CREATE_PASSWORD_PREFERENCE",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_ROUNDS",
    "FAST_ROUNDS",
    "MAX_PASSWORD_BYTES",
    "NOPASS",
    "NOT_CACHED",
    "TO_BE_GENERATED",
    "PasswordHasher",
    "PasswordHashingError",
    "PasswordRejected",
    "hash_password",
    "make_salt",
    "password_problem",
    "usable_cpus",
]

DEFAULT_ROUNDS: Final = 10000  # hash_internal_user_password($pw): interactive password changes

NOPASS: Final = "*NOPASS*"  # stored literally: an account nobody can log in to with a password
TO_BE_GENERATED: Final = "to be generated"  # empty password cell + create-passwords; cron mails a new one
CREATE_PASSWORD_PREFERENCE: Final = "create_password"  # user preference (value "1") that goes with TO_BE_GENERATED
NOT_CACHED: Final = "not cached"  # AUTH_PASSWORD_NOT_CACHED: auth plugins that keep no local password

# SHA-crypt's legal range; outside it libxcrypt clamps, and the stored `rounds=` would differ from the setting.
_MIN_ROUNDS: Final = 1000
_MAX_ROUNDS: Final = 999_999_999
# libxcrypt refuses passphrases of CRYPT_MAX_PASSPHRASE_SIZE (512, NUL included) or more; the pepper gets the rest.
_MAX_PEPPER_BYTES: Final = 511 - MAX_PASSWORD_BYTES
_SALT_RE: Final = re.compile(r"[A-Za-z0-9./]{16}")


def check_rounds(rounds: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not _MIN_ROUNDS <= rounds <= _MAX_ROUNDS:
        raise ValueError(f"rounds must be an integer from {_MIN_ROUNDS} to {_MAX_ROUNDS} (Moodle uses 5000 or 10000)")


def check_pepper(pepper: str) -> None:
    """The pepper is a site secret too: the messages never quote it."""
    problem: str | None = None
    if "\0" in pepper:
        problem = "the password pepper contains a NUL character"
    else:
        try:
            size = len(pepper.encode("utf-8"))
        except UnicodeEncodeError:
            size = -1
        if size < 0:
            problem = "the password pepper is not valid Unicode text"
        elif size > _MAX_PEPPER_BYTES:
            problem = f"the password pepper is longer than {_MAX_PEPPER_BYTES} bytes, more than libxcrypt accepts"
    if problem is not None:
        raise ValueError(problem)


def hash_password(password: str, rounds: int, pepper: str = "", *, salt: str | None = None) -> str:
    """The `mdl_user.password` value for `password`, peppered with the site's latest pepper ("" for none).

    `salt` is for tests (known answers); by default a fresh Moodle-style salt is made for every hash.
    Raises PasswordRejected (a ValueError) for a password Moodle would refuse, e.g. one over 128 bytes.
    """
    check_rounds(rounds)
    check_pepper(pepper)
    if salt is not None and not _SALT_RE.fullmatch(salt):
        raise ValueError("salt must be 16 characters from [A-Za-z0-9./], as Moodle makes it")
    result = hash_or_reject(password, rounds, pepper, salt)
    if isinstance(result, PasswordRejected):
        raise result
    return result


class PasswordHasher:
    """Hash many passwords on all cores without blocking the event loop. Rounds and pepper are fixed per run.

        async with PasswordHasher(rounds=FAST_ROUNDS, pepper=latest_pepper) as hasher:
            results = await hasher.hash_many(passwords)  # str hash, or PasswordRejected for that row

    A run starts the workers as soon as it knows it will hash (`begin()`, in the background), and hands a batch's
    passwords over as soon as it has them (`submit()`), awaiting the results only where it needs them.

    Identical passwords are hashed separately, each with its own salt, even though one shared hash would be valid
    for all of them and cheaper (a common initial password in 100k rows): equal stored hashes tell anyone who reads
    `mdl_user` which accounts share a password, and cracking one cracks the group. Moodle's own upload tool salts
    every row; a few minutes of CPU on a bulk load is the price of not weakening that.
    """

    def __init__(
        self,
        rounds: int = FAST_ROUNDS,
        pepper: str = "",
        *,
        workers: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        check_rounds(rounds)
        check_pepper(pepper)
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.rounds = rounds
        self.chunk_size = chunk_size
        self._peppered = bool(pepper)
        # The workers a head start began, with the hashes they made ahead, when they hash as this hasher would.
        self._ahead: HashesAhead | None = take_ahead(rounds, pepper) if workers is None else None
        self._pool = (
            self._ahead.pool if self._ahead is not None else WorkerPool(rounds, pepper, workers or usable_cpus())
        )
        self.workers = self._pool.workers
        self._started = self._ahead is not None  # running already, perhaps busy: a ping would wait behind its work
        self._starting: asyncio.Future[None] | None = None  # begin()'s start of the workers, in a thread
        self._closed = False
        self._worker_pids: set[int] = set()

    def __repr__(self) -> str:
        # Says whether there is a pepper, never what it is.
        return f"PasswordHasher(rounds={self.rounds}, workers={self.workers}, peppered={self._peppered})"

    @property
    def worker_pids(self) -> frozenset[int]:
        """Processes that have returned hashes so far (diagnostics and tests: proof the work was spread)."""
        return frozenset(self._worker_pids)

    def _start_workers(self) -> None:
        # The pool spawns a process per submit while none is idle: submitting one ping per worker before any can
        # answer starts them all. Blocking (forkserver start-up, imports), hence run off the loop by start().
        pings = [self._pool.executor.submit(password_worker.worker_pid) for _ in range(self.workers)]
        for ping in pings:
            ping.result()
        self._started = True

    def begin(self) -> None:
        """Start the worker processes now, in the background (in a thread, so the event loop never waits for their
        start-up): called as soon as a run knows it will hash, they are ready by the time its first batch is read.
        Needs a running event loop; the first submit() or hash_many() waits for the start, if it is not over."""
        if self._started or self._starting is not None or self._closed:
            return
        self._starting = retrieved(asyncio.ensure_future(asyncio.to_thread(self._start_workers)))

    async def start(self) -> None:
        """Start every worker process now, in a thread, so the first hash_many() does not stall the event loop."""
        self.begin()
        if not self._started and self._starting is not None:
            await asyncio.shield(self._starting)  # shared by every caller: one caller's cancellation is not theirs

    def submit(
        self,
        passwords: Sequence[str],
        on_progress: Callable[[int], None] | None = None,
        *,
        current: Sequence[str | None] | None = None,
    ) -> Awaitable[list[str | PasswordRejected]]:
        """hash_many()'s work handed to the workers now, its results when awaited: a batch's passwords hash while the
        run does its other work (its other reads, the previous batch's write). Needs a running event loop; await
        what it returns (close() drops what nobody awaited)."""
        if self._closed:
            raise RuntimeError("this PasswordHasher is closed")
        stored: list[str | None] = list(current) if current is not None else [None] * len(passwords)
        if len(stored) != len(passwords):
            raise ValueError("current must have one entry per password")
        ahead = self._take_ahead(list(passwords), stored)  # now, in the order of the calls
        return retrieved(asyncio.ensure_future(self._hash(list(passwords), stored, ahead, on_progress)))

    async def hash_many(
        self,
        passwords: Sequence[str],
        on_progress: Callable[[int], None] | None = None,
        *,
        current: Sequence[str | None] | None = None,
    ) -> list[str | PasswordRejected]:
        """One result per password, in order: the hash, or a PasswordRejected saying why that row cannot be stored.

        `current`: the hashes stored now (None where there is none); where a password still matches its stored
        hash, that hash is returned unchanged. `on_progress(n)` is called on the event loop as each chunk
        finishes, with the number of passwords in it.
        """
        return await self.submit(passwords, on_progress, current=current)

    async def _hash(
        self,
        passwords: list[str],
        stored: list[str | None],
        ahead: dict[int, tuple[Future[ChunkResult], int]],
        on_progress: Callable[[int], None] | None,
    ) -> list[str | PasswordRejected]:
        if not passwords:
            return []
        await self.start()
        if self._closed:  # closed while the workers started
            raise RuntimeError("this PasswordHasher is closed")
        loop = asyncio.get_running_loop()
        to_hash = [i for i in range(len(passwords)) if i not in ahead]
        tasks: list[asyncio.Future[ChunkResult]] = []
        places: list[tuple[int, int, int]] = []  # each password's result: (password, task, position in the task)
        for start in range(0, len(to_hash), self.chunk_size):
            indexes = to_hash[start : start + self.chunk_size]
            places += [(i, len(tasks), position) for position, i in enumerate(indexes)]
            chunk, current = [passwords[i] for i in indexes], [stored[i] for i in indexes]
            tasks.append(loop.run_in_executor(self._pool.executor, password_worker.hash_chunk, chunk, current))
        awaited: dict[Future[ChunkResult], int] = {}  # each chunk made ahead: its task, awaited once
        for i, (made, position) in ahead.items():
            if made not in awaited:
                awaited[made] = len(tasks)
                tasks.append(asyncio.wrap_future(made))
            places.append((i, awaited[made], position))
        if on_progress is not None:
            counts = Counter(task for _, task, _ in places)
            for index, task in enumerate(tasks):
                task.add_done_callback(functools.partial(_report_progress, on_progress, counts[index]))
        done = await asyncio.gather(*tasks)
        self._worker_pids.update(pid for pid, _ in done)
        results = {i: done[task][1][position] for i, task, position in places}
        return [results[i] for i in range(len(passwords))]

    def _take_ahead(self, passwords: list[str], stored: list[str | None]) -> dict[int, tuple[Future[ChunkResult], int]]:
        """The hashes made ahead that fit these passwords: fresh ones, for those with no stored hash to check. The
        first call drops the rest of the work ahead, which nobody took and has not started."""
        if self._ahead is None:
            return {}
        taken = {}
        for i, (password, current) in enumerate(zip(passwords, stored, strict=True)):
            if current is None or not password_worker.reusable(current):
                made = self._ahead.take(password)
                if made is not None:
                    taken[i] = made
        self._ahead.drop_untaken()
        return taken

    def close(self) -> None:
        """Stop the workers (waits for them); queued work that has not started is dropped."""
        self._closed = True
        self._pool.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()  # `async with` calls __aexit__ only once __aenter__ has returned
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _report_progress(on_progress: Callable[[int], None], count: int, future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is None:
        on_progress(count)
