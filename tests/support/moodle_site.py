"""Real Moodle 4.5 sites for tests that need Moodle's own PHP (the bridge, Moodle opening what toolsync wrote).

By default the suite makes its own throwaway sites, with no Moodle install. The source beside the checkout
(../shared/moodle/moodle-4.5-source.tar.xz) is unpacked once per machine into the system temp folder
(toolsync-moodle-<uid>-<size>-<mtime>/, kept for later runs; delete it at will), with a config.php that takes the
site's coordinates (database type among them) from the JSON file named by env TOOLSYNC_TEST_SITE. A site is a database
of the session's throwaway MariaDB or PostgreSQL loaded from the dump of that same source's install on that database
(../shared/moodle/moodle-4.5-mariadb-fresh.sql.gz, moodle-4.5-postgres-fresh.sql.gz), a data folder of its own (its
file pool holding the files the install stored: the same source images for both dumps) and that JSON file. The
source, the dump, php and the extensions Moodle needs (mysqli or pgsql for the database) are required: without them
the tests fail (never skip) and say what is missing.

    provision_site(server, name) -> Site     a new site on database `name` (replaced if it exists) of a
                                             ThrowawayMariaDB or ThrowawayPostgreSQL (the `mariadb` and `postgres`
                                             fixtures); its data folder and JSON live in the server's folder and go
                                             with it. Call it again for more sites in one test: one code tree serves
                                             them all, each on its own database. The PostgreSQL dump's admin password
                                             is ADMIN_PASSWORD["postgresql"].
    moodle_code_tree() -> Path               the shared unpacked tree (its moodle/ folder), made when missing.
    Site.run_php(code) -> Any                PHP run in the site as admin; the code ends with `$result = ...;`.
    Site.bridge(**kwargs) -> MoodleBridge    toolsync's bridge to the site.
    Site.php                                 the site's PHP command line, `env TOOLSYNC_TEST_SITE=<json> php`: give it
                                             to the bridge, `php -S` or a Config's [bridge] php to reach this site.
    Site.dirroot, .dataroot, .url, .prefix   code tree, data folder, SQLAlchemy URL of the database (mysql+aiomysql
                                             or postgresql+asyncpg), table prefix.
    Site.driver                              "mariadb" or "postgresql", as toolsync's [database] driver.
    site_config(site, tmp_path, bridge=...)  a toolsync Config writing to the site's database (and its bridge).
    scalar(gateway, sql, **params)           one value of SQL written with {p} for the prefix.

Fixtures (a test module imports `moodle_site_fixture` and `site_db_fixture` to use them by name): `moodle_site`, one
site per test process shared by its modules, as an installed site is (tests name what they make uniquely and clean
up), on MariaDB or, with env TOOLSYNC_TEST_SITE_DATABASE=postgresql, on PostgreSQL; and `site_db`, a gateway to its
database.

An installed site instead: set TOOLSYNC_TEST_MOODLE_DIRROOT to its directory (scripts/install_test_moodle.sh makes
one; any throwaway Moodle 4.5 site on MariaDB or PostgreSQL will do: the tests create and delete users, courses and
categories in it). Its database comes from its own config.php, read through PHP. Optional: TOOLSYNC_TEST_MOODLE_PHP
(the PHP command, default php; for the suite's own sites too) and TOOLSYNC_TEST_MOODLE_RUN_AS (run PHP through
`sudo -n -u <user>` when the installed site's files belong to another user).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from sqlalchemy import URL, text

from tests.conftest import SERVER_FIXTURES, Server, run_blocking
from tests.support.mariadb_server import SHARED_DUMP
from tests.support.postgres_server import SHARED_PG_DUMP, ThrowawayPostgreSQL
from toolsync_tui.config import Config, new_config
from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.gateway import MoodleGateway

SITE_ENV = "TOOLSYNC_TEST_MOODLE_DIRROOT"
SITE_FILE_ENV = "TOOLSYNC_TEST_SITE"
SHARED_SOURCE = SHARED_DUMP.with_name("moodle-4.5-source.tar.xz")
# What Moodle 4.5 needs of PHP to run (its install checks more), by the Debian package that brings it; the database's
# own extension (DB_EXTENSIONS) is checked for the sites on that database only.
PHP_EXTENSIONS = {
    "dom": "php-xml",
    "xml": "php-xml",
    "mbstring": "php-mbstring",
    "intl": "php-intl",
    "zip": "php-zip",
    "gd": "php-gd",
    "curl": "php-curl",
    "soap": "php-soap",
}
DB_EXTENSIONS = {"mariadb": {"mysqli": "php-mysql"}, "postgresql": {"pgsql": "php-pgsql"}}
# The database kind (the `driver` of toolsync's [database]) -> Moodle's $CFG->dbtype.
MOODLE_DBTYPE = {"mariadb": "mariadb", "postgresql": "pgsql"}
# Each dump's admin password (the PostgreSQL dump's, from ../shared/moodle/README.md; the MariaDB dump's is unknown).
ADMIN_PASSWORD = {"postgresql": "Admin-pass-1"}

# Where the files a fresh site's file pool holds come from: Moodle's install stores these images of the source tree
# (the PDF annotation stamps of assignfeedback_editpdf), which the dump's mdl_files rows point at.
INSTALLED_FILES = ("mod/assign/feedback/editpdf/pix",)

# The code tree's config.php: one tree, many sites, each named by the JSON file in TOOLSYNC_TEST_SITE.
CONFIG_PHP = """<?php  // Written by toolsync's tests/support/moodle_site.py: the site comes from $TOOLSYNC_TEST_SITE.

