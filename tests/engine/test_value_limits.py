"""Hostile values against the database's limits (issue 20, items 6, 10 and 11): a value longer than its column, or
larger than MariaDB's max_allowed_packet, fails its own row alone, the same in a dry run as for real, on SQLite,
MariaDB and PostgreSQL (which refuses an over-long value itself too, and has no packet: it takes such a row whole);
bulk statements and IN-lists are split by bytes on either server; a users file's courseN columns cost time in their
number, not its square."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import SQLAlchemyError

from tests.conftest import database_config
from tests.support.course_factories import add_cohort, add_enrolment_courses, add_group, add_users
from tests.support.factories import unique
from tests.support.operation_files import dry_and_real, identifiers_by_id, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.column_limits import column_limit
from toolsync_tui.engine.moodle.db_errors import Fault, classify, error_number, sqlstate
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult
from toolsync_tui.engine.users.columns import MAX_COURSE_COLUMNS, VALUE_COLUMNS

Site = tuple[Config, MoodleGateway]


def table(result: RunResult) -> list[tuple[int, str, str, str]]:
    """The report's own rows (no part) as (line, outcome, action, message)."""
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        return [(int(r["line"]), r["outcome"], r["action"], r["message"]) for r in rows if r["part"] == ""]


async def dry_then_real(config: Config, gateway: MoodleGateway, operation: str, content: str) -> RunResult:
    """The file run dry, then for real: both must report the same outcomes, line by line and part by part."""
    dry = await run_file(config, gateway, operation, content, dry_run=True)
    real = await run_file(config, gateway, operation, content)
    assert dry_and_real(dry) == dry_and_real(real), (table(dry), table(real))
    return real


# -- item 11: every column the database limits, checked per row ----------------------------------------------------


def test_every_declared_column_is_a_real_column_and_every_operation_is_checked() -> None:
    schema = MoodleSchema()
    for info in OPERATIONS.values():
        for regex, (name, column) in info.implementation.value_columns.items():
            assert column in getattr(schema, name).c, (info.name, regex)
    declared = {info.name for info in OPERATIONS.values() if info.implementation.value_columns}
    assert "cohort" not in VALUE_COLUMNS  # the users file's cohort and courseN parts check their own, failing alone
    # The files that store text values; the others only look values up (every value still counts against the packet).
    assert declared == {"users", "courses", "cohorts", "groups", "enrols"}


async def test_an_over_long_group_name_in_an_enrolments_file_fails_its_row_alone(site: Site) -> None:
    config, gateway = site
    identifiers_by_id(config, "enrols", "course_identifier", "user_identifier")
    [course] = await add_enrolment_courses(gateway)
    ann, bob, cid = await add_users(gateway, 3)
    red, long = unique("Red"), "g" * 255
    content = (
        "rolename;cid;uid;enrol;gcmd;g1\n"
        f"student;{course.id};{ann};manual;gaddcreate;{red}\n"
        f"student;{course.id};{bob};manual;gaddcreate;{long}\n"
        f"student;{course.id};{cid};manual;gaddcreate;{'é' * 254}\n"
    )

    result = await dry_then_real(config, gateway, "enrols", content)

    assert table(result) == [
        (2, "created", "enrol", table(result)[0][3]),
        (3, "failed", "read", "column 'g1': 255 characters, at most 254 (groups.name)"),
        (4, "created", "enrol", table(result)[2][3]),
    ]
    names = {g["name"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)}
    assert names == {red, "é" * 254}  # characters, not bytes: 508 bytes of UTF-8 fit VARCHAR(254)


@pytest.mark.parametrize(
    ("operation", "header", "good", "bad", "message"),
    [
        (
            "users",
            "username;firstname;lastname;city",
            "{u};A;B;Paris",
            "{u};A;B;" + "c" * 121,
            "column 'city': 121 characters, at most 120 (user.city)",
        ),
        (
            "users",
            "username;firstname;lastname;idnumber",
            "{u};A;B;{u}",
            "{u};A;B;" + "i" * 256,
            "column 'idnumber': 256 characters, at most 255 (user.idnumber)",
        ),
        (
            "courses",
            "fullname;shortname",
            "Course {u};{u}",
            "f" * 255 + ";{u}",
            "column 'fullname': 255 characters, at most 254 (course.fullname)",
        ),
        (
            "cohorts",
            "cmd;cname;cidnumber",
            "add;{u};{u}",
            "add;{u};" + "i" * 101,
            "column 'cidnumber': 101 characters, at most 100 (cohort.idnumber)",
        ),
        (
            "groups",
            "courseid;name;idnumber",
            "{course};{u};{u}",
            "{course};{u};" + "i" * 101,
            "column 'idnumber': 101 characters, at most 100 (groups.idnumber)",
        ),
    ],
)
async def test_an_over_long_value_fails_its_row_alone_in_every_family(
    site: Site, operation: str, header: str, good: str, bad: str, message: str
) -> None:
    config, gateway = site
    identifiers_by_id(config, "groups", "course_identifier")
    [course] = await add_enrolment_courses(gateway)
    first, second, third = unique("v"), unique("v"), unique("v")
    content = (
        f"{header}\n"
        + good.format(u=first, course=course.id)
        + "\n"
        + bad.format(u=second, course=course.id)
        + "\n"
        + good.format(u=third, course=course.id)
        + "\n"
    )

    result = await dry_then_real(config, gateway, operation, content)

    outcomes = [(line, outcome, message_) for line, outcome, _, message_ in table(result)]
    assert outcomes[1] == (3, "failed", message)
    assert [outcome for _, outcome, _ in outcomes] == ["created", "failed", "created"], outcomes


