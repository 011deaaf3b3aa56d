"""PostgreSQL's own floor for the users, enrols and cohorts cases: what the server alone needs for the same writes.

    python -m benchmarks.floor_postgres                           # the three cases, 100,000 rows each, every method
    python -m benchmarks.floor_postgres --case enrols --rows 100000 --method copy

The PostgreSQL counterpart of benchmarks.floor, floor_enrols and floor_cohorts (MariaDB): the statements each case
cannot do without, built before the clock starts, sent through the bare driver (asyncpg, no toolsync, no SQLAlchemy),
one transaction per batch as toolsync's batches (users 1,000 rows, as benchmarks.floor; enrols and cohorts 5,000):

- users: the users (the columns a toolsync create writes), their user contexts, one set-based UPDATE of path and
  depth; then the update floor (department and timemodified of every user, one UPDATE a batch) and the read floor
  (the 13 columns a users run compares, one SELECT a batch);
- enrols: the user enrolments, student role assignments and group memberships of the pairs (the site and the groups
  the pairs name seeded untimed, by COPY, as benchmarks.run seeds them); then the read floor (the three stored rows
  of every pair, one SELECT of each a batch);
- cohorts: per batch the read of the exact (cohort, user) pairs and the INSERT of the memberships;
- each write floor again "with Moodle's log rows": the same statements plus, in the same transactions, the standard
  log rows toolsync writes for them (user_created; user_enrolment_created, role_assigned, group_member_added;
  cohort_member_added; `other` encoded as toolsync encodes it), as benchmarks.floor_log does for MariaDB.

Each write floor runs with each `--method` of sending the rows, to find which is PostgreSQL's floor:

- values: multi-row INSERT ... VALUES of literals (statements of at most the gateway's MAX_STATEMENT bytes), sent as
  plain text (simple query protocol, no parameters), as MariaDB's floors send theirs;
- unnest: INSERT ... SELECT FROM unnest($1::bigint[], $2::text[], ...), a parameter per column, encoded in binary
  (toolsync's own bulk path on PostgreSQL: engine/moodle/postgres_bulk.py);
- copy: COPY ... FROM STDIN in binary (asyncpg's copy_records_to_table), one a table a batch.

The reads and updates use VALUES lists (values) or arrays (unnest, copy). The new rows' ids are computed beforehand
from the fresh tables' sequences (one session: consecutive ids) and checked after the run. Every floor gets a fresh
copy of the dump (CREATE DATABASE ... TEMPLATE, seeded as needed) and starts after a CHECKPOINT, so that no floor
flushes another's pages. Printed: rows/s, the server's CPU (the postmaster and its children: benchmarks/servers.py),
the peak RSS of the backend that served the floor (VmHWM: the shared buffers it touched are counted) and this
process's own peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg

from benchmarks.cohorts import membership_pairs
from benchmarks.enrolments import (
    ADMIN_ID,
    GM_COLUMNS,
    RA_COLUMNS,
    STUDENT_ROLE_ID,
    UE_COLUMNS,
    EnrolSite,
    enrolment_pairs,
    group_name,
    group_number,
    seed_enrol_site,
    seed_enrolments,
)
from benchmarks.floor_log import LOG_TABLE
from benchmarks.generate import seeded_user_row, user_row
from benchmarks.servers import BenchPostgreSQL, process_tree_cpu_seconds, start_server
from tests.support.postgres_server import DUMP_TEMPLATE
from toolsync_tui.engine.moodle.event_log import LOG_COLUMNS, ORIGIN, EventKind, php_json, php_serialize
from toolsync_tui.engine.moodle.events import (
    COHORT_MEMBER_ADDED,
    GROUP_MEMBER_ADDED,
    ROLE_ASSIGNED,
    USER_CREATED,
    USER_ENROLMENT_CREATED,
)
from toolsync_tui.engine.moodle.gateway import MAX_STATEMENT

PREFIX = "mdl_"
Method = Literal["values", "unnest", "copy"]
METHODS: tuple[Method, ...] = ("values", "unnest", "copy")
CASES = ("users", "enrols", "cohorts")
USERS_CHUNK, CHUNK = 1000, 5000  # rows a transaction: benchmarks.floor's, and toolsync's batch (floor_enrols/cohorts)
USER_LEVEL, COURSE_LEVEL, SYSTEM_LEVEL = 30, 50, 10
READ_COLUMNS = (
    "id, username, deleted, suspended, password, firstname, lastname, idnumber, email, institution, department, "
    "city, country"
)
FIRST_USER = 100  # cohorts: user ids of the statement text (the floor needs no user rows, as floor_cohorts)
LOG_TYPES = tuple(
    "bigint"
    if c
    in {"objectid", "edulevel", "contextid", "contextlevel", "contextinstanceid", "userid", "courseid"}
    | {"relateduserid", "anonymous", "timecreated", "realuserid"}
    else "text"
    for c in LOG_COLUMNS
)


# -- rows and the three ways of sending them -----------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Rows for one table: `types` the unnest array type of each column (bigint or text: the assignment casts)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    values: list[tuple[Any, ...]]


# A prepared statement: ("sql", text) sent as is; ("args", text, arrays); ("copy", table, columns, records).
Op = tuple[Any, ...]


def literal(value: Any) -> str:
    """A value as SQL text (standard_conforming_strings on, PostgreSQL's default: only ' is doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def prepared(rows: Rows, method: Method) -> list[Op]:
    """`rows` as the statements of `method`, built now (before the clock)."""
    listed = ", ".join(rows.columns)
    if method == "copy":
        return [("copy", rows.table, list(rows.columns), rows.values)]
    if method == "unnest":
        casts = ", ".join(f"${k}::{t}[]" for k, t in enumerate(rows.types, 1))
        arrays = [list(column) for column in zip(*rows.values, strict=True)]
        return [("args", f"INSERT INTO {rows.table} ({listed}) SELECT * FROM unnest({casts})", arrays)]
    head = f"INSERT INTO {rows.table} ({listed}) VALUES "
    ops: list[Op] = []
    part: list[str] = []
    size = len(head)
    for row in rows.values:
        text = "(" + ", ".join(literal(v) for v in row) + ")"
        if part and size + len(text) + 2 > MAX_STATEMENT:
            ops.append(("sql", head + ", ".join(part)))
            part, size = [], len(head)
        part.append(text)
        size += len(text) + 2
    if part:
        ops.append(("sql", head + ", ".join(part)))
    return ops


def joined(
    select: str,
    alias: str,
    names: Sequence[str],
    types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    on: str,
    method: Method,
) -> Op:
    """`select ... FROM <table> JOIN <rows as alias(names)> ON on`: a VALUES list (values) or unnest arrays."""
    if method == "values":
        values = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
        return ("sql", f"{select} JOIN (VALUES {values}) AS {alias}({', '.join(names)}) ON {on}")
    casts = ", ".join(f"${k}::{t}[]" for k, t in enumerate(types, 1))
    arrays = [list(column) for column in zip(*rows, strict=True)]
    return ("args", f"{select} JOIN unnest({casts}) AS {alias}({', '.join(names)}) ON {on}", arrays)


async def send(conn: asyncpg.Connection, op: Op) -> int:
    """Run one prepared statement; the rows it returned (reads), else 0."""
    if op[0] == "copy":
        await conn.copy_records_to_table(op[1], columns=op[2], records=op[3])
        return 0
    if op[1].startswith("SELECT"):
        return len(await conn.fetch(op[1], *(op[2] if op[0] == "args" else ())))
    if op[0] == "args":
        await conn.execute(op[1], *op[2])
    else:
        await conn.execute(op[1])
    return 0


# -- Moodle's log rows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogSite:
    actor: int  # the acting user toolsync logs (the first site admin)
    json_format: bool  # logstore_standard's jsonformat: `other` as JSON, else serialize()
    system_context: int
    now: int

    def row(
        self,
        kind: EventKind,
        contextlevel: int,
        ids: tuple[int, int, int, int, int],
        other: dict[str, Any] | None = None,
    ) -> tuple[Any, ...]:
        """A log row in LOG_COLUMNS order; ids: objectid, contextid, contextinstanceid, courseid, relateduserid."""
        objectid, contextid, instance, course, related = ids
        encoded = (php_json if self.json_format else php_serialize)(other)
        return (
            kind.eventname, kind.component, kind.action, kind.target, kind.objecttable, objectid, kind.crud,
            kind.edulevel, contextid, contextlevel, instance, self.actor, course, related, 0, encoded, self.now,
            ORIGIN, None, None,
        )  # fmt: skip


async def log_site(conn: asyncpg.Connection, now: int) -> LogSite:
    admins = await conn.fetchval("SELECT value FROM mdl_config WHERE name = 'siteadmins'")
    settings = {
        (r["plugin"], r["name"]): r["value"] or ""
        for r in await conn.fetch(
            "SELECT plugin, name, value FROM mdl_config_plugins WHERE (plugin = 'tool_log' AND name = "
            "'enabled_stores') OR (plugin = 'logstore_standard' AND name = 'jsonformat')"
        )
    }
    if "logstore_standard" not in settings.get(("tool_log", "enabled_stores"), "").split(","):
        raise RuntimeError("the site's standard log store is not enabled: toolsync would write no log rows")
    system = await conn.fetchval(f"SELECT id FROM mdl_context WHERE contextlevel = {SYSTEM_LEVEL}")
    json_format = settings.get(("logstore_standard", "jsonformat"), "0") not in ("", "0")
    return LogSite(int(str(admins).split(",")[0]), json_format, int(system), now)


def log_rows(rows: list[tuple[Any, ...]]) -> Rows:
    return Rows(LOG_TABLE, LOG_COLUMNS, LOG_TYPES, rows)


# -- measuring -----------------------------------------------------------------------------------


async def next_id(conn: asyncpg.Connection, table: str) -> int:
    """The id the next row inserted into `table` gets (its sequence's next value, not taken)."""
    row = await conn.fetchrow(f"SELECT last_value, is_called FROM {table}_id_seq")
    return int(row["last_value"]) + (1 if row["is_called"] else 0)


def peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def measured(
    server: BenchPostgreSQL, conn: asyncpg.Connection, label: str, rows: int, work: Callable[[], Awaitable[str]]
) -> float:
    """Time `work` after a CHECKPOINT; print rows/s, the server's CPU, the backend's and this process's peak RSS."""
    await conn.execute("CHECKPOINT")
    backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
    cpu, clock = process_tree_cpu_seconds(server.process.pid), time.perf_counter()
    note = await work()
    wall = time.perf_counter() - clock
    used = process_tree_cpu_seconds(server.process.pid) - cpu
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"{label}: {rows:,} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s; postgres CPU {used:.1f} s; peak RSS: "
        f"backend {peak_kb(backend) / 1024:,.0f} MB, this process {own / 1024:,.0f} MB" + (f"; {note}" if note else ""),
        flush=True,
    )
    return rows / wall


