"""Realistic data for benchmarks: Moodle rows seeded in bulk, and command files of any size.

Everything is deterministic for a given seed, and every generator says what the run must find
(`Expected`), so that a benchmark checks the engine's answers as well as its speed.

Course `i` (0-based) is the same everywhere: `course_shortname(i)`, `course_idnumber(i)`, ... The
seeding helper creates courses 0..N-1; command files name those as existing and numbers >= N as
missing, so missing courses look exactly like real ones that were never created.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import String, Table, cast, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway

SUBJECTS: tuple[tuple[str, str], ...] = (
    ("MATH", "Mathématiques"),
    ("PHYS", "Physique"),
    ("CHEM", "Chimie"),
    ("BIOL", "Biologie"),
    ("HIST", "Histoire"),
    ("GEOG", "Géographie"),
    ("ECON", "Économie"),
    ("DROIT", "Droit"),
    ("INFO", "Informatique"),
    ("LING", "Linguistique"),
    ("PSYC", "Psychologie"),
    ("MED", "Médecine"),
    ("ANGL", "Anglais"),
    ("ESP", "Espagnol"),
    ("PHIL", "Philosophie"),
    ("SOCIO", "Sociologie"),
    ("GEST", "Gestion"),
    ("ARTS", "Arts plastiques"),
    ("MUSI", "Musicologie"),
    ("STAPS", "Sport"),
)
LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "M1", "M2")
TERMS: tuple[str, ...] = ("S1", "S2")
KINDS: tuple[str, ...] = ("CM", "TD", "TP")
YEAR = 2025
# 1 September 2025 and 30 June 2026, UTC: the academic year the seeded courses run.
START_DATE = 1756684800
END_DATE = 1782777600
COURSE_CONTEXT_LEVEL = 50
CATEGORY_CONTEXT_LEVEL = 40
SEED_CHUNK = 5000  # rows built and handed to insert_many at a time (it sends 1000 per statement)


# -- one course, by number -----------------------------------------------------------------------


def course_shortname(i: int) -> str:
    """Unique by the number suffix; reads like a university course code: MATH-L2-S1-TD-004711."""
    subject = SUBJECTS[i % len(SUBJECTS)][0]
    level = LEVELS[(i // len(SUBJECTS)) % len(LEVELS)]
    term = TERMS[(i // 7) % len(TERMS)]
    kind = KINDS[(i // 3) % len(KINDS)]
    return f"{subject}-{level}-{term}-{kind}-{i:06d}"


def course_idnumber(i: int) -> str:
    return f"{YEAR}-C{i:07d}"


def course_fullname(i: int) -> str:
    subject = SUBJECTS[i % len(SUBJECTS)][1]
    level = LEVELS[(i // len(SUBJECTS)) % len(LEVELS)]
    term = TERMS[(i // 7) % len(TERMS)]
    kind = KINDS[(i // 3) % len(KINDS)]
    return f"{subject} {level} {term} - {kind} groupe {i % 40 + 1} ({YEAR}-{YEAR + 1}) n°{i}"


def course_row(i: int, category: int, sortorder: int, now: int) -> dict[str, Any]:
    """A course as Moodle's create_course() leaves it (defaults of a 4.5 site), minus sections."""
    return {
        "category": category,
        "sortorder": sortorder,
        "fullname": course_fullname(i),
        "shortname": course_shortname(i),
        "idnumber": course_idnumber(i),
        "summary": f"<p>{course_fullname(i)}</p>",
        "summaryformat": 1,
        "format": "topics",
        "showgrades": 1,
        "newsitems": 5,
        "startdate": START_DATE,
        "enddate": END_DATE,
        "visible": 1,
        "visibleold": 1,
        "timecreated": now,
        "timemodified": now,
        "enablecompletion": 1,
        "cacherev": now,
        "showactivitydates": 1,
        "showcompletionconditions": 1,
    }


# -- seeding -------------------------------------------------------------------------------------

SeedMethod = Literal["load-data", "insert", "copy"]


