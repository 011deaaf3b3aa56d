"""A real Moodle 4.5 site for tests of the bridge: its directory from TOOLSYNC_TEST_MOODLE_DIRROOT (the tests that
use it say plainly that they skipped without it), PHP code run inside it, its database, and a toolsync configuration
writing to it.

Make one with scripts/install_test_moodle.sh (or use any throwaway Moodle 4.5 site: the tests create and delete
users, courses and categories in it). The database coordinates come from the site's own config.php (read through
PHP). Optional: TOOLSYNC_TEST_MOODLE_PHP (PHP command, default php) and TOOLSYNC_TEST_MOODLE_RUN_AS (run PHP through
`sudo -n -u <user>`, when the site's files belong to another user).

A test module uses the fixtures `moodle_site` and `site_db` by importing `moodle_site_fixture` and `site_db_fixture`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, text

from tests.conftest import run_blocking
from toolsync_tui.config import Config, new_config
from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.gateway import MoodleGateway

SITE_ENV = "TOOLSYNC_TEST_MOODLE_DIRROOT"


@dataclass
class Site:
    dirroot: Path
    php: str
    run_as: str
    url: str
    prefix: str

    def bridge(self, **kwargs: Any) -> MoodleBridge:
        return MoodleBridge(self.dirroot, php=self.php, run_as=self.run_as, **kwargs)

    async def run_php(self, code: str) -> Any:
        """Run PHP code in the site (as admin); it ends with `$result = ...;`, which comes back decoded.

        The code goes in on stdin, so that a run_as user needs no access to a file of ours."""
        script = (
            "<?php\ndefine('CLI_SCRIPT', true);\n"
            f"require({json.dumps(str(self.dirroot / 'config.php'))});\n"
            "\\core\\session\\manager::set_user(get_admin());\n"
            f"{code}\n"
            'echo "\\n", json_encode($result), "\\n";\n'
        )
        sudo = ["sudo", "-n", "-u", self.run_as, "--"] if self.run_as else []
        process = await asyncio.create_subprocess_exec(
            *sudo,
            *shlex.split(self.php),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate(script.encode())
        assert process.returncode == 0, (stdout + stderr).decode()
        return json.loads(stdout.decode().strip().splitlines()[-1])


def _site_or_skip() -> tuple[Path, str, str]:
    value = os.environ.get(SITE_ENV, "")
    if not value:
        pytest.skip(
            f"{SITE_ENV} is not set: these tests need an installed Moodle 4.5 site to run the bridge against "
            "(make one with scripts/install_test_moodle.sh, then set it to the site's moodle/ directory)"
        )
    dirroot = Path(value).resolve()  # as Moodle reports its dirroot
    if not (dirroot / "config.php").is_file():
        pytest.fail(f"{SITE_ENV}={value} has no config.php: point it at an installed Moodle site's directory")
    return dirroot, os.environ.get("TOOLSYNC_TEST_MOODLE_PHP", "php"), os.environ.get("TOOLSYNC_TEST_MOODLE_RUN_AS", "")


@pytest.fixture(scope="module", name="moodle_site")
def moodle_site_fixture() -> Site:
    dirroot, php, run_as = _site_or_skip()
    site = Site(dirroot, php, run_as, url="", prefix="")
    code = (
        "$result = ['host' => $CFG->dbhost, 'port' => $CFG->dboptions['dbport'] ?? '', "
        "'socket' => $CFG->dboptions['dbsocket'] ?? '', 'name' => $CFG->dbname, 'user' => $CFG->dbuser, "
        "'password' => $CFG->dbpass, 'prefix' => $CFG->prefix, 'type' => $CFG->dbtype];"
    )
    db = run_blocking(site.run_php(code))
    if db["type"] not in ("mariadb", "mysqli", "auroramysql"):
        pytest.fail(f"the test site uses {db['type']}: these tests read MariaDB/MySQL")
    socket = db["socket"] if db["socket"] not in ("", "1", True) else None
    site.url = URL.create(
        "mysql+aiomysql",
        username=db["user"],
        password=db["password"] or None,
        host=None if socket else db["host"],
        port=None if socket else int(db["port"] or 3306),
        database=db["name"],
        query={"charset": "utf8mb4"} | ({"unix_socket": socket} if socket else {}),
    ).render_as_string(hide_password=False)
    site.prefix = db["prefix"]
    return site


@pytest.fixture(name="site_db")
async def site_db_fixture(moodle_site: Site) -> AsyncIterator[MoodleGateway]:
    gateway = MoodleGateway.for_url(moodle_site.url, moodle_site.prefix)
    try:
        yield gateway
    finally:
        await gateway.close()


async def scalar(gateway: MoodleGateway, sql: str, **params: Any) -> Any:
    """One value from SQL written with {p} for the table prefix."""
    async with gateway.reading() as conn:
        return (await conn.execute(text(sql.format(p=gateway.schema.prefix)), params)).scalar()


def site_config(moodle_site: Site, tmp_path: Path, *, bridge: bool) -> Config:
    """A toolsync configuration writing to the site's own database, with or without the bridge."""
    from sqlalchemy.engine import make_url

    url = make_url(moodle_site.url)
    return new_config(
        tmp_path / "toolsync.toml",
        {
            "database": {
                "driver": "mariadb",
                "host": url.host or "127.0.0.1",
                "port": url.port or 3306,
                "socket": str(url.query.get("unix_socket", "")),
                "user": url.username,
                "password": url.password,
                "name": url.database,
                "prefix": moodle_site.prefix,
            },
            "files": {"data_dir": str(tmp_path / "data")},
            "run": {"safety_min_rows": 1000},
            "bridge": {"moodle_dir": str(moodle_site.dirroot), "php": moodle_site.php, "run_as": moodle_site.run_as}
            if bridge
            else {},
        },
    )
