"""The gateway's bulk helpers, context rows and site checks, on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.support.factories import unique
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.contexts import ContextLevel, create_contexts
from toolsync_tui.engine.moodle.db_errors import Fault, classify
from toolsync_tui.engine.moodle.gateway import CHUNK, UNIFORM_CHUNK, DatabaseError, MoodleGateway, in_list

Site = tuple[Config, MoodleGateway]


async def test_bulk_insert_fetch_update_delete_across_chunks(site: Site) -> None:
    _, gateway = site
    flags = gateway.schema.cache_flags
    kind = unique("bulk/")
    count = CHUNK * 2 + 7  # more than one chunk on every helper
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            flags,
            [{"flagtype": kind, "name": f"n{i}", "value": "1", "expiry": i, "timemodified": 0} for i in range(count)],
        )
        rows = await gateway.fetch_in(
            conn,
            flags,
            "name",
            [f"n{i}" for i in range(count)],
            ["id", "name", "expiry"],
            where=flags.c.flagtype == kind,
        )
        assert rows.height == count
        await gateway.update_many(
            conn,
            flags,
            "id",
            [{"id": row_id, "value": f"v{expiry}"} for row_id, expiry in zip(rows["id"], rows["expiry"], strict=True)],
        )
        changed = {value for (value,) in await conn.execute(select(flags.c.value).where(flags.c.flagtype == kind))}
        assert changed == {f"v{i}" for i in range(count)}
        removed = await gateway.delete_in(conn, flags, "id", rows["id"].to_list())
        assert removed == count


async def test_update_many_of_the_same_values_changes_exactly_its_keys(site: Site) -> None:
    """Rows given the same values (a batch's groups touched at `now`) go as a plain UPDATE of their keys; a value of
    another type (True is not 1) or a row that lacks a column keeps the joined form: both leave the same rows. Keys of
    the same values go by ten thousand (UNIFORM_CHUNK) on MariaDB and PostgreSQL: more than that, in two."""
    _, gateway = site
    flags = gateway.schema.cache_flags
    kind = unique("same/")
    count = UNIFORM_CHUNK + 3
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            flags,
            [
                {"flagtype": kind, "name": f"{kind}{i}", "value": "1", "expiry": i, "timemodified": 0}
                for i in range(count)
            ],
        )
        ids = (await gateway.fetch_in(conn, flags, "flagtype", [kind], ["id"]))["id"].sort().to_list()
        await gateway.update_many(conn, flags, "id", [{"id": i, "timemodified": 5, "value": "%s"} for i in ids[:-2]])
        await gateway.update_many(conn, flags, "id", [{"id": ids[-2], "timemodified": 6}, {"id": ids[-1]}])
        found = await conn.execute(
            select(flags.c.timemodified, flags.c.value).where(flags.c.flagtype == kind).order_by(flags.c.id)
        )
        assert [tuple(r) for r in found] == [(5, "%s")] * (count - 2) + [(6, "1"), (0, "1")]
        # Text keys of the same values (parameters, not digits in the text), one of them given twice.
        names = [f"{kind}{i}" for i in (0, 1, 1, 2)]
        await gateway.update_many(conn, flags, "name", [{"name": n, "expiry": -1} for n in names])
        expiries = await conn.execute(select(flags.c.expiry).where(flags.c.flagtype == kind).order_by(flags.c.id))
        assert [e for (e,) in expiries] == [-1, -1, -1, *range(3, count)]


def test_in_list_writes_integers_into_the_text_and_passes_other_keys() -> None:
    assert in_list([3, 1, 2]) == ("3, 1, 2", ())
    assert in_list(["a", 1]) == ("%s, %s", ("a", 1))
    assert in_list([True, 1]) == ("%s, %s", (True, 1))  # a bool is no key's digits


async def test_insert_many_keeps_percent_and_braces_and_integers_exact(site: Site) -> None:
    """Shared values go into the statement's text, integers as digits: text with % and braces must arrive as is."""
    _, gateway = site
    flags = gateway.schema.cache_flags
    kind = unique("100% {x}/")
    rows = [
        {"flagtype": kind, "name": f"{{n}} {i}%s", "value": "%d {0}", "expiry": i, "timemodified": 7} for i in range(5)
    ]
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, flags, rows)
        # Every varying value an integer: no parameter at all, and still the shared text's % arrives as is.
        await gateway.insert_many(
            conn,
            flags,
            [{"flagtype": kind, "name": "%%", "value": "%", "expiry": 10 + i, "timemodified": i} for i in (1, 2)],
        )
        await gateway.insert_many(
            conn, gateway.schema.cohort_members, [{"cohortid": 9_000_001, "userid": i, "timeadded": 5} for i in (1, 2)]
        )
        found = await conn.execute(
            select(flags.c.flagtype, flags.c.name, flags.c.value, flags.c.expiry, flags.c.timemodified)
            .where(flags.c.flagtype == kind)
            .order_by(flags.c.expiry)
        )
        assert [tuple(r) for r in found] == [(kind, f"{{n}} {i}%s", "%d {0}", i, 7) for i in range(5)] + [
            (kind, "%%", "%", 11, 1),
            (kind, "%%", "%", 12, 2),
        ]
        members = gateway.schema.cohort_members
        found = await conn.execute(select(members.c.userid, members.c.timeadded).where(members.c.cohortid == 9_000_001))
        assert sorted(tuple(r) for r in found) == [(1, 5), (2, 5)]


