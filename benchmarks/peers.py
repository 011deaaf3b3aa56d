"""toolsync side by side with Moodle's own upload tools, on fresh copies of a real Moodle 4.5 site, same files.

    python -m benchmarks.peers                       # the four cases, one run of each tool
    python -m benchmarks.peers --repeat 3 --only users --only courses

For each case: a Moodle site installed as the tests install theirs (benchmarks/peers_site.py), seeded for the case,
a file both tools read (benchmarks/peers_files.py); then, `--repeat` times and interleaved, Moodle's CLI
(admin/tool/uploaduser/cli/uploaduser.php or admin/tool/uploadcourse/cli/uploadcourse.php) and toolsync
(`python -m toolsync_tui --config CFG run OPERATION FILE`, as benchmarks.run spawns it), each on a fresh copy of the
site. The wall time of each child, spawn to exit, is what counts; setup (server, site, seeding, file, each copy) is
timed apart. After every run the database is counted: a run that did not leave what the file asks for fails.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.floor import mariadbd_cpu_seconds
from benchmarks.generate import GeneratedFile, seed_users_at
from benchmarks.peers_files import write_courses, write_enrolling_users, write_new_users
from benchmarks.peers_site import UPLOADCOURSE, UPLOADUSER, PeerSite
from benchmarks.run import DATABASE, PREFIX, Measurement, config_file, parse_summary
from tests.support.mariadb_server import ThrowawayMariaDB

EXIT_VERIFIED, EXIT_MISMATCH, EXIT_BELOW_TARGET = 0, 1, 2
SIDES = ("Moodle", "toolsync")  # the order of every pair
P = PREFIX
GENERATED_USERS = f"SELECT id FROM {P}user WHERE idnumber LIKE '2025-E%'"
GENERATED_COURSES = f"SELECT id FROM {P}course WHERE idnumber LIKE '2025-C%'"
USERS_COUNTS = (
    f"SELECT (SELECT COUNT(*) FROM {P}user WHERE idnumber LIKE '2025-E%'), "
    f"(SELECT COUNT(*) FROM {P}context WHERE contextlevel = 30 AND instanceid IN ({GENERATED_USERS})), "
    f"(SELECT COUNT(*) FROM {P}user_preferences WHERE name = 'create_password' AND value = '1' "
    f"AND userid IN ({GENERATED_USERS})), "
    f"(SELECT COUNT(*) FROM {P}user WHERE idnumber LIKE '2025-E%' AND password LIKE '$6$%')"
)
COURSES_COUNTS = (
    f"SELECT (SELECT COUNT(*) FROM {P}course WHERE idnumber LIKE '2025-C%'), "
    f"(SELECT COUNT(*) FROM {P}context WHERE contextlevel = 50 AND instanceid IN ({GENERATED_COURSES})), "
    f"(SELECT COUNT(*) FROM {P}course_sections WHERE course IN ({GENERATED_COURSES})), "
    f"(SELECT COUNT(*) FROM {P}enrol WHERE courseid IN ({GENERATED_COURSES}))"
)
ENROLMENT_COUNTS = (
    f"SELECT (SELECT COUNT(*) FROM {P}user_enrolments ue JOIN {P}enrol e ON e.id = ue.enrolid "
    f"WHERE e.enrol = 'manual' AND e.courseid IN ({GENERATED_COURSES})), "
    f"(SELECT COUNT(*) FROM {P}role_assignments ra JOIN {P}context x ON x.id = ra.contextid "
    f"WHERE ra.roleid = 5 AND x.contextlevel = 50 AND x.instanceid IN ({GENERATED_COURSES})), "
    f"(SELECT COUNT(*) FROM {P}user WHERE idnumber LIKE '2025-E%')"
)
# Both tools as a site would run them: Moodle's CLIs with the file's ';' and toolsync naming users by username, as
# Moodle's tool does.
MOODLE_CSV = ("--delimiter_name=semicolon", "--encoding=UTF-8")
USERS_SETTINGS: dict[str, Any] = {"primary_identity": "username", "course_identity": "shortname"}


@dataclass(frozen=True)
class PeerCase:
    name: str
    what: Callable[[argparse.Namespace], str]  # "10,000 new users, no password"
    operation: str  # toolsync's
    settings: dict[str, Any]
    script: str  # Moodle's CLI
    moodle_options: tuple[str, ...]
    target: float  # toolsync's wall time at least this many times shorter than Moodle's
    # Seeds the site (untimed, before it is saved) and writes the file both tools read.
    prepare: Callable[[argparse.Namespace, PeerSite, Path], GeneratedFile]
    counts_sql: str
    wanted: Callable[[int], dict[str, int]]  # what counts_sql must find after a run of N rows, by name
    # toolsync's CPU figure leaves out work done in processes it does not reap (its password hashing workers run
    # under a forkserver): said beside the CPU ratio, which then flatters toolsync.
    cpu_note: str = ""


def _prepare_users(passwords: bool) -> Callable[[argparse.Namespace, PeerSite, Path], GeneratedFile]:
    def prepare(args: argparse.Namespace, site: PeerSite, folder: Path) -> GeneratedFile:
        count = args.password_users if passwords else args.users
        return write_new_users(folder / "userimport.csv", count, passwords=passwords, seed=args.seed)

    return prepare


def _prepare_courses(args: argparse.Namespace, site: PeerSite, folder: Path) -> GeneratedFile:
    return write_courses(folder / "uploadcourses.csv", args.courses)


def _prepare_enrolments(args: argparse.Namespace, site: PeerSite, folder: Path) -> GeneratedFile:
    """The courses made by Moodle's own course upload (real courses: sections, blocks, enrol instances), the users
    seeded as a toolsync create leaves them; then the users file naming a course for each."""
    courses = write_courses(folder / "seed-courses.csv", args.enrol_courses)
    seeded = site.moodle(
        UPLOADCOURSE, "--mode=createnew", "--delimiter=semicolon", f"--file={courses.path}", tag="seed"
    )
    made = site.counts(f"SELECT COUNT(*) FROM {P}course WHERE idnumber LIKE '2025-C%'")[0]
    if seeded.exit_code != 0 or made != args.enrol_courses:
        raise RuntimeError(
            f"seeding {args.enrol_courses} courses with {UPLOADCOURSE}: {made} made; {seeded.stdout[-1500:]}"
        )
    asyncio.run(seed_users_at(site.server.url(DATABASE), PREFIX, args.enrolments))
    return write_enrolling_users(folder / "userimport.csv", args.enrolments, args.enrol_courses, seed=args.seed)


CASES: dict[str, PeerCase] = {
    case.name: case
    for case in (
        PeerCase(
            name="users",
            what=lambda a: f"{a.users:,} new users, no password",
            operation="users",
            # An account without a password: Moodle's cron makes one and mails it (uploaduser's default).
            settings={**USERS_SETTINGS, "create_passwords": True},
            script=UPLOADUSER,
            moodle_options=(*MOODLE_CSV, "--uutype=0", "--uupasswordnew=1"),
            target=15,
            prepare=_prepare_users(passwords=False),
            counts_sql=USERS_COUNTS,
            wanted=lambda n: {"users": n, "user contexts": n, "create_password preferences": n, "hashed passwords": 0},
        ),
        PeerCase(
            name="passwords",
            what=lambda a: f"{a.password_users:,} new users with passwords",
            operation="users",
            settings={**USERS_SETTINGS, "password_rounds": 5000},
            script=UPLOADUSER,
            moodle_options=(*MOODLE_CSV, "--uutype=0", "--uupasswordnew=0"),
            target=4,
            prepare=_prepare_users(passwords=True),
            counts_sql=USERS_COUNTS,
            wanted=lambda n: {"users": n, "user contexts": n, "create_password preferences": 0, "hashed passwords": n},
            cpu_note=" (without toolsync's hashing workers)",
        ),
        PeerCase(
            name="courses",
            what=lambda a: f"{a.courses:,} new courses in category 1",
            operation="courses",
            settings={},
            script=UPLOADCOURSE,
            moodle_options=("--mode=createnew", "--delimiter=semicolon", "--encoding=UTF-8"),
            target=10,
            prepare=_prepare_courses,
            counts_sql=COURSES_COUNTS,
            # 5 sections (0-4) and 3 enrolment methods (manual, guest, self) a course on a fresh site.
            wanted=lambda n: {"courses": n, "course contexts": n, "sections": 5 * n, "enrol instances": 3 * n},
        ),
        PeerCase(
            name="enrolments",
            what=lambda a: (
                f"{a.enrolments:,} enrolments (users file course1/role1, existing users, {a.enrol_courses:,} courses)"
            ),
            operation="users",
            settings=USERS_SETTINGS,
            script=UPLOADUSER,
            # Existing users, their details left alone: only the course columns do something.
            moodle_options=(*MOODLE_CSV, "--uutype=2", "--uuupdatetype=0"),
            target=15,
            prepare=_prepare_enrolments,
            counts_sql=ENROLMENT_COUNTS,
            wanted=lambda n: {"manual enrolments": n, "student role assignments": n, "users": n},
        ),
    )
}


@dataclass
class Run:
    side: str  # "Moodle" or "toolsync"
    measured: Measurement
    server_cpu: float
    problems: list[str]
    notes: str

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CaseResult:
    case: PeerCase
    rows: int
    runs: list[Run] = field(default_factory=list)

    def walls(self, side: str) -> list[float]:
        return [r.measured.wall for r in self.runs if r.side == side and r.ok]

    def cpus(self, side: str) -> list[float]:
        """CPU seconds of each verified run: the tool's own (with its reaped workers) plus mariadbd's."""
        return [r.measured.cpu + r.server_cpu for r in self.runs if r.side == side and r.ok]

    def ratio(self, of: Callable[[str], list[float]] | None = None) -> float | None:
        """Moodle's median over toolsync's, of the wall times (or of `of`, e.g. `cpus`)."""
        figures = of or self.walls
        moodle, toolsync = figures("Moodle"), figures("toolsync")
        if not moodle or not toolsync:
            return None
        return statistics.median(moodle) / statistics.median(toolsync)


def count_problems(site: PeerSite, case: PeerCase, rows: int) -> list[str]:
    found = site.counts(case.counts_sql)
    wanted = case.wanted(rows)
    return [
        f"{what}: {got:,} in the database, expected {want:,}"
        for (what, want), got in zip(wanted.items(), found, strict=True)
        if got != want
    ]


def moodle_notes(stdout: str) -> str:
    """The counts Moodle's tool prints at its end ("Users created: 10000" ...), those that are not 0."""
    lines = [line.strip() for line in stdout.splitlines()[-25:] if ":" in line]
    counted = [line for line in lines if line.rsplit(":", 1)[1].strip().isdigit()]
    return "; ".join(line for line in counted if line.rsplit(":", 1)[1].strip() != "0")


