"""Keyed reads on MariaDB stay index lookups whatever the table's statistics say (moodle/mariadb_plans.py).

A MariaDB-only mechanism (FORCE INDEX, in_predicate_conversion_threshold): PostgreSQL's counterpart is the index
probe of postgres_lookup.py and pairs._fetch_lateral, tested in test_keyed_reads.py. The plan is measured by the
server itself: Handler_read_rnd_next counts the rows a statement read by scanning a table, in the session that ran
it, Handler_read_next the rows it read along an index past each key looked up (a range or ref walked through).

Each database test works on its own copy of the dump, whose table's statistics it takes while the table has its few
rows (as a site's are when a run begins), then fills the table in one statement with no ANALYZE after it, and has the
server open the table again (FLUSH TABLES) with its rows counted but the statistics of its indexes those of the nearly
empty table, as when it opens a table mid-run (its table cache turned over) before the background recalculation
caught up. That recalculation is turned off for the table (STATS_AUTO_RECALC = 0), so the statistics
stay stale however long the test takes. Without the reopening, the estimates the server cached when it first opened
the table made the optimizer pick the email index by itself on MariaDB 10.11, hint or not: no test of the hint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy import Index as SqlIndex
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.support.database_copies import copy_database
from tests.support.factories import unique
from tests.support.fault_site import drop_database
from tests.support.mariadb_server import ThrowawayMariaDB
from toolsync_tui.engine.moodle import pairs
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.mariadb_plans import leading_index
from toolsync_tui.engine.moodle.staleness import mark_users_dirty

T = TypeVar("T")

# The database tests run on MariaDB only (the module-scoped `server_kind` of conftest.py, narrowed).
ON_MARIADB = pytest.mark.parametrize("server_kind", ["mariadb"], indirect=True)

USERS = 20_000  # users inserted behind the statistics' back
ASSIGNMENTS = 60_000  # role assignments likewise
TUPLES = 5_000  # key tuples asked for: one statement of fetch_tuples
# Rows a keyed read may read by scanning: none is expected; a scan reads the whole table (tens of thousands).
NO_SCAN = 100
RA_SCHEMA: dict[str, type[pl.DataType]] = {
    "id": pl.Int64,
    "userid": pl.Int64,
    "contextid": pl.Int64,
    "roleid": pl.Int64,
}


@pytest.fixture
async def site_copy(mariadb: ThrowawayMariaDB, dump_db_url: str) -> AsyncIterator[str]:
    """A fresh copy of the dump (its database name), dropped afterwards."""
    source = make_url(dump_db_url).database
    assert source is not None
    name = unique("plans_")
    copy_database(mariadb, source, name)
    try:
        yield name
    finally:
        drop_database(mariadb, name)


async def opened(mariadb: ThrowawayMariaDB, name: str) -> MoodleGateway:
    """A gateway on database `name` that has read the site (and so its indexes), as a run does at its start."""
    gateway = MoodleGateway.for_url(mariadb.url(name), "mdl_")
    await gateway.site_info()
    return gateway


def fill_stale(mariadb: ThrowawayMariaDB, name: str, table: str, insert: str) -> None:
    """Run `insert` into `table` of database `name`, then have the server open the table again with the index
    statistics of before the insert (the module's docstring says why)."""
    # The statistics of the copy's few rows first: the background recalculation after the copy may not have run yet.
    # The table's row count is then set to the real one in the stored statistics (the indexes' stay stale): reopened,
    # the table sometimes took its count from there, and a table of 0 rows (mdl_cache_flags in the dump) then read as
    # empty, which MariaDB scans for any statement, FORCE INDEX or not (EXPLAIN: ALL): not the staleness tested here.
    mariadb.sql(
        f"ANALYZE TABLE {table}; ALTER TABLE {table} STATS_AUTO_RECALC = 0; {insert}; "
        f"UPDATE mysql.innodb_table_stats SET n_rows = (SELECT COUNT(*) FROM {table}) "
        f"WHERE database_name = '{name}' AND table_name = '{table}'; FLUSH TABLES {table}",
        name,
    )


@dataclass(frozen=True)
class Reads:
    """What a statement read, by the server's counters of the session that ran it."""

    scanned: int  # Handler_read_rnd_next: rows read by scanning a table
    walked: int  # Handler_read_next: rows read along an index past a key looked up

    @property
    def rows(self) -> int:
        return self.scanned + self.walked


async def reads(conn: AsyncConnection, read: Callable[[], Awaitable[T]]) -> tuple[Reads, T]:
    """The rows `read` read, on `conn` (which it must use), and what it returned."""
    await conn.exec_driver_sql("FLUSH STATUS")
    result = await read()
    rows = await conn.exec_driver_sql(
        "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_rnd_next', 'Handler_read_next')"
    )
    counters = {str(row["Variable_name"]): int(row["Value"]) for row in rows.mappings()}
    return Reads(counters["Handler_read_rnd_next"], counters["Handler_read_next"]), result


@ON_MARIADB
async def test_fetch_in_by_email_reads_no_row_by_a_scan_on_stale_statistics(
    mariadb: ThrowawayMariaDB, site_copy: str
) -> None:
    fill_stale(
        mariadb,
        site_copy,
        "mdl_user",
        "INSERT INTO mdl_user (auth, confirmed, mnethostid, username, firstname, lastname, email, timecreated) "
        "SELECT 'manual', 1, 1, CONCAT('plan', seq), 'F', 'L', CONCAT('plan', seq, '@example.edu'), 0 "
        f"FROM seq_1_to_{USERS}",
    )
    present = [f"plan{n}@example.edu" for n in (1, 777, USERS)]
    emails = present + [f"absent{n}@example.edu" for n in range(1000 - len(present))]
    gateway = await opened(mariadb, site_copy)
    users = gateway.schema.user
    where = (users.c.deleted == 0) & (users.c.mnethostid == 1)
    try:
        async with gateway.engine.connect() as conn:

            async def read() -> pl.DataFrame:
                return await gateway.fetch_in(conn, users, "email", emails, ["email", "username"], where=where)

            hinted, found = await reads(conn, read)
            site_indexes, gateway.indexes = gateway.indexes, frozenset()  # the same read without the hint
            bare, found_bare = await reads(conn, read)
            gateway.indexes = site_indexes
        named = gateway.forced_index(users, ["email"])
    finally:
        await gateway.close()
    print(f"\nfetch_in of {len(emails)} emails among {USERS + 2} users: {hinted} with the hint, {bare} without")
    assert sorted(found.rows()) == sorted((email, email.split("@")[0]) for email in present)
    assert named == "mdl_user_ema_ix"
    assert hinted.scanned < NO_SCAN
    assert hinted.walked <= len(emails)  # at most a row past each email looked up
    assert sorted(found_bare.rows()) == sorted(found.rows())
    # Without the hint the optimizer, trusting the stale statistics, reads the whole table (by a scan, or along the
    # index of `deleted` or `mnethostid`): what the hint prevents.
    assert bare.rows > USERS


@ON_MARIADB
async def test_fetch_tuples_of_role_assignments_reads_no_row_by_a_scan_on_stale_statistics(
    mariadb: ThrowawayMariaDB, site_copy: str
) -> None:
    base = 1_000_000  # user ids of the seeded assignments: (base + n, 10_000 + n % 50, 5)
    fill_stale(
        mariadb,
        site_copy,
        "mdl_role_assignments",
        "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid) "
        f"SELECT 5, 10000 + seq % 50, {base} + seq, 0, 0, '', 0 FROM seq_1_to_{ASSIGNMENTS}",
    )
    present = [(base + n, 10_000 + n % 50, 5) for n in (1, 4_321, ASSIGNMENTS)]
    absent = [(base + n, 10_000 + (n + 1) % 50, 5) for n in range(10, 10 + TUPLES - len(present))]
    asked = pl.DataFrame(present + absent, schema=["userid", "contextid", "roleid"], orient="row")
    gateway = await opened(mariadb, site_copy)
    ra = gateway.schema.role_assignments
    key = ["userid", "contextid", "roleid"]
    where: list[tuple[str, int | str]] = [("component", ""), ("itemid", 0)]
    try:
        async with gateway.engine.connect() as conn:

            async def read() -> pl.DataFrame:
                return await pairs.fetch_tuples(gateway, conn, ra, key, asked, RA_SCHEMA, where=where)

            hinted, found = await reads(conn, read)
            site_indexes, gateway.indexes = gateway.indexes, frozenset()
            bare, found_bare = await reads(conn, read)  # no hint: another index, walked through
            gateway.indexes = site_indexes
            # The hint, but the IN list rewritten into a join to a derived table (the server's default).
            await conn.exec_driver_sql("SET SESSION in_predicate_conversion_threshold = DEFAULT")
            joined, found_joined = await reads(conn, read)
        named = gateway.forced_index(ra, key)
    finally:
        await gateway.close()
    print(
        f"\nfetch_tuples of {TUPLES} tuples among {ASSIGNMENTS}+ role assignments: {hinted} with the hint, "
        f"{bare} without, {joined} with the hint and the IN list rewritten into a join"
    )
    assert sorted(found.select(key).rows()) == sorted(present)
    assert named == "mdl_roleassi_useconrol_ix"
    assert hinted.scanned < NO_SCAN
    assert hinted.walked <= TUPLES
    assert sorted(found_bare.rows()) == sorted(found_joined.rows()) == sorted(found.rows())
    # What the hint and the session setting each prevent: every seeded row read, along the (component, itemid) index
    # or by a scan of the table probing the derived table (the hint notwithstanding).
    assert bare.rows >= ASSIGNMENTS
    assert joined.rows >= ASSIGNMENTS


@ON_MARIADB
async def test_a_site_without_a_declared_index_is_read_without_naming_it(
    mariadb: ThrowawayMariaDB, site_copy: str
) -> None:
    mariadb.sql("DROP INDEX mdl_user_ema_ix ON mdl_user", site_copy)
    gateway = await opened(mariadb, site_copy)
    users = gateway.schema.user
    emails = ["admin@example.com", "nobody@example.edu"]
    try:
        async with gateway.reading() as conn:
            found = await gateway.fetch_in(
                conn, users, "email", emails, ["username"], where=(users.c.deleted == 0) & (users.c.mnethostid == 1)
            )
        assert found["username"].to_list() == ["admin"]
        assert gateway.forced_index(users, ["email"]) is None
        # Naming the index all the same is the error the site's own list of indexes avoids.
        gateway.indexes |= {("mdl_user", "mdl_user_ema_ix")}
        async with gateway.reading() as conn:
            with pytest.raises(OperationalError, match="mdl_user_ema_ix"):
                await gateway.fetch_in(conn, users, "email", emails, ["username"])
    finally:
        await gateway.close()


@ON_MARIADB
async def test_each_connection_keeps_in_lists_as_lists(dump_gateway: MoodleGateway) -> None:
    # Two connections at once: each new one of the pool gets the setting, not only the first.
    async with dump_gateway.engine.connect() as first, dump_gateway.engine.connect() as second:
        for conn in (first, second):
            value = (await conn.exec_driver_sql("SELECT @@SESSION.in_predicate_conversion_threshold")).scalar_one()
            assert int(value) == 0
        # The server's own default is the rewriting the setting turns off.
        default = (await first.exec_driver_sql("SELECT @@GLOBAL.in_predicate_conversion_threshold")).scalar_one()
        assert int(default) == 1000


def _table() -> Table:
    return Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("a", Integer),
        Column("b", Integer),
        Column("c", Integer),
        SqlIndex("t_abc_ix", "a", "b", "c"),
        SqlIndex("t_a_ix", "a"),
        SqlIndex("t_ab_uix", "a", "b", unique=True),
        SqlIndex("t_ba_ix", "b", "a"),
        SqlIndex("t_id_ix", "id", "a"),
    )