async def test_insert_many_writes_identical_rows_and_integer_columns_with_nulls_exactly(site: Site) -> None:
    """Rows that share every value are each written (the statement has no varying cell, its braces still undoubled);
    a column of integers and NULLs goes in as digits and NULL; True is not taken for the 1 of other rows."""
    _, gateway = site
    flags, log = gateway.schema.cache_flags, gateway.schema.logstore_standard_log
    kind = unique("same {x}%/")
    same = {"flagtype": kind, "name": "{0} 100%", "value": "%s }{", "expiry": 3, "timemodified": 3}
    marker = unique("logged/")
    logged = [
        {"eventname": marker, "component": "core", "action": "a", "target": "t", "crud": "c", "edulevel": 0,
         "contextid": 1, "contextlevel": 10, "contextinstanceid": 0, "userid": 0, "anonymous": 0, "timecreated": 0,
         "objectid": objectid, "relateduserid": related}
        for objectid, related in [(None, 1), (7, True), (None, 1)]
    ]  # fmt: skip
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, flags, [same, same, same])
        await gateway.insert_many(conn, log, logged)
        stored = await conn.execute(
            select(flags.c.name, flags.c.value, flags.c.expiry, flags.c.timemodified).where(flags.c.flagtype == kind)
        )
        assert [tuple(r) for r in stored] == [("{0} 100%", "%s }{", 3, 3)] * 3
        stored = await conn.execute(
            select(log.c.objectid, log.c.relateduserid).where(log.c.eventname == marker).order_by(log.c.id)
        )
        assert [tuple(r) for r in stored] == [(None, 1), (7, 1), (None, 1)]


async def test_rows_given_column_by_column_are_written_as_the_same_rows_given_as_dicts(site: Site) -> None:
    """ColumnRows (a batch's log rows) through insert_many, and on MariaDB written ahead then run: each row stored as
    its dict would be, a shared value (the flag type) in every row, '%' and quotes exact."""
    _, gateway = site
    flags = gateway.schema.cache_flags
    names = ("flagtype", "name", "value", "expiry", "timemodified")
    for ahead in (False, True):
        kind = unique(f"columns {ahead} %'/")
        rows = ColumnRows(
            names,
            {"name": ["a", "b%s", "c'"], "value": ["1", "2", "3"], "expiry": [5, 6, 7]},
            {"flagtype": kind, "timemodified": 9},
            3,
        )
        async with gateway.transaction() as conn:
            written = await gateway.written_insert(conn, flags, rows) if ahead else None
            if ahead and gateway.kind != "mariadb":
                assert written is None  # written ahead on MariaDB only
                continue
            if written is not None:
                await gateway.insert_written(conn, flags, written)
            else:
                await gateway.insert_many(conn, flags, rows)
            stored = await conn.execute(
                select(*(flags.c[n] for n in names)).where(flags.c.flagtype == kind).order_by(flags.c.name)
            )
            assert [dict(zip(names, r, strict=True)) for r in stored] == list(rows)