def run_side(side: str, case: PeerCase, site: PeerSite, file: GeneratedFile, config: Path, tag: str) -> Run:
    """One measured run on the site as it stands (restored by the caller), then its verification."""
    cpu = mariadbd_cpu_seconds(site.server)
    if side == "Moodle":
        measured = site.moodle(case.script, *case.moodle_options, f"--file={file.path}", tag=tag)
    else:
        measured = site.toolsync(config, case.operation, file.path, tag=tag)
    cpu = mariadbd_cpu_seconds(site.server) - cpu
    problems = [] if measured.exit_code == 0 else [f"exit code {measured.exit_code}: {measured.stderr[-1500:]}"]
    if side == "Moodle":
        notes = moodle_notes(measured.stdout)
    else:
        summary = parse_summary(measured.stdout, case.operation)
        if summary is None:
            problems.append(f"no summary line: {measured.stdout[-1500:]}")
            notes = ""
        else:
            if summary.rows != file.lines:
                problems.append(f"{summary.rows:,} rows processed, {file.lines:,} in the file")
            if summary.outcomes.get("failed"):
                problems.append(f"{summary.outcomes['failed']:,} rows failed")
            notes = ", ".join(f"{n:,} {name}" for name, n in sorted(summary.outcomes.items()) if n)
            notes += f"; engine's loop {summary.engine_seconds:.1f} s"
    problems += count_problems(site, case, file.lines)
    return Run(side, measured, cpu, problems, notes)


