"""Cohort benchmark data: a cohort file of member rows across cohorts it creates, and the counts a run must leave.

Cohort k (0-based) is `cohort_idnumber(k)` / `cohort_name(k)`; user i is benchmarks.generate.user_row(i), named by
idnumber. The file's rows are distinct (user, cohort) pairs in a random order; the first row naming a cohort creates
it (autocreate), so every row reports `created`: action `create` for those first rows, `add` for the others.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks.enrolments import write_lines
from benchmarks.generate import Expected, GeneratedFile, user_row

COHORTS_HEADER = ("cidnumber", "cname", "userid")


def cohort_idnumber(k: int) -> str:
    return f"COH-{k:04d}"


def cohort_name(k: int) -> str:
    return f"Promotion {2025 + k % 4} groupe {k:04d}"


def membership_pairs(rows: int, users: int, cohorts: int, seed: int) -> list[int]:
    """`rows` distinct (user, cohort) pairs of users x cohorts, in a random order: pair = cohort * users + user."""
    if rows > users * cohorts:
        raise ValueError(f"{rows:,} distinct memberships asked of {users:,} users x {cohorts:,} cohorts")
    return random.Random(seed).sample(range(users * cohorts), rows)


def write_cohorts_file(path: Path, pairs: Sequence[int], users: int) -> GeneratedFile:
    """cohorts.csv: `cidnumber;cname;userid`, a row per pair."""
    clock = time.monotonic()
    people = [user_row(u)["idnumber"] for u in range(users)]
    seen: set[int] = set()
    actions: Counter[str] = Counter()
    lines = []
    for pair in pairs:
        cohort, user = divmod(pair, users)
        actions["add" if cohort in seen else "create"] += 1
        seen.add(cohort)
        lines.append(f"{cohort_idnumber(cohort)};{cohort_name(cohort)};{people[user]}\n")
    write_lines(path, COHORTS_HEADER, lines)
    expected = Expected(len(pairs), Counter({"created": len(pairs)}), actions)
    return GeneratedFile(path, len(pairs), path.stat().st_size, time.monotonic() - clock, expected)


def cohort_counts_sql(prefix: str) -> str:
    """One row: the benchmark's cohorts, and their members."""
    cohorts = f"SELECT id FROM {prefix}cohort WHERE idnumber LIKE 'COH-%'"
    return (
        f"SELECT (SELECT COUNT(*) FROM {prefix}cohort WHERE idnumber LIKE 'COH-%'), "
        f"(SELECT COUNT(*) FROM {prefix}cohort_members WHERE cohortid IN ({cohorts}))"
    )