async def test_insert_many_gives_the_new_ids_without_reading_them_back_where_the_server_guarantees_them(
    site: Site,
) -> None:
    """MariaDB (innodb_autoinc_lock_mode 1 here) hands a multi-row INSERT consecutive ids: the first id and the row
    count give them, across statements; PostgreSQL's RETURNING gives them, id_step() aside (a MariaDB notion); the
    sandbox gives none (its callers read them back)."""
    _, gateway = site
    flags = gateway.schema.cache_flags
    kind = unique("ids/")
    # Long values: more than one statement (MAX_STATEMENT), each with its own first id.
    rows = [
        {"flagtype": kind, "name": f"n{i}", "value": "x" * 900_000, "expiry": i, "timemodified": 0} for i in range(5)
    ]
    async with gateway.transaction() as conn:
        ids = await gateway.insert_many(conn, flags, rows)
        stored = await conn.execute(select(flags.c.id, flags.c.expiry).where(flags.c.flagtype == kind))
        by_expiry = {expiry: row_id for row_id, expiry in stored}
    if gateway.kind == "sqlite":
        assert ids is None
        assert await gateway.id_step() is None
    else:
        assert await gateway.id_step() == (1 if gateway.kind == "mariadb" else None)
        assert ids == [by_expiry[i] for i in range(5)]


HOSTILE = [
    "it's",
    'say "hi"',
    "back\\slash\\",
    "nul\0byte",
    "line\nbreak\r",
    "ctrl-z\x1a",
    "100% {0} %s",
    "é日本😀",
    "",
]


async def hostile_texts_round_trip(gateway: MoodleGateway, sql_mode: str = "") -> None:
    """Text the SQL syntax gives meaning to (quotes, backslashes, NUL, line breaks, Ctrl-Z, % and braces, letters
    beyond ASCII), in columns that vary and in a column every row shares, is stored byte for byte."""
    flags = gateway.schema.cache_flags
    kind = unique("hostile {'\\/")
    texts = [t for t in HOSTILE if gateway.kind != "postgresql" or "\0" not in t]  # PostgreSQL's text holds no NUL
    rows = [
        {"flagtype": kind, "name": f"{text} {i}", "value": text, "expiry": i, "timemodified": 0}
        for i, text in enumerate(texts)
    ]
    async with gateway.transaction() as conn:
        if sql_mode:
            await conn.exec_driver_sql(f"SET SESSION sql_mode = CONCAT(@@sql_mode, ',{sql_mode}')")
        await gateway.insert_many(conn, flags, rows)
        stored = await conn.execute(
            select(flags.c.flagtype, flags.c.name, flags.c.value)
            .where(flags.c.flagtype == kind)
            .order_by(flags.c.expiry)
        )
        assert [tuple(r) for r in stored] == [(kind, f"{text} {i}", text) for i, text in enumerate(texts)]


async def test_insert_many_stores_any_text_as_given(site: Site) -> None:
    await hostile_texts_round_trip(site[1])


async def test_insert_many_stores_any_text_as_given_on_a_mariadb_session_without_backslash_escapes(
    mariadb_project_db: str,
) -> None:
    """NO_BACKSLASH_ESCAPES: a backslash is plain text there and only quotes are doubled (the driver's escape() knows
    the session's mode; so must the statements written from it)."""
    gateway = MoodleGateway.for_url(mariadb_project_db, "mdl_")
    try:
        await hostile_texts_round_trip(gateway, "NO_BACKSLASH_ESCAPES")
    finally:
        await gateway.close()


