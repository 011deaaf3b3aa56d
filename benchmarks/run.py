"""Benchmark a toolsync operation end to end: the real CLI, in a child process, on a real MariaDB or PostgreSQL.

    python -m benchmarks.run check                                  # quick: 100,000 lines, 10,000 courses
    python -m benchmarks.run check --lines 1000000 --courses 100000 # full size
    python -m benchmarks.run users-create --server postgresql       # the same on PostgreSQL

Each case starts a throwaway MariaDB (tests/support/mariadb_server.py), or with `--server postgresql` a throwaway
PostgreSQL (tests/support/postgres_server.py, on disk; benchmarks/servers.py), loads the Moodle 4.5 dump made on it,
seeds what the operation needs (LOAD DATA on MariaDB, COPY on PostgreSQL: the same rows), generates its command
file, writes a toolsync configuration for that database, then times `python -m toolsync_tui --config CFG run
OPERATION FILE` and reads the child's peak RSS from the kernel (wait4, in the small launcher benchmarks/measure.py).
The child's summary, report and tryback are checked against what the generator says they must be. The server is
stopped whatever happens.

Adding an operation: write its generator (and seeding) in benchmarks/generate.py, then a
`BenchCase` below with its own arguments and `prepare`, and `register` it.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import functools
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import tomli_w

from benchmarks.cohorts import cohort_counts_sql, membership_pairs, write_cohorts_file
from benchmarks.courses import course_counts_sql, write_courses_file
from benchmarks.enrolments import (
    COURSE_IDENTIFIER,
    GROUP_IDENTIFIER,
    GROUPS_PER_COURSE,
    USER_IDENTIFIER,
    EnrolSite,
    compare_counts,
    enrolment_counts_sql,
    enrolment_pairs,
    groups_of,
    seed_enrol_site,
    seed_enrolments,
    write_enrols_file,
    write_groupmembers_file,
)
from benchmarks.generate import (
    Expected,
    GeneratedFile,
    SeedResult,
    count_values,
    seed_courses_at,
    seed_users_at,
    write_check_file,
    write_users_file,
)
from benchmarks.pictures import (
    ARCHIVE_NAME,
    TreeMemory,
    expected_extensions,
    fresh_moodledata,
    icon_files_sql,
    memory_lines,
    picture_counts_sql,
    pool_problems,
    write_pictures_archive,
)
from benchmarks.servers import SERVER_KINDS, Server, server_cpu_seconds, server_kind, server_program, start_server
from benchmarks.timeline import child_timeline, report
from toolsync_tui.engine.moodle.passwords import hash_password, usable_cpus

REPO = Path(__file__).resolve().parents[1]
MEASURE = Path(__file__).resolve().with_name("measure.py")
DATABASE = "moodle"
PREFIX = "mdl_"
EXIT_VERIFIED, EXIT_MISMATCH, EXIT_BELOW_TARGET = 0, 1, 2


# -- the registry of cases -----------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    min_rate: float  # data lines per second, end to end (process start to exit); 0: none
    max_rss_mb: float  # the child's peak resident set, MiB


@dataclass
class Prepared:
    """What a case set up: the command file, what it runs against, and how long seeding took."""

    file: GeneratedFile
    against: str  # "100,000 courses"
    seeded: list[SeedResult] = field(default_factory=list)
    # After a run: what the database holds compared with what the file must leave there (problems; [] if none).
    check_database: Callable[[], list[str]] | None = None


@dataclass(frozen=True)
class BenchCase:
    name: str
    operation: str  # the toolsync operation the child runs
    help: str
    targets: Targets
    add_arguments: Callable[[argparse.ArgumentParser], None]
    prepare: Callable[[argparse.Namespace, Server, Path], Prepared]
    # [operations.<operation>] settings written to the configuration.
    settings: dict[str, Any] = field(default_factory=dict)
    unit: str = "lines"  # what a data line is called in the printout ("rows" for users)
    # Case-specific analysis of a measured run: lines to print, and whether its own targets were met.
    analyse: Callable[[Measurement, Prepared, argparse.Namespace], Analysis] | None = None
    track_cpu: bool = False  # sample the CPU time of the child's processes and of each core (for `analyse`)
    # The run changes what the next one would find: with --repeat, every run gets a fresh database and setup.
    writes: bool = False
    # Read the memory and CPU of the command and each descendant from /proc while it runs (Measurement.tree).
    track_tree: bool = False
    rss_note: str = ""  # after "peak RSS N MB" in the printout: what that figure covers, when it needs saying


@dataclass
class Analysis:
    lines: list[str]
    met: bool = True


CASES: dict[str, BenchCase] = {}


def register(case: BenchCase) -> BenchCase:
    CASES[case.name] = case
    return case


# -- check: course existence check ---------------------------------------------------------------


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=100_000, help="data lines in the file (100,000)")
    parser.add_argument("--courses", type=int, default=10_000, help="courses seeded in the site (10,000)")
    parser.add_argument(
        "--missing-share", type=float, default=0.1, help="share of lines naming a course that does not exist (0.1)"
    )
    parser.add_argument(
        "--case-share", type=float, default=0.02, help="share of existing names written in lower case (0.02)"
    )


def _check_prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
    seeded = asyncio.run(seed_courses_at(server.url(DATABASE), PREFIX, args.courses))
    generated = write_check_file(
        workdir / "courses.csv",
        args.lines,
        args.courses,
        missing_share=args.missing_share,
        case_share=args.case_share,
        seed=args.seed,
    )
    return Prepared(generated, f"{args.courses:,} courses", [seeded])


register(
    BenchCase(
        name="check",
        operation="check",
        help="course existence check: <shortname>;<description> lines",
        targets=Targets(min_rate=100_000, max_rss_mb=400),
        add_arguments=_check_arguments,
        prepare=_check_prepare,
        settings={"identifier": "shortname"},
    )
)


# -- users: create, update, unchanged, passwords -------------------------------------------------
#
# User i is benchmarks.generate.user_row(i): username, firstname, lastname, email, idnumber, institution,
# department, city, country. users-update and users-unchanged seed users 0..N-1 first (not timed); the
# file then changes every row's department, or nothing. The file lists the users in a shuffled order.

USERS_TARGETS = Targets(min_rate=25_000, max_rss_mb=400)
USERS_SETTINGS: dict[str, Any] = {"primary_identity": "idnumber", "password_rounds": 5000}


def _users_arguments(default: int, seeded: bool) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--users", type=int, default=default, help=f"rows in the file ({default:,})")
        parser.add_argument(
            "--row-format",
            choices=["as-dumped", "dynamic"],
            default="as-dumped",
            help="mdl_user and mdl_context as the Moodle dump makes them (COMPRESSED, as Moodle creates them on "
            "MariaDB), or converted to DYNAMIC first: a diagnostic, to see the engine when page compression "
            "is not what bounds the run (python -m benchmarks.floor measures the database alone)",
        )
        if seeded:
            parser.add_argument(
                "--seed-with",
                choices=["load-data", "toolsync"],
                default="load-data",
                help="how the existing users are made: LOAD DATA of the rows a create leaves (the default, "
                "~3 s for 100,000) or an untimed toolsync run of the same users (a create file)",
            )

    return add


def _users_prepare(
    name: str, *, variant: int, outcome: str, passwords: bool = False
) -> Callable[[argparse.Namespace, Server, Path], Prepared]:
    def prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
        seeded: list[SeedResult] = []
        against = "the fresh site"
        if args.row_format == "dynamic":
            if server_kind(server) != "mariadb":
                raise SystemExit("--row-format dynamic: a MariaDB table option (PostgreSQL has no row formats)")
            server.sql("ALTER TABLE mdl_user ROW_FORMAT=DYNAMIC; ALTER TABLE mdl_context ROW_FORMAT=DYNAMIC", DATABASE)
        if outcome != "created":
            if args.seed_with == "toolsync":
                seeded.append(_seed_users_by_toolsync(CASES[name], args, server, workdir))
            else:
                seeded.append(asyncio.run(seed_users_at(server.url(DATABASE), PREFIX, args.users)))
            against = f"{args.users:,} existing users"
        if args.row_format == "dynamic":
            against += " (mdl_user, mdl_context ROW_FORMAT=DYNAMIC)"
        generated = write_users_file(
            workdir / "userimport.csv",
            args.users,
            variant=variant,
            passwords=passwords,
            outcome=outcome,  # type: ignore[arg-type]
            seed=args.seed,
        )
        return Prepared(generated, against, seeded)

    return prepare


def _seed_users_by_toolsync(case: BenchCase, args: argparse.Namespace, server: Server, workdir: Path) -> SeedResult:
    """Users 0..N-1 created by toolsync itself (a create file, untimed), so an update or unchanged run
    starts from exactly what toolsync writes."""
    seed_file = write_users_file(workdir / "seed-users.csv", args.users, outcome="created", seed=args.seed + 1)
    seeded = _seed_by_toolsync(case, args, server, workdir, seed_file, "users")
    return SeedResult("mdl_user", seeded.rows, seeded.seconds, 0, 0, seeded.method)


def _hashing_analysis(measured: Measurement, prepared: Prepared, args: argparse.Namespace) -> Analysis:
    """Hashes/s, per core, and the evidence that every core hashed: the CPU time of the hashing workers
    (the command's descendants that worked) over the hashing window, and each core's busy share in it."""
    samples = measured.cpu_samples
    cores = usable_cpus()
    if len(samples) < 3:
        return Analysis(["hashing: no CPU samples (psutil missing?): cannot tell whether every core hashed"], False)
    command = next(iter(samples[0].processes))
    # CPU seconds so far per process at each sample; a process that has exited keeps its last figure.
    so_far: dict[int, float] = {}
    cumulative: list[dict[int, float]] = []
    for sample in samples:
        for pid, seconds in sample.processes.items():
            so_far[pid] = max(seconds, so_far.get(pid, 0.0))
        cumulative.append(dict(so_far))
    # The forkserver and the resource tracker do next to nothing; a hashing worker works for seconds.
    workers = sorted(pid for pid, seconds in so_far.items() if pid != command and seconds >= 1.0)
    if not workers:
        return Analysis(["hashing: no worker process did any work"], False)
    hashing = [sum(done.get(pid, 0.0) for pid in workers) for done in cumulative]
    total = hashing[-1]
    # The window: from the last sample before the workers got going (their start-up and imports are a fraction
    # of a CPU-second) to the first one by which they had done (nearly) all their work.
    start = max(i for i, used in enumerate(hashing) if used < 0.2 * len(workers) or i == 0)
    end = next(i for i, used in enumerate(hashing) if used >= total - 0.05 * len(workers))
    first, stop = samples[start], samples[end]
    window = max(stop.at - first.at, 1e-9)
    hashes = prepared.file.lines
    worker_cpu = max(hashing[end] - hashing[start], 1e-9)
    per_worker = [(cumulative[end].get(pid, 0.0) - cumulative[start].get(pid, 0.0)) / window for pid in workers]
    per_core = [
        (stop.cores_busy[k] - first.cores_busy[k]) / max(stop.cores_total[k] - first.cores_total[k], 1e-9)
        for k in range(len(stop.cores_busy))
    ]
    ceiling = _single_core_ceiling(args)
    rate = hashes / window
    shares = [w / (sum(per_worker) / len(per_worker)) for w in per_worker]
    met = len(workers) >= cores and min(shares) >= 0.8 and min(per_core) >= 0.8
    return Analysis(
        [
            f"hashing: {hashes:,} passwords (rounds {USERS_SETTINGS['password_rounds']}) in a {window:.1f} s window = "
            f"{rate:,.0f} hashes/s, {rate / cores:,.0f} hashes/s per core ({cores} cores); while hashing, "
            f"{hashes / worker_cpu:,.0f} hashes/s per worker CPU-second (one core alone, in-process, no IPC: "
            f"{ceiling:,.0f} hashes/s)",
            f"workers: {len(workers)} processes hashed (pids {', '.join(map(str, workers))}), each busy "
            f"{' '.join(f'{100 * w:.0f}%' for w in per_worker)} of the window ({worker_cpu:.1f} CPU-s = "
            f"{worker_cpu / window:.2f} cores; the rest is the batches' database work, between their hashing); "
            f"the machine's cores were busy {' '.join(f'{100 * c:.0f}%' for c in per_core)} "
            f"(psutil, every {CPU_INTERVAL} s)",
            f"every core hashing (a worker per core, none doing < 80% of the mean share, every core >= 80% busy): "
            f"{'met' if met else 'MISSED'}",
        ],
        met,
    )


def _single_core_ceiling(args: argparse.Namespace, count: int = 300) -> float:
    """Hashes/s of hash_password() in this process: what one core does with no IPC and nothing else."""
    passwords = [f"Bench-{i:06d}!x" for i in range(count)]
    clock = time.perf_counter()
    for password in passwords:
        hash_password(password, USERS_SETTINGS["password_rounds"])
    return count / (time.perf_counter() - clock)


for _name, _help, _variant, _outcome, _default in (
    ("users-create", "users file: create 100,000 new users (no password column)", 0, "created", 100_000),
    ("users-update", "users file: change the department of 100,000 existing users", 1, "updated", 100_000),
    ("users-unchanged", "users file: re-run 100,000 users as they are stored", 0, "unchanged", 100_000),
):
    register(
        BenchCase(
            name=_name,
            operation="users",
            help=_help,
            targets=USERS_TARGETS,
            add_arguments=_users_arguments(_default, seeded=_outcome != "created"),
            prepare=_users_prepare(_name, variant=_variant, outcome=_outcome),
            settings=USERS_SETTINGS,
            unit="rows",
            writes=_outcome != "unchanged",
        )
    )

register(
    BenchCase(
        name="users-passwords",
        operation="users",
        help="users file: create 20,000 users with a password column (hashing on every core)",
        targets=Targets(min_rate=0, max_rss_mb=400),
        add_arguments=_users_arguments(20_000, seeded=False),
        prepare=_users_prepare("users-passwords", variant=0, outcome="created", passwords=True),
        settings=USERS_SETTINGS,
        unit="rows",
        analyse=_hashing_analysis,
        track_cpu=True,
        writes=True,
    )
)


# -- enrols and groupmembers ---------------------------------------------------------------------
#
# The site of issue 4: 20,000 users and 2,000 courses (category 1, contexts, the manual/guest/self instances
# create_course() gives them), seeded untimed. A file of N rows names N distinct (user, course) pairs at random
# (benchmarks/enrolments.py). enrols-add enrols every pair with the student role into the pair's group, which the
# run creates (gaddcreate); enrols-unchanged runs the same file again where that has been done; groupmembers-add
# puts 200,000 enrolled pairs into their (existing) groups.

ENROLS_TARGETS = Targets(min_rate=25_000, max_rss_mb=400)
ENROLS_SETTINGS: dict[str, Any] = {"course_identifier": COURSE_IDENTIFIER, "user_identifier": USER_IDENTIFIER}
GROUPMEMBERS_SETTINGS: dict[str, Any] = {
    "course_identifier": COURSE_IDENTIFIER,
    "group_identifier": GROUP_IDENTIFIER,
    "user_identifier": USER_IDENTIFIER,
}


def _enrols_arguments(default: int, seeded: bool) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--rows", type=int, default=default, help=f"rows (distinct pairs) in the file ({default:,})"
        )
        parser.add_argument("--users", type=int, default=20_000, help="users seeded in the site (20,000)")
        parser.add_argument("--courses", type=int, default=2_000, help="courses seeded in the site (2,000)")
        if seeded:
            parser.add_argument(
                "--seed-with",
                choices=["load-data", "toolsync"],
                default="load-data",
                help="how the enrolments are made before the measured run: LOAD DATA of the rows an add leaves "
                "(the default) or an untimed toolsync run of the same file",
            )

    return add


def _database_check(server: Server, site: EnrolSite, wanted: Sequence[int]) -> Callable[[], list[str]]:
    def check() -> list[str]:
        return compare_counts(server.sql(enrolment_counts_sql(PREFIX, site), DATABASE), wanted)

    return check


def _enrols_prepare(outcome: str) -> Callable[[argparse.Namespace, Server, Path], Prepared]:
    def prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
        site, seeded = asyncio.run(seed_enrol_site(server.url(DATABASE), PREFIX, args.users, args.courses))
        pairs = enrolment_pairs(args.rows, args.users, args.courses, args.seed)
        path = workdir / "enrols.csv"
        if outcome == "unchanged" and args.seed_with == "toolsync":
            first = write_enrols_file(path, pairs, args.users, outcome="created")
            seeded.append(_seed_by_toolsync(CASES["enrols-unchanged"], args, server, workdir, first, "enrols"))
        elif outcome == "unchanged":
            seeded += asyncio.run(
                seed_enrolments(server.url(DATABASE), PREFIX, site, pairs, groups="named", members=True)
            )
        generated = write_enrols_file(path, pairs, args.users, outcome=outcome)  # type: ignore[arg-type]
        rows = len(pairs)
        wanted = (rows, rows, len(groups_of(pairs, args.users)), rows)
        against = f"{args.users:,} users, {args.courses:,} courses"
        if outcome == "unchanged":
            against += f", the {rows:,} enrolments already made"
        del pairs
        return Prepared(generated, against, seeded, _database_check(server, site, wanted))

    return prepare


def _groupmembers_prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
    site, seeded = asyncio.run(seed_enrol_site(server.url(DATABASE), PREFIX, args.users, args.courses))
    pairs = enrolment_pairs(args.rows, args.users, args.courses, args.seed)
    seeded += asyncio.run(
        seed_enrolments(server.url(DATABASE), PREFIX, site, pairs, groups="with-idnumber", members=False)
    )
    generated = write_groupmembers_file(workdir / "groupmembers.csv", pairs, args.users)
    rows = len(pairs)
    wanted = (rows, rows, args.courses * GROUPS_PER_COURSE, rows)
    against = (
        f"{args.users:,} users, {args.courses:,} courses with {GROUPS_PER_COURSE} groups each, {rows:,} enrolments"
    )
    return Prepared(generated, against, seeded, _database_check(server, site, wanted))


def _seed_by_toolsync(
    case: BenchCase,
    args: argparse.Namespace,
    server: Server,
    workdir: Path,
    seed_file: GeneratedFile,
    operation: str,
) -> SeedResult:
    """An untimed toolsync run of `seed_file` (which must be verified as generated): the rows it leaves are exactly
    what the measured run then finds."""
    config = write_config(workdir, server, case, args)
    command = [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", operation, str(seed_file.path)]
    measured = run_child(command, workdir, "seed")
    problems = verify(measured, parse_summary(measured.stdout, operation), seed_file.expected, check_exit=True)
    if problems:
        raise RuntimeError(f"seeding by a toolsync run of {operation} failed: " + "; ".join(problems))
    return SeedResult(operation, seed_file.lines, measured.wall, 0, 0, "toolsync run")


for _name, _help, _outcome in (
    (
        "enrols-add",
        "enrolments file: 1,000,000 new enrolments (student, manual) each into a group it creates",
        "created",
    ),
    ("enrols-unchanged", "enrolments file: the same 1,000,000 enrolments again, as they are stored", "unchanged"),
):
    register(
        BenchCase(
            name=_name,
            operation="enrols",
            help=_help,
            targets=ENROLS_TARGETS,
            add_arguments=_enrols_arguments(1_000_000, seeded=_outcome == "unchanged"),
            prepare=_enrols_prepare(_outcome),
            settings=ENROLS_SETTINGS,
            unit="rows",
            writes=_outcome != "unchanged",
        )
    )

register(
    BenchCase(
        name="groupmembers-add",
        operation="groupmembers",
        help="group members file: 200,000 enrolled users added to existing groups",
        targets=ENROLS_TARGETS,
        add_arguments=_enrols_arguments(200_000, seeded=False),
        prepare=_groupmembers_prepare,
        settings=GROUPMEMBERS_SETTINGS,
        unit="rows",
        writes=True,
    )
)


def count_mismatches(server: Server, sql: str, wanted: dict[str, int]) -> list[str]:
    """The counts of a one-row query that differ from what a run must leave, in words."""
    found = [int(v) for v in server.sql(sql, DATABASE).split()]
    return [
        f"{what}: {got:,} in the database, expected {want:,}"
        for (what, want), got in zip(wanted.items(), found, strict=True)
        if got != want
    ]


# -- cohorts: members added to cohorts the file creates ------------------------------------------

COHORTS_TARGETS = Targets(min_rate=25_000, max_rss_mb=400)
COHORTS_SETTINGS: dict[str, Any] = {"cohort_identifier": "idnumber", "user_identifier": "idnumber", "autocreate": True}


def _cohorts_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000, help="rows (distinct memberships) in the file (100,000)")
    parser.add_argument("--users", type=int, default=20_000, help="users seeded in the site (20,000)")
    parser.add_argument("--cohorts", type=int, default=500, help="cohorts the file names and creates (500)")


def _cohorts_prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
    seeded = [asyncio.run(seed_users_at(server.url(DATABASE), PREFIX, args.users))]
    pairs = membership_pairs(args.rows, args.users, args.cohorts, args.seed)
    generated = write_cohorts_file(workdir / "cohorts.csv", pairs, args.users)
    named = len({p // args.users for p in pairs})

    def check() -> list[str]:
        return count_mismatches(server, cohort_counts_sql(PREFIX), {"cohorts": named, "cohort members": len(pairs)})

    return Prepared(generated, f"{args.users:,} users, {named:,} cohorts created by the file", seeded, check)


register(
    BenchCase(
        name="cohorts-add",
        operation="cohorts",
        help="cohort file: 100,000 memberships across 500 cohorts the file creates",
        targets=COHORTS_TARGETS,
        add_arguments=_cohorts_arguments,
        prepare=_cohorts_prepare,
        settings=COHORTS_SETTINGS,
        unit="rows",
        writes=True,
    )
)


# -- courses: courses created in new categories, three levels deep ------------------------------

COURSES_TARGETS = Targets(min_rate=500, max_rss_mb=400)


def _courses_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=2_000, help="courses the file creates (2,000)")
    parser.add_argument("--categories", type=int, default=200, help="categories the file creates, 3 levels (200)")


def _courses_prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
    generated = write_courses_file(workdir / "uploadcourses.csv", args.rows, args.categories)

    def check() -> list[str]:
        # 5 sections (0-4) and 3 enrolment methods (manual, guest, self) a course on a fresh site.
        wanted = {
            "courses": args.rows,
            "course contexts": args.rows,
            "sections": 5 * args.rows,
            "enrol methods": 3 * args.rows,
            "categories": args.categories,
            "wrong coursecounts": 0,
        }
        return count_mismatches(server, course_counts_sql(PREFIX), wanted)

    return Prepared(generated, f"{args.categories} new categories on the real dump", [], check)


register(
    BenchCase(
        name="courses-create",
        operation="courses",
        help="course file: 2,000 courses in 200 new categories, 3 levels deep",
        targets=COURSES_TARGETS,
        add_arguments=_courses_arguments,
        prepare=_courses_prepare,
        unit="rows",
        writes=True,
    )
)


# -- pictures: a zip archive of user pictures, icons made on every core --------------------------
#
# Users 0..N-1 are seeded (LOAD DATA, with their contexts, untimed); the archive holds picture i for user i by
# username, half JPEG, half PNG, sides 200..2000 (benchmarks/pictures.py). moodle_data_dir is a fresh moodledata in the
# work folder (relative to the configuration). The archive is made once per work folder; --repeat reuses it.

PICTURES_SETTINGS: dict[str, Any] = {"moodle_data_dir": "moodledata", "user_field": "username"}


def _pictures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pictures", type=int, default=2_000, help="pictures in the archive, users seeded (2,000)")


def _pictures_prepare(args: argparse.Namespace, server: Server, workdir: Path) -> Prepared:
    seeded = asyncio.run(seed_users_at(server.url(DATABASE), PREFIX, args.pictures))
    first, last = seeded.first_id, seeded.last_id
    moodledata = fresh_moodledata(workdir / PICTURES_SETTINGS["moodle_data_dir"])
    before = int(server.sql(picture_counts_sql(PREFIX, first, last), DATABASE).split()[1])
    generated = write_pictures_archive(workdir / ARCHIVE_NAME, args.pictures, args.seed)
    extensions = expected_extensions(args.pictures, args.seed)

    def check() -> list[str]:
        # 4 rows a picture: f1, the area's directory entry ".", f2, f3 (process_new_icon()).
        wanted = {
            "icon rows of the seeded users": 4 * args.pictures,
            "icon rows in all": before + 4 * args.pictures,
            "seeded users without a picture": 0,
            "seeded users whose picture is their f1 row's id": args.pictures,
            "f1.jpg rows (JPEG pictures)": extensions["jpg"],
            "f1.png rows (PNG pictures)": extensions["png"],
        }
        problems = count_mismatches(server, picture_counts_sql(PREFIX, first, last), wanted)
        return problems + pool_problems(moodledata, server.sql(icon_files_sql(PREFIX, first, last), DATABASE))

    against = f"{args.pictures:,} users ({extensions['jpg']:,} JPEG, {extensions['png']:,} PNG pictures)"
    return Prepared(generated, against, [seeded], check)


def _pictures_analysis(measured: Measurement, prepared: Prepared, args: argparse.Namespace) -> Analysis:
    """The memory of the main process and of the icon workers, each its own, and where the CPU went."""
    if measured.tree is None or not measured.tree.samples:
        return Analysis(["memory: no /proc samples (psutil missing?): the workers' peak is unknown"], False)
    lines, main_mb, worker_mb = memory_lines(measured.tree, measured.peak_rss_mb, measured.wall)
    limit = CASES["pictures"].targets.max_rss_mb
    met = bool(measured.tree.of_role("worker")) and max(main_mb, worker_mb) < limit
    lines.append(f"main process and every worker < {limit:,.0f} MB each: {'met' if met else 'MISSED'}")
    return Analysis(lines, met)


register(
    BenchCase(
        name="pictures",
        operation="pictures",
        help="user pictures: a zip of 2,000 JPEG and PNG pictures (200..2000 px a side) of existing users",
        targets=Targets(min_rate=0, max_rss_mb=400),
        add_arguments=_pictures_arguments,
        prepare=_pictures_prepare,
        settings=PICTURES_SETTINGS,
        unit="pictures",
        analyse=_pictures_analysis,
        writes=True,
        track_tree=True,
        rss_note=" (wait4: the largest single process, see below)",
    )
)


# -- running -------------------------------------------------------------------------------------


@dataclass
class Measurement:
    wall: float
    peak_rss_mb: float  # the kernel's figure for the child (wait4's ru_maxrss)
    exit_code: int
    stdout: str
    stderr: str
    # psutil samples every RSS_INTERVAL: (seconds since start, RSS MiB); empty without psutil.
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    # With BenchCase.track_cpu, every CPU_INTERVAL: the CPU seconds of the command and each of its descendants.
    cpu_samples: list[CpuSample] = field(default_factory=list)
    # With BenchCase.track_tree: each process's own peak RSS and CPU time, and the tree's summed memory.
    tree: TreeMemory | None = None
    cpu: float = 0.0  # the command's user + system CPU seconds (wait4), its reaped descendants' included

    def rss_timeline(self, points: int = 10) -> str:
        """RSS at `points` evenly spaced moments of the run, to see where the peak happens."""
        if not self.rss_samples:
            return ""
        step = self.wall / points
        shown = []
        for k in range(1, points + 1):
            upto = [mb for at, mb in self.rss_samples if at <= k * step]
            shown.append(f"{max(upto) if upto else 0:,.0f}")
        return " ".join(shown)


RSS_INTERVAL = 0.05
CPU_INTERVAL = 0.25


@dataclass(frozen=True)
class CpuSample:
    at: float  # seconds since the command started
    processes: dict[int, float]  # pid -> user + system CPU seconds so far (the command and its descendants)
    cores_busy: tuple[float, ...]  # per core of the machine: non-idle seconds since boot (psutil.cpu_times)
    cores_total: tuple[float, ...]  # per core: all seconds since boot


def _sample_rss(
    pid_file: Path,
    samples: list[tuple[float, float]],
    done: threading.Event,
    cpu_samples: list[CpuSample] | None = None,
    tree: TreeMemory | None = None,
) -> None:
    """RSS of the measured command every RSS_INTERVAL, once the launcher has written its pid; with
    `cpu_samples`, also the CPU time of it and its descendants (hashing workers) every CPU_INTERVAL; with `tree`,
    the memory and CPU of each process of the tree every tree.interval."""
    try:
        import psutil
    except ImportError:
        return
    while not pid_file.exists() or not pid_file.read_text().strip():
        if done.wait(0.005):
            return
    clock = time.perf_counter()
    next_cpu = next_tree = 0.0
    try:
        process = psutil.Process(int(pid_file.read_text()))
        while not done.is_set():
            at = time.perf_counter() - clock
            samples.append((at, process.memory_info().rss / (1 << 20)))
            if cpu_samples is not None and at >= next_cpu:
                cpu_samples.append(_cpu_sample(psutil, process, at))
                next_cpu = at + CPU_INTERVAL
            if tree is not None and at >= next_tree:
                tree.sample(psutil, process)
                next_tree = at + tree.interval
            done.wait(RSS_INTERVAL)
    except (psutil.Error, ValueError):  # the command has exited (or is a zombie)
        return


def _cpu_sample(psutil: Any, process: Any, at: float) -> CpuSample:
    used: dict[int, float] = {}
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.Error:  # a worker that has just exited
            continue
        used[each.pid] = times.user + times.system
    cores = psutil.cpu_times(percpu=True)
    busy = tuple(c.user + c.nice + c.system + c.irq + c.softirq + c.steal for c in cores)
    total = tuple(b + c.idle + c.iowait for b, c in zip(busy, cores, strict=True))
    return CpuSample(at, used, busy, total)


@dataclass
class Summary:
    """The child's `OPERATION: 1,200 rows were processed in 2.0 s: 3 created, 1 failed` and file paths."""

    rows: int
    engine_seconds: float
    outcomes: Counter[str]
    paths: dict[str, Path]


# Counts carry thousands separators ("1,200"); the duration is "0.4 s" or "2 minutes and 5 seconds".
SUMMARY = re.compile(r"^(?P<op>\w+): (?P<rows>[\d,]+) rows were processed in (?P<took>[^:]+): (?P<parts>.*)$")
DURATION_PART = re.compile(r"([\d.]+) (s|second|minute|hour)")
UNIT_SECONDS = {"s": 1, "second": 1, "minute": 60, "hour": 3600}


def _seconds(took: str) -> float:
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in DURATION_PART.findall(took))


