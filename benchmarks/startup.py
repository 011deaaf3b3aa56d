"""The fixed cost of a small run: a 1-row headless run end to end (spawn to exit), and the share of its imports.

    python -m benchmarks.startup                        # users, enrols and cohorts: 7 runs of each
    python -m benchmarks.startup --operation users --runs 15

Most real runs are small deltas (cron calls `toolsync cron` every 5 minutes), so what a run costs before and after
its rows matters as much as its rows/s. Each run is `python -m toolsync_tui --config CFG run OPERATION FILE` on a file
of one new row (a new user, a new enrolment with its group, a new cohort membership), against the throwaway MariaDB
with the Moodle dump, the configuration a site would use (report and tryback on, archive off), no bridge. The runs
are timed by benchmarks/measure.py, as every benchmark's; each must report its row created.

The imports' share: the modules such a run loads (read from one more run under `python -X importtime`), imported
alone in a fresh interpreter, best of several; the libraries alone that every run imports (STACK), the same way: the
least any run can take on this machine; and, from that run, the packages whose imports cost most (their own time,
which -X importtime inflates somewhat). Target: start-up plus wrap-up under 0.5 s (issue 23).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cohorts import write_cohorts_file
from benchmarks.enrolments import seed_enrol_site, write_enrols_file
from benchmarks.generate import USERS_HEADER, seed_users_at, user_row
from benchmarks.run import (
    COHORTS_SETTINGS,
    DATABASE,
    ENROLS_SETTINGS,
    PREFIX,
    USERS_SETTINGS,
    Measurement,
    child_env,
    config_file,
    parse_summary,
    run_child,
)
from tests.support.mariadb_server import ThrowawayMariaDB

TARGET = 0.5  # seconds, spawn to exit, of a 1-row run without the bridge
# What every headless run imports of its libraries, toolsync aside: the engine's loop, SQLAlchemy's asyncio layer
# (which imports its ORM) with the MariaDB dialect and driver, polars, and pydantic for the configuration.
STACK = ("asyncio", "sqlalchemy.ext.asyncio", "sqlalchemy.dialects.mysql.aiomysql", "aiomysql", "polars", "pydantic")
OPERATIONS = ("users", "enrols", "cohorts")
SETTINGS = {"users": USERS_SETTINGS, "enrols": ENROLS_SETTINGS, "cohorts": COHORTS_SETTINGS}  # as their cases


@dataclass(frozen=True)
class Delta:
    """An operation's 1-row files: `write(path, i)` writes the i-th (each adds something new)."""

    operation: str
    write: Callable[[Path, int], None]


def _users_file(path: Path, i: int) -> None:
    path.write_text(";".join(USERS_HEADER) + "\n" + ";".join(user_row(i).values()) + "\n", encoding="utf-8")


def deltas(operation: str, server: ThrowawayMariaDB, runs: int) -> Delta:
    """The operation's files, after seeding what they need: run i names user i (the users file creates it)."""
    url = server.url(DATABASE)
    if operation == "users":
        return Delta(operation, _users_file)
    if operation == "enrols":
        asyncio.run(seed_enrol_site(url, PREFIX, runs, 1))  # users 0..runs-1, course 0
        return Delta(operation, lambda path, i: (write_enrols_file(path, [i], runs), None)[1])
    asyncio.run(seed_users_at(url, PREFIX, runs))
    return Delta(operation, lambda path, i: (write_cohorts_file(path, [i], runs), None)[1])


@dataclass
class Imports:
    """Where a run's import time goes."""

    alone: float  # the run's modules imported in a fresh interpreter (best of several), python's own start included
    stack: float  # the libraries alone that any run imports (STACK), the same way
    interpreter: float  # `python -c pass` (best of several)
    modules: int
    heaviest: list[tuple[str, float]]  # package -> its modules' own time under -X importtime, seconds


def best_of(command: Sequence[str], times: int, cwd: Path) -> float:
    walls = []
    for _ in range(times):
        clock = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=child_env(), check=True, capture_output=True)
        walls.append(time.perf_counter() - clock)
    return min(walls)