def transactions(conn: asyncpg.Connection, batches: Sequence[Sequence[Op]]) -> Callable[[], Awaitable[str]]:
    """The batches, each in a transaction of its own; the note says how many rows the reads returned."""

    async def run() -> str:
        found = 0
        reads = False
        for batch in batches:
            async with conn.transaction():
                for op in batch:
                    found += await send(conn, op)
                    reads |= op[0] != "copy" and op[1].startswith("SELECT")
        return f"{found:,} rows read" if reads else ""

    return run


async def connect(server: BenchPostgreSQL, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1", port=server.port, user=server.user, password=server.password, database=database
    )


async def expect(conn: asyncpg.Connection, what: str, sql: str, wanted: int) -> None:
    found = int(await conn.fetchval(sql))
    if found != wanted:
        raise RuntimeError(f"{what}: {found:,}, expected {wanted:,} (the ids computed beforehand were not given?)")
    print(f"  checked: {found:,} {what}", flush=True)


# -- users ---------------------------------------------------------------------------------------


async def users_floor(
    server: BenchPostgreSQL, database: str, args: argparse.Namespace, method: Method, with_log: bool
) -> None:
    conn = await connect(server, database)
    now = int(time.time())
    order = list(range(args.rows))
    random.Random(args.seed).shuffle(order)  # the file lists the users in no particular order
    site = await log_site(conn, now)
    first_user, first_context = await next_id(conn, "mdl_user"), await next_id(conn, "mdl_context")
    columns = tuple(seeded_user_row(0, now))
    types = tuple("bigint" if isinstance(v, int) else "text" for v in seeded_user_row(0, now).values())
    batches: list[list[Op]] = []
    for start in range(0, args.rows, USERS_CHUNK):
        part = order[start : start + USERS_CHUNK]
        user, context = first_user + start, first_context + start
        ops = prepared(
            Rows("mdl_user", columns, types, [tuple(seeded_user_row(i, now).values()) for i in part]), method
        )
        contexts = [(USER_LEVEL, user + k, 0, None, 0) for k in range(len(part))]
        ops += prepared(
            Rows(
                "mdl_context",
                ("contextlevel", "instanceid", "depth", "path", "locked"),
                ("bigint", "bigint", "bigint", "text", "bigint"),
                contexts,
            ),
            method,
        )
        ops.append(
            (
                "sql",
                f"UPDATE mdl_context SET path = '/1/' || id, depth = 2 "
                f"WHERE id BETWEEN {context} AND {context + len(part) - 1}",
            )
        )
        if with_log:
            logs = [
                site.row(USER_CREATED, USER_LEVEL, (user + k, context + k, user + k, 0, user + k))
                for k in range(len(part))
            ]
            ops += prepared(log_rows(logs), method)
        batches.append(ops)
    label = f"users create floor{' with log rows' if with_log else ''} ({method})"
    await measured(server, conn, label, args.rows, transactions(conn, batches))
    del batches
    await expect(
        conn,
        "users with their context (path /1/<context id>, depth 2)",
        f"SELECT COUNT(*) FROM mdl_user u JOIN mdl_context x ON x.contextlevel = {USER_LEVEL} AND x.instanceid = u.id "
        f"AND x.path = '/1/' || x.id AND x.depth = 2 WHERE u.id BETWEEN {first_user} AND {first_user + args.rows - 1}",
        args.rows,
    )
    if with_log:
        await expect(
            conn,
            "user_created rows naming their user and its context",
            f"SELECT COUNT(*) FROM {LOG_TABLE} l JOIN mdl_user u ON u.id = l.objectid AND u.id = l.relateduserid "
            f"AND u.id = l.contextinstanceid JOIN mdl_context x ON x.id = l.contextid AND x.contextlevel = "
            f"{USER_LEVEL} AND x.instanceid = u.id WHERE l.eventname = {literal(USER_CREATED.eventname)}",
            args.rows,
        )
    elif method != "copy":  # the update and read floors: values lists or arrays (COPY writes only)
        ids = {r["username"]: int(r["id"]) for r in await conn.fetch("SELECT username, id FROM mdl_user")}
        updates: list[list[Op]] = []
        reads: list[list[Op]] = []
        for start in range(0, args.rows, USERS_CHUNK):
            part = order[start : start + USERS_CHUNK]
            changed = [(ids[user_row(i)["username"]], user_row(i, 1)["department"]) for i in part]
            if method == "values":
                values = ", ".join(f"({u}, {literal(d)})" for u, d in changed)
                updates.append(
                    [
                        (
                            "sql",
                            f"UPDATE mdl_user SET department = v.d, timemodified = {now + 1} "
                            f"FROM (VALUES {values}) AS v(id, d) WHERE mdl_user.id = v.id",
                        )
                    ]
                )
                keys = ", ".join(literal(user_row(i)["idnumber"]) for i in part)
                reads.append(
                    [("sql", f"SELECT {READ_COLUMNS} FROM mdl_user WHERE mnethostid = 1 AND idnumber IN ({keys})")]
                )
            else:
                updates.append(
                    [
                        (
                            "args",
                            f"UPDATE mdl_user SET department = v.d, timemodified = {now + 1} "
                            "FROM unnest($1::bigint[], $2::text[]) AS v(id, d) WHERE mdl_user.id = v.id",
                            [[u for u, _ in changed], [d for _, d in changed]],
                        )
                    ]
                )
                reads.append(
                    [
                        (
                            "args",
                            f"SELECT {READ_COLUMNS} FROM mdl_user WHERE mnethostid = 1 AND idnumber = ANY($1::text[])",
                            [[user_row(i)["idnumber"] for i in part]],
                        )
                    ]
                )
        await measured(server, conn, f"users update floor ({method})", args.rows, transactions(conn, updates))
        await measured(server, conn, f"users read floor ({method})", args.rows, transactions(conn, reads))
    await conn.close()