PATH_LINE = re.compile(r"^  (?P<label>report|table|tryback|archived): (?P<path>.+)$")


def write_config(workdir: Path, server: Server, case: BenchCase, args: argparse.Namespace) -> Path:
    run = {"batch_size": args.batch_size} if args.batch_size else None
    return config_file(
        workdir / "toolsync.toml",
        server,
        workdir / "data",
        {case.operation: case.settings},
        report=not args.no_report,
        tryback=not args.no_tryback,
        run=run,
    )


def config_file(
    path: Path,
    server: Server,
    data_dir: Path,
    operations: dict[str, Any],
    *,
    report: bool = True,
    tryback: bool = True,
    run: dict[str, Any] | None = None,
) -> Path:
    """A configuration for the throwaway server over TCP, archive off (the files are run again), mode 600."""
    document: dict[str, Any] = {
        "database": {
            "driver": server_kind(server),
            "host": "127.0.0.1",
            "port": server.port,
            "user": "toolsync",
            "password": "toolsync",
            "password_env": "",
            "name": DATABASE,
            "prefix": PREFIX,
        },
        "files": {"data_dir": str(data_dir), "archive": "off", "report": report, "tryback": tryback},
        "operations": operations,
    }
    if run:
        document["run"] = run
    with path.open("wb") as out:
        tomli_w.dump(document, out)
    path.chmod(0o600)
    return path


