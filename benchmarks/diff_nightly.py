"""The nightly case of `diff = true` (issue 22): a users file of 200,000 rows applied once, then the same file with
1 % of its rows changed, applied with diff and, for comparison, without.

    python -m benchmarks.diff_nightly                    # 200,000 users, 1 % changed (~4 min in all here)
    python -m benchmarks.diff_nightly --users 20000 --changed 0.05

Users 0..N-1 are seeded untimed (LOAD DATA of what a toolsync create leaves, benchmarks/generate.py). The files list
them in a shuffled order, as benchmarks.run's users cases do; in the changed file every 1/share-th user (spread over
the whole file) has another department (`user_row(i, 1)`). Four runs of the real command, in a child process through
benchmarks/measure.py (wall time from spawn to exit, the kernel's peak RSS), each printed as benchmarks.run prints a
case, with mariadbd's CPU time during the run:

1. `base, diff, no digests`: the file as the database holds it, diff on: the first run with diff resolves every row
   (all unchanged) and saves the digests;
2. `changed, diff`: the 1 % file with diff: only the changed rows are resolved and written;
3. `base, diff`: the first file again with diff, which puts those rows back (so run 4 starts where run 2 did);
4. `changed, no diff`: the 1 % file without diff: every row resolved, the same rows written.

Each run's outcome counts are checked (a fast but wrong run fails). Then the database's floor with the bare driver,
as benchmarks.floor measures it: reading the changed users' 13 compared columns and updating their department (what
run 2 cannot do without), and reading all N (what run 4 adds). Last, the digests of the N rows computed in this
process (`RowDiff.digests`), the hashing a diff run adds to reading the file.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.floor import READ_COLUMNS, bare_connection, mariadbd_cpu_seconds
from benchmarks.generate import USERS_HEADER, count_values, seed_users_at, user_row
from benchmarks.run import DATABASE, PREFIX, config_file, parse_summary, run_child
from tests.support.mariadb_server import ThrowawayMariaDB

EXIT_VERIFIED, EXIT_MISMATCH = 0, 1
CHUNK = 1000  # rows a statement of the floor, as benchmarks.floor


def changed_users(count: int, share: float) -> list[int]:
    """Every 1/share-th user: the changed rows spread over the whole file (and so over every batch)."""
    step = max(1, round(1 / share))
    return list(range(0, count, step))


def write_file(path: Path, count: int, changed: set[int], seed: int) -> None:
    """Users 0..count-1 in a shuffled order; the `changed` ones with another department."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(";".join(USERS_HEADER) + "\n")
        out.writelines(";".join(user_row(i, 1 if i in changed else 0).values()) + "\n" for i in order)


def write_config(workdir: Path, server: ThrowawayMariaDB, name: str, diff: bool) -> Path:
    """As benchmarks.run's: MariaDB over TCP, report and tryback on, archive off (the files are run again)."""
    users = {"primary_identity": "idnumber", "password_rounds": 5000, "diff": diff}
    return config_file(workdir / name, server, workdir / "data", {"users": users})