@dataclass(frozen=True)
class SeedResult:
    table: str
    rows: int
    seconds: float
    first_id: int
    last_id: int
    method: str


def _tsv_value(value: Any) -> str:
    """A value in LOAD DATA's default format: tab-separated, backslash escapes, \\N for NULL."""
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


async def _load_data(conn: AsyncConnection, table: Table, rows: Iterator[dict[str, Any]], columns: list[str]) -> None:
    """LOAD DATA LOCAL INFILE from a temporary TSV (the engine's URL needs local_infile=1)."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", suffix=".tsv") as tsv:
        for row in rows:
            tsv.write("\t".join(_tsv_value(row[c]) for c in columns) + "\n")
        tsv.flush()
        quoted = ", ".join(f"`{c}`" for c in columns)
        await conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE '{tsv.name}' INTO TABLE `{table.name}` CHARACTER SET utf8mb4 ({quoted})"
        )


async def copy_rows(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """PostgreSQL's COPY (binary, through asyncpg) of tuples in `columns` order: its LOAD DATA. The transaction is
    the connection's own (begun by a statement before this one)."""
    driver = (await conn.get_raw_connection()).driver_connection
    await driver.copy_records_to_table(table, records=rows, columns=list(columns))  # type: ignore[union-attr]


async def move_id_sequence(conn: AsyncConnection, table: str) -> None:
    """On PostgreSQL, the id sequence of `table` past the ids written explicitly (an INSERT with its own ids does not
    move it; Moodle's next insert would collide): a no-op elsewhere."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
        )


def _bulk_method(url: str) -> tuple[str, SeedMethod]:
    """The URL to seed through and the fastest bulk load its server has: LOAD DATA on MariaDB, COPY on PostgreSQL."""
    if url.startswith("mysql"):
        return url + ("&" if "?" in url else "?") + "local_infile=1", "load-data"
    if url.startswith("postgresql"):
        return url, "copy"
    return url, "insert"


async def seed_courses(
    gateway: MoodleGateway,
    count: int,
    *,
    category: int = 1,
    first: int = 0,
    contexts: bool = True,
    method: SeedMethod = "insert",
) -> SeedResult:
    """Insert courses first..first+count-1 into `category`, with their course contexts.

    method "insert": multi-row INSERTs through the gateway (any database the gateway opens);
    "load-data": LOAD DATA LOCAL INFILE, about twice as fast on MariaDB (the gateway's URL must carry
    local_infile=1; `seed_courses_at` sees to it); "copy": PostgreSQL's COPY. All in one transaction; then the
    contexts (level 50, path under the category's context) with one INSERT ... SELECT, and the category's
    coursecount.
    """
    schema = gateway.schema
    course, context, categories = schema.course, schema.context, schema.course_categories
    clock = time.monotonic()
    now = int(time.time())
    async with gateway.transaction() as conn:
        base_sortorder = (
            await conn.execute(select(categories.c.sortorder).where(categories.c.id == category))
        ).scalar_one()
        before = int((await conn.execute(select(func.coalesce(func.max(course.c.id), 0)))).scalar_one())
        numbers = range(first, first + count)
        if method == "load-data":
            columns = list(course_row(0, category, 0, now))
            await _load_data(
                conn, course, (course_row(i, category, base_sortorder + 1 + i, now) for i in numbers), columns
            )
        elif method == "copy":
            columns = list(course_row(0, category, 0, now))
            courses = (course_row(i, category, base_sortorder + 1 + i, now) for i in numbers)
            await copy_rows(conn, course.name, columns, (tuple(row.values()) for row in courses))
        else:
            for start in range(first, first + count, SEED_CHUNK):
                rows = [
                    course_row(i, category, base_sortorder + 1 + i, now)
                    for i in range(start, min(start + SEED_CHUNK, first + count))
                ]
                await gateway.insert_many(conn, course, rows)
        last = int((await conn.execute(select(func.coalesce(func.max(course.c.id), 0)))).scalar_one())
        if contexts:
            await _add_course_contexts(conn, course, context, category, after=before)
            await move_id_sequence(conn, context.name)
        total = (
            await conn.execute(select(func.count()).select_from(course).where(course.c.category == category))
        ).scalar_one()
        await conn.execute(update(categories).where(categories.c.id == category).values(coursecount=total))
    return SeedResult(course.name, count, time.monotonic() - clock, before + 1, last, method)


async def _add_course_contexts(conn: AsyncConnection, course: Table, context: Table, category: int, after: int) -> None:
    """Course contexts for the courses with id > after; ids are numbered here so the path is known."""
    parent_path, parent_depth = (
        await conn.execute(
            select(context.c.path, context.c.depth).where(
                context.c.contextlevel == CATEGORY_CONTEXT_LEVEL, context.c.instanceid == category
            )
        )
    ).one()
    base = int((await conn.execute(select(func.coalesce(func.max(context.c.id), 0)))).scalar_one())
    new_id = literal(base) + func.row_number().over(order_by=course.c.id)
    rows = select(
        new_id,
        literal(COURSE_CONTEXT_LEVEL),
        course.c.id,
        literal(f"{parent_path}/") + cast(new_id, String),
        literal(parent_depth + 1),
        literal(0),
    ).where(course.c.id > after)
    await conn.execute(
        insert(context).from_select(["id", "contextlevel", "instanceid", "path", "depth", "locked"], rows)
    )


async def seed_courses_at(url: str, prefix: str, count: int, **options: Any) -> SeedResult:
    """`seed_courses` on the database at an SQLAlchemy async URL: LOAD DATA on MariaDB, COPY on PostgreSQL."""
    url, method = _bulk_method(url)
    gateway = MoodleGateway.for_url(url, prefix)
    try:
        return await seed_courses(gateway, count, method=options.pop("method", method), **options)
    finally:
        await gateway.close()


# -- command files -------------------------------------------------------------------------------


@dataclass
class Expected:
    """What a run of a generated file must report: per outcome and per action, summed over lines."""

    lines: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class GeneratedFile:
    path: Path
    lines: int
    bytes: int
    seconds: float
    expected: Expected


CHECK_REASONS: tuple[str, ...] = (
    "inscriptions pédagogiques {year}",
    "export Apogée du {day:02d}/09",
    "demande du secrétariat",
    "maquette {year}-{next}",
    "vérification avant ouverture",
    "groupe de TD ajouté",
    "import ROF",
    "liste du département",
)


def _check_lines(
    lines: int, courses: int, missing_share: float, case_share: float, rng: random.Random, expected: Expected
) -> Iterator[str]:
    """`<shortname>;<description>` for the existence check, with the found/not found tally."""
    missing_pool = max(1, int(courses * 0.2))  # missing names repeat too, as in real exports
    reasons = [r.format(year=YEAR, next=YEAR + 1, day=d) for r in CHECK_REASONS for d in (2, 9, 16)]
    for _ in range(lines):
        if courses == 0 or rng.random() < missing_share:
            name = course_shortname(courses + rng.randrange(missing_pool))
            expected.outcomes["failed"] += 1
            expected.actions["not found"] += 1
        else:
            name = course_shortname(rng.randrange(courses))
            if rng.random() < case_share:  # hand-edited files: matching is case-insensitive
                name = name.lower()
            expected.outcomes["unchanged"] += 1
            expected.actions["found"] += 1
        yield f"{name};{rng.choice(reasons)}\n"


def write_check_file(
    path: Path, lines: int, courses: int, *, missing_share: float = 0.1, case_share: float = 0.02, seed: int = 42
) -> GeneratedFile:
    """A header-less course existence check file (courses.csv) of `lines` data lines, UTF-8.

    About `missing_share` of the lines name a course that does not exist; the others pick one of the
    `courses` seeded courses at random (so names repeat, as when a file lists enrolments' courses).
    """
    clock = time.monotonic()
    rng = random.Random(seed)
    expected = Expected(lines=lines)
    buffer: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        for line in _check_lines(lines, courses, missing_share, case_share, rng, expected):
            buffer.append(line)
            if len(buffer) >= 50_000:
                out.write("".join(buffer))
                buffer.clear()
        out.write("".join(buffer))
    return GeneratedFile(path, lines, path.stat().st_size, time.monotonic() - clock, expected)


def count_values(values: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {name}" for name, n in sorted(values.items()) if n)


# -- users ---------------------------------------------------------------------------------------
#
# User `i` (0-based) is the same everywhere: `user_row(i)`. Seeding writes users 0..N-1 straight into
# mdl_user (with their user contexts), with the values a toolsync create of the same row leaves there,
# so that a users file of the same rows is "unchanged" and one with another `variant` is "updated".

FIRSTNAMES: tuple[str, ...] = (
    "Camille", "Léa", "Hugo", "Chloé", "Lucas", "Inès", "Mathis", "Manon", "Nathan", "Zoé",
    "Théo", "Jade", "Louis", "Éloïse", "Arthur", "Noémie", "Gabriel", "Anaïs", "Raphaël", "Héloïse",
)  # fmt: skip
LASTNAMES: tuple[str, ...] = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
    "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
    "Morel", "Girard", "André", "Lefebvre", "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Martinez",
)  # fmt: skip
DEPARTMENTS: tuple[str, ...] = (
    "UFR Sciences", "UFR Lettres", "UFR Droit", "UFR Médecine", "UFR Économie et gestion", "IUT",
    "UFR Langues", "UFR STAPS", "UFR Arts", "UFR Sciences humaines", "Institut de préparation à l'administration",
)  # fmt: skip
CITIES: tuple[str, ...] = ("Lyon", "Villeurbanne", "Grenoble", "Saint-Étienne", "Chambéry", "Annecy", "Valence")
COUNTRIES: tuple[str, ...] = ("FR",) * 17 + ("BE", "CH", "IT", "ES", "DE", "MA", "SN")
INSTITUTION = "Université Exemple"
USERS_HEADER: tuple[str, ...] = (
    "username",
    "firstname",
    "lastname",
    "email",
    "idnumber",
    "institution",
    "department",
    "city",
    "country",
)
USER_CONTEXT_LEVEL = 30
BENCH_PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#%-_"


def _ascii(text: str) -> str:
    plain = text.lower().translate(str.maketrans("àâäéèêëîïôöùûüç", "aaaeeeeiioouuuc"))
    return "".join(c for c in plain if c.isalnum())


def user_row(i: int, variant: int = 0) -> dict[str, str]:
    """User `i` as a users file writes it; `variant` changes the department (and nothing else)."""
    first = FIRSTNAMES[i % len(FIRSTNAMES)]
    last = LASTNAMES[(i // len(FIRSTNAMES)) % len(LASTNAMES)]
    return {
        "username": f"{_ascii(first)[0]}{_ascii(last)}{i:06d}",
        "firstname": first,
        "lastname": last,
        "email": f"{_ascii(first)}.{_ascii(last)}.{i:06d}@etu.univ-exemple.fr",
        "idnumber": f"{YEAR}-E{i:07d}",
        "institution": INSTITUTION,
        "department": DEPARTMENTS[(i + variant) % len(DEPARTMENTS)],
        "city": CITIES[(i // 11) % len(CITIES)],
        "country": COUNTRIES[(i // 5) % len(COUNTRIES)],
    }


def user_password(i: int, rng: random.Random) -> str:
    """A 12-character initial password, as a student information system exports them (benchmark data)."""
    return "".join(rng.choices(BENCH_PASSWORD_ALPHABET, k=12))


def seeded_user_row(i: int, now: int, variant: int = 0) -> dict[str, Any]:
    """mdl_user as toolsync's create of `user_row(i, variant)` leaves it on the fresh site (no password column)."""
    return {
        **user_row(i, variant),
        "auth": "manual",
        "confirmed": 1,
        "mnethostid": 1,
        "password": "",
        "lang": "en",
        "calendartype": "gregorian",
        "timezone": "99",
        "descriptionformat": 1,
        "mailformat": 1,
        "maildisplay": 2,
        "autosubscribe": 1,
        "timecreated": now,
        "timemodified": now,
    }


async def seed_users(
    gateway: MoodleGateway, count: int, *, variant: int = 0, method: SeedMethod = "insert"
) -> SeedResult:
    """Users 0..count-1 (`seeded_user_row`) with their user contexts (path /1/<id>, depth 2), in one
    transaction: LOAD DATA LOCAL INFILE ("load-data"), COPY ("copy", PostgreSQL) or multi-row INSERTs ("insert"),
    then the contexts with one INSERT ... SELECT."""
    user, context = gateway.schema.user, gateway.schema.context
    clock = time.monotonic()
    now = int(time.time())
    async with gateway.transaction() as conn:
        before = int((await conn.execute(select(func.coalesce(func.max(user.c.id), 0)))).scalar_one())
        if method == "load-data":
            columns = list(seeded_user_row(0, now))
            await _load_data(conn, user, (seeded_user_row(i, now, variant) for i in range(count)), columns)
        elif method == "copy":
            columns = list(seeded_user_row(0, now))
            users = (tuple(seeded_user_row(i, now, variant).values()) for i in range(count))
            await copy_rows(conn, user.name, columns, users)
        else:
            for start in range(0, count, SEED_CHUNK):
                rows = [seeded_user_row(i, now, variant) for i in range(start, min(start + SEED_CHUNK, count))]
                await gateway.insert_many(conn, user, rows)
        last = int((await conn.execute(select(func.coalesce(func.max(user.c.id), 0)))).scalar_one())
        base = int((await conn.execute(select(func.coalesce(func.max(context.c.id), 0)))).scalar_one())
        new_id = literal(base) + func.row_number().over(order_by=user.c.id)
        contexts = select(
            new_id,
            literal(USER_CONTEXT_LEVEL),
            user.c.id,
            literal("/1/") + cast(new_id, String),
            literal(2),
            literal(0),
        ).where(user.c.id > before)
        await conn.execute(
            insert(context).from_select(["id", "contextlevel", "instanceid", "path", "depth", "locked"], contexts)
        )
        await move_id_sequence(conn, context.name)
    return SeedResult(user.name, count, time.monotonic() - clock, before + 1, last, method)


async def seed_users_at(url: str, prefix: str, count: int, **options: Any) -> SeedResult:
    """`seed_users` on the database at an SQLAlchemy async URL: LOAD DATA on MariaDB, COPY on PostgreSQL."""
    url, method = _bulk_method(url)
    gateway = MoodleGateway.for_url(url, prefix)
    try:
        return await seed_users(gateway, count, method=options.pop("method", method), **options)
    finally:
        await gateway.close()


def write_users_file(
    path: Path,
    count: int,
    *,
    variant: int = 0,
    passwords: bool = False,
    outcome: Literal["created", "updated", "unchanged"] = "created",
    seed: int = 42,
) -> GeneratedFile:
    """A users file (userimport.csv: header, ';'-separated, UTF-8) of users 0..count-1 in a shuffled
    order, as an export lists them; `outcome` is what each row must report (the caller seeds to match).
    With `passwords`, a last column `password` holds a distinct 12-character password per row."""
    clock = time.monotonic()
    rng = random.Random(seed)
    order = list(range(count))
    rng.shuffle(order)
    action = {"created": "create", "updated": "update", "unchanged": "none"}[outcome]
    expected = Expected(lines=count, outcomes=Counter({outcome: count}), actions=Counter({action: count}))
    header = [*USERS_HEADER, *(["password"] if passwords else [])]
    buffer: list[str] = [";".join(header) + "\n"]
    with path.open("w", encoding="utf-8", newline="") as out:
        for i in order:
            values = list(user_row(i, variant).values())
            if passwords:
                values.append(user_password(i, rng))
            buffer.append(";".join(values) + "\n")
            if len(buffer) >= 50_000:
                out.write("".join(buffer))
                buffer.clear()
        out.write("".join(buffer))
    return GeneratedFile(path, count, path.stat().st_size, time.monotonic() - clock, expected)