def _attach_py_spy(pid_path: Path, out: Path, log: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording the measured command (not the launcher) until it exits."""
    deadline = time.monotonic() + 10
    while not (pid_path.exists() and pid_path.read_text().strip()):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)
    with log.open("wb") as messages:
        pid = pid_path.read_text().strip()
        spy = [
            py_spy_binary(),
            "record",
            "--nonblocking",
            "--pid",
            pid,
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        return subprocess.Popen(spy, stdout=messages, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@functools.cache
def _byte_compiled() -> None:
    """Compile toolsync's modules once, as pip does when it installs a wheel: a checkout run with
    PYTHONDONTWRITEBYTECODE set (or from a read-only tree) would compile every module at every start (~0.1 s)."""
    compileall.compile_dir(REPO / "toolsync_tui", quiet=1)


def child_env() -> dict[str, str]:
    """A timed toolsync child's environment: this checkout first on the path, byte-compiled; no inherited config."""
    _byte_compiled()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("TOOLSYNC_CONFIG", None)
    return env


PROFILE_LABELS = {"cprofile": " under cProfile", "py-spy": " under py-spy", "timeline": " timed statement by statement"}


def run_child(
    command: Sequence[str],
    workdir: Path,
    tag: str,
    py_spy_out: Path | None = None,
    track_cpu: bool = False,
    track_tree: bool = False,
    timeline: Path | None = None,
) -> Measurement:
    """Run to completion through benchmarks/measure.py: wall time from spawn to reaping, and the
    command's own peak RSS (see measure.py for why it is not started from this process)."""
    out_path, err_path = workdir / f"{tag}.stdout", workdir / f"{tag}.stderr"
    result_path, pid_path = workdir / f"{tag}.json", workdir / f"{tag}.json.pid"
    env = child_env()
    if timeline is not None:  # benchmarks/timeline_hook/sitecustomize.py times the child's statements and loop steps
        env["PYTHONPATH"] += os.pathsep + str(REPO / "benchmarks" / "timeline_hook")
        env["TOOLSYNC_TIMELINE"] = str(timeline)
    launcher = [sys.executable, str(MEASURE), str(result_path), "--", *command]
    samples: list[tuple[float, float]] = []
    cpu_samples: list[CpuSample] = []
    tree = TreeMemory() if track_tree else None
    done = threading.Event()
    sampler = threading.Thread(
        target=_sample_rss, args=(pid_path, samples, done, cpu_samples if track_cpu else None, tree), daemon=True
    )
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(launcher, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=workdir, env=env)
        sampler.start()
        spy = _attach_py_spy(pid_path, py_spy_out, workdir / f"{tag}.py-spy.log") if py_spy_out else None
        try:
            child.wait()
            if spy is not None:
                spy.wait(timeout=60)
        except BaseException:
            if pid_path.exists() and (pid := pid_path.read_text().strip()):
                os.kill(int(pid), signal.SIGKILL)
            child.kill()
            child.wait()
            raise
        finally:
            done.set()
            sampler.join()
    if child.returncode != 0 or not result_path.exists():
        raise RuntimeError(
            f"the measuring launcher failed (exit code {child.returncode}): "
            f"{err_path.read_text(errors='replace')[-2000:]}"
        )
    result = json.loads(result_path.read_text())
    return Measurement(
        float(result["wall"]),
        int(result["maxrss_kb"]) / 1024,
        int(result["exit_code"]),
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        samples,
        cpu_samples,
        tree,
        float(result.get("cpu", 0.0)),
    )


def parse_summary(stdout: str, operation: str) -> Summary | None:
    summary: Summary | None = None
    for line in stdout.splitlines():
        if (match := SUMMARY.match(line)) and match["op"] == operation:
            outcomes: Counter[str] = Counter()
            for part in match["parts"].split(", "):
                number, _, name = part.partition(" ")
                if number.replace(",", "").isdigit():
                    outcomes[name] = int(number.replace(",", ""))
            summary = Summary(int(match["rows"].replace(",", "")), _seconds(match["took"]), outcomes, {})
        elif summary is not None and (match := PATH_LINE.match(line)):
            summary.paths[match["label"]] = Path(match["path"])
    return summary


def verify(measured: Measurement, summary: Summary | None, expected: Expected, check_exit: bool) -> list[str]:
    """Differences between what the run reported and what the generated file holds; [] if none."""
    if summary is None:
        return [
            f"no summary line in the child's output (exit code {measured.exit_code}):\n"
            f"{measured.stdout[-1500:]}{measured.stderr[-1500:]}"
        ]
    problems: list[str] = []
    want_exit = 1 if expected.outcomes.get("failed") else 0
    if check_exit and measured.exit_code != want_exit:
        problems.append(f"exit code {measured.exit_code}, expected {want_exit}")
    if summary.rows != expected.lines:
        problems.append(f"{summary.rows:,} rows processed, {expected.lines:,} in the file")
    if +summary.outcomes != +expected.outcomes:
        problems.append(f"outcomes {count_values(summary.outcomes)}, expected {count_values(expected.outcomes)}")
    table = summary.paths.get("table")
    if table is not None:
        # The rows' own actions: detail rows (a `part` of a row, e.g. a users row's course2) are not counted.
        counted = pl.read_csv(
            table, columns=["part", "action"], schema_overrides={"part": pl.String, "action": pl.String}
        ).filter(pl.col("part").is_null())
        actions = Counter({str(a): int(n) for a, n in counted.group_by("action").len().iter_rows()})
        if +actions != +expected.actions:
            problems.append(f"report actions {count_values(actions)}, expected {count_values(expected.actions)}")
    tryback = summary.paths.get("tryback")
    if tryback is not None:
        with tryback.open("rb") as data:
            retried = sum(chunk.count(b"\n") for chunk in iter(lambda: data.read(1 << 20), b""))
        if retried != expected.outcomes.get("failed", 0):
            problems.append(f"tryback holds {retried:,} lines, expected {expected.outcomes.get('failed', 0):,}")
    return problems


def _rate(rate: float) -> str:
    """A rate as printed: a decimal below 100 a second (pictures), none above (lines)."""
    return f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}"