unset($CFG);
global $CFG;
$CFG = new stdClass();

(function () {
    global $CFG;
    $file = getenv('TOOLSYNC_TEST_SITE');
    $site = $file ? json_decode((string) @file_get_contents($file), true) : null;
    if (!is_array($site)) {
        echo "config.php: env TOOLSYNC_TEST_SITE must name a test site's JSON file (tests/support/moodle_site.py)\\n";
        exit(1);
    }
    $CFG->dbtype = $site['dbtype'] ?? 'mariadb';
    $CFG->dblibrary = 'native';
    $CFG->dbhost = $site['dbhost'];
    $CFG->dbname = $site['dbname'];
    $CFG->dbuser = $site['dbuser'];
    $CFG->dbpass = $site['dbpass'];
    $CFG->prefix = $site['prefix'];
    $CFG->dboptions = ['dbpersist' => 0, 'dbport' => $site['dbport'], 'dbsocket' => $site['dbsocket']];
    if ($CFG->dbtype === 'mariadb') {
        $CFG->dboptions['dbcollation'] = 'utf8mb4_unicode_ci';
    }
    $CFG->dataroot = $site['dataroot'];
})();
$CFG->wwwroot = 'http://localhost';
$CFG->admin = 'admin';
$CFG->noemailever = true;
$CFG->directorypermissions = 02777;