# -- enrols --------------------------------------------------------------------------------------

Row = tuple[int, int, int, int, int]  # user, course, course context, manual instance, group (ids)


async def enrols_floor(
    server: BenchPostgreSQL, database: str, args: argparse.Namespace, method: Method, with_log: bool
) -> None:
    url = server.url(database)
    site, _ = await seed_enrol_site(url, PREFIX, args.users, args.courses)
    pairs = enrolment_pairs(args.rows, args.users, args.courses, args.seed)
    await seed_enrolments(url, PREFIX, site, pairs, groups="named", members=False, enrolments=False)
    conn = await connect(server, database)
    now = int(time.time())
    log = await log_site(conn, now)
    groups = {
        (int(r["courseid"]), str(r["name"])): int(r["id"])
        for r in await conn.fetch(
            f"SELECT courseid, name, id FROM mdl_groups WHERE courseid BETWEEN "
            f"{site.first_course_id} AND {site.last_course_id}"
        )
    }
    chunks = list(_enrol_chunks(site, groups, pairs))
    ue, ra = await next_id(conn, "mdl_user_enrolments"), await next_id(conn, "mdl_role_assignments")
    batches: list[list[Op]] = []
    for rows in chunks:
        ops = prepared(
            Rows(
                "mdl_user_enrolments",
                UE_COLUMNS,
                ("bigint",) * 8,
                [(0, e, u, now, 0, ADMIN_ID, now, now) for u, _, _, e, _ in rows],
            ),
            method,
        )
        ops += prepared(
            Rows(
                "mdl_role_assignments",
                RA_COLUMNS,
                ("bigint",) * 5 + ("text", "bigint", "bigint"),
                [(STUDENT_ROLE_ID, x, u, now, ADMIN_ID, "", 0, 0) for u, _, x, _, _ in rows],
            ),
            method,
        )
        ops += prepared(
            Rows(
                "mdl_groups_members",
                GM_COLUMNS,
                ("bigint", "bigint", "bigint", "text", "bigint"),
                [(g, u, now, "", 0) for u, _, _, _, g in rows],
            ),
            method,
        )
        if with_log:  # in toolsync's order: the batch's enrolments, then its assignments, then its memberships
            logs = [
                log.row(USER_ENROLMENT_CREATED, COURSE_LEVEL, (ue + k, x, c, c, u), {"enrol": "manual"})
                for k, (u, c, x, _, _) in enumerate(rows)
            ]
            logs += [
                log.row(
                    ROLE_ASSIGNED,
                    COURSE_LEVEL,
                    (STUDENT_ROLE_ID, x, c, c, u),
                    {"id": ra + k, "component": "", "itemid": 0},
                )
                for k, (u, c, x, _, _) in enumerate(rows)
            ]
            logs += [
                log.row(GROUP_MEMBER_ADDED, COURSE_LEVEL, (g, x, c, c, u), {"component": "", "itemid": 0})
                for u, c, x, _, g in rows
            ]
            ops += prepared(log_rows(logs), method)
        ue, ra = ue + len(rows), ra + len(rows)
        batches.append(ops)
    label = (
        "enrols write floor" + (" with log rows" if with_log else "") + f" ({method}: user enrolment, role assignment, "
        "group membership" + (", their 3 log rows" if with_log else "") + " a row)"
    )
    await measured(server, conn, label, len(pairs), transactions(conn, batches))
    del batches
    await expect(
        conn,
        "user enrolments, student assignments and memberships, in all",
        f"SELECT (SELECT COUNT(*) FROM mdl_user_enrolments) + (SELECT COUNT(*) FROM mdl_role_assignments WHERE roleid "
        f"= {STUDENT_ROLE_ID}) + (SELECT COUNT(*) FROM mdl_groups_members)",
        3 * len(pairs),
    )
    if with_log:
        names = [literal(k.eventname) for k in (USER_ENROLMENT_CREATED, ROLE_ASSIGNED, GROUP_MEMBER_ADDED)]
        await expect(
            conn,
            "log rows naming their enrolment, role assignment or membership",
            f"SELECT COUNT(*) FROM {LOG_TABLE} l "
            f"JOIN mdl_context x ON x.id = l.contextid AND x.contextlevel = {COURSE_LEVEL} "
            "AND x.instanceid = l.courseid AND x.instanceid = l.contextinstanceid "
            f"LEFT JOIN mdl_user_enrolments ue ON l.eventname = {names[0]} AND ue.id = l.objectid "
            "AND ue.userid = l.relateduserid "
            "LEFT JOIN mdl_enrol e ON e.id = ue.enrolid AND e.courseid = l.courseid "
            f"LEFT JOIN mdl_role_assignments ra ON l.eventname = {names[1]} AND ra.userid = l.relateduserid "
            "AND ra.contextid = l.contextid AND ra.roleid = l.objectid"
            + (" AND ra.id = (l.other::json->>'id')::bigint" if log.json_format else "")
            + f" LEFT JOIN mdl_groups_members gm ON l.eventname = {names[2]} AND gm.groupid = l.objectid "
            "AND gm.userid = l.relateduserid "
            "LEFT JOIN mdl_groups g ON g.id = gm.groupid AND g.courseid = l.courseid "
            "WHERE e.id IS NOT NULL OR ra.id IS NOT NULL OR g.id IS NOT NULL",
            3 * len(pairs),
        )
    elif method != "copy":
        reads: list[list[Op]] = []
        for rows in chunks:
            reads.append([
                joined("SELECT t.id, t.enrolid, t.userid, t.status, t.timestart, t.timeend FROM mdl_user_enrolments t",
                       "v", ("e", "u"), ("bigint", "bigint"), [(e, u) for u, _, _, e, _ in rows],
                       "t.enrolid = v.e AND t.userid = v.u", method),
                joined("SELECT t.id, t.roleid, t.contextid, t.userid FROM mdl_role_assignments t", "v", ("u", "x"),
                       ("bigint", "bigint"), [(u, x) for u, _, x, _, _ in rows],
                       f"t.userid = v.u AND t.contextid = v.x AND t.roleid = {STUDENT_ROLE_ID} AND t.component = '' "
                       "AND t.itemid = 0", method),
                joined("SELECT t.id, t.groupid, t.userid FROM mdl_groups_members t", "v", ("u", "g"),
                       ("bigint", "bigint"), [(u, g) for u, _, _, _, g in rows], "t.userid = v.u AND t.groupid = v.g",
                       method),
            ])  # fmt: skip
        await measured(
            server,
            conn,
            f"enrols read floor ({method}: the 3 stored rows of every pair)",
            len(pairs),
            transactions(conn, reads),
        )
    await conn.close()