def _mb(size: float) -> str:
    return f"{size / (1 << 20):,.1f} MB"


def benchmark(case: BenchCase, args: argparse.Namespace) -> int:
    if args.profile == "py-spy":
        py_spy_binary()  # fail before the setup, not after it
    workdir = Path(tempfile.mkdtemp(prefix=f"toolsync-bench-{case.name}-"))
    server: Server | None = None
    try:
        clock = time.monotonic()
        server = start_server(args.server)
        started = time.monotonic() - clock
        clock = time.monotonic()
        server.load_dump(DATABASE)
        _log_store(server, args)
        loaded = time.monotonic() - clock
        prepared = case.prepare(args, server, workdir)
        config = write_config(workdir, server, case, args)
        generated = prepared.file
        seeded = "; ".join(
            f"seeded {s.rows:,} rows into {s.table} in {s.seconds:.1f} s ({s.method})" for s in prepared.seeded
        )
        print(
            f"setup: {server_program(server)} {started:.1f} s, Moodle dump {loaded:.1f} s; "
            f"{seeded or 'nothing seeded'}; generated {generated.lines:,} lines ({_mb(generated.bytes)}) in "
            f"{generated.seconds:.1f} s",
            flush=True,
        )
        if args.setup_only:
            problems = prepared.check_database() if prepared.check_database is not None else []
            print(f"setup only: {generated.path}; " + ("; ".join(problems) or "database as expected"))
            return EXIT_MISMATCH if problems else EXIT_VERIFIED
        command = ["-m", "toolsync_tui", "--config", str(config), "run", case.operation, str(generated.path)]

        def reset() -> Prepared:
            assert server is not None
            clock = time.monotonic()
            server.load_dump(DATABASE)
            _log_store(server, args)
            again = case.prepare(args, server, workdir)
            print(f"setup again (the last run changed the database): {time.monotonic() - clock:.1f} s", flush=True)
            return again

        return _measure(case, args, workdir, prepared, command, reset if case.writes else None, server)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _log_store(server: Server, args: argparse.Namespace) -> None:
    """--no-log-store: the site's standard log store disabled (the dump enables it, as a fresh site does)."""
    if args.no_log_store:
        server.sql(
            "UPDATE mdl_config_plugins SET value = '' WHERE plugin = 'tool_log' AND name = 'enabled_stores'", DATABASE
        )