def imports_of(command: Sequence[str], workdir: Path, times: int) -> Imports:
    """Run `command` once under -X importtime; time its modules imported alone, and python's own start."""
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", *command[1:]], cwd=workdir, env=child_env(), capture_output=True, text=True
    )
    top: list[str] = []  # the imports the run made itself, in order; each pulls in its own
    own: Counter[str] = Counter()
    count = 0
    for line in traced.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|")
        count += 1
        module = name.strip()
        own[module.split(".")[0]] += int(self_us)
        if not name[1:].startswith(" "):  # depth 0: imported by the run, not by another module
            top.append(module)
    probe = (
        "import importlib\n"
        f"for name in {top!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    alone = best_of([sys.executable, "-c", probe], times, workdir)
    stack = best_of([sys.executable, "-c", f"import {', '.join(STACK)}"], times, workdir)
    interpreter = best_of([sys.executable, "-c", "pass"], times, workdir)
    heaviest = [(package, us / 1e6) for package, us in own.most_common(6)]
    return Imports(alone, stack, interpreter, count, heaviest)


def measure(operation: str, runs: int, times: int) -> bool:
    """`runs` timed 1-row runs of `operation`; True when the median meets the target."""
    workdir = Path(tempfile.mkdtemp(prefix=f"toolsync-bench-startup-{operation}-"))
    server = ThrowawayMariaDB.start()
    try:
        clock = time.monotonic()
        server.load_dump(DATABASE)
        delta = deltas(operation, server, runs + 1)
        config = config_file(workdir / "toolsync.toml", server, workdir / "data", {operation: SETTINGS[operation]})
        print(f"setup: {time.monotonic() - clock:.1f} s (mariadbd, Moodle dump, seeding)", flush=True)
        measured: list[Measurement] = []
        engine: list[float] = []
        for i in range(runs):
            file = workdir / f"{operation}-{i}.csv"
            delta.write(file, i)
            command = [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", operation, str(file)]
            result = run_child(command, workdir, f"run{i}")
            # "1 row was processed": the summary's singular, read as the plural the harness's parser knows.
            summary = parse_summary(result.stdout.replace(" row was processed", " rows were processed"), operation)
            if result.exit_code != 0 or summary is None or summary.rows != 1 or summary.outcomes != {"created": 1}:
                print(f"MISMATCH: run {i}: exit {result.exit_code}\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
                return False
            measured.append(result)
            engine.append(summary.engine_seconds)
        file = workdir / f"{operation}-{runs}.csv"
        delta.write(file, runs)
        imports = imports_of(
            [sys.executable, "-m", "toolsync_tui", "--config", str(config), "run", operation, str(file)], workdir, times
        )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    walls = [m.wall for m in measured]
    median = statistics.median(walls)
    met = median < TARGET
    peak = max(m.peak_rss_mb for m in measured)
    print(
        f"startup {operation}: 1-row run, spawn to exit: median {median:.3f} s, best {min(walls):.3f} s over {runs} "
        f"runs (target < {TARGET} s: {'met' if met else 'MISSED'}); peak RSS {peak:.0f} MB"
    )
    share = imports.alone / median
    print(
        f"  imports: {imports.alone:.3f} s = {100 * share:.0f}% of the median ({imports.modules} modules imported "
        f"alone, best of {times}, python's own start {imports.interpreter:.3f} s included); the rest "
        f"{median - imports.alone:.3f} s: configuration, database checks, the run (engine's loop: median "
        f"{statistics.median(engine):.3f} s), report, exit"
    )
    print(
        f"  the libraries alone ({', '.join(STACK)}): {imports.stack:.3f} s imported in a fresh interpreter, best of "
        f"{times}: no run that imports them can start and end faster"
    )
    print(
        "  heaviest imports (own time under -X importtime): "
        + ", ".join(f"{package} {1000 * seconds:.0f} ms" for package, seconds in imports.heaviest)
    )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--operation", choices=OPERATIONS, action="append", help="the operation(s); default: all three")
    parser.add_argument("--runs", type=int, default=7, help="timed 1-row runs per operation (7)")
    parser.add_argument("--times", type=int, default=5, help="tries of the import timings, the best kept (5)")
    parser.add_argument("--fail-below-target", action="store_true", help="exit 2 when a median misses the target")
    args = parser.parse_args(argv)
    met = [measure(operation, args.runs, args.times) for operation in args.operation or OPERATIONS]
    return 2 if args.fail_below_target and not all(met) else 0


if __name__ == "__main__":
    sys.exit(main())
