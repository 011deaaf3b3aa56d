"""The database's own floor for the cohorts-add case: what MariaDB alone needs to add the same memberships.

    python -m benchmarks.floor_cohorts          # 100,000 memberships across 500 cohorts

No toolsync: per 5,000 rows (one transaction, as toolsync's batches) the read of the exact (cohort, user) pairs a
cohort file must check and one multi-row INSERT of the rows into mdl_cohort_members, all built before the clock
starts and sent through the bare driver. Then the same with Moodle's log rows: the same statements plus, in the same
transactions, the multi-row INSERTs of the standard log rows toolsync writes for them (one cohort_member_added a
row, as cohort_add_member() logs it: benchmarks/floor_log.py), on a second server loaded from the dump after the
first is stopped, so that neither floor's pages, purge or flushing disturb the other's. The cohorts' own
cohort_created rows (one a cohort, not a row) are left out with the cohorts, which neither floor writes. With
toolsync's start-up (~0.7 s) the floor with log rows bounds the case from above: toolsync writes those rows too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

import aiomysql

from benchmarks.cohorts import membership_pairs
from benchmarks.floor import bare_connection, fresh_server, measured
from benchmarks.floor_log import (
    LogRows,
    add_log_rows_only,
    checked_count,
    count,
    log_inserts,
    log_settings,
    run_spooled,
    spooled,
)
from tests.support.mariadb_server import ThrowawayMariaDB
from toolsync_tui.engine.moodle.events import COHORT_MEMBER_ADDED

BATCH = 5000
FIRST_USER = 100  # user ids of the statement text: the floor needs no user rows (no foreign keys in Moodle)
SYSTEM_LEVEL = 10  # CONTEXT_SYSTEM: the context of a cohort whose contextid is the system's, as the file's are


def batches(rows: int, users: int, cohorts: int, seed: int) -> list[list[tuple[int, int]]]:
    """The (cohort id, user id) pairs of each transaction, sorted."""
    pairs = membership_pairs(rows, users, cohorts, seed)
    return [
        sorted((1 + p // users, FIRST_USER + p % users) for p in pairs[start : start + BATCH])
        for start in range(0, rows, BATCH)
    ]


def statements(part: Sequence[tuple[int, int]], now: int) -> tuple[str, str]:
    tuples = ", ".join(f"({c}, {u})" for c, u in part)
    return (
        f"SELECT cohortid, userid FROM mdl_cohort_members WHERE (cohortid, userid) IN ({tuples})",
        "INSERT INTO mdl_cohort_members (cohortid, userid, timeadded) VALUES "
        + ", ".join(f"({c}, {u}, {now})" for c, u in part),
    )


async def floor(server: ThrowawayMariaDB, rows: int, users: int, cohorts: int, seed: int) -> None:
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    now = int(time.time())
    work = [statements(part, now) for part in batches(rows, users, cohorts, seed)]

    async def run() -> str:
        reading = 0.0
        for read, write in work:
            started = time.perf_counter()
            await cursor.execute(read)
            await cursor.fetchall()
            reading += time.perf_counter() - started
            await cursor.execute(write)
            await conn.commit()
        return f"reads {reading:.2f} s"

    await measured(server, cursor, "read and insert the memberships", rows, run)
    conn.close()


async def log_floor(server: ThrowawayMariaDB, rows: int, users: int, cohorts: int, seed: int) -> None:
    """The floor's statements and, in each transaction, a cohort_member_added log row per membership."""
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    now = int(time.time())
    actor, json_format = await log_settings(cursor)
    system = await _system_context(cursor)
    # objectid the cohort, relateduserid the user, in the cohort's context (the system's), courseid 0, no other.
    added = LogRows(conn.escape, actor, now, json_format).template(COHORT_MEMBER_ADDED, SYSTEM_LEVEL)
    with spooled() as spool:
        for part in batches(rows, users, cohorts, seed):
            read, write = statements(part, now)
            logs = log_inserts(added.format(c, system, 0, 0, u) for c, u in part)
            spool.add([(read, None), (write, None), *((sql, None) for sql in logs)])
        await measured(
            server,
            cursor,
            "read and insert the memberships with Moodle's log rows (a cohort_member_added row each)",
            rows,
            lambda: run_spooled(conn, cursor, spool),
        )
    await checked_count(
        cursor,
        "SELECT COUNT(*) FROM mdl_logstore_standard_log l JOIN mdl_cohort_members m ON m.cohortid = l.objectid "
        f"AND m.userid = l.relateduserid WHERE l.contextid = {system} AND l.eventname = "
        + conn.escape(COHORT_MEMBER_ADDED.eventname),
        rows,
        "cohort_member_added rows, each naming its membership",
    )
    conn.close()


async def _system_context(cursor: aiomysql.Cursor) -> int:
    return await count(cursor, f"SELECT id FROM mdl_context WHERE contextlevel = {SYSTEM_LEVEL}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_cohorts", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="memberships written (100,000)")
    parser.add_argument("--users", type=int, default=20_000, help="users they are drawn from (20,000)")
    parser.add_argument("--cohorts", type=int, default=500, help="cohorts they are drawn from (500)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the pairs (42)")
    add_log_rows_only(parser)
    args = parser.parse_args(argv)
    print(f"{args.rows:,} memberships of {args.users:,} users in {args.cohorts:,} cohorts, {BATCH:,} a transaction")
    for with_log in (True,) if args.log_rows_only else (False, True):
        server = fresh_server("as-dumped", [])
        try:
            asyncio.run((log_floor if with_log else floor)(server, args.rows, args.users, args.cohorts, args.seed))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