def _measure(
    case: BenchCase,
    args: argparse.Namespace,
    workdir: Path,
    prepared: Prepared,
    command: list[str],
    reset: Callable[[], Prepared] | None = None,
    server: Server | None = None,
) -> int:
    lines = prepared.file.lines
    program = server_program(server) if server is not None else "mariadbd"
    rates: list[float] = []
    worst_rss = 0.0
    mismatch = False
    missed_own = False  # a case's own target (BenchCase.analyse) missed by a verified run
    for attempt in range(1, args.repeat + 1):
        if attempt > 1 and reset is not None:
            prepared = reset()
        profile = workdir / f"{case.name}-{attempt}.prof" if args.profile == "cprofile" else None
        sampled = workdir / f"{case.name}-{attempt}.py-spy.txt" if args.profile == "py-spy" else None
        timed = workdir / f"{case.name}-{attempt}.timeline" if args.profile == "timeline" else None
        prefix = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
        server_cpu = server_cpu_seconds(server) if server is not None else 0.0
        scans = table_scans(server) if server is not None else {}
        measured = run_child(
            [*prefix, *command],
            workdir,
            f"run{attempt}",
            py_spy_out=sampled,
            track_cpu=case.track_cpu,
            track_tree=case.track_tree,
            timeline=timed,
        )
        server_cpu = server_cpu_seconds(server) - server_cpu if server is not None else 0.0
        summary = parse_summary(measured.stdout, case.operation)
        problems = verify(measured, summary, prepared.file.expected, check_exit=profile is None)
        if prepared.check_database is not None and summary is not None:
            problems += prepared.check_database()
        analysis = case.analyse(measured, prepared, args) if case.analyse is not None and not problems else None
        rate = lines / measured.wall
        met = rate >= case.targets.min_rate and measured.peak_rss_mb < case.targets.max_rss_mb
        met = met and (analysis is None or analysis.met)
        if not problems:  # a run whose counts are wrong (or that crashed) is not a measurement
            rates.append(rate)
            worst_rss = max(worst_rss, measured.peak_rss_mb)
            missed_own |= analysis is not None and not analysis.met
        label = PROFILE_LABELS.get(args.profile or "", "")
        unit = case.unit
        wanted = f">= {case.targets.min_rate:,.0f} {unit}/s, " if case.targets.min_rate else ""
        wanted += f"< {case.targets.max_rss_mb:,.0f} MB" + (", see below" if case.analyse else "")
        print(
            f"{case.name}{label}: {lines:,} {unit} against {prepared.against} in {measured.wall:.1f} s = "
            f"{_rate(rate)} {unit}/s, peak RSS {measured.peak_rss_mb:,.0f} MB{case.rss_note} "
            f"(target {wanted}: {'met' if met else 'MISSED'})",
            flush=True,
        )
        if summary is not None:
            engine = summary.engine_seconds
            print(
                f"  outcomes: {count_values(summary.outcomes)}; engine's own run loop {engine:.1f} s "
                f"({_rate(lines / engine if engine else 0)} {unit}/s), start-up and wrap-up "
                f"{measured.wall - engine:.1f} s; {program} CPU {server_cpu:.1f} s, toolsync CPU {measured.cpu:.1f} s"
            )
        if server is not None and server_kind(server) == "postgresql":
            print(f"  {scan_line(scans, table_scans(server))}")
        if timeline := measured.rss_timeline():
            print(f"  peak RSS so far, MB, at each tenth of the run (psutil): {timeline}")
        if analysis is not None:
            print("\n".join(f"  {line}" for line in analysis.lines))
        if problems:
            mismatch = True
            print("  MISMATCH: " + "\n  MISMATCH: ".join(problems))
        else:
            print(
                f"  verified: {count_values(prepared.file.expected.actions)}, as generated; exit code "
                f"{measured.exit_code}"
            )
        if profile is not None:
            _print_profile(profile, args.profile_top)
        if sampled is not None:
            _print_py_spy(sampled, args.profile_top)
        if timed is not None:
            written = child_timeline(timed)
            print("\n".join(f"  {line}" for line in (report(written) if written else ["the child wrote no timeline"])))
    if args.repeat > 1 and rates:
        print(
            f"{case.name}: {args.repeat} runs, median {_rate(statistics.median(rates))} {case.unit}/s, best "
            f"{_rate(max(rates))} {case.unit}/s, worst peak RSS {worst_rss:,.0f} MB"
        )
    if mismatch:
        return EXIT_MISMATCH
    below = not rates or statistics.median(rates) < case.targets.min_rate or worst_rss >= case.targets.max_rss_mb
    below |= missed_own
    return EXIT_BELOW_TARGET if below and args.fail_below_target else EXIT_VERIFIED