async def test_a_group_named_after_a_long_cohort_name_fails_its_row_alone(site: Site) -> None:
    """cohortscourses' makegroup names the group '<cohort name> cohort': a value toolsync derives, checked too."""
    config, gateway = site
    config.set("operations.cohortscourses.cohort_identifier", "idnumber")
    config.set("operations.cohortscourses.course_identifier", "idnumber")
    [course] = await add_enrolment_courses(gateway, idnumbers=[unique("CRS")])
    short, long = unique("COH"), unique("COH")
    await add_cohort(gateway, "Year 1", idnumber=short)
    await add_cohort(gateway, "y" * 250, idnumber=long)
    content = f"cohort;course;makegroup\n{short};{course.idnumber};1\n{long};{course.idnumber};1\n"

    result = await dry_then_real(config, gateway, "cohortscourses", content)

    rows = table(result)
    assert [(line, outcome) for line, outcome, _, _ in rows] == [(2, "created"), (3, "failed")], rows
    assert rows[1][3].startswith("makegroup: the new group's name would have 257 characters, at most 254 (groups.name)")
    names = [g["name"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)]
    assert names == ["Year 1 cohort"]


async def test_the_declared_limit_is_the_servers_own_and_the_server_refuses_past_it(
    dump_gateway: MoodleGateway,
) -> None:
    """The checks above count characters against the schema's VARCHAR(n), which must be the real site's own limit:
    254 characters are taken (508 bytes of UTF-8), one more is refused by the server itself (MariaDB's strict mode:
    error 1406; PostgreSQL: SQLSTATE 22001, never cut short), which would roll back its whole batch."""
    gateway = dump_gateway
    [course] = await add_enrolment_courses(gateway)
    chars = column_limit(gateway.schema.groups, "name", gateway.schema.prefix).chars
    assert chars == 254
    await add_group(gateway, course.id, "é" * chars)
    with pytest.raises(SQLAlchemyError) as refused:
        await add_group(gateway, course.id, "é" * (chars + 1))
    assert classify(refused.value) is Fault.REFUSED
    if gateway.kind == "postgresql":
        assert sqlstate(refused.value) == "22001", refused.value
    else:
        assert error_number(refused.value) == 1406, refused.value
    names = [g["name"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)]
    assert names == ["é" * chars]


# -- item 6: the server's packet (MariaDB's max_allowed_packet; PostgreSQL has none below a value's own 1 GB) ------


DEFAULT_PACKET = 16 * 1024 * 1024  # MariaDB's default max_allowed_packet (the test server's is 64 MB)
PG_VALUE_LIMIT = 1024 * 1024 * 1024  # PostgreSQL's largest value (and protocol message): 1 GB


async def packet_of(gateway: MoodleGateway) -> int:
    """MariaDB's max_allowed_packet as the server says it."""
    async with gateway.reading() as conn:
        return int((await conn.execute(text("SELECT @@max_allowed_packet"))).scalar_one())


@pytest.fixture
async def default_packet(dump_db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    """The dump, through connections made while MariaDB's max_allowed_packet is its default; on PostgreSQL, which has
    no such setting, the dump as it is (the tests send it values of the same sizes)."""
    admin = MoodleGateway.for_url(dump_db_url, "mdl_")
    before = await packet_of(admin) if admin.kind == "mariadb" else None
    if before is not None:
        async with admin.transaction() as conn:
            await conn.execute(text(f"SET GLOBAL max_allowed_packet = {DEFAULT_PACKET}"))
    gateway = MoodleGateway.for_url(dump_db_url, "mdl_")
    try:
        if before is not None:
            assert await packet_of(gateway) == DEFAULT_PACKET
        yield database_config(tmp_path, dump_db_url), gateway
    finally:
        await gateway.close()
        if before is not None:
            async with admin.transaction() as conn:
                await conn.execute(text(f"SET GLOBAL max_allowed_packet = {before}"))
        await admin.close()


def _bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, list | tuple):
        return sum(map(_bytes, value))
    if isinstance(value, dict):
        return sum(map(_bytes, value.values()))
    return 8


