"""Benchmark Moodle password hashing (toolsync_tui.engine.moodle.passwords): one process vs all cores.

    python -m benchmarks.hashing --count 2000 --rounds 5000
    python -m benchmarks.hashing --count 20000 --rounds 10000 --workers 4

Three runs over the same generated passwords: hash_password() in this process (the per-core ceiling, no IPC),
PasswordHasher with 1 worker process, and PasswordHasher with --workers (default: every usable CPU). Worker
start-up is timed apart from hashing. Also printed: the event loop's worst lag while hashing (it must stay free),
and peak RSS of this process and of each worker (Linux /proc VmHWM). Every result is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from toolsync_tui.engine.moodle.passwords import (
    DEFAULT_CHUNK_SIZE,
    FAST_ROUNDS,
    PasswordHasher,
    hash_password,
    usable_cpus,
)


@dataclass(frozen=True)
class Run:
    label: str
    processes: int
    seconds: float
    startup_seconds: float = 0.0
    max_loop_lag_ms: float = 0.0
    worker_peak_rss_kib: tuple[int, ...] = ()


def make_passwords(count: int) -> list[str]:
    # Benchmark data, not secrets: seeded so runs compare, 12 characters like a typical initial password.
    rng = random.Random(20240903)
    alphabet = string.ascii_letters + string.digits + "!#%-_"
    return ["".join(rng.choices(alphabet, k=12)) for _ in range(count)]


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def check(passwords: list[str], results: list[str | object], rounds: int) -> None:
    hashes = [r for r in results if isinstance(r, str)]
    if len(hashes) != len(passwords) or len(set(hashes)) != len(hashes):
        sys.exit("FAILED: missing, rejected or repeated hashes")
    step = max(1, len(passwords) // 25)
    for password, stored in list(zip(passwords, hashes, strict=True))[::step]:
        if hash_password(password, rounds, salt=stored.split("$")[3]) != stored:
            sys.exit("FAILED: a hash does not match its password (order lost?)")


def run_inline(passwords: list[str], rounds: int) -> Run:
    started = time.perf_counter()
    results: list[str | object] = [hash_password(p, rounds) for p in passwords]
    seconds = time.perf_counter() - started
    check(passwords, results, rounds)
    return Run("in-process hash_password() loop", 1, seconds)


async def run_pool(passwords: list[str], rounds: int, workers: int, chunk_size: int) -> Run:
    lag = 0.0
    hashing = True

    async def watch_loop() -> None:
        nonlocal lag
        while hashing:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - before - 0.01)

    started = time.perf_counter()
    async with PasswordHasher(rounds, workers=workers, chunk_size=chunk_size) as hasher:
        startup = time.perf_counter() - started
        watcher = asyncio.create_task(watch_loop())
        started = time.perf_counter()
        results = await hasher.hash_many(passwords)
        seconds = time.perf_counter() - started
        hashing = False
        await watcher
        worker_rss = tuple(peak_rss_kib(pid) for pid in sorted(hasher.worker_pids))
    check(passwords, list(results), rounds)
    label = f"PasswordHasher, {workers} worker process{'es' if workers > 1 else ''}"
    return Run(label, workers, seconds, startup, lag * 1000, worker_rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hashing", description="Benchmark Moodle password hashing."
    )
    parser.add_argument("--count", type=int, default=2000, help="passwords to hash (default 2000)")
    parser.add_argument("--rounds", type=int, default=FAST_ROUNDS, help="SHA-512 crypt rounds (default 5000)")
    parser.add_argument("--workers", type=int, default=usable_cpus(), help="processes for the parallel run")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="passwords per pool task")
    parser.add_argument("--skip-inline", action="store_true", help="skip the in-process baseline")
    args = parser.parse_args(argv)

    passwords = make_passwords(args.count)
    print(f"{args.count} passwords, rounds={args.rounds}, chunk size {args.chunk_size}, usable CPUs {usable_cpus()}")
    runs = [] if args.skip_inline else [run_inline(passwords, args.rounds)]
    runs.append(asyncio.run(run_pool(passwords, args.rounds, 1, args.chunk_size)))
    if args.workers > 1:
        runs.append(asyncio.run(run_pool(passwords, args.rounds, args.workers, args.chunk_size)))

    single = runs[-2].seconds if args.workers > 1 else runs[-1].seconds
    print(f"{'run':<40} {'seconds':>8} {'hashes/s':>9} {'per core':>9} {'speed-up':>8} {'start-up':>9} {'loop lag':>9}")
    for run in runs:
        rate = args.count / run.seconds
        startup = f"{run.startup_seconds * 1000:.0f} ms" if run.startup_seconds else "-"
        lag = f"{run.max_loop_lag_ms:.1f} ms" if run.worker_peak_rss_kib else "-"
        print(
            f"{run.label:<40} {run.seconds:>8.2f} {rate:>9.0f} {rate / run.processes:>9.0f} "
            f"{single / run.seconds:>7.2f}x {startup:>9} {lag:>9}"
        )
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak RSS: this process {parent / 1024:.1f} MiB")
    for run in runs:
        if run.worker_peak_rss_kib:
            each = ", ".join(f"{kib / 1024:.1f}" for kib in run.worker_peak_rss_kib)
            print(f"peak RSS: {run.label}: workers {each} MiB (sum {sum(run.worker_peak_rss_kib) / 1024:.1f} MiB)")
    print("all hashes checked: count, uniqueness, order (spot checks against their passwords)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