def _present(*names: str) -> frozenset[tuple[str, str]]:
    return frozenset(("t", name) for name in names)


ALL = ("t_abc_ix", "t_a_ix", "t_ab_uix", "t_ba_ix", "t_id_ix")


def test_leading_index_prefers_a_unique_index_then_the_narrowest() -> None:
    table = _table()
    assert leading_index(table, ["a"], _present(*ALL)) == "t_ab_uix"  # unique, though wider than t_a_ix
    assert leading_index(table, ["a"], _present("t_abc_ix", "t_a_ix")) == "t_a_ix"
    assert leading_index(table, ["a", "b"], _present("t_abc_ix", "t_a_ix", "t_ba_ix")) == "t_abc_ix"
    assert leading_index(table, ["b"], _present(*ALL)) == "t_ba_ix"


def test_leading_index_names_only_an_index_the_site_has() -> None:
    table = _table()
    assert leading_index(table, ["a"], _present("t_abc_ix")) == "t_abc_ix"
    assert leading_index(table, ["a"], _present("t_ba_ix")) is None
    assert leading_index(table, ["a"], frozenset(("other", name) for name in ALL)) is None  # another table's


def test_leading_index_is_none_for_the_primary_key_or_a_key_no_index_leads_with() -> None:
    table = _table()
    assert leading_index(table, ["id"], _present(*ALL)) is None  # t_id_ix leads with it: the primary key wins
    assert leading_index(table, ["c"], _present(*ALL)) is None  # in t_abc_ix, but not leading
    assert leading_index(table, ["b", "c"], _present(*ALL)) is None
    assert leading_index(table, ["a", "c"], _present(*ALL)) is None


