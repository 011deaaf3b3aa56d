"""The suite's real Moodle 4.5 sites on PostgreSQL (tests/support/moodle_site.py with a ThrowawayPostgreSQL): Moodle's
own PHP runs on the PostgreSQL dump, writes through its API, and what it writes reads back through the site's
SQLAlchemy URL (asyncpg), as toolsync reads it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.moodle_site import ADMIN_PASSWORD, Site, provision_site
from tests.support.postgres_server import ThrowawayPostgreSQL


@pytest.fixture(scope="module")
def pg_site(postgres: ThrowawayPostgreSQL) -> Site:
    postgres.restart_if_dead()
    return provision_site(postgres, "moodle_site_pg")


async def _one(site: Site, sql: str, **params: object) -> dict[str, object]:
    engine = create_async_engine(site.url)
    try:
        async with engine.connect() as conn:
            return dict((await conn.execute(text(sql), params)).mappings().one())
    finally:
        await engine.dispose()


async def test_the_site_runs_on_postgresql(pg_site: Site) -> None:
    assert pg_site.driver == "postgresql"
    assert pg_site.url.startswith("postgresql+asyncpg://")
    code = (
        "$result = ['family' => $DB->get_dbfamily(), 'type' => $CFG->dbtype, 'release' => $CFG->release,"
        " 'admin' => password_verify(" + json.dumps(ADMIN_PASSWORD["postgresql"]) + ", get_admin()->password)];"
    )
    found = await pg_site.run_php(code)
    assert found["family"] == "postgres"
    assert found["type"] == "pgsql"
    assert found["release"].startswith("4.5")
    assert found["admin"] is True  # the PostgreSQL dump's admin password, as ../shared/moodle/README.md says


async def test_a_user_created_by_moodle_reads_back_through_the_url(pg_site: Site) -> None:
    code = """
        require_once($CFG->dirroot . '/user/lib.php');
        $id = user_create_user((object) ['username' => 'pg_probe', 'firstname' => 'Zoë', 'lastname' => 'Probe',
            'email' => 'pg_probe@example.com', 'password' => 'Secret-pass-1', 'auth' => 'manual',
            'mnethostid' => $CFG->mnet_localhost_id, 'confirmed' => 1]);
        $user = $DB->get_record('user', ['id' => $id], '*', MUST_EXIST);
        $result = ['id' => (int) $id, 'username' => $user->username, 'firstname' => $user->firstname,
            'context' => (int) context_user::instance($id)->id,
            'verified' => password_verify('Secret-pass-1', $user->password)];
    """
    created = await pg_site.run_php(code)
    assert created["username"] == "pg_probe"
    assert created["firstname"] == "Zoë"
    assert created["verified"] is True

    row = await _one(
        pg_site,
        "SELECT u.id, u.firstname, u.deleted, c.id AS context, c.path,"
        " (SELECT last_value FROM mdl_user_id_seq) AS sequence"
        " FROM mdl_user u JOIN mdl_context c ON c.contextlevel = 30 AND c.instanceid = u.id"
        " WHERE u.username = :username",
        username="pg_probe",
    )
    assert row["id"] == created["id"] == row["sequence"]  # the id came from the table's sequence
    assert row["context"] == created["context"]
    assert row["path"] == f"/1/{created['context']}"
    assert row["firstname"] == "Zoë"
    assert row["deleted"] == 0

    logged = await _one(
        pg_site,
        "SELECT count(*) AS n FROM mdl_logstore_standard_log WHERE eventname = :event AND objectid = :id",
        event="\\core\\event\\user_created",
        id=created["id"],
    )
    assert logged["n"] == 1

    deleted = await pg_site.run_php(
        f"$result = delete_user($DB->get_record('user', ['id' => {created['id']}]));"
    )  # the module's site is shared: leave it as found (but for the deleted row Moodle keeps)
    assert deleted is True


async def test_the_file_pool_holds_the_dump_files(pg_site: Site) -> None:
    """The PostgreSQL dump's mdl_files rows name the same contents as the MariaDB dump's (the source tree's images):
    Moodle serves every one of them from the site's file pool."""
    code = """
        $fs = get_file_storage(); $result = [];
        foreach ($DB->get_records_select('files', 'filesize > 0') as $record) {
            $file = $fs->get_file_instance($record);
            $result[] = sha1($file->get_content()) === $record->contenthash;
        }
    """
    served = await pg_site.run_php(code)
    assert served
    assert all(served)
