"""The database's own floor for the enrols cases: what MariaDB alone needs to write (and read back) the enrolments.

    python -m benchmarks.floor_enrols                        # 1,000,000 enrolments, the dump's tables as they are
    python -m benchmarks.floor_enrols --rows 100000
    python -m benchmarks.floor_enrols --row-format dynamic   # the tables written converted to DYNAMIC first

The site of the enrols cases (20,000 users, 2,000 courses with their contexts and enrol instances) is seeded first,
untimed, with (for the write and read floors) the groups the pairs name. Then, with no toolsync at all, the
statements an enrols add cannot do without, built before the clock starts and sent through the bare driver
(aiomysql), one transaction per 5,000 rows in the file's order, as toolsync's batches:

- write: a multi-row INSERT of the user enrolments, one of the student role assignments and one of the group
  memberships (the ids known beforehand: no lookups);
- read: per 5,000 rows, one SELECT each of the stored enrolments, role assignments and memberships of exactly those
  pairs (a row-constructor IN list, which MariaDB turns into a semi-join on the unique/compound index; role
  assignments with FORCE INDEX, see RA_INDEX): what an unchanged run must read to find nothing to do;
- write with Moodle's log rows: what an enrols-add run writes. In each transaction, the groups the file names
  first there (as its gaddcreate creates them: ~20,000 at 100,000 rows), the write's statements, and the multi-row
  INSERTs of the standard log rows toolsync writes for them: a group_created a group, then three a row as Moodle's
  APIs log them (user_enrolment_created from enrol_user(), role_assigned from role_assign(), group_member_added
  from groups_add_member(), with their `other`: benchmarks/floor_log.py). On a second server seeded alike, without
  the groups, after the first is stopped, so that neither floor's pages, purge or flushing disturb the other's and
  both get the same ids. The statements are spooled to a temporary file before the clock
  (3,000,000 log rows do not belong in memory); the time to read them back is printed.

It prints mariadbd's CPU time and InnoDB's page compressions (the dump's tables are ROW_FORMAT=COMPRESSED). toolsync
writes the log rows too (the site's standard log store is enabled, as on a fresh site): the floor with the log rows
is the one to compare enrols-add with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from itertools import chain

import aiomysql

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
from benchmarks.floor import bare_connection, fresh_server, measured
from benchmarks.floor_log import (
    MARK,
    LogRows,
    add_log_rows_only,
    checked_count,
    log_inserts,
    log_settings,
    next_id,
    run_spooled,
    spooled,
)
from tests.support.mariadb_server import ThrowawayMariaDB
from toolsync_tui.engine.moodle.events import GROUP_CREATED, GROUP_MEMBER_ADDED, ROLE_ASSIGNED, USER_ENROLMENT_CREATED

DATABASE = "moodle"
PREFIX = "mdl_"
CHUNK = 5000
TABLES = ("user_enrolments", "role_assignments", "groups_members")
# (userid, contextid, roleid). Left to itself, MariaDB 10.11 reads the pairs' role assignments through the contextid
# index (every assignment of the course, ~500 at 1M rows) and takes ~6x longer already at 100,000 rows.
RA_INDEX = f"{PREFIX}roleassi_useconrol_ix"
COURSE_LEVEL = 50  # CONTEXT_COURSE

# A row of the file as ids: user, course, course context, manual enrol instance, group.
Row = tuple[int, int, int, int, int]


async def group_ids_of(cursor: aiomysql.Cursor, site: EnrolSite) -> dict[tuple[int, str], int]:
    await cursor.execute(
        f"SELECT courseid, name, id FROM {PREFIX}groups "
        f"WHERE courseid BETWEEN {site.first_course_id} AND {site.last_course_id}"
    )
    return {(int(course_id), str(name)): int(gid) for course_id, name, gid in await cursor.fetchall()}


def chunks(site: EnrolSite, group_ids: dict[tuple[int, str], int], pairs: Sequence[int]) -> Iterator[list[Row]]:
    """The pairs, CHUNK at a time, as ids."""
    return (rows for rows, _ in creating_chunks(site, group_ids, pairs, 0))


def creating_chunks(
    site: EnrolSite, group_ids: dict[tuple[int, str], int], pairs: Sequence[int], next_group: int
) -> Iterator[tuple[list[Row], list[tuple[int, str]]]]:
    """The pairs, CHUNK at a time, as ids, with the groups (course id, name) the chunk names first: those not in
    `group_ids` get ids from `next_group` on, in the order named (the groups' AUTO_INCREMENT on a fresh table)."""
    users = site.users
    for start in range(0, len(pairs), CHUNK):
        new: list[tuple[int, str]] = []
        for u, c in ((p % users, p // users) for p in pairs[start : start + CHUNK]):
            key = (site.course_ids[c], group_name(group_number(u, c)))
            if key not in group_ids:
                group_ids[key] = next_group + len(new)
                new.append(key)
        next_group += len(new)
        rows = [
            (
                site.user_ids[u],
                site.course_ids[c],
                site.course_contexts[c],
                site.manual_instances[c],
                group_ids[site.course_ids[c], group_name(group_number(u, c))],
            )
            for u, c in ((p % users, p // users) for p in pairs[start : start + CHUNK])
        ]
        yield rows, new


# The columns a toolsync run writes: every row gives the others their default (status 0, component '', itemid 0,
# sortorder 0), which toolsync leaves out of its INSERTs (moodle/site_defaults.py).
UE_WRITTEN = tuple(c for c in UE_COLUMNS if c != "status")
RA_WRITTEN = tuple(c for c in RA_COLUMNS if c not in ("component", "itemid", "sortorder"))
GM_WRITTEN = tuple(c for c in GM_COLUMNS if c not in ("component", "itemid"))


def write_statements(rows: Sequence[Row], now: int) -> list[str]:
    return [
        f"INSERT INTO {PREFIX}user_enrolments ({', '.join(UE_WRITTEN)}) VALUES "
        + ", ".join(f"({e}, {u}, {now}, 0, {ADMIN_ID}, {now}, {now})" for u, _, _, e, _ in rows),
        f"INSERT INTO {PREFIX}role_assignments ({', '.join(RA_WRITTEN)}) VALUES "
        + ", ".join(f"({STUDENT_ROLE_ID}, {x}, {u}, {now}, {ADMIN_ID})" for u, _, x, _, _ in rows),
        f"INSERT INTO {PREFIX}groups_members ({', '.join(GM_WRITTEN)}) VALUES "
        + ", ".join(f"({g}, {u}, {now})" for u, _, _, _, g in rows),
    ]


def read_statements(rows: Sequence[Row]) -> list[str]:
    return [
        f"SELECT id, enrolid, userid, status, timestart, timeend FROM {PREFIX}user_enrolments "
        f"WHERE (enrolid, userid) IN ({', '.join(f'({e}, {u})' for u, _, _, e, _ in rows)})",
        f"SELECT id, roleid, contextid, userid FROM {PREFIX}role_assignments FORCE INDEX ({RA_INDEX}) "
        f"WHERE roleid = {STUDENT_ROLE_ID} AND component = '' AND itemid = 0 "
        f"AND (userid, contextid) IN ({', '.join(f'({u}, {x})' for u, _, x, _, _ in rows)})",
        f"SELECT id, groupid, userid FROM {PREFIX}groups_members "
        f"WHERE (userid, groupid) IN ({', '.join(f'({u}, {g})' for u, _, _, _, g in rows)})",
    ]


async def floor(server: ThrowawayMariaDB, site: EnrolSite, pairs: Sequence[int]) -> None:
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    group_ids = await group_ids_of(cursor, site)
    now = int(time.time())
    writes: list[list[str]] = []
    reads: list[list[str]] = []
    for rows in chunks(site, group_ids, pairs):
        writes.append(write_statements(rows, now))
        reads.append(read_statements(rows))

    async def timed(label: str, work: list[list[str]], fetch: bool = False) -> None:
        found = 0

        async def run() -> str:
            nonlocal found
            for statements in work:
                for sql in statements:
                    await cursor.execute(sql)
                    if fetch:
                        found += len(await cursor.fetchall())
                await conn.commit()
            return f"{found:,} rows read" if fetch else ""

        await measured(server, cursor, label, len(pairs), run)

    await timed("write floor (user enrolment + role assignment + group membership a row)", writes)
    await timed("read floor (the stored enrolment, role assignment and membership of every row)", reads, fetch=True)
    conn.close()


async def log_floor(server: ThrowawayMariaDB, site: EnrolSite, pairs: Sequence[int]) -> None:
    """The groups each transaction names first, the write floor's statements and their log rows, in toolsync's order
    (the batch's group_created rows, then user_enrolment_created, role_assigned, group_member_added); ids computed
    beforehand from the fresh tables' AUTO_INCREMENT, checked as the INSERTs run."""
    conn = await bare_connection(server)
    cursor = await conn.cursor()
    group_ids = await group_ids_of(cursor, site)  # none: the groups are the floor's to create
    contexts = dict(zip(site.course_ids, site.course_contexts, strict=True))
    now = int(time.time())
    actor, json_format = await log_settings(cursor)
    log = LogRows(conn.escape, actor, now, json_format)
    # Each in the course context (level 50, instance the course), courseid the course, relateduserid the user;
    # objectid: the user enrolment, the role, the group (engine/moodle/course_events.py).
    enrolled = log.template(USER_ENROLMENT_CREATED, COURSE_LEVEL, {"enrol": "manual"})
    assigned = log.template(ROLE_ASSIGNED, COURSE_LEVEL, {"id": MARK, "component": "", "itemid": 0})
    added = log.template(GROUP_MEMBER_ADDED, COURSE_LEVEL, {"component": "", "itemid": 0})
    created = log.template(GROUP_CREATED, COURSE_LEVEL)
    ue, ra = await next_id(cursor, f"{PREFIX}user_enrolments"), await next_id(cursor, f"{PREFIX}role_assignments")
    groups = await next_id(cursor, f"{PREFIX}groups")
    with spooled() as spool:
        for rows, new in creating_chunks(site, group_ids, pairs, groups):
            made = [(group_ids[course, name], course, contexts[course]) for course, name in new]
            values = chain(
                (created.format(g, x, c, c, "NULL") for g, c, x in made),
                (enrolled.format(ue + k, x, c, c, u) for k, (u, c, x, _, _) in enumerate(rows)),
                (assigned.format(STUDENT_ROLE_ID, x, c, c, u, ra + k) for k, (u, c, x, _, _) in enumerate(rows)),
                (added.format(g, x, c, c, u) for u, c, x, _, g in rows),
            )
            enrol, assign, member = write_statements(rows, now)
            made_groups = [(group_insert(conn, new, now), groups)] if new else []
            spool.add(
                [*made_groups, (enrol, ue), (assign, ra), (member, None), *((sql, None) for sql in log_inserts(values))]
            )
            groups += len(new)
            ue, ra = ue + len(rows), ra + len(rows)
        await measured(
            server,
            cursor,
            "write floor with Moodle's log rows (the groups the file names, with a group_created each; the same + "
            "user_enrolment_created, role_assigned, group_member_added a row)",
            len(pairs),
            lambda: run_spooled(conn, cursor, spool),
        )
    names = [conn.escape(kind.eventname) for kind in (USER_ENROLMENT_CREATED, ROLE_ASSIGNED, GROUP_MEMBER_ADDED)]
    # One pass over the log: each row must name its enrolment (and its instance's course), assignment (JSON: its id
    # too) or membership (and its group's course), the course's context and the user.
    assignment_id = " AND ra.id = JSON_VALUE(l.other, '$.id')" if json_format else ""
    await checked_count(
        cursor,
        f"SELECT COUNT(*) FROM {PREFIX}logstore_standard_log l "
        f"JOIN {PREFIX}context x ON x.id = l.contextid AND x.contextlevel = {COURSE_LEVEL} "
        "AND x.instanceid = l.courseid AND x.instanceid = l.contextinstanceid "
        f"LEFT JOIN {PREFIX}user_enrolments ue ON l.eventname = {names[0]} AND ue.id = l.objectid "
        "AND ue.userid = l.relateduserid "
        f"LEFT JOIN {PREFIX}enrol e ON e.id = ue.enrolid AND e.courseid = l.courseid "
        f"LEFT JOIN {PREFIX}role_assignments ra ON l.eventname = {names[1]} AND ra.userid = l.relateduserid "
        f"AND ra.contextid = l.contextid AND ra.roleid = l.objectid{assignment_id} "
        f"LEFT JOIN {PREFIX}groups_members gm ON l.eventname = {names[2]} AND gm.groupid = l.objectid "
        "AND gm.userid = l.relateduserid "
        f"LEFT JOIN {PREFIX}groups g ON g.id = gm.groupid AND g.courseid = l.courseid "
        "WHERE e.id IS NOT NULL OR ra.id IS NOT NULL OR g.id IS NOT NULL",
        3 * len(pairs),
        "log rows, each naming its enrolment, role assignment or membership",
    )
    await checked_count(
        cursor,
        f"SELECT COUNT(*) FROM {PREFIX}logstore_standard_log l JOIN {PREFIX}groups g ON g.id = l.objectid "
        f"AND g.courseid = l.courseid WHERE l.eventname = {conn.escape(GROUP_CREATED.eventname)}",
        len(group_ids),
        "group_created rows, each naming its group and its course",
    )
    conn.close()


def group_insert(conn: aiomysql.Connection, groups: Sequence[tuple[int, str]], now: int) -> str:
    """The groups (course id, name), as toolsync creates them: the other columns take their defaults."""
    return f"INSERT INTO {PREFIX}groups (courseid, name, timecreated, timemodified) VALUES " + ", ".join(
        f"({course}, {conn.escape(name)}, {now}, {now})" for course, name in groups
    )


def seeded(args: argparse.Namespace, log_table: bool) -> tuple[ThrowawayMariaDB, EnrolSite, list[int]]:
    """A fresh server with the site and, unless for the floor with log rows (it creates them), the groups the pairs
    name; the pairs."""
    clock = time.monotonic()
    tables = [f"{PREFIX}{t}" for t in (*TABLES, *(("logstore_standard_log", "groups") if log_table else ()))]
    server = fresh_server(args.row_format, tables)
    try:
        site, _ = asyncio.run(seed_enrol_site(server.url(DATABASE), PREFIX, args.users, args.courses))
        pairs = enrolment_pairs(args.rows, args.users, args.courses, args.seed)
        if not log_table:  # the floor with log rows creates its groups
            asyncio.run(
                seed_enrolments(
                    server.url(DATABASE), PREFIX, site, pairs, groups="named", members=False, enrolments=False
                )
            )
    except BaseException:
        server.stop()
        raise
    print(
        f"{args.rows:,} enrolments of {args.users:,} users in {args.courses:,} courses, {CHUNK:,} a transaction, "
        f"tables {args.row_format}; setup {time.monotonic() - clock:.1f} s"
        + (" (a second server, for the floor with log rows)" if log_table else ""),
        flush=True,
    )
    return server, site, pairs


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
        help="user_enrolments, role_assignments, groups_members (and the log table, for the floor with log rows) as "
        "the dump makes them (COMPRESSED), or DYNAMIC",
    )
    add_log_rows_only(parser)
    args = parser.parse_args(argv)
    for with_log in (True,) if args.log_rows_only else (False, True):
        server, site, pairs = seeded(args, log_table=with_log)
        try:
            asyncio.run((log_floor if with_log else floor)(server, site, pairs))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