async def test_an_insert_written_while_planning_runs_later_in_another_transaction(site: Site) -> None:
    """MariaDB: the statements written on the planning connection (its escape() only) insert the rows, with their
    ids, in the write transaction; elsewhere, or for rows of differing columns, there is nothing to write ahead and
    insert_many does without."""
    _, gateway = site
    flags = gateway.schema.cache_flags
    kind = unique("ahead/")
    rows = [{"flagtype": kind, "name": f"it's {i}%", "value": "1", "expiry": i, "timemodified": 0} for i in range(3)]
    async with gateway.reading() as planning:
        written = await gateway.written_insert(planning, flags, rows)
        uneven = await gateway.written_insert(planning, flags, [rows[0], {"flagtype": kind, "name": "x", "expiry": 0}])
    assert uneven is None
    assert (written is None) == (gateway.kind != "mariadb")
    async with gateway.transaction() as conn:
        ids = await gateway.insert_many(conn, flags, rows, written)
    async with gateway.reading() as conn:
        stored = await conn.execute(select(flags.c.id, flags.c.name).where(flags.c.flagtype == kind))
        by_name = {name: row_id for row_id, name in stored}
    assert sorted(by_name) == [f"it's {i}%" for i in range(3)]
    if gateway.kind != "sqlite":
        assert ids == [by_name[f"it's {i}%"] for i in range(3)]


async def test_a_failing_batch_leaves_nothing_behind(site: Site) -> None:
    _, gateway = site
    flags = gateway.schema.cache_flags
    kind = unique("rollback/")

    async def two_inserts_the_second_refused() -> None:
        async with gateway.transaction() as conn:
            await gateway.insert_many(conn, flags, [{"flagtype": kind, "name": "a", "value": "1", "expiry": 0}])
            await gateway.insert_many(conn, flags, [{"flagtype": kind, "name": "b", "value": None, "expiry": 0}])

    with pytest.raises(IntegrityError, match=r"(?i)null"):
        await two_inserts_the_second_refused()
    async with gateway.reading() as conn:
        assert (await conn.execute(select(flags.c.id).where(flags.c.flagtype == kind))).first() is None


async def test_a_value_its_column_cannot_take_refuses_the_batch_on_a_server(project_db_url: str) -> None:
    """Text where a number goes: MariaDB's strict mode refuses it, and so does the PostgreSQL path (asyncpg's typed
    arrays), as a refusal of the batch (the run fails its rows), never a crash; nothing of the batch stays."""
    gateway = MoodleGateway.for_url(project_db_url, "mdl_")
    flags = gateway.schema.cache_flags
    kind = unique("typed/")

    async def a_number_then_text_for_a_number() -> None:
        async with gateway.transaction() as conn:
            await gateway.insert_many(conn, flags, [{"flagtype": kind, "name": "a", "value": "1", "expiry": 0}])
            await gateway.insert_many(conn, flags, [{"flagtype": kind, "name": "b", "value": "1", "expiry": "x"}])

    try:
        with pytest.raises(DBAPIError) as refused:
            await a_number_then_text_for_a_number()
        assert classify(refused.value) is Fault.REFUSED
        async with gateway.reading() as conn:
            assert (await conn.execute(select(flags.c.id).where(flags.c.flagtype == kind))).first() is None
    finally:
        await gateway.close()


async def test_text_keys_match_case_insensitively_like_moodle_on_mariadb(site: Site) -> None:
    _, gateway = site
    role = gateway.schema.role
    async with gateway.reading() as conn:
        found = await gateway.fetch_in(conn, role, "shortname", ["Student", "EDITINGTEACHER"], ["id"], casefold=True)
    assert sorted(found["id"].to_list()) == [3, 5]


