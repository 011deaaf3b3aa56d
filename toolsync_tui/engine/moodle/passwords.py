"""Plain passwords from a users file -> exactly what Moodle 4.5 stores in `mdl_user.password`.

Moodle's `hash_internal_user_password()` is SHA-512 crypt with an explicit `rounds=` and a 16-char salt:
`$6$rounds=5000$<salt>$<86 chars>` (118 chars) from the bulk upload tool, `rounds=10000` (119 chars) otherwise.
libxcrypt (through `crypt-r`) writes that text byte for byte, `rounds=5000$` included.

Hashing is CPU-bound and holds the GIL, so `PasswordHasher` runs it in a process pool, in chunks, off the event
loop. Its workers start as soon as a run knows it will hash (`begin`), while the file is still being read, and a
batch's passwords are handed to them as soon as they are known (`submit`), its other work going on meanwhile. The
pool's imports (multiprocessing, libxcrypt) are made on use: a run without a password column never pays for them.
Nothing here puts a password (or the pepper) into an exception, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import os
import re
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from toolsync_tui.engine.moodle.lifeline import Lifeline, hold
from toolsync_tui.engine.moodle.tasks import retrieved

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext

MAX_PASSWORD_BYTES: Final = 128  # Moodle's MAX_PASSWORD_CHARACTERS, compared with PHP strlen(), i.e. UTF-8 bytes
FAST_ROUNDS: Final = 5000  # hash_internal_user_password($pw, true): what tool_uploaduser stores
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
_HASH_CHARS: Final = 86
_REUSABLE_RE: Final = re.compile(r"\$6\$rounds=\d+\$[A-Za-z0-9./]{16}\$[A-Za-z0-9./]{86}")
# ~40 ms of work per task at 5000 rounds: cheap IPC, smooth progress, and the workers finish a batch together (the
# last task of one is not a long wait for the others).
DEFAULT_CHUNK_SIZE: Final = 16


class PasswordRejected(ValueError):
    """A password Moodle would not store. The message says why and never contains the password."""


class PasswordHashingError(RuntimeError):
    """libxcrypt did not produce a SHA-512 crypt hash (should not happen for validated input)."""


def password_problem(password: str) -> str | None:
    """Why Moodle would refuse to store this password, or None. Cheap: usable to pre-check a file without hashing."""
    if "\0" in password:
        # PHP's crypt() stops at NUL, so Moodle would silently keep only the text before it.
        return "password contains a NUL character"
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        # Returned, not raised from here: the UnicodeEncodeError quotes the offending text and would ride along.
        return "password is not valid Unicode text (it contains a lone surrogate)"
    if size > MAX_PASSWORD_BYTES:
        return f"password is longer than Moodle's limit of {MAX_PASSWORD_BYTES} bytes (UTF-8)"
    return None


def make_salt() -> str:
    """A salt made as Moodle makes it: 16 random bytes, base64, '+' -> '.', first 16 characters."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii").replace("+", ".")[:16]


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


def _crypt(secret: str, setting: str) -> str:
    import crypt_r  # type: ignore[import-untyped]  # no py.typed; one function used, typed here. Cached after once.

    failure: str | None = None
    try:
        result: object = crypt_r.crypt(secret, setting)
    except (OSError, ValueError) as exc:
        # Kept to the class name and raised outside this block, so no exception carrying the input is chained.
        failure, result = type(exc).__name__, None
    if not isinstance(result, str) or not result.startswith(setting) or len(result) != len(setting) + _HASH_CHARS:
        # libxcrypt signals failure with a "*0"/"*1" token or an error; neither says anything about the input.
        raise PasswordHashingError(f"libxcrypt could not make a SHA-512 crypt hash ({failure or 'failure token'})")
    return result


def _hash_or_reject(password: str, rounds: int, pepper: str, salt: str | None) -> str | PasswordRejected:
    # Returns the rejection instead of raising it: a raised exception's traceback keeps this frame, and with it the
    # password, alive for as long as the exception object lives (in a result list, possibly for the whole run).
    problem = password_problem(password)
    if problem is not None:
        return PasswordRejected(problem)
    # Appended before hashing, as Moodle's update_internal_user_password() does; the pepper is not limited by the
    # 128 bytes (hash_internal_user_password's $pepperlength allowance; validate() checks the plain password only).
    return _crypt(password + pepper, f"$6$rounds={rounds}${make_salt() if salt is None else salt}$")