def _enrol_chunks(site: EnrolSite, groups: dict[tuple[int, str], int], pairs: Sequence[int]) -> list[list[Row]]:
    users = site.users
    return [
        [
            (site.user_ids[u], site.course_ids[c], site.course_contexts[c], site.manual_instances[c],
             groups[site.course_ids[c], group_name(group_number(u, c))])
            for u, c in ((p % users, p // users) for p in pairs[start : start + CHUNK])
        ]
        for start in range(0, len(pairs), CHUNK)
    ]  # fmt: skip


# -- cohorts -------------------------------------------------------------------------------------


async def cohorts_floor(
    server: BenchPostgreSQL, database: str, args: argparse.Namespace, method: Method, with_log: bool
) -> None:
    conn = await connect(server, database)
    now = int(time.time())
    log = await log_site(conn, now)
    pairs = membership_pairs(args.rows, args.users, args.cohorts, args.seed)
    batches: list[list[Op]] = []
    for start in range(0, args.rows, CHUNK):
        part = sorted((1 + p // args.users, FIRST_USER + p % args.users) for p in pairs[start : start + CHUNK])
        read = joined(
            "SELECT t.cohortid, t.userid FROM mdl_cohort_members t",
            "v",
            ("c", "u"),
            ("bigint", "bigint"),
            part,
            "t.cohortid = v.c AND t.userid = v.u",
            "unnest" if method == "copy" else method,
        )
        ops = [
            read,
            *prepared(
                Rows(
                    "mdl_cohort_members",
                    ("cohortid", "userid", "timeadded"),
                    ("bigint",) * 3,
                    [(c, u, now) for c, u in part],
                ),
                method,
            ),
        ]
        if with_log:
            logs = [log.row(COHORT_MEMBER_ADDED, SYSTEM_LEVEL, (c, log.system_context, 0, 0, u)) for c, u in part]
            ops += prepared(log_rows(logs), method)
        batches.append(ops)
    label = f"cohorts read and insert floor{' with log rows' if with_log else ''} ({method})"
    await measured(server, conn, label, args.rows, transactions(conn, batches))
    await expect(conn, "cohort members", "SELECT COUNT(*) FROM mdl_cohort_members", args.rows)
    if with_log:
        await expect(
            conn,
            "cohort_member_added rows naming their membership",
            f"SELECT COUNT(*) FROM {LOG_TABLE} l JOIN mdl_cohort_members m ON m.cohortid = l.objectid "
            f"AND m.userid = l.relateduserid WHERE l.contextid = {log.system_context} "
            f"AND l.eventname = {literal(COHORT_MEMBER_ADDED.eventname)}",
            args.rows,
        )
    await conn.close()


def fresh_database(server: BenchPostgreSQL, name: str) -> None:
    """A copy of the dump's template by file copy: on disk, the default strategy (WAL_LOG) writes every page of the
    ~500 tables to the WAL, ~10x slower."""
    server.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    server.sql(f'CREATE DATABASE "{name}" TEMPLATE "{DUMP_TEMPLATE}" STRATEGY FILE_COPY')


FLOORS = {"users": users_floor, "enrols": enrols_floor, "cohorts": cohorts_floor}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_postgres", description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, action="append", help="users, enrols or cohorts (all three)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows written (100,000)")
    parser.add_argument("--method", choices=METHODS, action="append", help="values, unnest or copy (all three)")
    parser.add_argument("--no-log", action="store_true", help="only the plain floors, not those with log rows")
    parser.add_argument("--users", type=int, default=20_000, help="enrols and cohorts: users drawn from (20,000)")
    parser.add_argument("--courses", type=int, default=2_000, help="enrols: courses seeded (2,000)")
    parser.add_argument("--cohorts", type=int, default=500, help="cohorts: cohorts drawn from (500)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the order and the pairs (42)")
    args = parser.parse_args(argv)
    clock = time.monotonic()
    server = start_server("postgresql")
    assert isinstance(server, BenchPostgreSQL)
    try:
        server.load_dump("moodle")
        print(f"postgres on disk, the Moodle dump loaded: {time.monotonic() - clock:.1f} s", flush=True)
        for case in args.case or CASES:
            size = {"users": f"{args.rows:,} users, {USERS_CHUNK:,} a transaction"}.get(
                case, f"{args.rows:,} rows, {CHUNK:,} a transaction"
            )
            print(f"{case}: {size}", flush=True)
            for with_log in (False, True)[: 1 if args.no_log else 2]:
                for method in args.method or METHODS:
                    database = f"floor_{case}_{method}_{int(with_log)}"
                    fresh_database(server, database)
                    asyncio.run(FLOORS[case](server, database, args, method, with_log))
                    server.sql(f'DROP DATABASE "{database}"')
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