async def test_contexts_get_path_and_depth_from_their_parent(site: Site) -> None:
    _, gateway = site
    context = gateway.schema.context
    async with gateway.transaction() as conn:
        created = await create_contexts(gateway, conn, ContextLevel.USER, [(90001, "/1"), (90002, "/1")])
        rows = {
            r.instanceid: r
            for r in await conn.execute(
                select(context).where(context.c.contextlevel == 30, context.c.instanceid.in_([90001, 90002]))
            )
        }
        await conn.rollback()
    for instance, (context_id, path) in created.items():
        assert path == f"/1/{context_id}"
        assert (rows[instance].path, rows[instance].depth, rows[instance].locked) == (path, 2, 0)


async def test_site_info_reads_the_release(site: Site) -> None:
    _, gateway = site
    info = await gateway.site_info()
    assert info.release == "4.5dev+ (Build: 20240903)"
    assert info.version == "2024090300"
    assert info.is_sandbox == (gateway.kind == "sqlite")


async def test_a_sandbox_from_an_older_version_gets_the_tables_declared_since(sandbox: Config) -> None:
    gateway = open_gateway(sandbox)
    try:
        async with gateway.transaction() as conn:
            await conn.run_sync(gateway.schema.course_modules.drop)
        await gateway.site_info()
        async with gateway.reading() as conn:
            assert (await conn.execute(select(gateway.schema.course_modules.c.id))).all() == []
    finally:
        await gateway.close()


async def test_a_sandbox_never_gives_an_id_twice(sandbox: Config) -> None:
    """As on MariaDB, the id of a deleted row is not given again (SQLite's tables are AUTOINCREMENT, also those it
    creates for a sandbox made by an older version)."""
    gateway = open_gateway(sandbox)
    flags = gateway.schema.cache_flags
    try:
        async with gateway.transaction() as conn:
            await conn.run_sync(gateway.schema.course_modules.drop)
        await gateway.site_info()
        for table in (flags, gateway.schema.course_modules):
            async with gateway.reading() as conn:
                created = await conn.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE name = '{table.name}'")
                assert "AUTOINCREMENT" in created.scalar_one()
        row = {"flagtype": unique("ids"), "name": "n", "value": "v", "expiry": 0, "timemodified": 0}
        async with gateway.transaction() as conn:
            await gateway.insert_many(conn, flags, [row])
            [first] = (await conn.execute(select(flags.c.id).where(flags.c.flagtype == row["flagtype"]))).scalars()
            await conn.execute(flags.delete().where(flags.c.id >= first))
            await gateway.insert_many(conn, flags, [row])
            [second] = (await conn.execute(select(flags.c.id).where(flags.c.flagtype == row["flagtype"]))).scalars()
        assert second > first
    finally:
        await gateway.close()


async def test_site_info_on_the_real_dump(dump_db_url: str) -> None:
    gateway = MoodleGateway.for_url(dump_db_url, "mdl_")
    try:
        assert (await gateway.site_info()).release.startswith("4.5")
    finally:
        await gateway.close()


async def test_a_wrong_prefix_is_refused_as_not_a_moodle_database(dump_db_url: str) -> None:
    gateway = MoodleGateway.for_url(dump_db_url, "m_")
    try:
        with pytest.raises(DatabaseError, match=r"is not a Moodle 4.5 database with prefix 'm_': missing table m_"):
            await gateway.site_info()
    finally:
        await gateway.close()


async def test_a_missing_column_is_refused_as_a_version_mismatch(mariadb: object, dump_db_url: str) -> None:
    gateway = MoodleGateway.for_url(dump_db_url, "mdl_")
    try:
        async with gateway.transaction() as conn:
            await conn.exec_driver_sql("ALTER TABLE mdl_course DROP COLUMN pdfexportfont")
        with pytest.raises(DatabaseError, match=r"missing mdl_course.pdfexportfont.*Moodle version"):
            await gateway.site_info()
    finally:
        async with gateway.transaction() as conn:
            await conn.exec_driver_sql("ALTER TABLE mdl_course ADD COLUMN pdfexportfont varchar(50) NULL")
        await gateway.close()


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
async def test_an_unreachable_server_is_a_clear_error(kind: str) -> None:
    gateway = MoodleGateway.for_server(
        kind, host="127.0.0.1", port=1, user="u", password="p", database="d", prefix="mdl_"
    )
    try:
        with pytest.raises(DatabaseError, match=r"^cannot use the database at 127.0.0.1:1/d: could not connect"):
            await gateway.site_info()
    finally:
        await gateway.close()


