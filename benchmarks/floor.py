"""The database's own floor for the users cases: what MariaDB alone needs to write the same users.

    python -m benchmarks.floor                          # 100,000 users, the dump's tables as they are
    python -m benchmarks.floor --row-format dynamic     # the same after ALTER TABLE ... ROW_FORMAT=DYNAMIC

No toolsync here: the statements a users run cannot do without, built before the clock starts and sent
through the bare driver (aiomysql), one transaction per 1,000 rows as toolsync's batches:

- create: a multi-row INSERT of the users (the columns a toolsync create writes), their user contexts
  (INSERT, then one set-based UPDATE of path and depth, as Moodle and toolsync do);
- update: one UPDATE ... JOIN per 1,000 rows setting department and timemodified;
- read: one SELECT per 1,000 idnumbers of the 13 columns a users run compares.

A toolsync case cannot run faster than its floor. The Moodle 4.5 dump creates every table with
ROW_FORMAT=COMPRESSED (Moodle's choice on MariaDB): each write that does not fit a page's modification log
recompresses the 8 KB page with zlib, which is what the printed InnoDB compression figures count.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiomysql

from benchmarks.generate import seeded_user_row, user_row
from tests.support.mariadb_server import ThrowawayMariaDB

DATABASE = "moodle"
CHUNK = 1000
READ_COLUMNS = (
    "id, username, deleted, suspended, password, firstname, lastname, idnumber, email, institution, department, "
    "city, country"
)


def mariadbd_cpu_seconds(server: ThrowawayMariaDB) -> float:
    """mariadbd's CPU seconds so far (user + system), from /proc."""
    pid = int((server.root / "mysqld.pid").read_text())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100 Hz on Linux)


async def bare_connection(server: ThrowawayMariaDB) -> aiomysql.Connection:
    """The bare driver's connection to the throwaway server's dump database, transactions explicit."""
    return await aiomysql.connect(
        host="127.0.0.1",
        port=server.port,
        user="toolsync",
        password="toolsync",
        db=DATABASE,
        charset="utf8mb4",
        autocommit=False,
    )


async def page_compressions(cursor: aiomysql.Cursor) -> tuple[int, int]:
    await cursor.execute("SELECT SUM(compress_ops), SUM(compress_time) FROM information_schema.INNODB_CMP")
    ops, seconds = await cursor.fetchone()
    return int(ops or 0), int(seconds or 0)


async def floor(server: ThrowawayMariaDB, users: int, seed: int) -> None:
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    now = int(time.time())
    order = list(range(users))
    random.Random(seed).shuffle(order)  # the file lists the users in no particular order
    columns = list(seeded_user_row(0, now))
    inserts = []
    for start in range(0, users, CHUNK):
        rows = [tuple(seeded_user_row(i, now).values()) for i in order[start : start + CHUNK]]
        values = ", ".join("(" + ", ".join(conn.escape(v) for v in row) + ")" for row in rows)
        inserts.append(f"INSERT INTO mdl_user ({', '.join(columns)}) VALUES {values}")

    async def timed(label: str, work: Sequence[str], per_statement: bool = False) -> None:
        ops, spent = await page_compressions(cursor)
        cpu, clock = mariadbd_cpu_seconds(server), time.perf_counter()
        for sql in work:
            await cursor.execute(sql)
            if per_statement:
                await _contexts(cursor, cursor.lastrowid, cursor.rowcount)
            await conn.commit()
        wall = time.perf_counter() - clock
        used = mariadbd_cpu_seconds(server) - cpu
        ops_after, spent_after = await page_compressions(cursor)
        print(
            f"{label}: {users:,} rows in {wall:.1f} s = {users / wall:,.0f} rows/s; mariadbd CPU {used:.1f} s; "
            f"InnoDB page compressions {ops_after - ops:,} taking {spent_after - spent} s",
            flush=True,
        )

    await timed("create floor (users and their contexts)", inserts, per_statement=True)
    await cursor.execute("SELECT username, id FROM mdl_user WHERE mnethostid = 1")
    ids = dict(await cursor.fetchall())
    updates, reads = [], []
    for start in range(0, users, CHUNK):
        part = order[start : start + CHUNK]
        derived = " UNION ALL ".join(
            f"SELECT {ids[user_row(i)['username']]} AS id, {conn.escape(user_row(i, 1)['department'])} AS department"
            for i in part
        )
        updates.append(
            f"UPDATE mdl_user JOIN ({derived}) AS v ON mdl_user.id = v.id "
            f"SET mdl_user.department = v.department, mdl_user.timemodified = {now + 1}"
        )
        keys = ", ".join(conn.escape(user_row(i)["idnumber"]) for i in part)
        reads.append(f"SELECT {READ_COLUMNS} FROM mdl_user WHERE mnethostid = 1 AND idnumber IN ({keys})")
    await timed("update floor (department of every user)", updates)
    await timed("read floor (the stored values a users run compares)", reads)
    conn.close()


async def _contexts(cursor: aiomysql.Cursor, first_user: int, count: int) -> None:
    await cursor.execute(
        "INSERT INTO mdl_context (contextlevel, instanceid, depth, path, locked) VALUES "
        + ", ".join(f"(30, {i}, 0, NULL, 0)" for i in range(first_user, first_user + count))
    )
    first = cursor.lastrowid
    await cursor.execute(
        f"UPDATE mdl_context SET path = CONCAT('/1/', id), depth = 2 WHERE id BETWEEN {first} AND {first + count - 1}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="users written (100,000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the row order (42)")
    parser.add_argument(
        "--row-format",
        choices=["as-dumped", "dynamic"],
        default="as-dumped",
        help="mdl_user and mdl_context as the dump makes them (COMPRESSED), or converted to DYNAMIC first",
    )
    args = parser.parse_args(argv)
    server = ThrowawayMariaDB.start()
    try:
        server.load_dump(DATABASE)
        if args.row_format == "dynamic":
            server.sql("ALTER TABLE mdl_user ROW_FORMAT=DYNAMIC; ALTER TABLE mdl_context ROW_FORMAT=DYNAMIC", DATABASE)
        print(f"{args.users:,} users, {CHUNK:,} a statement, tables {args.row_format}", flush=True)
        asyncio.run(floor(server, args.users, args.seed))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
