"""Hashes made ahead (password_pool.py): taken by the run's hasher where they fit, once each, and never in place of a
stored hash that still matches; what nobody takes is dropped, not waited for."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.support.hashes_ahead import made_ahead
from toolsync_tui.engine.moodle import password_pool
from toolsync_tui.engine.moodle.password_pool import HashesAhead, hash_ahead
from toolsync_tui.engine.moodle.password_worker import WORKER_NICENESS
from toolsync_tui.engine.moodle.passwords import DEFAULT_ROUNDS, FAST_ROUNDS, PasswordHasher, hash_password


def salt_of(stored: str) -> str:
    return stored.split("$")[3]


@pytest.fixture(autouse=True)
def no_work_left_ahead() -> Iterator[None]:
    yield
    password_pool.discard_ahead()


def started(rounds: int, pepper: str, passwords: list[str]) -> HashesAhead:
    hash_ahead(rounds, pepper, passwords, workers=2)
    ahead = password_pool._ahead
    assert ahead is not None
    return ahead


async def test_the_runs_hasher_takes_the_hashes_made_ahead_once_each() -> None:
    ahead = started(FAST_ROUNDS, "pepper-1", ["Alpha-1", "Bravo-2", "Alpha-1"])
    async with PasswordHasher(FAST_ROUNDS, "pepper-1") as hasher:
        assert password_pool._ahead is None  # taken: a second hasher would start its own workers
        results = await hasher.hash_many(["Alpha-1", "Charlie-3", "Alpha-1", "Bravo-2"])
    assert all(isinstance(r, str) for r in results)
    hashes = [r for r in results if isinstance(r, str)]
    for password, stored in zip(["Alpha-1", "Charlie-3", "Alpha-1", "Bravo-2"], hashes, strict=True):
        assert hash_password(password, FAST_ROUNDS, "pepper-1", salt=salt_of(stored)) == stored
    assert len({salt_of(h) for h in hashes}) == 4  # a salt of its own for each row, the two Alpha-1 included
    # The three made ahead are those stored; Charlie-3, never guessed, was hashed then.
    assert made_ahead(ahead) == {hashes[0], hashes[2], hashes[3]}


async def test_hashes_made_with_another_pepper_or_rounds_are_not_used() -> None:
    for rounds, pepper in ((FAST_ROUNDS, "old-pepper"), (DEFAULT_ROUNDS, "new-pepper")):
        ahead = started(rounds, pepper, ["Delta-4"])
        async with PasswordHasher(FAST_ROUNDS, "new-pepper") as hasher:
            assert hasher._pool is not ahead.pool  # workers of its own, with the run's rounds and pepper
            [stored] = await hasher.hash_many(["Delta-4"])
        assert isinstance(stored, str)
        assert stored.startswith(f"$6$rounds={FAST_ROUNDS}$")
        assert hash_password("Delta-4", FAST_ROUNDS, "new-pepper", salt=salt_of(stored)) == stored
        assert stored not in made_ahead(ahead)


async def test_a_stored_hash_that_still_matches_is_kept_not_replaced_by_one_made_ahead() -> None:
    stored_before = hash_password("Echo-5", FAST_ROUNDS)
    started(FAST_ROUNDS, "", ["Echo-5", "Echo-5"])
    async with PasswordHasher(FAST_ROUNDS) as hasher:
        kept, changed = await hasher.hash_many(["Echo-5", "Foxtrot-6"], current=[stored_before, stored_before])
    assert kept == stored_before  # a re-run leaves the account unchanged
    assert isinstance(changed, str)
    assert changed != stored_before
    assert hash_password("Foxtrot-6", FAST_ROUNDS, salt=salt_of(changed)) == changed


async def test_work_ahead_nobody_takes_is_dropped_when_the_run_first_hashes() -> None:
    guesses = [f"guess-{i}" for i in range(4000)]  # ~12 s of work on two workers, were it all done
    ahead = started(FAST_ROUNDS, "", guesses)
    clock = time.monotonic()
    async with PasswordHasher(FAST_ROUNDS) as hasher:
        [result] = await hasher.hash_many(["Golf-7"])
    assert isinstance(result, str)
    assert time.monotonic() - clock < 6
    cancelled = sum(chunk.cancelled() for chunk in ahead._chunks)
    assert cancelled > len(ahead._chunks) * 0.8


async def test_a_head_start_nobody_takes_is_stopped_at_the_end() -> None:
    ahead = started(FAST_ROUNDS, "", [f"unused-{i}" for i in range(2000)])
    clock = time.monotonic()
    password_pool.discard_ahead()
    assert password_pool._ahead is None
    assert sum(chunk.cancelled() for chunk in ahead._chunks) > len(ahead._chunks) * 0.8
    assert time.monotonic() - clock < 2


async def test_the_workers_yield_to_the_run_and_the_database() -> None:
    async with PasswordHasher(FAST_ROUNDS, workers=2) as hasher:
        await hasher.hash_many([f"nice-{i}" for i in range(64)])
        niceness = {os.getpriority(os.PRIO_PROCESS, pid) for pid in hasher.worker_pids}
    assert niceness == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)}
