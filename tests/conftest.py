"""Shared fixtures: a throwaway MariaDB and a throwaway PostgreSQL for the session, databases per test module (each
database test runs on both servers: the module-scoped `server_kind`), sandboxes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.mariadb_server import SHARED_DUMP, ThrowawayMariaDB
from tests.support.postgres_server import SHARED_PG_DUMP, ThrowawayPostgreSQL
from tests.support.sandbox import copy_sandbox
from toolsync_tui.config import Config, new_config
from toolsync_tui.engine.moodle.baseline import install_baseline
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.overlap import OverlappedWrites
from toolsync_tui.engine.sandbox import init_sandbox

T = TypeVar("T")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[ThrowawayMariaDB]:
    """A real MariaDB server on loopback; the suite fails (never skips) when it cannot start."""
    server = ThrowawayMariaDB.start(in_memory=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgreSQL]:
    """A real PostgreSQL server on loopback; the suite fails (never skips) when it cannot start."""
    server = ThrowawayPostgreSQL.start(in_memory=True)
    try:
        yield server
    finally:
        server.stop()


Server = ThrowawayMariaDB | ThrowawayPostgreSQL
SERVER_FIXTURES = {"mariadb": "mariadb", "postgresql": "postgres"}
SERVER_KINDS = tuple(SERVER_FIXTURES)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """The database server a module's database tests run on: each runs on both."""
    return str(request.param)


@pytest.fixture(scope="module")
def db_server(server_kind: str, request: pytest.FixtureRequest) -> Server:
    """The session's server of the module's kind."""
    server: Server = request.getfixturevalue(SERVER_FIXTURES[server_kind])
    return server


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run async set-up from sync fixtures, even when they are requested inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _database_name(request: pytest.FixtureRequest, kind: str) -> str:
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    return f"{kind}_{module}"[:60]


@pytest.fixture(scope="module")
def project_db_url(db_server: Server, request: pytest.FixtureRequest) -> str:
    """A database built from the project's own declarations and the baseline rows."""
    return _project_db(db_server, request)


@pytest.fixture(scope="module")
def mariadb_project_db(mariadb: ThrowawayMariaDB, request: pytest.FixtureRequest) -> str:
    """project_db_url on MariaDB (for `site`, whose parameters name the server)."""
    return _project_db(mariadb, request)


@pytest.fixture(scope="module")
def postgresql_project_db(postgres: ThrowawayPostgreSQL, request: pytest.FixtureRequest) -> str:
    """project_db_url on PostgreSQL (for `site`)."""
    return _project_db(postgres, request)


def _project_db(db_server: Server, request: pytest.FixtureRequest) -> str:
    name = _database_name(request, "schema")

    async def build(url: str) -> None:
        gateway = MoodleGateway.for_url(url, "mdl_")
        try:
            await install_baseline(gateway)
        finally:
            await gateway.close()

    def create() -> str:
        db_server.create_database(name)
        run_blocking(build(db_server.url(name)))
        return db_server.url(name)

    return _built(db_server, create)


def _built(server: Server, create: Callable[[], str]) -> str:
    """A module's database: built again, once, on a new server when the server died while building it."""
    server.restart_if_dead()  # an earlier module's crash must not fail every module after it
    try:
        return create()
    except Exception:
        if not server.restart_if_dead():
            raise
        return create()


@pytest.fixture(scope="module")
def dump_db_url(db_server: Server, request: pytest.FixtureRequest) -> str:
    """A database loaded from the real Moodle 4.5 dump of its server's kind in ../shared/moodle/."""
    dump = SHARED_DUMP if isinstance(db_server, ThrowawayMariaDB) else SHARED_PG_DUMP
    if not dump.exists():
        reason = f"the real Moodle dump is not present at {dump}"
        if os.environ.get("CI"):  # CI has shared/ beside the checkout: these tests must run there
            pytest.fail(reason)
        pytest.skip(reason)
    name = _database_name(request, "dump")

    def create() -> str:
        db_server.load_dump(name)
        return db_server.url(name)

    return _built(db_server, create)


@pytest.fixture
async def dump_gateway(dump_db_url: str) -> AsyncIterator[MoodleGateway]:
    """A gateway to the module's database loaded from the real dump."""
    gateway = MoodleGateway.for_url(dump_db_url, "mdl_")
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
def dump_site(dump_db_url: str, dump_gateway: MoodleGateway, tmp_path: Path) -> tuple[Config, MoodleGateway]:
    """The real dump with a configuration writing to it (a private data dir, the default identifiers)."""
    return database_config(tmp_path, dump_db_url), dump_gateway


@pytest.fixture(scope="session")
def php() -> str:
    """PHP's own command line, to check what toolsync writes against PHP (password_verify, filter_var)."""
    path = shutil.which("php")
    if path is None:
        if os.environ.get("CI"):  # .ci/run installs php-cli: these checks must run there
            pytest.fail("php is not on PATH")
        pytest.skip("php is not on PATH")
    return path


@pytest.fixture(scope="session")
def sandbox_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox made once per test run (1-4 s); each test gets a copy of it (milliseconds)."""
    directory = tmp_path_factory.mktemp("template") / "sandbox"
    run_blocking(init_sandbox(directory))
    return directory


@pytest.fixture
def sandbox(sandbox_template: Path, tmp_path: Path) -> Config:
    return copy_sandbox(sandbox_template, tmp_path / "sandbox")


def database_config(tmp_path: Path, url: str) -> Config:
    """A configuration whose data directory is private to the test, for a MariaDB or PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return new_config(
        tmp_path / "toolsync.toml",
        {
            "database": {
                "driver": "postgresql" if parsed.get_backend_name() == "postgresql" else "mariadb",
                "host": parsed.host,
                "port": parsed.port,
                "user": parsed.username,
                "password": parsed.password,
                "name": parsed.database,
                "prefix": "mdl_",
            },
            "files": {"data_dir": str(tmp_path / "data")},
        },
    )


@pytest.fixture(params=["sqlite", *SERVER_KINDS])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Config, MoodleGateway]]:
    """The same test on the SQLite sandbox, MariaDB and PostgreSQL (project schema), with a private data dir."""
    if request.param == "sqlite":
        config = copy_sandbox(request.getfixturevalue("sandbox_template"), tmp_path / "sandbox")
        gateway = MoodleGateway.for_sqlite(config.resolve(config.settings.database.sqlite_path), "mdl_")
    else:
        url = request.getfixturevalue(f"{request.param}_project_db")
        config = database_config(tmp_path, url)
        gateway = MoodleGateway.for_url(url, "mdl_")
    try:
        yield config, gateway
    finally:
        await gateway.close()


@pytest.fixture
def replans(monkeypatch: pytest.MonkeyPatch) -> list[OverlappedWrites]:
    """The OverlappedWrites of the test's runs, to count the batches they planned again."""
    made: list[OverlappedWrites] = []
    original = OverlappedWrites.__init__

    def keep(self: OverlappedWrites, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(OverlappedWrites, "__init__", keep)
    return made