def table_scans(server: Server) -> dict[str, tuple[int, int]]:
    """PostgreSQL: each table's sequential scans and the rows they read so far (pg_stat_user_tables); {} elsewhere."""
    if server_kind(server) != "postgresql":
        return {}
    found = server.sql("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables WHERE seq_scan > 0", DATABASE)
    return {name: (int(n), int(rows)) for name, n, rows in (line.split("\t") for line in found.splitlines())}


def scan_line(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], top: int = 4) -> str:
    """The tables whose sequential scans read the most rows during the run: where a missing index shows."""
    grown = {
        name: (n - before.get(name, (0, 0))[0], rows - before.get(name, (0, 0))[1]) for name, (n, rows) in after.items()
    }
    worst = sorted(((rows, n, name) for name, (n, rows) in grown.items() if n > 0), reverse=True)[:top]
    shown = ", ".join(f"{name} {n:,} scans reading {rows:,} rows" for rows, n, name in worst)
    return f"postgres sequential scans during the run (pg_stat_user_tables): {shown or 'none'}"


def _print_profile(path: Path, top: int) -> None:
    print(f"  profile: {path}")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def _print_py_spy(path: Path, top: int) -> None:
    """py-spy's collapsed stacks (all threads): toolsync functions with their callees, then the
    functions where the samples landed."""
    print(f"  py-spy samples: {path}")
    if not path.exists():
        print("  (py-spy wrote nothing: see the runN.py-spy.log in the work folder, and use --keep)")
        return
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    if not total:
        return
    project = Counter({frame: n for frame, n in inclusive.items() if "toolsync_tui/" in frame})
    for title, counter in (("inclusive (toolsync functions)", project), ("own (any function)", own)):
        print(f"  {title}, share of {total:,} samples over all threads:")
        for frame, samples in counter.most_common(top):
            print(f"    {100 * samples / total:5.1f}%  {frame}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time a toolsync operation end to end against a throwaway MariaDB (or PostgreSQL: --server "
        "postgresql) with the Moodle dump.",
        epilog="Exit codes: 0 the run's counts matched the generated file, 1 they did not, 2 below "
        "target (only with --fail-below-target).",
    )
    cases = parser.add_subparsers(dest="case", required=True, metavar="CASE")
    for case in CASES.values():
        sub = cases.add_parser(case.name, help=case.help, description=case.help)
        case.add_arguments(sub)
        sub.add_argument(
            "--server",
            choices=SERVER_KINDS,
            default="mariadb",
            help="the database server the site is on: a throwaway MariaDB (the default) or PostgreSQL, loaded with "
            "the Moodle 4.5 dump made on it (../shared/moodle/)",
        )
        sub.add_argument("--seed", type=int, default=42, help="random seed of the generator (42)")
        sub.add_argument("--repeat", type=int, default=1, help="runs of the child on the same setup (1)")
        sub.add_argument("--batch-size", type=int, default=0, help="run.batch_size (toolsync's default)")
        sub.add_argument("--no-report", action="store_true", help="files.report = false")
        sub.add_argument("--no-tryback", action="store_true", help="files.tryback = false")
        sub.add_argument(
            "--no-log-store",
            action="store_true",
            help="the site's standard log store disabled: toolsync writes no log rows (the cost of logging)",
        )
        sub.add_argument(
            "--profile",
            nargs="?",
            const="cprofile",
            choices=["cprofile", "py-spy", "timeline"],
            help="profile the child and print its hotspots: cProfile (the default; main "
            "thread only, slows the run ~2x), py-spy (sampling, all threads) or timeline (every statement and "
            "event-loop step timed: where the writer waits, benchmarks/timeline.py)",
        )
        sub.add_argument("--profile-top", type=int, default=30, help="functions shown per profile listing")
        sub.add_argument("--keep", action="store_true", help="keep the work folder (file, config, reports)")
        sub.add_argument(
            "--setup-only", action="store_true", help="set up (seed, generate, check the database) and stop: no run"
        )
        sub.add_argument("--fail-below-target", action="store_true", help="exit 2 when below target")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return benchmark(CASES[args.case], args)


if __name__ == "__main__":
    sys.exit(main())