def test_leading_index_on_moodle_declarations() -> None:
    from toolsync_tui.engine.moodle.schema import MoodleSchema

    schema = MoodleSchema("mdl_")
    present = frozenset({("mdl_user", "mdl_user_ema_ix"), ("mdl_role_assignments", "mdl_roleassi_useconrol_ix")})
    assert leading_index(schema.user, ["email"], present) == "mdl_user_ema_ix"
    assert leading_index(schema.role_assignments, ["userid", "contextid", "roleid"], present) == (
        "mdl_roleassi_useconrol_ix"
    )
    assert leading_index(schema.role_assignments, ["userid"], present) == "mdl_roleassi_useconrol_ix"


def test_leading_index_takes_in_the_columns_of_the_reads_other_conditions() -> None:
    """`contextid IN (...) AND roleid IN (...)` reads through (roleid, contextid), not through contextid's own index
    and every assignment of those contexts; a username with its mnethostid through the unique (mnethostid, username);
    an e-mail with `deleted` and `mnethostid` still through the e-mail's own index (no other leads with it)."""
    from toolsync_tui.engine.moodle.schema import MoodleSchema

    schema = MoodleSchema("mdl_")
    every = frozenset((t.name, str(i.name)) for t in schema.metadata.tables.values() for i in t.indexes)
    ra, user = schema.role_assignments, schema.user
    assert leading_index(ra, ["contextid"], every) == "mdl_roleassi_con_ix"
    assert leading_index(ra, ["contextid"], every, ["roleid"]) == "mdl_roleassi_rolcon_ix"
    assert leading_index(ra, ["userid", "contextid", "roleid"], every, ["component", "itemid"]) == (
        "mdl_roleassi_useconrol_ix"
    )
    assert leading_index(user, ["username"], every) is None
    assert leading_index(user, ["username"], every, ["mnethostid"]) == "mdl_user_mneuse_uix"
    assert leading_index(user, ["email"], every, ["deleted", "mnethostid"]) == "mdl_user_ema_ix"


