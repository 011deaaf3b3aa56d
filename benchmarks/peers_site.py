"""The Moodle site of `benchmarks.peers` and its fresh copies: one installed site per case, copied for every run.

The site is made as the tests make theirs (tests/support/moodle_site.py: the Moodle 4.5 source unpacked once per
machine, the dump of its install loaded into database `moodle` of a throwaway MariaDB on disk, a data folder of its
own). A case seeds it (untimed), runs Moodle's CLIs once with --help so that its caches are warm, as on a site in use,
then keeps the result: a copy of the database in the same server (through mariadb-dump), each table's checksum and
next id, and a copy of the data folder. Before each measured run every table whose checksum or next id changed is
copied back from the saved database and the data folder copied back, so Moodle and toolsync each start from the same
state (checked: every table's checksum and next id as saved), and the ids they hand out are the same.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.run import DATABASE, Measurement, run_child
from tests.support.mariadb_server import ThrowawayMariaDB, _find
from tests.support.moodle_site import Site, provision_site

UPLOADUSER = "admin/tool/uploaduser/cli/uploaduser.php"
UPLOADCOURSE = "admin/tool/uploadcourse/cli/uploadcourse.php"
# What Moodle's installer requires of PHP (the machine's CLI ini may say 1000).
PHP_SETTINGS = ("-d", "max_input_vars=5000")
SAVED = "moodle_saved"  # the site as a case left it before its runs, in the same server


class PeerSite:
    """The site on `server` (database DATABASE), its saved state, and the runs of both tools against it."""

    def __init__(self, server: ThrowawayMariaDB, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.site: Site = provision_site(server, DATABASE)
        self.saved_dump = workdir / "site.sql"
        self.saved_data = workdir / "site-moodledata"
        self.saved_state: dict[str, tuple[int, int]] = {}

    @property
    def dataroot(self) -> Path:
        assert self.site.dataroot is not None
        return self.site.dataroot

    def moodle_command(self, script: str, *options: str) -> list[str]:
        return [*shlex.split(self.site.php), *PHP_SETTINGS, str(self.site.dirroot / script), *options]

    def moodle(self, script: str, *options: str, tag: str) -> Measurement:
        """One of Moodle's CLI scripts, run to completion as the benchmark runs toolsync (benchmarks/measure.py)."""
        return run_child(self.moodle_command(script, *options), self.workdir, tag)

    def toolsync(self, config: Path, operation: str, file: Path, *, tag: str) -> Measurement:
        command = [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", operation, str(file)]
        return run_child(command, self.workdir, tag)

    def save(self) -> None:
        """Warm Moodle's caches (both CLIs' --help: config, strings, plugins, the forms' roles), then keep the database
        (a copy in database SAVED, and each table's checksum and next id) and the data folder as they are now."""
        for script in (UPLOADUSER, UPLOADCOURSE):
            done = subprocess.run(self.moodle_command(script, "--help"), capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{script} --help failed: {(done.stdout + done.stderr)[-2000:]}")
        dump = [_find("mariadb-dump", "mysqldump"), *self._socket_args(), "--single-transaction", DATABASE]
        with self.saved_dump.open("wb") as out:
            subprocess.run(dump, stdout=out, stderr=subprocess.PIPE, check=True)
        self.server.create_database(SAVED)
        with self.saved_dump.open("rb") as source:
            subprocess.run(
                [self.server.client, *self._socket_args(), SAVED], stdin=source, capture_output=True, check=True
            )
        self.saved_state = self.state(SAVED)
        if self.saved_state != self.state(DATABASE):
            raise RuntimeError(f"the copy of the site in {SAVED} differs from the site")
        shutil.rmtree(self.saved_data, ignore_errors=True)
        shutil.copytree(self.dataroot, self.saved_data, symlinks=True)

    def restore(self) -> int:
        """The database and the data folder as `save()` kept them: the tables a run changed (content or next id)
        copied back from SAVED, each as it was; the number of tables copied. (Loading the whole dump again, 497
        compressed tables, took 45-60 s a run on the shared machine; this takes a few seconds.)"""
        changed = sorted(table for table, now in self.state(DATABASE).items() if self.saved_state.get(table) != now)
        extra = [table for table in changed if table not in self.saved_state]
        statements = [f"DROP TABLE `{DATABASE}`.`{table}`;" for table in extra]
        for table in changed:
            if table in extra:
                continue
            next_id = self.saved_state[table][1]
            statements += [
                f"TRUNCATE TABLE `{DATABASE}`.`{table}`;",
                f"INSERT INTO `{DATABASE}`.`{table}` SELECT * FROM `{SAVED}`.`{table}`;",
                *([f"ALTER TABLE `{DATABASE}`.`{table}` AUTO_INCREMENT = {next_id};"] if next_id else []),
            ]
        if statements:
            self.server.sql("SET SESSION unique_checks = 0; " + " ".join(statements))
        if (now := self.state(DATABASE)) != self.saved_state:
            wrong = sorted(t for t in now.keys() | self.saved_state.keys() if now.get(t) != self.saved_state.get(t))
            raise RuntimeError(f"the site's copy differs from the saved site in {wrong}")
        shutil.rmtree(self.dataroot)
        shutil.copytree(self.saved_data, self.dataroot, symlinks=True)
        return len(changed)

    def state(self, database: str) -> dict[str, tuple[int, int]]:
        """Each table's (CHECKSUM TABLE, AUTO_INCREMENT or 0) in `database`."""
        listed = self.server.sql(
            "SELECT TABLE_NAME, COALESCE(AUTO_INCREMENT, 0) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_TYPE = 'BASE TABLE'"
        )
        next_ids = {name: int(value) for name, value in (line.split("\t") for line in listed.splitlines())}
        if not next_ids:
            return {}
        sums = self.server.sql("CHECKSUM TABLE " + ", ".join(f"`{database}`.`{t}`" for t in sorted(next_ids)))
        state: dict[str, tuple[int, int]] = {}
        for line in sums.splitlines():
            qualified, checksum = line.split("\t")
            table = qualified.split(".", 1)[1]
            state[table] = (int(checksum), next_ids[table])
        return state

    def _socket_args(self) -> list[str]:
        return ["--no-defaults", f"--socket={self.server.root / 'mysqld.sock'}", "-uroot"]

    def counts(self, sql: str) -> list[int]:
        """The numbers of a one-row query on the site's database."""
        return [int(v) for v in self.server.sql(sql, DATABASE).split()]
