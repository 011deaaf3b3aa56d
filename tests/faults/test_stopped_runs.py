"""Crash safety (issue 20, the fault-injection suite; issue 24 on PostgreSQL): a users, enrolments or cohorts run
stopped at a random point (kill -9, SIGTERM, SIGINT), then the same file run again from the inbox as an administrator
would, leaves exactly what one clean run of that file leaves, table by table, on MariaDB and on PostgreSQL.

Each scenario runs the real `toolsync run` in a child process on its own copy of a template database (the real
Moodle 4.5 dump with seeded users, courses, profile fields, enrolments in groups and cohorts; tests/support/
fault_site.py) with small batches, so that a file of a few thousand rows (tests/support/fault_files.py) runs in ten
to twenty transactions. The stop point comes from a seed (tests/support/fault_runs.py): a share of the clean run's
committed log rows, then a delay. The comparison (tests/support/end_states.py) translates ids to natural keys and
sets aside each run's own times and salts; its docstring says why each is right.

TOOLSYNC_FAULT_SEED=<n> replays the seeds of a failed run (the message names it); TOOLSYNC_FAULT_KILLS=<n> tries n
kill -9 points per file instead of 2.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Server, run_blocking
from tests.support import end_states, fault_files
from tests.support.fault_runs import Ended, KillPoint, run_to_end, run_until, toolsync
from tests.support.fault_site import (
    FaultSite,
    build_template,
    copy_database,
    databases_named,
    drop_database,
    write_config,
)
from tests.support.mariadb_server import ThrowawayMariaDB
from tests.support.table_compare import connect
from toolsync_tui.engine.datadir.protected_groups import state_path

OPERATIONS = ("users", "enrols", "cohorts")
KILLS = int(os.environ.get("TOOLSYNC_FAULT_KILLS", "2"))
SEED = int(os.environ.get("TOOLSYNC_FAULT_SEED") or random.SystemRandom().randrange(1, 1_000_000))
TEMPLATE = "stopped_template"
PASSWORDS_CHECKED = 60  # accounts whose password is verified after a stopped users run (a hash costs ~2 ms)
# Transactions that have written and been open 3 s or more (PostgreSQL: those given a transaction id, which a first
# write assigns).
OPEN_WRITES = (
    "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_rows_modified > 0 "
    "AND trx_started < NOW() - INTERVAL 3 SECOND"
)
PG_OPEN_WRITES = (
    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL "
    "AND xact_start < now() - interval '3 seconds'"
)


def file_for(operation: str, template: FaultSite) -> str:
    if operation == "users":
        return fault_files.users_file(template.profile_fields)
    return fault_files.enrols_file() if operation == "enrols" else fault_files.cohorts_file()


def log_rows(url: str) -> int:
    with connect(url) as db, db.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mdl_logstore_standard_log")
        return int(cursor.fetchone()[0])


def finished(ended: Ended, operation: str) -> bool:
    """The run went through the whole file: its summary printed, exit 0 or 1 (some rows fail), no traceback."""
    return ended.returncode in (0, 1) and f"{operation}: " in ended.stdout and "Traceback" not in ended.stderr


def went_through(ended: Ended, operation: str) -> bool:
    """The run printed the summary of a whole file (a stopped run's ends "; interrupted (SIGINT)")."""
    summary = re.search(rf"^{operation}: [\d,]+ rows were processed in .*$", ended.stdout, re.MULTILINE)
    return summary is not None and "interrupted" not in summary.group()


@dataclass(frozen=True)
class Scenario:
    """A copy of the template, a configuration for it and the file in its inbox."""

    url: str
    config: Path
    file: Path

    def command(self, operation: str) -> list[str]:
        return toolsync(self.config, operation, self.file)

    def progress(self) -> int:
        """How far a run has got: the log rows committed in this copy."""
        return log_rows(self.url)


@dataclass(frozen=True)
class Clean:
    """The reference: the file run once, uninterrupted."""

    url: str
    data_dir: Path
    ended: Ended
    logged: int  # log rows it wrote


class Runs:
    """The template, and each operation's clean run, made once for the module."""

    def __init__(self, server: Server, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.started = int(time.time())
        self.fault_site = run_blocking(build_template(server, TEMPLATE, workdir / "template"))
        self.template_url = server.url(TEMPLATE)
        self.template_log = log_rows(self.template_url)
        self.before = end_states.checksums(self.template_url)
        self.files = {operation: file_for(operation, self.fault_site) for operation in OPERATIONS}
        self._clean: dict[str, Clean] = {}

    def scenario(self, operation: str, name: str) -> Scenario:
        url = copy_database(self.server, TEMPLATE, f"stopped_{name}")
        config = write_config(self.workdir / name, url, operation)
        self.fault_site.copy_data_dir(config.parent / "data")
        inbox = config.parent / "data" / "inbox"
        inbox.mkdir(parents=True)
        file = inbox / f"{operation}.csv"
        file.write_text(self.files[operation], encoding="utf-8")
        return Scenario(url, config, file)

    def clean(self, operation: str) -> Clean:
        if operation not in self._clean:
            scenario = self.scenario(operation, f"{operation}_clean")
            ended = run_to_end(scenario.command(operation), scenario.config.parent, "clean")
            assert finished(ended, operation), f"the clean {operation} run failed: {ended.describe()}"
            logged = scenario.progress() - self.template_log
            self._clean[operation] = Clean(scenario.url, scenario.config.parent / "data", ended, logged)
        return self._clean[operation]

    def drop(self, name: str) -> None:
        drop_database(self.server, f"stopped_{name}")


@pytest.fixture(scope="module")
def runs(db_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    db_server.restart_if_dead()
    made = Runs(db_server, tmp_path_factory.mktemp("faults"))
    yield made
    for database in databases_named(db_server, "stopped_"):
        drop_database(db_server, database)


def stop_and_rerun(runs: Runs, operation: str, point: KillPoint, name: str) -> None:
    """Stop a run of the operation's file at `point`, run the file again from the inbox, compare with the clean run."""
    clean = runs.clean(operation)
    scenario = runs.scenario(operation, name)
    target = runs.template_log + max(1, round(point.share * clean.logged))
    stopped = run_until(point, target, scenario.progress, scenario.command(operation), scenario.config.parent)
    told = f"TOOLSYNC_FAULT_SEED={SEED} replays it; {point.describe()}"
    run_again_and_compare(runs, operation, scenario, stopped, told)
    if operation == "users":
        check_passwords(scenario.url, runs.files[operation], point.seed, told)
    runs.drop(name)


def run_again_and_compare(runs: Runs, operation: str, scenario: Scenario, stopped: Ended, told: str) -> None:
    """Run the file again from the inbox after `stopped`; the end state must be the clean run's (`told` says how
    the run was stopped, to reproduce a failure)."""
    clean = runs.clean(operation)
    told += (
        f"; the stopped run had committed {scenario.progress() - runs.template_log} of the clean run's "
        f"{clean.logged} log rows ({stopped.describe()})"
    )
    if went_through(stopped, operation):
        # The signal landed while the process was exiting, after its summary: the file is rightly archived, and
        # the end state must already be the clean run's.
        told += "; the signal came after the run had gone through the file, so its end state is compared as it is"
        assert not scenario.file.exists(), f"{told}: the run went through the file but left it in the inbox"
    else:
        assert scenario.file.exists(), f"{told}: the stopped run took the file out of the inbox"
        again = run_to_end(scenario.command(operation), scenario.config.parent, "again")
        assert finished(again, operation), f"{told}: run again, the file did not run through: {again.describe()}"
        assert again.returncode == clean.ended.returncode, (
            f"{told}: run again, the file exits {again.returncode}, the clean run {clean.ended.returncode}"
        )
    tables = end_states.written(runs.before, scenario.url, clean.url)
    window = (runs.started, int(time.time()))
    found, untranslated = end_states.differences(scenario.url, clean.url, tables, window)
    assert untranslated == [], f"{told}: tables written without a natural key in table_compare: {untranslated}"
    found = end_states.unexplained(found)
    assert found == [], (
        f"{told}; after the run again, {len(found)} differences from the clean run:\n" + end_states.render(found)
    )
    protected = end_states.protected_memberships(scenario.config.parent / "data", scenario.url)
    expected = end_states.protected_memberships(clean.data_dir, clean.url)
    assert protected == expected, (
        f"{told}; after the run again, the protected group memberships differ from the clean run's: "
        f"{len(expected - protected)} missing, e.g. {sorted(expected - protected)[:5]}; "
        f"{len(protected - expected)} extra, e.g. {sorted(protected - expected)[:5]}"
    )


def check_passwords(url: str, file: str, seed: int, told: str) -> None:
    """A sample of the file's accounts log in with the file's password for them."""
    rows = csv.DictReader(io.StringIO(file), delimiter=";")
    passwords = {row["idnumber"]: row["password"] for row in rows}
    sample = dict(random.Random(seed).sample(sorted(passwords.items()), PASSWORDS_CHECKED))
    wrong = end_states.password_mismatches(url, sample)
    assert wrong == [], f"{told}: these accounts' passwords do not verify: {wrong}"


def seed_of(operation: str, number: int) -> int:
    return SEED * 100 + OPERATIONS.index(operation) * 10 + number


@pytest.mark.parametrize(("operation", "number"), [(o, n) for o in OPERATIONS for n in range(KILLS)])
def test_a_killed_run_run_again_leaves_what_a_clean_run_leaves(runs: Runs, operation: str, number: int) -> None:
    seed = seed_of(operation, number)
    stop_and_rerun(runs, operation, KillPoint.drawn(seed, signal.SIGKILL), f"{operation}_kill_{number}")


STOPS: list[tuple[str, signal.Signals, int]] = [("users", signal.SIGTERM, 8), ("cohorts", signal.SIGINT, 9)]


@pytest.mark.parametrize(("operation", "sig", "number"), STOPS, ids=[f"{o}-{s.name}" for o, s, _ in STOPS])
def test_a_terminated_or_interrupted_run_run_again_leaves_what_a_clean_run_leaves(
    runs: Runs, operation: str, sig: signal.Signals, number: int
) -> None:
    seed = seed_of(operation, number)
    stop_and_rerun(runs, operation, KillPoint.drawn(seed, sig), f"{operation}_{sig.name.lower()}")


def test_a_run_killed_after_a_commit_keeps_the_memberships_it_protected(runs: Runs) -> None:
    """The enrolments file with protect_groups records the memberships it makes in the data directory (a SQLite
    file). The test holds that file's write lock from the start, and kills the run 0.3 s after its first batch has
    committed in Moodle; should the run wait for the lock with its first transaction still open (3 s), it is let
    through first. Run again, the memberships must be protected as in a clean run: a record written only after the
    commit is lost with the kill, and the run again, finding the memberships there, never makes it."""
    scenario = runs.scenario("enrols", "enrols_state_lock")
    holder = sqlite3.connect(state_path(scenario.config.parent / "data"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the run still reads the file; its writes wait (30 s) behind this
    held_since = time.monotonic()

    def committed() -> int:
        """1 once the run's first batch has committed; lets the run's record through if it waits inside its
        transaction, and in any case after 10 s (well before the run's own 30 s wait ends): a wait this check did not
        see is still a wait before the commit, which the comparison after the run again judges."""
        if scenario.progress() > runs.template_log:
            return 1
        if holder.in_transaction:
            with connect(scenario.url) as db, db.cursor() as cursor:
                cursor.execute(OPEN_WRITES if isinstance(runs.server, ThrowawayMariaDB) else PG_OPEN_WRITES)
                if cursor.fetchone()[0] or time.monotonic() - held_since > 10:
                    holder.execute("ROLLBACK")
        return 0

    try:
        point = KillPoint(0, signal.SIGKILL, share=0.0, delay=0.3)
        stopped = run_until(point, 1, committed, scenario.command("enrols"), scenario.config.parent)
    finally:
        holder.close()  # its transaction, if still open, rolled back
    told = "killed 0.3 s after its first batch's commit, the protected memberships' file locked until then"
    run_again_and_compare(runs, "enrols", scenario, stopped, told)
    runs.drop("enrols_state_lock")