@ON_MARIADB
async def test_dirty_flags_replaced_read_only_their_own_rows_on_stale_statistics(
    mariadb: ThrowawayMariaDB, site_copy: str
) -> None:
    """mark_users_dirty() replaces the flags of its users: found through the name index (their ids, then deleted by
    id), not through the flagtype index, which holds nearly every flag of a site (every dirty user)."""
    fill_stale(
        mariadb,
        site_copy,
        "mdl_cache_flags",
        "INSERT INTO mdl_cache_flags (flagtype, name, value, expiry, timemodified) "
        f"SELECT 'accesslib/dirtyusers', seq, '1', 0, 0 FROM seq_1_to_{USERS}",
    )
    marked = list(range(USERS - 499, USERS + 501))  # 500 flagged already, 500 not
    gateway = await opened(mariadb, site_copy)
    flags = gateway.schema.cache_flags
    try:
        async with gateway.engine.connect() as conn:

            async def mark() -> int:
                return await mark_users_dirty(gateway, conn, marked, 1_800_000_000, 7200)

            counted, _ = await reads(conn, mark)
            rows = await conn.execute(
                select(flags.c.name, flags.c.timemodified).where(flags.c.flagtype == "accesslib/dirtyusers")
            )
            stored = {int(name): int(time) for name, time in rows}
            await conn.rollback()
    finally:
        await gateway.close()
    print(f"\nflags of {len(marked)} users replaced among {USERS}: {counted}")
    assert len(stored) == USERS + 500
    assert {name for name, time in stored.items() if time == 1_800_000_000} == set(marked)
    assert counted.scanned < NO_SCAN
    assert counted.walked <= 3 * len(marked)  # the name index walked past each name, the deleted rows read again
