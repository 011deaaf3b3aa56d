"""The database's own floor for the users cases: what MariaDB alone needs to write the same users.

    python -m benchmarks.floor                          # 100,000 users, the dump's tables as they are
    python -m benchmarks.floor --row-format dynamic     # the same after ALTER TABLE ... ROW_FORMAT=DYNAMIC

No toolsync here: the statements a users run cannot do without, built before the clock starts and sent
through the bare driver (aiomysql), one transaction per 1,000 rows as toolsync's batches:

- create: a multi-row INSERT of the users (the columns a toolsync create writes), their user contexts
  (INSERT, then one set-based UPDATE of path and depth, as Moodle and toolsync do);
- update: one UPDATE ... JOIN per 1,000 rows setting department and timemodified;
- read: one SELECT per 1,000 idnumbers of the 13 columns a users run compares;
- create with Moodle's log rows: the create's statements plus, in the same transactions, the multi-row INSERT of
  the standard log rows toolsync writes for them (one `\\core\\event\\user_created` a user, as Moodle's
  user_create_user() logs it: benchmarks/floor_log.py), on a second server loaded from the dump after the first
  is stopped, so that neither floor's pages, purge or flushing disturb the other's and both get the same ids.
  The statements are spooled to a temporary file before the clock; the time to read them back is printed.

A toolsync case cannot run faster than its floor, and toolsync writes the log rows too (the site's standard log
store is enabled, as on a fresh site): the floor with the log rows is the one to compare users-create with. The
Moodle 4.5 dump creates every table with ROW_FORMAT=COMPRESSED (Moodle's choice on MariaDB): each write that does not
fit a page's modification log recompresses the 8 KB page with zlib, which is what the printed InnoDB compression
figures count.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiomysql

from benchmarks.floor_log import (
    LogRows,
    add_log_rows_only,
    checked_count,
    log_inserts,
    log_settings,
    next_id,
    run_spooled,
    spooled,
)
from benchmarks.generate import seeded_user_row, user_row
from tests.support.mariadb_server import ThrowawayMariaDB
from toolsync_tui.engine.moodle.events import USER_CREATED

DATABASE = "moodle"
CHUNK = 1000
READ_COLUMNS = (
    "id, username, deleted, suspended, password, firstname, lastname, idnumber, email, institution, department, "
    "city, country"
)
USER_LEVEL = 30  # CONTEXT_USER
# The columns of seeded_user_row a toolsync create writes: the others (auth, password, lang ...) every row gives the
# column's default, and toolsync leaves those out of its INSERTs (moodle/site_defaults.py).
USER_COLUMNS = (
    "username", "firstname", "lastname", "email", "idnumber", "institution", "department", "city", "country",
    "confirmed", "mnethostid", "timecreated", "timemodified",
)  # fmt: skip


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


async def measured(
    server: ThrowawayMariaDB, cursor: aiomysql.Cursor, label: str, rows: int, work: Callable[[], Awaitable[str]]
) -> None:
    """Time `work` and print the floor's line: rows/s, mariadbd's CPU, InnoDB's page compressions, then work's note."""
    ops, spent = await page_compressions(cursor)
    cpu, clock = mariadbd_cpu_seconds(server), time.perf_counter()
    note = await work()
    wall = time.perf_counter() - clock
    used = mariadbd_cpu_seconds(server) - cpu
    ops_after, spent_after = await page_compressions(cursor)
    print(
        f"{label}: {rows:,} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s; mariadbd CPU {used:.1f} s; "
        f"InnoDB page compressions {ops_after - ops:,} taking {spent_after - spent} s" + (f"; {note}" if note else ""),
        flush=True,
    )


def fresh_server(row_format: str, tables: Sequence[str]) -> ThrowawayMariaDB:
    """A throwaway server with the dump loaded, `tables` converted to ROW_FORMAT=DYNAMIC when asked."""
    server = ThrowawayMariaDB.start()
    try:
        server.load_dump(DATABASE)
        if row_format == "dynamic":
            server.sql("; ".join(f"ALTER TABLE {t} ROW_FORMAT=DYNAMIC" for t in tables), DATABASE)
    except BaseException:
        server.stop()
        raise
    return server


def shuffled(users: int, seed: int) -> list[int]:
    order = list(range(users))
    random.Random(seed).shuffle(order)  # the file lists the users in no particular order
    return order


def user_insert(conn: aiomysql.Connection, part: Sequence[int], now: int) -> str:
    rows = [seeded_user_row(i, now) for i in part]
    values = ", ".join("(" + ", ".join(conn.escape(row[c]) for c in USER_COLUMNS) + ")" for row in rows)
    return f"INSERT INTO mdl_user ({', '.join(USER_COLUMNS)}) VALUES {values}"


def context_insert(first_user: int, count: int) -> str:
    # depth 0, path NULL and locked 0 are the columns' defaults: left out, as toolsync leaves them out.
    return "INSERT INTO mdl_context (contextlevel, instanceid) VALUES " + ", ".join(
        f"({USER_LEVEL}, {i})" for i in range(first_user, first_user + count)
    )


def context_paths(first: int, count: int) -> str:
    return (
        f"UPDATE mdl_context SET path = CONCAT('/1/', id), depth = 2 WHERE id BETWEEN {first} AND {first + count - 1}"
    )


async def floor(server: ThrowawayMariaDB, users: int, seed: int) -> None:
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    now = int(time.time())
    order = shuffled(users, seed)
    inserts = [user_insert(conn, order[start : start + CHUNK], now) for start in range(0, users, CHUNK)]

    async def timed(label: str, work: Sequence[str], per_statement: bool = False) -> None:
        async def run() -> str:
            for sql in work:
                await cursor.execute(sql)
                if per_statement:
                    await _contexts(cursor, cursor.lastrowid, cursor.rowcount)
                await conn.commit()
            return ""

        await measured(server, cursor, label, users, run)

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
    await cursor.execute(context_insert(first_user, count))
    await cursor.execute(context_paths(cursor.lastrowid, count))


async def log_floor(server: ThrowawayMariaDB, users: int, seed: int) -> None:
    """The create floor's statements and, in each transaction, its users' user_created log rows (ids computed
    beforehand from the fresh tables' AUTO_INCREMENT, checked as the INSERTs run)."""
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    now = int(time.time())
    order = shuffled(users, seed)
    actor, json_format = await log_settings(cursor)
    # base::create() of a user_created event: objectid, context instance and relateduserid the user, courseid 0.
    created = LogRows(conn.escape, actor, now, json_format).template(USER_CREATED, USER_LEVEL)
    first_user, first_context = await next_id(cursor, "mdl_user"), await next_id(cursor, "mdl_context")
    with spooled() as spool:
        for start in range(0, users, CHUNK):
            part = order[start : start + CHUNK]
            user, context = first_user + start, first_context + start
            logs = log_inserts(created.format(user + k, context + k, user + k, 0, user + k) for k in range(len(part)))
            spool.add(
                [
                    (user_insert(conn, part, now), user),
                    (context_insert(user, len(part)), context),
                    (context_paths(context, len(part)), None),
                    *((sql, None) for sql in logs),
                ]
            )
        await measured(
            server,
            cursor,
            "create floor with Moodle's log rows (users, their contexts, a user_created row each)",
            users,
            lambda: run_spooled(conn, cursor, spool),
        )
    await checked_count(
        cursor,
        "SELECT COUNT(*) FROM mdl_logstore_standard_log l JOIN mdl_user u ON u.id = l.objectid "
        "AND u.id = l.relateduserid AND u.id = l.contextinstanceid JOIN mdl_context x ON x.id = l.contextid "
        f"AND x.contextlevel = {USER_LEVEL} AND x.instanceid = u.id WHERE l.eventname = "
        + conn.escape(USER_CREATED.eventname),
        users,
        "user_created rows, each naming its user and the user's context",
    )
    conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="users written (100,000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the row order (42)")
    parser.add_argument(
        "--row-format",
        choices=["as-dumped", "dynamic"],
        default="as-dumped",
        help="mdl_user and mdl_context (and the log table, for the floor with log rows) as the dump makes them "
        "(COMPRESSED), or converted to DYNAMIC first",
    )
    add_log_rows_only(parser)
    args = parser.parse_args(argv)
    tables = ["mdl_user", "mdl_context"]
    print(f"{args.users:,} users, {CHUNK:,} a statement, tables {args.row_format}", flush=True)
    if not args.log_rows_only:
        server = fresh_server(args.row_format, tables)
        try:
            asyncio.run(floor(server, args.users, args.seed))
        finally:
            server.stop()
    clock = time.monotonic()
    server = fresh_server(args.row_format, [*tables, "mdl_logstore_standard_log"])
    try:
        print(
            f"a second server from the dump for the floor with log rows: {time.monotonic() - clock:.1f} s", flush=True
        )
        asyncio.run(log_floor(server, args.users, args.seed))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
