"""A case's share of its database floor: runs and floors interleaved, the median share of several pairs.

    python -m benchmarks.share users-create                # 3 pairs: run then floor, floor then run, run then floor
    python -m benchmarks.share enrols-add --pairs 5 --rows 100000

A machine whose speed swings within minutes moves a run and its floor alike only when they are taken back to back,
and even then by a tenth: one pair says little. Each pair here is `benchmarks.run CASE` and the floor with Moodle's log
rows of the same rows (`benchmarks.floor*`, `--log-rows-only`), in turn one first then the other; the share is the
run's rows/s over the floor's. Targets (issue 23): users-create and enrols-add >= 0.8, cohorts-add >= 0.7.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOOR_LINE = re.compile(r"with Moodle's log rows .*? = ([\d,]+) rows/s")  # each floor's line with the log rows


@dataclass(frozen=True)
class Pairing:
    """A case of benchmarks.run, its floor module, the option both take for the rows written, and the target share."""

    floor: str
    rows_option: str
    rows: int
    target: float


CASES = {
    "users-create": Pairing("benchmarks.floor", "--users", 100_000, 0.8),
    "enrols-add": Pairing("benchmarks.floor_enrols", "--rows", 100_000, 0.8),
    "cohorts-add": Pairing("benchmarks.floor_cohorts", "--rows", 100_000, 0.7),
}


def rows_per_second(command: Sequence[str], pattern: re.Pattern[str]) -> float:
    """Run a benchmark; the rows/s of its line that `pattern` finds (it must exit 0 and print it)."""
    done = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True)
    found = pattern.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(found.group(1).replace(",", ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.share", description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--pairs", type=int, default=3, help="pairs of a run and its floor (3)")
    parser.add_argument("--rows", type=int, help="rows the run and the floor write (the case's default: 100,000)")
    parser.add_argument("--fail-below-target", action="store_true", help="exit 2 when the median share misses it")
    args = parser.parse_args(argv)
    pairing = CASES[args.case]
    rows = [pairing.rows_option, str(args.rows or pairing.rows)]
    run_line = re.compile(rf"^{re.escape(args.case)}: .*? = ([\d,]+) rows/s", re.M)
    sides = {
        "run": (["benchmarks.run", args.case, *rows], run_line),
        "floor": ([pairing.floor, *rows, "--log-rows-only"], FLOOR_LINE),
    }
    shares = []
    for pair in range(args.pairs):
        order = ("run", "floor") if pair % 2 == 0 else ("floor", "run")
        measured = {side: rows_per_second(*sides[side]) for side in order}
        shares.append(measured["run"] / measured["floor"])
        print(
            f"pair {pair + 1} ({order[0]} first): {args.case} {measured['run']:,.0f} rows/s, floor with log rows "
            f"{measured['floor']:,.0f} rows/s: {shares[-1]:.2f}",
            flush=True,
        )
    median = statistics.median(shares)
    met = median >= pairing.target
    print(
        f"{args.case}: median share {median:.2f} of its floor over {len(shares)} pairs ({min(shares):.2f}-"
        f"{max(shares):.2f}); target >= {pairing.target}: {'met' if met else 'MISSED'}"
    )
    return 2 if args.fail_below_target and not met else 0


if __name__ == "__main__":
    sys.exit(main())
