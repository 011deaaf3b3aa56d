"""Enrolment data for the enrols and groupmembers cases: the site (users, courses and the enrol instances a course
gets on creation), enrolment pairs, the command files, and rows seeded in bulk as a toolsync run leaves them.

A pair is a number p in 0..users*courses-1: user `p % users` (`generate.user_row`) in course `p // users`
(`generate.course_shortname`). A file of N rows holds N distinct pairs drawn at random (so in no particular order,
as when an export is merged from several sources; every batch touches most courses). The group of a pair is one of
GROUPS_PER_COURSE groups of its course, "TD 01" ... "TD 10", a function of the pair.

Seeding goes through LOAD DATA LOCAL INFILE (the gateway's URL carries local_infile=1) on MariaDB, COPY on
PostgreSQL, with the rows' ids mapped in Python from the seeded users, courses, contexts and instances, read back
once.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.generate import (
    COURSE_CONTEXT_LEVEL,
    Expected,
    GeneratedFile,
    SeedMethod,
    SeedResult,
    _tsv_value,
    copy_rows,
    course_idnumber,
    course_shortname,
    seed_courses,
    seed_users,
    user_row,
)
from toolsync_tui.engine.moodle.gateway import MoodleGateway

GROUPS_PER_COURSE = 10
STUDENT_ROLE = "student"
STUDENT_ROLE_ID = 5
ADMIN_ID = 2  # modifierid of the seeded rows: the site admin, as Moodle's CLI scripts write them
ENROLS_HEADER = ("cid", "uid", "rolename", "enrol", "gcmd", "g1")
GROUPMEMBERS_HEADER = ("courseid", "groupid", "userid", "cmd")
UE_COLUMNS = ("status", "enrolid", "userid", "timestart", "timeend", "modifierid", "timecreated", "timemodified")
RA_COLUMNS = ("roleid", "contextid", "userid", "timemodified", "modifierid", "component", "itemid", "sortorder")
GM_COLUMNS = ("groupid", "userid", "timeadded", "component", "itemid")
# The identifiers the generated files use, and the operation settings that say so: a student information
# system's export names courses by their code (shortname) and students by their student number (idnumber).
COURSE_IDENTIFIER = "shortname"
USER_IDENTIFIER = "idnumber"
GROUP_IDENTIFIER = "name"
# What the report's table holds for a row's own outcome (the action column); see the cases in run.py.
ENROLS_ACTION = "enrol"
GROUPMEMBERS_ACTION = "add"
UNCHANGED_ACTION = "none"  # a row with nothing to do

# The default enrol instances create_course() gives a course on the fresh site (moodle-db-semantics §3.2), as the
# dump's config_plugins set them: enrol_plugins_enabled = manual,guest,self,cohort, defaultenrol = 1 for manual,
# guest and self; manual enabled (status 0), guest and self disabled (status 1). Columns not listed: DB defaults.
ENROL_INSTANCES: tuple[dict[str, Any], ...] = (
    {
        "enrol": "manual",
        "status": 0,
        "sortorder": 0,
        "roleid": STUDENT_ROLE_ID,
        "enrolperiod": 0,
        "expirynotify": 0,
        "notifyall": 0,
        "expirythreshold": 86400,
        "customint1": 1,
    },
    {"enrol": "guest", "status": 1, "sortorder": 1, "password": "", "roleid": 0, "expirythreshold": 0},
    {
        "enrol": "self",
        "status": 1,
        "sortorder": 2,
        "roleid": STUDENT_ROLE_ID,
        "enrolperiod": 0,
        "expirynotify": 0,
        "notifyall": 0,
        "expirythreshold": 86400,
        "customint1": 0,
        "customint2": 0,
        "customint3": 0,
        "customint4": 1,
        "customint5": 0,
        "customint6": 1,
    },
)


# -- pairs and groups ----------------------------------------------------------------------------


def enrolment_pairs(rows: int, users: int, courses: int, seed: int) -> list[int]:
    """`rows` distinct (user, course) pairs out of users x courses, in a random order."""
    if rows > users * courses:
        raise ValueError(f"{rows:,} distinct pairs asked of {users:,} users x {courses:,} courses")
    return random.Random(seed).sample(range(users * courses), rows)


def group_number(user: int, course: int) -> int:
    """0..GROUPS_PER_COURSE-1: the group of user `user` in course `course` (spread evenly over a course's users)."""
    return (user + 3 * course) % GROUPS_PER_COURSE


def group_name(number: int) -> str:
    return f"TD {number + 1:02d}"


def group_idnumber(course: int, number: int) -> str:
    return f"{course_idnumber(course)}-TD{number + 1:02d}"


def groups_of(pairs: Iterable[int], users: int) -> set[tuple[int, int]]:
    """The (course, group number) the pairs name."""
    return {(p // users, group_number(p % users, p // users)) for p in pairs}


# -- the site ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolSite:
    """Ids of the seeded rows, by user and course number."""

    users: int
    courses: int
    user_ids: list[int]
    course_ids: list[int]
    course_contexts: list[int]
    manual_instances: list[int]

    @property
    def first_course_id(self) -> int:
        return min(self.course_ids)

    @property
    def last_course_id(self) -> int:
        return max(self.course_ids)


def _local_infile(url: str) -> str:
    """The URL to seed through: LOAD DATA allowed on MariaDB; PostgreSQL's COPY needs nothing."""
    if url.startswith("postgresql"):
        return url
    if not url.startswith("mysql"):
        raise ValueError("enrolment seeding uses LOAD DATA or COPY: a MariaDB or PostgreSQL URL is needed")
    return url + ("&" if "?" in url else "?") + "local_infile=1"


async def _load_rows(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """LOAD DATA LOCAL INFILE of tuples (in `columns` order) from a temporary TSV; COPY on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        await copy_rows(conn, table, columns, rows)
        return
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", suffix=".tsv") as tsv:
        buffer: list[str] = []
        for row in rows:
            buffer.append("\t".join(_tsv_value(v) for v in row) + "\n")
            if len(buffer) >= 50_000:
                tsv.write("".join(buffer))
                buffer.clear()
        tsv.write("".join(buffer))
        tsv.flush()
        quoted = ", ".join(f"`{c}`" for c in columns)
        await conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE '{tsv.name}' INTO TABLE `{table}` CHARACTER SET utf8mb4 ({quoted})"
        )


async def _add_enrol_instances(conn: AsyncConnection, prefix: str, first: int, last: int, now: int) -> None:
    """The default instances of courses first..last, one INSERT ... SELECT per plugin (in sortorder)."""
    for instance in ENROL_INSTANCES:
        values = {**instance, "timecreated": now, "timemodified": now}
        columns = ", ".join(["courseid", *values])
        selected = ", ".join(["id", *(f"'{v}'" if isinstance(v, str) else str(v) for v in values.values())])
        await conn.exec_driver_sql(
            f"INSERT INTO {prefix}enrol ({columns}) SELECT {selected} FROM {prefix}course "
            f"WHERE id BETWEEN {first} AND {last} ORDER BY id"
        )


async def seed_enrol_site(url: str, prefix: str, users: int, courses: int) -> tuple[EnrolSite, list[SeedResult]]:
    """Users 0..users-1 (`seed_users`), courses 0..courses-1 in category 1 with their contexts (`seed_courses`) and
    their default enrol instances; then the ids of all these, by number."""
    gateway = MoodleGateway.for_url(_local_infile(url), prefix)
    bulk: SeedMethod = "copy" if gateway.kind == "postgresql" else "load-data"
    try:
        seeded = [
            await seed_users(gateway, users, method=bulk),
            await seed_courses(gateway, courses, method=bulk),
        ]
        clock = time.monotonic()
        first, last = seeded[1].first_id, seeded[1].last_id
        async with gateway.transaction() as conn:
            await _add_enrol_instances(conn, prefix, first, last, int(time.time()))
        seeded.append(SeedResult(f"{prefix}enrol", 3 * courses, time.monotonic() - clock, 0, 0, "insert-select"))
        site = await _read_site(gateway, prefix, users, courses, seeded[0], seeded[1])
    finally:
        await gateway.close()
    return site, seeded


async def _read_site(
    gateway: MoodleGateway, prefix: str, users: int, courses: int, seeded_users: SeedResult, seeded_courses: SeedResult
) -> EnrolSite:
    user_ids, course_ids = [0] * users, [0] * courses
    contexts, instances = [0] * courses, [0] * courses
    async with gateway.reading() as conn:
        found = await conn.exec_driver_sql(
            f"SELECT id, idnumber FROM {prefix}user WHERE id BETWEEN {seeded_users.first_id} AND {seeded_users.last_id}"
        )
        for user_id, idnumber in _rows(found):
            user_ids[int(idnumber.rsplit("E", 1)[1])] = int(user_id)
        found = await conn.exec_driver_sql(
            f"SELECT c.id, c.idnumber, x.id, e.id FROM {prefix}course c "
            f"JOIN {prefix}context x ON x.contextlevel = {COURSE_CONTEXT_LEVEL} AND x.instanceid = c.id "
            f"JOIN {prefix}enrol e ON e.courseid = c.id AND e.enrol = 'manual' "
            f"WHERE c.id BETWEEN {seeded_courses.first_id} AND {seeded_courses.last_id}"
        )
        for course_id, idnumber, context_id, instance_id in _rows(found):
            number = int(idnumber.rsplit("C", 1)[1])
            course_ids[number], contexts[number], instances[number] = int(course_id), int(context_id), int(instance_id)
    if 0 in user_ids or 0 in course_ids:
        raise RuntimeError("seeding: some users or courses were not found again")
    return EnrolSite(users, courses, user_ids, course_ids, contexts, instances)


def _rows(result: Any) -> list[tuple[Any, ...]]:
    """A raw statement's rows as plain tuples."""
    return [tuple(row) for row in result]


GroupsSeeded = Literal["named", "with-idnumber"]


async def seed_enrolments(
    url: str,
    prefix: str,
    site: EnrolSite,
    pairs: Sequence[int],
    *,
    groups: GroupsSeeded | None,
    members: bool,
    enrolments: bool = True,
) -> list[SeedResult]:
    """What a run leaves for `pairs`: user_enrolments on the manual instances (active, started now, no end) and the
    student role assignments in the course contexts (component '', itemid 0), as enrol_user() writes them;
    `groups`: the groups the pairs name ("named", as gaddcreate creates them: name only) or all GROUPS_PER_COURSE
    of every course ("with-idnumber": name and an idnumber, as a groups file creates them); `members`: each pair's
    membership of its group (component '', itemid 0). Without `enrolments`, only the groups (and members)."""
    gateway = MoodleGateway.for_url(_local_infile(url), prefix)
    now = int(time.time())
    users = site.users
    results: list[SeedResult] = []
    try:
        async with gateway.transaction() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql("SELECT 1")  # begins the transaction COPY joins
            else:
                await conn.exec_driver_sql("SET SESSION unique_checks = 0")  # the rows are distinct by construction

            async def load(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], count: int) -> None:
                clock = time.monotonic()
                await _load_rows(conn, f"{prefix}{table}", columns, rows)
                results.append(SeedResult(f"{prefix}{table}", count, time.monotonic() - clock, 0, 0, "load-data"))

            if enrolments:
                by_instance = sorted((site.manual_instances[p // users], site.user_ids[p % users]) for p in pairs)
                await load(
                    "user_enrolments",
                    UE_COLUMNS,
                    ((0, enrolid, userid, now, 0, ADMIN_ID, now, now) for enrolid, userid in by_instance),
                    len(pairs),
                )
                del by_instance
                by_context = sorted((site.course_contexts[p // users], site.user_ids[p % users]) for p in pairs)
                await load(
                    "role_assignments",
                    RA_COLUMNS,
                    ((STUDENT_ROLE_ID, ctx, userid, now, ADMIN_ID, "", 0, 0) for ctx, userid in by_context),
                    len(pairs),
                )
                del by_context
            if groups is None:
                return results
            if groups == "named":
                wanted = sorted(groups_of(pairs, users))
                rows: list[tuple[Any, ...]] = [(site.course_ids[c], "", group_name(k), now, now) for c, k in wanted]
            else:
                wanted = [(c, k) for c in range(site.courses) for k in range(GROUPS_PER_COURSE)]
                rows = [(site.course_ids[c], group_idnumber(c, k), group_name(k), now, now) for c, k in wanted]
            await load("groups", ("courseid", "idnumber", "name", "timecreated", "timemodified"), rows, len(rows))
            if not members:
                return results
            found = await conn.exec_driver_sql(
                f"SELECT id, courseid, name FROM {prefix}groups "
                f"WHERE courseid BETWEEN {site.first_course_id} AND {site.last_course_id}"
            )
            number = {course_id: c for c, course_id in enumerate(site.course_ids)}
            group_ids = {(number[int(course_id)], int(name[3:]) - 1): int(gid) for gid, course_id, name in _rows(found)}
            by_user = sorted(
                (site.user_ids[p % users], group_ids[p // users, group_number(p % users, p // users)]) for p in pairs
            )
            await load(
                "groups_members",
                GM_COLUMNS,
                ((groupid, userid, now, "", 0) for userid, groupid in by_user),
                len(pairs),
            )
    finally:
        await gateway.close()
    return results


# -- command files -------------------------------------------------------------------------------


def write_lines(path: Path, header: Sequence[str], lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        buffer = [";".join(header) + "\n"]
        for line in lines:
            buffer.append(line)
            if len(buffer) >= 50_000:
                out.write("".join(buffer))
                buffer.clear()
        out.write("".join(buffer))


def _names(pairs: Sequence[int], users: int) -> tuple[list[str], list[str], list[str]]:
    """Course shortnames, user idnumbers and group names by number, for the numbers the pairs use."""
    courses = 1 + max(pairs, default=0) // users
    return (
        [course_shortname(c) for c in range(courses)],
        [user_row(u)["idnumber"] for u in range(users)],
        [group_name(k) for k in range(GROUPS_PER_COURSE)],
    )


def write_enrols_file(
    path: Path, pairs: Sequence[int], users: int, *, outcome: Literal["created", "unchanged"] = "created"
) -> GeneratedFile:
    """enrols.csv: `cid;uid;rolename;enrol;gcmd;g1`, a row per pair: course shortname, user idnumber, `student`,
    `manual`, `gaddcreate`, the pair's group. `outcome`: what each row must report (the caller seeds to match)."""
    clock = time.monotonic()
    courses, people, groups = _names(pairs, users)
    lines = (
        f"{courses[c]};{people[u]};{STUDENT_ROLE};manual;gaddcreate;{groups[group_number(u, c)]}\n"
        for u, c in ((p % users, p // users) for p in pairs)
    )
    write_lines(path, ENROLS_HEADER, lines)
    action = ENROLS_ACTION if outcome == "created" else UNCHANGED_ACTION
    expected = Expected(len(pairs), Counter({outcome: len(pairs)}), Counter({action: len(pairs)}))
    return GeneratedFile(path, len(pairs), path.stat().st_size, time.monotonic() - clock, expected)


def write_groupmembers_file(path: Path, pairs: Sequence[int], users: int) -> GeneratedFile:
    """groupmembers.csv: `courseid;groupid;userid;cmd`, a row per pair: course shortname, the pair's group (by
    name), user idnumber, `add`. Every row must add a new membership (the caller seeds enrolments and groups)."""
    clock = time.monotonic()
    courses, people, groups = _names(pairs, users)
    lines = (
        f"{courses[c]};{groups[group_number(u, c)]};{people[u]};add\n"
        for u, c in ((p % users, p // users) for p in pairs)
    )
    write_lines(path, GROUPMEMBERS_HEADER, lines)
    count = len(pairs)
    expected = Expected(count, Counter({"created": count}), Counter({GROUPMEMBERS_ACTION: count}))
    return GeneratedFile(path, count, path.stat().st_size, time.monotonic() - clock, expected)


# -- checking the database after a run -----------------------------------------------------------


def enrolment_counts_sql(prefix: str, site: EnrolSite) -> str:
    """One row: user enrolments on the seeded manual instances, student assignments in the seeded courses' contexts,
    groups of those courses, and memberships of those groups."""
    first, last = site.first_course_id, site.last_course_id
    instances = f"SELECT id FROM {prefix}enrol WHERE enrol = 'manual' AND courseid BETWEEN {first} AND {last}"
    contexts = (
        f"SELECT id FROM {prefix}context WHERE contextlevel = {COURSE_CONTEXT_LEVEL} "
        f"AND instanceid BETWEEN {first} AND {last}"
    )
    groups = f"SELECT id FROM {prefix}groups WHERE courseid BETWEEN {first} AND {last}"
    return (
        f"SELECT (SELECT COUNT(*) FROM {prefix}user_enrolments WHERE enrolid IN ({instances})), "
        f"(SELECT COUNT(*) FROM {prefix}role_assignments WHERE roleid = {STUDENT_ROLE_ID} "
        f"AND contextid IN ({contexts})), "
        f"(SELECT COUNT(*) FROM {prefix}groups WHERE courseid BETWEEN {first} AND {last}), "
        f"(SELECT COUNT(*) FROM {prefix}groups_members WHERE groupid IN ({groups}))"
    )


COUNTED = ("user enrolments", "student role assignments", "groups", "group memberships")


def compare_counts(found: str, wanted: Sequence[int]) -> list[str]:
    """Problems, comparing the tab-separated row of `enrolment_counts_sql` with the wanted numbers."""
    got = [int(v) for v in found.split()]
    return [
        f"{name}: {g:,} in the database, expected {w:,}"
        for name, g, w in zip(COUNTED, got, wanted, strict=True)
        if g != w
    ]
