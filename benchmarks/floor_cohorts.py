"""The database's own floor for the cohorts-add case: what MariaDB alone needs to add the same memberships.

    python -m benchmarks.floor_cohorts          # 100,000 memberships across 500 cohorts

No toolsync: per 5,000 rows (one transaction, as toolsync's batches) the read of the exact (cohort, user) pairs a
cohort file must check and one multi-row INSERT of the rows into mdl_cohort_members, all built before the clock
starts and sent through the bare driver. With toolsync's start-up (~0.7 s) this bounds the case from above.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from benchmarks.cohorts import membership_pairs
from benchmarks.floor import DATABASE, bare_connection, mariadbd_cpu_seconds
from tests.support.mariadb_server import ThrowawayMariaDB

BATCH = 5000
FIRST_USER = 100  # user ids of the statement text: the floor needs no user rows (no foreign keys in Moodle)


async def floor(server: ThrowawayMariaDB, rows: int, users: int, cohorts: int, seed: int) -> None:
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    now = int(time.time())
    pairs = membership_pairs(rows, users, cohorts, seed)
    batches = []
    for start in range(0, rows, BATCH):
        part = sorted((1 + p // users, FIRST_USER + p % users) for p in pairs[start : start + BATCH])
        tuples = ", ".join(f"({c}, {u})" for c, u in part)
        batches.append(
            (
                f"SELECT cohortid, userid FROM mdl_cohort_members WHERE (cohortid, userid) IN ({tuples})",
                "INSERT INTO mdl_cohort_members (cohortid, userid, timeadded) VALUES "
                + ", ".join(f"({c}, {u}, {now})" for c, u in part),
            )
        )
    cpu, clock, reading = mariadbd_cpu_seconds(server), time.monotonic(), 0.0
    for read, write in batches:
        started = time.monotonic()
        await cursor.execute(read)
        await cursor.fetchall()
        reading += time.monotonic() - started
        await cursor.execute(write)
        await conn.commit()
    wall = time.monotonic() - clock
    print(
        f"read and insert {rows:,} memberships: {wall:.2f} s = {rows / wall:,.0f} rows/s (reads {reading:.2f} s); "
        f"mariadbd CPU {mariadbd_cpu_seconds(server) - cpu:.2f} s"
    )
    conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_cohorts", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="memberships written (100,000)")
    parser.add_argument("--users", type=int, default=20_000, help="users they are drawn from (20,000)")
    parser.add_argument("--cohorts", type=int, default=500, help="cohorts they are drawn from (500)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the pairs (42)")
    args = parser.parse_args(argv)
    server = ThrowawayMariaDB.start()
    try:
        server.load_dump(DATABASE)
        asyncio.run(floor(server, args.rows, args.users, args.cohorts, args.seed))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