def measure(
    server: ThrowawayMariaDB, workdir: Path, label: str, config: Path, file: Path, lines: int, expected: dict[str, int]
) -> tuple[float, bool]:
    """One run of the real command: its line, and whether its counts are the expected ones."""
    cpu = mariadbd_cpu_seconds(server)
    command = [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", "users", str(file)]
    measured = run_child(command, workdir, label.replace(" ", "-").replace(",", ""))
    cpu = mariadbd_cpu_seconds(server) - cpu
    summary = parse_summary(measured.stdout, "users")
    rate = lines / measured.wall
    print(
        f"{label}: {lines:,} rows in {measured.wall:.1f} s = {rate:,.0f} rows/s, peak RSS {measured.peak_rss_mb:,.0f} "
        f"MB; mariadbd CPU {cpu:.1f} s",
        flush=True,
    )
    if summary is None:
        print(f"  MISMATCH: no summary (exit code {measured.exit_code}): {measured.stderr[-1500:]}")
        return rate, False
    engine = summary.engine_seconds
    print(
        f"  outcomes: {count_values(summary.outcomes)}; engine's own run loop {engine:.1f} s "
        f"({lines / engine if engine else 0:,.0f} rows/s), start-up and wrap-up {measured.wall - engine:.1f} s"
    )
    if timeline := measured.rss_timeline():
        print(f"  peak RSS so far, MB, at each tenth of the run (psutil): {timeline}")
    wanted = {k: v for k, v in expected.items() if v}
    if dict(summary.outcomes) != wanted or measured.exit_code != 0:
        print(f"  MISMATCH: expected {count_values(wanted)}, exit code 0; got exit code {measured.exit_code}")
        return rate, False
    print(f"  verified: {count_values(wanted)}; exit code 0")
    return rate, True


async def floor(server: ThrowawayMariaDB, count: int, changed: list[int]) -> None:
    """What MariaDB alone needs for the changed rows (read and update), and for reading every row."""
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    await cursor.execute("SELECT idnumber, id FROM mdl_user WHERE mnethostid = 1 AND idnumber LIKE '%-E%'")
    ids = dict(await cursor.fetchall())
    now = int(time.time())

    def reads(users: Sequence[int]) -> list[str]:
        return [
            f"SELECT {READ_COLUMNS} FROM mdl_user WHERE mnethostid = 1 AND idnumber IN "
            f"({', '.join(conn.escape(user_row(i)['idnumber']) for i in users[start : start + CHUNK])})"
            for start in range(0, len(users), CHUNK)
        ]

    updates = []
    for start in range(0, len(changed), CHUNK):
        derived = " UNION ALL ".join(
            f"SELECT {ids[user_row(i)['idnumber']]} AS id, {conn.escape(user_row(i, 2)['department'])} AS department"
            for i in changed[start : start + CHUNK]
        )
        updates.append(
            f"UPDATE mdl_user JOIN ({derived}) AS v ON mdl_user.id = v.id "
            f"SET mdl_user.department = v.department, mdl_user.timemodified = {now}"
        )

    async def timed(label: str, rows: int, work: Sequence[str]) -> None:
        cpu, clock = mariadbd_cpu_seconds(server), time.perf_counter()
        for sql in work:
            await cursor.execute(sql)
            await cursor.fetchall()
            await conn.commit()
        wall = time.perf_counter() - clock
        used = mariadbd_cpu_seconds(server) - cpu
        print(f"{label}: {rows:,} rows in {wall:.2f} s; mariadbd CPU {used:.1f} s", flush=True)

    order = list(range(count))
    random.Random(7).shuffle(order)
    await timed("floor, read the changed users", len(changed), reads(changed))
    await timed("floor, update the changed users", len(changed), updates)
    await timed("floor, read every user (what a run without diff adds)", count, reads(order))
    conn.close()


def hashing(path: Path, workdir: Path) -> None:
    """The digests of the file's rows in this process, one thread: what a diff run adds to reading its file."""
    from toolsync_tui.config import FileSettings
    from toolsync_tui.engine.run.command_file import CommandFile
    from toolsync_tui.engine.run.diff import RowDiff
    from toolsync_tui.engine.users.columns import USERS_FILE

    source = CommandFile.open(path, USERS_FILE, FileSettings())
    batches = list(source.batches(5000))
    diff = RowDiff(workdir / "hashing", "users", source.columns, "bench", full=True)
    clock = time.perf_counter()
    rows = sum(len(diff.digests(batch)) for batch in batches)
    took = time.perf_counter() - clock
    print(f"digests (keyed BLAKE2b, one thread): {rows:,} rows in {took:.2f} s = {rows / took:,.0f} rows/s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diff_nightly", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000, help="rows in the file (200,000)")
    parser.add_argument("--changed", type=float, default=0.01, help="share of the rows changed (0.01)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the row order (42)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="toolsync-bench-diff-"))
    server: ThrowawayMariaDB | None = None
    try:
        clock = time.monotonic()
        server = ThrowawayMariaDB.start()
        server.load_dump(DATABASE)
        seeded = asyncio.run(seed_users_at(server.url(DATABASE), PREFIX, args.users))
        changed = changed_users(args.users, args.changed)
        base, modified = workdir / "userimport.csv", workdir / "userimport-changed.csv"
        write_file(base, args.users, set(), args.seed)
        write_file(modified, args.users, set(changed), args.seed)
        with_diff = write_config(workdir, server, "diff.toml", True)
        without = write_config(workdir, server, "nodiff.toml", False)
        print(
            f"setup: {time.monotonic() - clock:.1f} s (mariadbd, dump, {seeded.rows:,} users seeded in "
            f"{seeded.seconds:.1f} s); {len(changed):,} of {args.users:,} rows changed "
            f"({len(changed) / args.users:.1%})",
            flush=True,
        )
        n, k = args.users, len(changed)
        runs = [
            ("1. base, diff, no digests", with_diff, base, {"unchanged": n}),
            ("2. changed, diff", with_diff, modified, {"updated": k, "unchanged": n - k}),
            ("3. base, diff", with_diff, base, {"updated": k, "unchanged": n - k}),
            ("4. changed, no diff", without, modified, {"updated": k, "unchanged": n - k}),
        ]
        rates: dict[str, float] = {}
        verified = True
        for label, config, file, expected in runs:
            rate, ok = measure(server, workdir, label, config, file, n, expected)
            rates[label] = rate
            verified &= ok
        print(
            f"diff against no diff on the 1 % file: {rates['2. changed, diff']:,.0f} against "
            f"{rates['4. changed, no diff']:,.0f} rows/s = "
            f"{rates['2. changed, diff'] / rates['4. changed, no diff']:.1f}x",
            flush=True,
        )
        asyncio.run(floor(server, n, changed))
        hashing(base, workdir)
        return EXIT_VERIFIED if verified else EXIT_MISMATCH
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