@contextmanager
def statements(gateway: MoodleGateway, pattern: str) -> Iterator[list[int]]:
    """The bytes (text and values) of each statement matching `pattern` the gateway sends meanwhile."""
    wanted, sizes = re.compile(pattern), []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if wanted.match(statement[:200]):
            sizes.append(_bytes(statement) + _bytes(parameters))

    event.listen(gateway.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield sizes
    finally:
        event.remove(gateway.engine.sync_engine, "before_cursor_execute", seen)


USER_WRITES = r"(INSERT INTO|UPDATE) [`\"]?mdl_user[`\"]?[ (]"
USER_LOOKUPS = r"SELECT mdl_user\.id\s+FROM mdl_user\s+WHERE mdl_user\.username IN"


async def test_a_value_over_the_servers_packet_fails_its_row_alone_and_a_large_one_is_written(
    default_packet: Site,
) -> None:
    """MariaDB cannot take a row over its packet: that row fails alone. PostgreSQL has no packet: it takes the
    same row whole (its limit, 1 GB a value, is far above what a file holds)."""
    config, gateway = default_packet
    packet = DEFAULT_PACKET
    names = [unique("pk") for _ in range(4)]
    too_large = "d" * (packet + 4 * 1024 * 1024)  # 20 MB against MariaDB's default 16 MB
    large = "l" * (packet * 5 // 8)  # 10 MB: one statement carries it
    content = (
        "username;firstname;lastname;description\n"
        f"{names[0]};A;B;small\n"
        f"{names[1]};A;B;{too_large}\n"
        f"{names[2]};A;B;{large}\n"
        f"{names[3]};A;B;small\n"
    )

    result = await dry_then_real(config, gateway, "users", content)

    rows = table(result)
    stored = await rows_of(gateway, gateway.schema.user, username=names)
    lengths = {u["username"]: len(u["description"] or "") for u in stored}
    if gateway.kind == "mariadb":
        assert [(line, outcome) for line, outcome, _, _ in rows] == [
            (2, "created"),
            (3, "failed"),
            (4, "created"),
            (5, "created"),
        ]
        assert rows[1][3].startswith(f"column 'description': {len(too_large) + 2:,} bytes, more than one statement")
        assert f"max_allowed_packet of {packet:,}" in rows[1][3]
        assert lengths == {names[0]: 5, names[2]: len(large), names[3]: 5}
    else:
        assert [(line, outcome) for line, outcome, _, _ in rows] == [(n, "created") for n in (2, 3, 4, 5)], rows
        assert lengths == {names[0]: 5, names[1]: len(too_large), names[2]: len(large), names[3]: 5}


async def test_writes_of_many_large_values_are_split_to_fit_the_packet(default_packet: Site) -> None:
    """A batch's values take three times MariaDB's packet: written in statements that each fit it. PostgreSQL, with
    no packet, gets its statements split by the same byte budget (gateway.max_statement): never one of 48 MB."""
    config, gateway = default_packet
    count = 24
    names = [unique("sp") for _ in range(count)]
    size = DEFAULT_PACKET // 8  # a batch's values take three times the packet, each row an eighth of it

    def content(letter: str) -> str:
        value = letter * size
        return "username;firstname;lastname;description\n" + "".join(f"{n};A;B;{value}\n" for n in names)

    with statements(gateway, USER_WRITES) as writes:
        created = await run_file(config, gateway, "users", content("a"))
        updated = await run_file(config, gateway, "users", content("b"))

    assert created.counts == {"created": count}, table(created)[:2]
    assert updated.counts == {"updated": count}, table(updated)[:2]
    stored = await rows_of(gateway, gateway.schema.user, username=names)
    assert (
        sorted((u["description"] or "")[:1] + str(len(u["description"] or "")) for u in stored) == [f"b{size}"] * count
    )
    # Each row's value passes the budget alone: a statement each, for the INSERTs and for the UPDATEs.
    assert len(writes) == 2 * count, len(writes)
    assert max(writes) < 2 * size, max(writes)


async def test_an_update_of_many_rows_is_split_by_bytes(default_packet: Site) -> None:
    """update_many on its own: rows whose values together pass MariaDB's packet, in one call: a statement per row
    (each passes the byte budget alone), on either server."""
    _, gateway = default_packet
    ids = await add_users(gateway, 12)
    value = "x" * (DEFAULT_PACKET // 6)
    with statements(gateway, USER_WRITES) as updates:
        async with gateway.transaction() as conn:
            await gateway.update_many(conn, gateway.schema.user, "id", [{"id": i, "description": value} for i in ids])
    stored = await rows_of(gateway, gateway.schema.user, id=ids)
    assert [len(u["description"]) for u in stored] == [len(value)] * 12
    assert len(updates) == 12, updates
    assert max(updates) < 2 * len(value), updates
    large = "y" * (DEFAULT_PACKET * 5 // 8)  # a row alone, larger than any multi-row statement: its own statement
    async with gateway.transaction() as conn:
        await gateway.update_many(conn, gateway.schema.user, "id", [{"id": ids[0], "description": large}])
    [stored_large] = await rows_of(gateway, gateway.schema.user, id=ids[:1])
    assert stored_large["description"] == large


async def test_an_in_list_of_large_keys_is_split_by_bytes(default_packet: Site) -> None:
    """Lookups: keys from the file go into IN (...) lists, a chunk of them a statement: here a key each (each passes
    the byte budget alone), on either server."""
    _, gateway = default_packet
    [known] = await add_users(gateway, 1)
    keys = [f"{n}" * (DEFAULT_PACKET // 6) for n in range(10)]
    with statements(gateway, USER_LOOKUPS) as lookups:
        async with gateway.reading() as conn:
            found = await gateway.fetch_in(conn, gateway.schema.user, "username", keys, ["id"])
            also = await gateway.fetch_in(conn, gateway.schema.user, "id", [known], ["id"])
    assert found.is_empty()
    assert also["id"].to_list() == [known]
    assert len(lookups) == len(keys), lookups
    assert max(lookups) < 2 * len(keys[0]), lookups


async def test_the_packet_is_read_at_the_start_of_a_run(dump_site: Site) -> None:
    """MariaDB's max_allowed_packet, read; PostgreSQL has none: a row is bounded only by its values' own 1 GB."""
    _, gateway = dump_site
    gateway.packet = 1
    await gateway.site_info()
    if gateway.kind == "mariadb":
        assert gateway.packet == await packet_of(gateway)
    else:
        assert DEFAULT_PACKET < gateway.packet <= PG_VALUE_LIMIT


# -- item 10: courseN columns -----------------------------------------------------------------------------------------


def users_file(courses: int, rows: int = 3) -> str:
    header = "username;firstname;lastname;" + ";".join(f"course{n};role{n}" for n in range(1, courses + 1))
    lines = [
        f"{unique('cn')};A;B;" + ";".join(f"nosuch{n};student" for n in range(1, courses + 1)) for _ in range(rows)
    ]
    return header + "\n" + "\n".join(lines) + "\n"


@pytest.fixture
def frame_work(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the columns that polars frames are asked to handle: each eager query (select, filter, with_columns ...
    go through lazy()) and each list of column names costs time in the frame's width. A proxy for the work of a run
    that does not depend on the machine's load."""
    work: Counter[str] = Counter()
    lazy: Callable[..., Any] = pl.DataFrame.lazy
    columns = pl.DataFrame.columns

    def counted_lazy(self: pl.DataFrame) -> pl.LazyFrame:
        work["columns"] += self.width
        return lazy(self)  # type: ignore[no-any-return]

    def counted_columns(self: pl.DataFrame) -> list[str]:
        work["columns"] += self.width
        return columns.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(pl.DataFrame, "lazy", counted_lazy)
    monkeypatch.setattr(pl.DataFrame, "columns", property(counted_columns, columns.fset))  # type: ignore[attr-defined]
    return work


async def test_course_columns_cost_work_in_their_number_not_its_square(
    sandbox: Config, frame_work: Counter[str]
) -> None:
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    try:
        work = []
        for courses in (100, 400):
            frame_work.clear()
            result = await run_file(sandbox, gateway, "users", users_file(courses), dry_run=True)
            assert result.counts == {"created": 3}
            work.append(frame_work["columns"])
    finally:
        await gateway.close()
    # Four times the columns: four times the work when linear (sixteen times when quadratic).
    assert work[1] < 5 * work[0], work


async def test_more_course_columns_than_the_bound_are_refused_with_a_clear_message(sandbox: Config) -> None:
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    try:
        with pytest.raises(RunProblem) as refused:
            await run_file(sandbox, gateway, "users", users_file(MAX_COURSE_COLUMNS + 1, rows=1), dry_run=True)
        fine = await run_file(sandbox, gateway, "users", users_file(MAX_COURSE_COLUMNS, rows=1), dry_run=True)
    finally:
        await gateway.close()
    assert str(refused.value) == (
        "userimport.csv: the header has 1,001 courseN columns, at most 1,000: put a user's other enrolments in an "
        "enrolments file (a row each)"
    )
    assert fine.counts == {"created": 1}
