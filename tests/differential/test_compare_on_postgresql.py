"""table_compare on PostgreSQL, where it has no CHECKSUM TABLE and reads through pg_sync: it must see what the
differential test relies on it to see (a changed table, a differing column, a row on one side, an id sequence left
behind by explicit ids), or the differential check on PostgreSQL could pass without looking."""

from __future__ import annotations

from tests.support import table_compare as compare
from tests.support.postgres_server import ThrowawayPostgreSQL

COHORT = (
    "INSERT INTO mdl_cohort (id, contextid, name, idnumber, description, descriptionformat, visible, component,"
    " timecreated, timemodified) VALUES (7, 1, 'Only here', 'only', '', 1, 1, '', 1700000000, 1700000000)"
)


def test_compare_sees_writes_on_postgresql(postgres: ThrowawayPostgreSQL) -> None:
    postgres.restart_if_dead()
    postgres.load_dump("compare_a")
    postgres.load_dump("compare_b")
    url_a, url_b = postgres.url("compare_a"), postgres.url("compare_b")
    before_a, before_b = compare.checksums(url_a), compare.checksums(url_b)
    assert len(before_a) == 497  # every table of the dump
    assert before_a == before_b  # two copies of one dump
    assert compare.sequences_behind(url_a) == {}

    postgres.sql("UPDATE mdl_user SET firstname = 'Ädmin' WHERE username = 'admin'", "compare_b")
    postgres.sql(COHORT, "compare_a")  # an explicit id, the sequence not moved
    written = compare.changed_tables(before_a, compare.checksums(url_a)) | compare.changed_tables(
        before_b, compare.checksums(url_b)
    )
    assert written == {"user", "cohort"}

    differences, undeclared = compare.compare(url_a, url_b, written, (0, 0))
    assert undeclared == []
    found = {(d.table, d.key, d.column, d.only) for d in differences}
    assert found == {("user", '["admin"]', "firstname", ""), ("cohort", '["Only here"]', None, "A")}
    assert next(d for d in differences if d.table == "user").b_value == "Ädmin"

    assert compare.sequences_behind(url_a) == {"cohort": (1, 7)}
    postgres.sql("SELECT setval('mdl_cohort_id_seq', 7)", "compare_a")
    assert compare.sequences_behind(url_a) == {}


def test_connect_reads_postgresql_like_pymysql(postgres: ThrowawayPostgreSQL) -> None:
    """The callers written for pymysql (cursor, %s placeholders, tuples or dicts) read PostgreSQL unchanged."""
    postgres.restart_if_dead()
    postgres.load_dump("compare_connect")
    with compare.connect(postgres.url("compare_connect")) as db, db.cursor() as cursor:
        cursor.execute("SELECT username, id FROM mdl_user WHERE id >= %s AND username LIKE %s ORDER BY id", (1, "%"))
        assert cursor.fetchall() == [("guest", 1), ("admin", 2)]
        cursor.execute("SELECT COUNT(*) FROM mdl_user")
        assert cursor.fetchone() == (2,)