def _rate(rows: int, seconds: float) -> str:
    rate = rows / seconds
    return f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}"


def print_run(case: PeerCase, attempt: int, rows: int, run: Run) -> None:
    m = run.measured
    print(
        f"  {case.name} #{attempt} {run.side:8}: {m.wall:7.1f} s = {_rate(rows, m.wall):>7} rows/s; peak RSS "
        f"{m.peak_rss_mb:,.0f} MB; CPU {m.cpu:.1f} s + mariadbd {run.server_cpu:.1f} s"
        + (f"; {run.notes}" if run.notes else ""),
        flush=True,
    )
    for problem in run.problems:
        print(f"    MISMATCH: {problem}", flush=True)


def benchmark_case(case: PeerCase, args: argparse.Namespace, server: ThrowawayMariaDB, folder: Path) -> CaseResult:
    folder.mkdir(parents=True)
    clock = time.monotonic()
    site = PeerSite(server, folder)
    file = case.prepare(args, site, folder)
    site.save()
    config = config_file(folder / "toolsync.toml", server, folder / "data", {case.operation: case.settings})
    print(
        f"{case.name}: {case.what(args)}; setup {time.monotonic() - clock:.1f} s (site, seeding, "
        f"{file.lines:,}-line file of {file.bytes / (1 << 20):.1f} MB, caches warmed, saved)",
        flush=True,
    )
    result = CaseResult(case, file.lines)
    restore = 0.0
    copied: list[int] = []
    for attempt in range(1, args.repeat + 1):
        for side in SIDES:
            clock = time.monotonic()
            copied.append(site.restore())
            restore += time.monotonic() - clock
            run = run_side(side, case, site, file, config, f"{side.lower()}{attempt}")
            result.runs.append(run)
            print_run(case, attempt, file.lines, run)
    ratio, cpu_ratio = result.ratio(), result.ratio(result.cpus)
    shown = f"{ratio:.1f}x" if ratio is not None else "none (no verified pair)"
    print(
        f"  {case.name}: Moodle / toolsync = {shown} (median wall times; target >= {case.target:g}x: "
        f"{'met' if ratio is not None and ratio >= case.target else 'MISSED'}); each fresh copy took "
        f"{restore / len(copied):.1f} s, untimed (tables copied back: {' '.join(map(str, copied))}); CPU seconds "
        f"(the tool's and mariadbd's): {f'{cpu_ratio:.1f}x' if cpu_ratio is not None else '-'}{case.cpu_note}",
        flush=True,
    )
    return result