async def test_columns_every_row_gives_moodles_default_are_left_out_of_an_insert_and_stored_the_same(
    dump_db_url: str,
) -> None:
    """MariaDB: a column every row of an INSERT gives the site's default, which is Moodle's own, is left out of the
    statement (fewer bytes for the server to parse) and the rows stored are the ones given. A column whose default
    the site changed, or given its default as another type, is written. PostgreSQL's inserts name every column."""
    gateway = MoodleGateway.for_url(dump_db_url, "mdl_")
    user = gateway.schema.user
    base = unique("defaults")

    def person(i: int, **given: object) -> dict[str, object]:
        return {"username": f"{base}-{i}", "firstname": "Zoé", "lastname": "Ünal", "email": f"{base}-{i}@example.org",
                "auth": "manual", "confirmed": 1, "mnethostid": 1, "lang": "en", "phone1": "", "description": None,
                "policyagreed": 0, "timecreated": 1_700_000_000 + i, **given}  # fmt: skip

    async def insert(rows: list[dict[str, object]]) -> set[str]:
        """The columns the statement names (MariaDB), none elsewhere."""
        async with gateway.reading() as planning:
            written = await gateway.written_insert(planning, user, rows)
        async with gateway.transaction() as conn:
            await gateway.insert_many(conn, user, rows, written)
        if written is None:
            return set()
        head = written.statements[0][0].split(" VALUES ")[0]
        return set(head[head.index("(") + 1 : -1].split(", "))

    async def stored(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        names = list(rows[0])
        async with gateway.reading() as conn:
            found = await conn.execute(
                select(*(user.c[n] for n in names)).where(user.c.username.in_([r["username"] for r in rows]))
            )
            return sorted((dict(zip(names, r, strict=True)) for r in found), key=lambda r: str(r["username"]))

    try:
        await gateway.site_info()
        mariadb = gateway.kind == "mariadb"
        defaults = gateway.defaults.get("mdl_user", {})
        if mariadb:
            assert (defaults["auth"], defaults["lang"], defaults["phone1"], defaults["confirmed"]) == (
                "manual",
                "en",
                "",
                0,
            )
            assert defaults["description"] is None
            assert "id" not in defaults
        else:
            assert gateway.defaults == {}
        rows = [person(i) for i in range(3)]
        columns = await insert(rows)
        if mariadb:
            assert columns.isdisjoint({"auth", "lang", "phone1", "description", "policyagreed"})
            assert {"username", "confirmed", "mnethostid"} <= columns  # confirmed 1, not the default 0
        assert await stored(rows) == rows
        # Text given to an integer column is written, whatever its value.
        typed = [person(i, policyagreed="0") for i in range(3, 5)]
        assert ("policyagreed" in await insert(typed)) == mariadb
        assert await stored(typed) == [{**r, "policyagreed": 0} for r in typed]
        # A site whose default differs from Moodle's gets the value written.
        async with gateway.transaction() as conn:
            await conn.exec_driver_sql("ALTER TABLE mdl_user ALTER COLUMN lang SET DEFAULT 'fr'")
        await gateway.site_info()
        assert "lang" not in gateway.defaults.get("mdl_user", {})
        english = [person(i) for i in range(5, 7)]
        assert ("lang" in await insert(english)) == mariadb
        assert await stored(english) == english
    finally:
        async with gateway.transaction() as conn:
            await conn.exec_driver_sql("ALTER TABLE mdl_user ALTER COLUMN lang SET DEFAULT 'en'")
            await conn.execute(user.delete().where(user.c.username.like(f"{base}-%")))
        await gateway.close()