require_once(__DIR__ . '/lib/setup.php');
"""


@dataclass
class Site:
    dirroot: Path
    php: str
    run_as: str
    url: str
    prefix: str
    dataroot: Path | None = None
    driver: str = "mariadb"  # the database's kind: "mariadb" or "postgresql", as toolsync's [database] driver

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


# -- the suite's own sites ------------------------------------------------------------------


def _php_command() -> str:
    return os.environ.get("TOOLSYNC_TEST_MOODLE_PHP", "php")


@functools.cache
def _check_php(php: str, driver: str = "mariadb") -> None:
    """Fail plainly when php or an extension Moodle needs on that database is missing (once per process)."""
    needed = PHP_EXTENSIONS | DB_EXTENSIONS[driver]
    argv = shlex.split(php) or ["php"]
    if shutil.which(argv[0]) is None:
        pytest.fail(
            f"php ({php}) is not on PATH: install php-cli {' '.join(sorted(set(needed.values())))}",
            pytrace=False,
        )
    probe = f"foreach ({json.dumps(list(needed))} as $e) {{ if (!extension_loaded($e)) echo $e, ' '; }}"
    done = subprocess.run([*argv, "-r", probe], capture_output=True, text=True)
    missing = done.stdout.split()
    if done.returncode != 0 or missing:
        packages = " ".join(sorted({needed[e] for e in missing}))
        pytest.fail(
            f"PHP ({php}) lacks what Moodle needs: {' '.join(missing) or done.stderr}; install {packages}",
            pytrace=False,
        )


def _cache_dir(source: Path) -> Path:
    """The unpacked tree's folder, named after the tarball's size and time so that a new tarball unpacks anew, and
    after the user, whose own it is (PHP runs what it holds)."""
    stat = source.stat()
    return Path(tempfile.gettempdir()) / f"toolsync-moodle-{os.getuid()}-{stat.st_size}-{int(stat.st_mtime)}"


def _file_count(tree: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(tree))


@functools.cache
def moodle_code_tree(source: Path = SHARED_SOURCE) -> Path:
    """The Moodle source unpacked once per machine (shared by the test processes, kept for later runs) with the
    site-from-JSON config.php: its moodle/ folder.

    Unpacked under a file lock into a temporary folder that is then renamed, so that no process ever sees half a tree;
    a tree whose files were cleaned away (a temp folder's age rules) is unpacked again."""
    if not source.is_file():
        pytest.fail(
            f"the Moodle 4.5 source is not present at {source}: the real-site tests make their sites from it",
            pytrace=False,
        )
    cache = _cache_dir(source)
    marker = cache / "unpacked.json"  # written last: the file count of a complete tree
    with FileLock(f"{cache}.lock", timeout=900):
        if cache.is_dir() and cache.stat().st_uid != os.getuid():
            pytest.fail(f"{cache} belongs to another user: remove it", pytrace=False)
        if cache.is_dir():
            recorded = json.loads(marker.read_text()).get("files") if marker.is_file() else None
            if recorded is None or _file_count(cache / "moodle") < recorded:
                shutil.rmtree(cache)
        if not cache.is_dir():
            for partial in cache.parent.glob(f"{cache.name}.partial-*"):  # left by a run that was killed
                shutil.rmtree(partial, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{cache.name}.partial-", dir=cache.parent))
            try:
                done = subprocess.run(["tar", "-xJf", str(source), "-C", str(staging)], capture_output=True, text=True)
                if done.returncode != 0 or not (staging / "moodle" / "version.php").is_file():
                    pytest.fail(
                        f"unpacking {source} failed: {done.stderr.strip() or 'no moodle/version.php in it'}",
                        pytrace=False,
                    )
                (staging / "moodle" / "config.php").write_text(CONFIG_PHP)
                (staging / "unpacked.json").write_text(json.dumps({"files": _file_count(staging / "moodle")}))
                staging.rename(cache)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        config = cache / "moodle" / "config.php"
        if config.read_text() != CONFIG_PHP:  # written by another version of this module: same file count
            config.with_suffix(".new").write_text(CONFIG_PHP)
            config.with_suffix(".new").replace(config)
    return (cache / "moodle").resolve()  # as Moodle reports its dirroot


def provision_site(server: Server, name: str) -> Site:
    """A fresh Moodle 4.5 site on database `name` of the server (a ThrowawayMariaDB or a ThrowawayPostgreSQL): that
    database's dump loaded (replacing a database of that name), a new data folder holding what the install put in its
    file pool, and the JSON that config.php reads. Takes a second or two once the tree is unpacked (the dump load); the
    site's first PHP run fills its caches (another second)."""
    if not re.fullmatch(r"\w{1,63}", name):
        raise ValueError(f"a site's database name is letters, digits and _ (at most 63), not {name!r}")
    driver = "postgresql" if isinstance(server, ThrowawayPostgreSQL) else "mariadb"
    php = _php_command()
    _check_php(php, driver)
    dump = SHARED_PG_DUMP if driver == "postgresql" else SHARED_DUMP
    if not dump.is_file():
        pytest.fail(f"the real Moodle dump is not present at {dump}: the real-site tests load it", pytrace=False)
    dirroot = moodle_code_tree()
    server.load_dump(name)
    home = server.root / "sites" / name
    shutil.rmtree(home, ignore_errors=True)
    dataroot = home / "moodledata"
    _fill_file_pool(_file_rows(server, name), dirroot, dataroot / "filedir")
    site_file = home / "site.json"
    coordinates = {
        "dbtype": MOODLE_DBTYPE[driver],
        "dbhost": "127.0.0.1",
        "dbport": server.port,
        "dbsocket": "",
        "dbname": name,
        "dbuser": server.user,
        "dbpass": server.password,
        "prefix": "mdl_",  # the dumps'
        "dataroot": str(dataroot),
    }
    site_file.write_text(json.dumps(coordinates, indent=1))
    command = shlex.join(["env", f"{SITE_FILE_ENV}={site_file}", *shlex.split(php)])
    return Site(dirroot, command, run_as="", url=server.url(name), prefix="mdl_", dataroot=dataroot, driver=driver)


def _file_rows(server: Server, name: str) -> dict[str, str]:
    """contenthash -> filename of the dump's stored files (those with content)."""
    if isinstance(server, ThrowawayPostgreSQL):  # psql's unaligned output separates columns with |
        listed = server.sql("SELECT contenthash || E'\\t' || filename FROM mdl_files WHERE filesize > 0", name)
    else:
        listed = server.sql("SELECT contenthash, filename FROM mdl_files WHERE filesize > 0", name)
    return {digest: filename for digest, _, filename in (line.partition("\t") for line in listed.splitlines())}


def _fill_file_pool(wanted: dict[str, str], dirroot: Path, filedir: Path) -> None:
    """The content of the dump's mdl_files rows (`wanted`: contenthash -> filename), where Moodle's install put it:
    filedir/ab/cd/abcd..."""
    filedir.mkdir(parents=True)
    wanted = dict(wanted)
    for folder in INSTALLED_FILES:
        for path in sorted((dirroot / folder).iterdir()):
            content = path.read_bytes()
            digest = hashlib.sha1(content).hexdigest()
            if wanted.pop(digest, None) is not None:
                target = filedir / digest[:2] / digest[2:4] / digest
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
    if wanted:
        pytest.fail(
            f"the content of the dump's files {sorted(wanted.values())} is not in {INSTALLED_FILES} of {dirroot}",
            pytrace=False,
        )


# -- an installed site (TOOLSYNC_TEST_MOODLE_DIRROOT) -----------------------------------------


def installed_site(value: str) -> Site:
    """The site installed in directory `value`, its database read from its config.php."""
    dirroot = Path(value).resolve()  # as Moodle reports its dirroot
    if not (dirroot / "config.php").is_file():
        pytest.fail(
            f"{SITE_ENV}={value} has no config.php: point it at an installed Moodle site's directory", pytrace=False
        )
    site = Site(dirroot, _php_command(), os.environ.get("TOOLSYNC_TEST_MOODLE_RUN_AS", ""), url="", prefix="")
    code = (
        "$result = ['host' => $CFG->dbhost, 'port' => $CFG->dboptions['dbport'] ?? '', "
        "'socket' => $CFG->dboptions['dbsocket'] ?? '', 'name' => $CFG->dbname, 'user' => $CFG->dbuser, "
        "'password' => $CFG->dbpass, 'prefix' => $CFG->prefix, 'type' => $CFG->dbtype, "
        "'dataroot' => $CFG->dataroot];"
    )
    db = run_blocking(site.run_php(code))
    socket = db["socket"] if db["socket"] not in ("", "1", True) else None
    site.prefix = db["prefix"]
    site.dataroot = Path(db["dataroot"])
    if db["type"] == "pgsql":
        site.driver = "postgresql"
        site.url = URL.create(
            "postgresql+asyncpg",
            username=db["user"],
            password=db["password"] or None,
            host=db["host"] or "127.0.0.1",
            port=int(db["port"] or 5432),
            database=db["name"],
        ).render_as_string(hide_password=False)
        return site
    if db["type"] not in ("mariadb", "mysqli", "auroramysql"):
        pytest.fail(f"the test site uses {db['type']}: these tests read MariaDB/MySQL or PostgreSQL", pytrace=False)
    site.url = URL.create(
        "mysql+aiomysql",
        username=db["user"],
        password=db["password"] or None,
        host=None if socket else db["host"],
        port=None if socket else int(db["port"] or 3306),
        database=db["name"],
        query={"charset": "utf8mb4"} | ({"unix_socket": socket} if socket else {}),
    ).render_as_string(hide_password=False)
    return site


# -- fixtures and helpers ---------------------------------------------------------------------


_shared_sites: dict[Path, Site] = {}  # per test process, by server


@pytest.fixture(scope="module", name="moodle_site")
def moodle_site_fixture(request: pytest.FixtureRequest, server_kind: str) -> Site:
    """The installed site of TOOLSYNC_TEST_MOODLE_DIRROOT, else one site per test process and server kind, shared by
    its modules as an installed site would be (the tests name what they make uniquely and clean up): the tests that
    use it run on MariaDB and on PostgreSQL (server_kind, tests/conftest.py)."""
    installed = os.environ.get(SITE_ENV, "")
    if installed:
        return installed_site(installed)
    server: Server = request.getfixturevalue(SERVER_FIXTURES[server_kind])  # the session's (tests/conftest.py)
    if server.restart_if_dead():  # an earlier module's crash must not fail this one; the site went with it
        _shared_sites.clear()
    if server.root not in _shared_sites:
        _shared_sites[server.root] = provision_site(server, "moodle_site")
    return _shared_sites[server.root]


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
                "driver": moodle_site.driver,
                "host": url.host or "127.0.0.1",
                "port": url.port or (5432 if moodle_site.driver == "postgresql" else 3306),
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
