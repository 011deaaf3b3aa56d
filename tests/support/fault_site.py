"""The site the fault-injection tests (tests/faults) run on: the real Moodle 4.5 dump with seeded users and courses,
two custom profile fields, enrolments (in groups) and cohort memberships, built once as a template database and
copied for each run, so that every killed run and its clean reference start from the same rows.

The enrolments and cohorts already there are written by toolsync's own runs of generated files, as a site that
toolsync feeds holds them; the users and courses are seeded in bulk (benchmarks/generate.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy.engine import make_url

from benchmarks.enrolments import seed_enrol_site
from tests.support.fault_files import (
    COURSES,
    SEEDED_USERS,
    base_cohort_memberships,
    base_enrolments,
)
from tests.support.mariadb_server import ThrowawayMariaDB
from tests.support.postgres_server import ThrowawayPostgreSQL
from tests.support.user_factories import add_fields
from toolsync_tui.config import load_config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

Server = ThrowawayMariaDB | ThrowawayPostgreSQL
PREFIX = "mdl_"
# Small batches: a file of a few thousand rows runs in ten to twenty transactions, so that a kill lands between and
# within them. The enrolments file's batches cost most in fixed work (about 0.3 s each): fewer, larger ones.
BATCH_SIZES = {"users": 50, "enrols": 200, "cohorts": 100}
# What the generated files name: courses by shortname and users by idnumber, as a student information system would;
# the enrolments file's group memberships protected, so that the end state includes the data directory's record.
OPERATION_SETTINGS: dict[str, dict[str, Any]] = {
    "users": {"primary_identity": "idnumber", "course_identity": "shortname"},
    "enrols": {"course_identifier": "shortname", "user_identifier": "idnumber", "protect_groups": True},
    "cohorts": {"cohort_identifier": "idnumber", "user_identifier": "idnumber", "autocreate": True},
}


@dataclass(frozen=True)
class FaultSite:
    """The template database, the data directory that goes with it (its protected group memberships) and the
    shortnames of its two profile fields (the users file's columns name them)."""

    template: str
    data_dir: Path
    profile_fields: tuple[str, str]

    def copy_data_dir(self, target: Path) -> None:
        """What a scenario's data directory starts with: the template's state (not its inbox, reports ...)."""
        shutil.copytree(self.data_dir / "state", target / "state")


def write_config(directory: Path, url: str, operation: str = "enrols") -> Path:
    """A toolsync.toml for the database at `url`, its data directory beside it: what an administrator's would hold,
    plus the operation's small batches and no safety threshold (the files unenrol and remove members in numbers on
    purpose; the threshold has tests of its own)."""
    parsed = make_url(url)
    document = {
        "database": {
            "driver": "postgresql" if parsed.get_backend_name() == "postgresql" else "mariadb",
            "host": parsed.host,
            "port": parsed.port,
            "user": parsed.username,
            "password": parsed.password,
            "password_env": "",  # the password above, whatever the environment holds
            "name": parsed.database,
            "prefix": PREFIX,
        },
        "files": {"data_dir": "data"},
        "run": {"batch_size": BATCH_SIZES[operation], "safety_threshold": 0.0},
        "operations": OPERATION_SETTINGS,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "toolsync.toml"
    path.write_text(tomli_w.dumps(document))
    path.chmod(0o600)
    return path


def copy_database(server: Server, source: str, target: str) -> str:
    """A copy of every table of `source` (rows and auto-increment counters or sequences alike) as database `target`;
    its URL. Copying the template takes a third of the time loading the dump again would; on PostgreSQL it is a
    CREATE DATABASE ... TEMPLATE (a file copy; no connection to `source` may be open)."""
    if isinstance(server, ThrowawayPostgreSQL):
        server.create_database(target, template=source)
        return server.url(target)
    tables = server.sql("SHOW TABLES", source).split()
    statements = [
        f"DROP DATABASE IF EXISTS `{target}`",
        f"CREATE DATABASE `{target}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    ]
    for table in tables:
        statements.append(f"CREATE TABLE `{target}`.`{table}` LIKE `{source}`.`{table}`")
        statements.append(f"INSERT INTO `{target}`.`{table}` SELECT * FROM `{source}`.`{table}`")
    server.sql(";".join(statements))
    return server.url(target)


def drop_database(server: Server, name: str) -> None:
    if isinstance(server, ThrowawayPostgreSQL):
        server.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        server.sql(f"DROP DATABASE IF EXISTS `{name}`")


def databases_named(server: Server, prefix: str) -> list[str]:
    """The server's databases whose name starts with `prefix` (letters, digits and underscores)."""
    if isinstance(server, ThrowawayPostgreSQL):
        return server.sql(f"SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}')").split()
    return [name for name in server.sql("SHOW DATABASES").split() if name.startswith(prefix)]


async def build_template(server: Server, name: str, workdir: Path) -> FaultSite:
    """The dump loaded as `name`, then the users, courses, profile fields, enrolments and cohorts every scenario
    starts from."""
    server.load_dump(name)
    url = server.url(name)
    await seed_enrol_site(url, PREFIX, SEEDED_USERS, COURSES)
    gateway = MoodleGateway.for_url(url, PREFIX)
    try:
        fields = await add_fields(gateway, {"colour": {"datatype": "text"}, "campus": {"datatype": "text"}})
        config = load_config(write_config(workdir, url))
        inbox = config.data_dir / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        for operation, content in (("enrols", base_enrolments()), ("cohorts", base_cohort_memberships())):
            source = inbox / f"base_{operation}.csv"
            source.write_text(content, encoding="utf-8")
            result = await run_operation(config, gateway, operation, source)
            if result.exit_code != 0:
                raise RuntimeError(f"the template's {operation} run failed: {result.counts}, {result.notes}")
    finally:
        await gateway.close()
    return FaultSite(name, config.data_dir, (fields["colour"].shortname, fields["campus"].shortname))