def print_table(results: Sequence[CaseResult], args: argparse.Namespace) -> None:
    print()
    print("| case | Moodle | toolsync | ratio | target | CPU: Moodle, toolsync (tool + mariadbd) | CPU ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        case, rows = result.case, result.rows
        cells = []
        for side in SIDES:
            walls = result.walls(side)
            cells.append(
                f"{statistics.median(walls):.1f} s = {_rate(rows, statistics.median(walls))} rows/s" if walls else "-"
            )
        ratio, cpu_ratio = result.ratio(), result.ratio(result.cpus)
        met = ratio is not None and ratio >= case.target
        shown = f"{ratio:.1f}x" if ratio is not None else "-"
        cpu = ", ".join(f"{statistics.median(c):.1f} s" if (c := result.cpus(side)) else "-" for side in SIDES)
        print(
            f"| {case.what(args)} | {cells[0]} | {cells[1]} | **{shown}** | >= {case.target:g}x: "
            f"{'met' if met else 'missed'} | {cpu} | {f'{cpu_ratio:.1f}x' if cpu_ratio is not None else '-'}"
            f"{case.cpu_note} |"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description="Time Moodle's own upload CLIs and toolsync on the same files, each on a fresh copy of a real "
        "Moodle 4.5 site, interleaved.",
        epilog="Exit codes: 0 every run verified, 1 a run left the wrong counts (or failed), 2 a ratio below its "
        "target (only with --fail-below-target).",
    )
    parser.add_argument("--only", action="append", choices=list(CASES), help="run this case only (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool per case, interleaved (1)")
    parser.add_argument("--users", type=int, default=10_000, help="new users, no password (10,000)")
    parser.add_argument("--password-users", type=int, default=1_000, help="new users with a password (1,000)")
    parser.add_argument("--courses", type=int, default=1_000, help="new courses (1,000)")
    parser.add_argument("--enrolments", type=int, default=10_000, help="enrolments, one per existing user (10,000)")
    parser.add_argument("--enrol-courses", type=int, default=100, help="courses the enrolments go to (100)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the generators (42)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (files, outputs, configs)")
    parser.add_argument("--fail-below-target", action="store_true", help="exit 2 when a ratio is below target")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    selected = [CASES[name] for name in args.only] if args.only else list(CASES.values())
    # A SIGTERM unwinds as an exit does, so that the server is stopped and the work folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="toolsync-peers-"))
    server: ThrowawayMariaDB | None = None
    results: list[CaseResult] = []
    try:
        clock = time.monotonic()
        server = ThrowawayMariaDB.start()
        print(f"mariadbd started in {time.monotonic() - clock:.1f} s", flush=True)
        for case in selected:
            results.append(benchmark_case(case, args, server, workdir / case.name))
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, args)
    if any(not run.ok for result in results for run in result.runs):
        return EXIT_MISMATCH
    below = any((r.ratio() or 0) < r.case.target for r in results)
    return EXIT_BELOW_TARGET if below and args.fail_below_target else EXIT_VERIFIED


if __name__ == "__main__":
    sys.exit(main())