def hash_password(password: str, rounds: int, pepper: str = "", *, salt: str | None = None) -> str:
    """The `mdl_user.password` value for `password`, peppered with the site's latest pepper ("" for none).

    `salt` is for tests (known answers); by default a fresh Moodle-style salt is made for every hash.
    Raises PasswordRejected (a ValueError) for a password Moodle would refuse, e.g. one over 128 bytes.
    """
    check_rounds(rounds)
    check_pepper(pepper)
    if salt is not None and not _SALT_RE.fullmatch(salt):
        raise ValueError("salt must be 16 characters from [A-Za-z0-9./], as Moodle makes it")
    result = _hash_or_reject(password, rounds, pepper, salt)
    if isinstance(result, PasswordRejected):
        raise result
    return result


# --- worker side: the pool's processes run these ------------------------------------------------------------------

_worker_rounds: int = FAST_ROUNDS
_worker_pepper: str = ""


def _init_worker(rounds: int, pepper: str, lifeline: Connection) -> None:
    # Rounds and pepper are fixed per run: sent once per process, not pickled into every task.
    global _worker_rounds, _worker_pepper
    _worker_rounds, _worker_pepper = rounds, pepper
    hold(lifeline)  # a worker holding passwords never outlives the run (lifeline.py)


def _worker_pid() -> int:
    return os.getpid()


def _hash_chunk(passwords: list[str], current: list[str | None]) -> tuple[int, list[str | PasswordRejected]]:
    return os.getpid(), [_keep_or_hash(p, c) for p, c in zip(passwords, current, strict=True)]


def _keep_or_hash(password: str, current: str | None) -> str | PasswordRejected:
    # The stored hash when the password still matches it (same cost as hashing anew): a re-run stays "unchanged".
    if current is not None and _REUSABLE_RE.fullmatch(current) and password_problem(password) is None:
        setting = current[: current.rindex("$") + 1]
        if _crypt(password + _worker_pepper, setting) == current:
            return current
    return _hash_or_reject(password, _worker_rounds, _worker_pepper, None)


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
    # This module and libxcrypt imported once, in the server, before it forks: each worker starts with them (when the
    # server is already running, for an earlier pool, its preloads stay as they were: the workers import on use).
    context.set_forkserver_preload(["crypt_r", __name__])
    return context


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
        self.workers = workers or usable_cpus()
        self.chunk_size = chunk_size
        self._peppered = bool(pepper)
        from concurrent.futures import ProcessPoolExecutor  # on use: it imports multiprocessing

        context = _pool_context()
        self._lifeline = Lifeline(context)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(rounds, pepper, self._lifeline.reader),
        )
        self._started = False
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
        pings = [self._pool.submit(_worker_pid) for _ in range(self.workers)]
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
        return retrieved(asyncio.ensure_future(self._hash(list(passwords), stored, on_progress)))

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
        self, passwords: list[str], stored: list[str | None], on_progress: Callable[[int], None] | None
    ) -> list[str | PasswordRejected]:
        if not passwords:
            return []
        await self.start()
        if self._closed:  # closed while the workers started
            raise RuntimeError("this PasswordHasher is closed")
        loop = asyncio.get_running_loop()
        size = self.chunk_size
        futures = []
        for start in range(0, len(passwords), size):
            chunk = list(passwords[start : start + size])
            future = loop.run_in_executor(self._pool, _hash_chunk, chunk, stored[start : start + size])
            if on_progress is not None:
                future.add_done_callback(functools.partial(_report_progress, on_progress, len(chunk)))
            futures.append(future)
        results: list[str | PasswordRejected] = []
        for pid, chunk_results in await asyncio.gather(*futures):
            self._worker_pids.add(pid)
            results.extend(chunk_results)
        return results

    def close(self) -> None:
        """Stop the workers (waits for them); queued work that has not started is dropped."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._lifeline.close()

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
