"""The database's own floor for the enrols cases: what MariaDB alone needs to write (and read back) the enrolments.

    python -m benchmarks.floor_enrols                        # 1,000,000 enrolments, the dump's tables as they are
    python -m benchmarks.floor_enrols --rows 100000
    python -m benchmarks.floor_enrols --row-format dynamic   # the three tables converted to DYNAMIC first

The site of the enrols cases (20,000 users, 2,000 courses with their contexts and enrol instances) and the groups
the pairs name are seeded first, untimed (an enrols-add run creates those ~20,000 groups itself; they are a
handful of statements). Then, with no toolsync at all, the statements an enrols add cannot do without, built
before the clock starts and sent through the bare driver (aiomysql), one transaction per 5,000 rows in the file's
order, as toolsync's batches:

- write: a multi-row INSERT of the user enrolments, one of the student role assignments and one of the group
  memberships (the ids known beforehand: no lookups);
- read: per 5,000 rows, one SELECT each of the stored enrolments, role assignments and memberships of exactly those
  pairs (a row-constructor IN list, which MariaDB turns into a semi-join on the unique/compound index; role
  assignments with FORCE INDEX, see RA_INDEX): what an unchanged run must read to find nothing to do.

It prints mariadbd's CPU time and InnoDB's page compressions (the dump's tables are ROW_FORMAT=COMPRESSED).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from benchmarks.enrolments import (
    ADMIN_ID,
    GM_COLUMNS,
    RA_COLUMNS,
    STUDENT_ROLE_ID,
    UE_COLUMNS,
    EnrolSite,
    enrolment_pairs,
    group_number,
    seed_enrol_site,
    seed_enrolments,
)
from benchmarks.floor import bare_connection, mariadbd_cpu_seconds, page_compressions
from tests.support.mariadb_server import ThrowawayMariaDB

DATABASE = "moodle"
PREFIX = "mdl_"
CHUNK = 5000
TABLES = ("user_enrolments", "role_assignments", "groups_members")
# (userid, contextid, roleid). Left to itself, MariaDB 10.11 reads the pairs' role assignments through the contextid
# index (every assignment of the course, ~500 at 1M rows) and takes ~6x longer already at 100,000 rows.
RA_INDEX = f"{PREFIX}roleassi_useconrol_ix"


async def floor(server: ThrowawayMariaDB, site: EnrolSite, pairs: Sequence[int]) -> None:
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    await cursor.execute(
        f"SELECT courseid, name, id FROM {PREFIX}groups "
        f"WHERE courseid BETWEEN {site.first_course_id} AND {site.last_course_id}"
    )
    group_ids = {(int(course_id), str(name)): int(gid) for course_id, name, gid in await cursor.fetchall()}
    number = {course_id: c for c, course_id in enumerate(site.course_ids)}
    users, now = site.users, int(time.time())
    writes: list[list[str]] = []
    reads: list[list[str]] = []
    for start in range(0, len(pairs), CHUNK):
        part = [(p % users, p // users) for p in pairs[start : start + CHUNK]]
        enrolments = [(site.manual_instances[c], site.user_ids[u]) for u, c in part]
        assignments = [(site.course_contexts[c], site.user_ids[u]) for u, c in part]
        memberships = [
            (group_ids[site.course_ids[c], f"TD {group_number(u, c) + 1:02d}"], site.user_ids[u]) for u, c in part
        ]
        writes.append(
            [
                f"INSERT INTO {PREFIX}user_enrolments ({', '.join(UE_COLUMNS)}) VALUES "
                + ", ".join(f"(0, {e}, {u}, {now}, 0, {ADMIN_ID}, {now}, {now})" for e, u in enrolments),
                f"INSERT INTO {PREFIX}role_assignments ({', '.join(RA_COLUMNS)}) VALUES "
                + ", ".join(f"({STUDENT_ROLE_ID}, {x}, {u}, {now}, {ADMIN_ID}, '', 0, 0)" for x, u in assignments),
                f"INSERT INTO {PREFIX}groups_members ({', '.join(GM_COLUMNS)}) VALUES "
                + ", ".join(f"({g}, {u}, {now}, '', 0)" for g, u in memberships),
            ]
        )
        reads.append(
            [
                f"SELECT id, enrolid, userid, status, timestart, timeend FROM {PREFIX}user_enrolments "
                f"WHERE (enrolid, userid) IN ({', '.join(f'({e}, {u})' for e, u in enrolments)})",
                f"SELECT id, roleid, contextid, userid FROM {PREFIX}role_assignments FORCE INDEX ({RA_INDEX}) "
                f"WHERE roleid = {STUDENT_ROLE_ID} AND component = '' AND itemid = 0 "
                f"AND (userid, contextid) IN ({', '.join(f'({u}, {x})' for x, u in assignments)})",
                f"SELECT id, groupid, userid FROM {PREFIX}groups_members "
                f"WHERE (userid, groupid) IN ({', '.join(f'({u}, {g})' for g, u in memberships)})",
            ]
        )
    del number

    async def timed(label: str, work: list[list[str]], fetch: bool = False) -> None:
        ops, spent = await page_compressions(cursor)
        cpu, clock = mariadbd_cpu_seconds(server), time.perf_counter()
        found = 0
        for statements in work:
            for sql in statements:
                await cursor.execute(sql)
                if fetch:
                    found += len(await cursor.fetchall())
            await conn.commit()
        wall = time.perf_counter() - clock
        used = mariadbd_cpu_seconds(server) - cpu
        ops_after, spent_after = await page_compressions(cursor)
        rows = len(pairs)
        print(
            f"{label}: {rows:,} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s; mariadbd CPU {used:.1f} s; "
            f"InnoDB page compressions {ops_after - ops:,} taking {spent_after - spent} s"
            + (f"; {found:,} rows read" if fetch else ""),
            flush=True,
        )

    await timed("write floor (user enrolment + role assignment + group membership a row)", writes)
    await timed("read floor (the stored enrolment, role assignment and membership of every row)", reads, fetch=True)
    conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_enrols", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="enrolments written (1,000,000)")
    parser.add_argument("--users", type=int, default=20_000, help="users seeded (20,000)")
    parser.add_argument("--courses", type=int, default=2_000, help="courses seeded (2,000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the pairs (42, as the enrols cases)")
    parser.add_argument(
        "--row-format",
        choices=["as-dumped", "dynamic"],
        default="as-dumped",
        help="user_enrolments, role_assignments, groups_members as the dump makes them (COMPRESSED), or DYNAMIC",
    )
    args = parser.parse_args(argv)
    server = ThrowawayMariaDB.start()
    try:
        server.load_dump(DATABASE)
        if args.row_format == "dynamic":
            server.sql("; ".join(f"ALTER TABLE {PREFIX}{t} ROW_FORMAT=DYNAMIC" for t in TABLES), DATABASE)
        clock = time.monotonic()
        site, _ = asyncio.run(seed_enrol_site(server.url(DATABASE), PREFIX, args.users, args.courses))
        pairs = enrolment_pairs(args.rows, args.users, args.courses, args.seed)
        asyncio.run(
            seed_enrolments(server.url(DATABASE), PREFIX, site, pairs, groups="named", members=False, enrolments=False)
        )
        print(
            f"{args.rows:,} enrolments of {args.users:,} users in {args.courses:,} courses, {CHUNK:,} a transaction, "
            f"tables {args.row_format}; setup {time.monotonic() - clock:.1f} s",
            flush=True,
        )
        asyncio.run(floor(server, site, pairs))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
