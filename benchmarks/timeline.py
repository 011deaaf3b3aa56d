"""Where a run's writer waits: the timeline a child wrote under `python -m benchmarks.run CASE --profile timeline`
(benchmarks/timeline_hook), read back.

    python -m benchmarks.run enrols-add --rows 100000 --profile timeline
    python -m benchmarks.timeline FILE            # a timeline kept with --keep, read again

Three listings:
- the writes: from the first write to the last, the share of the time some INSERT, UPDATE, DELETE or COMMIT was at the
  server, and the time between them, by the pair of statements around each wait (what the writer did in between is
  the client's work, or a read);
- the write transactions (from the statement that opens a batch's write to its COMMIT, on its connection): their
  writes, their reads and their idle time;
- the event loop's steps: the time each task held the loop between two waits, by where it waited before and after
  (a long step of the plan holds back the answers of the write in flight).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE = re.compile(r"(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
NAMED = re.compile(r"(\w+)\s+(?:IGNORE\s+)?(?:INTO\s+|FROM\s+)?[`\"]?(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    connection: str
    start: float
    end: float
    text: str

    @property
    def writes(self) -> bool:
        return self.text == "COMMIT" or WRITE.match(self.text) is not None

    @property
    def kind(self) -> str:
        """Its verb and table: `INSERT mdl_user`, `SELECT mdl_groups`, `COMMIT`."""
        found = NAMED.match(self.text)
        return f"{found.group(1).upper()} {found.group(2)}" if found else self.text[:20]


@dataclass(frozen=True)
class Step:
    start: float
    seconds: float
    task: str
    waits_in: str


def read(lines: Iterable[str]) -> tuple[list[Statement], list[Step]]:
    statements, steps = [], []
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        if fields[0] == "S" and len(fields) == 5:
            statements.append(Statement(fields[1], float(fields[2]), float(fields[3]), fields[4]))
        elif fields[0] == "L" and len(fields) == 5:
            steps.append(Step(float(fields[1]), float(fields[2]), fields[3], fields[4]))
    return sorted(statements, key=lambda s: s.start), steps


def writes_report(statements: Sequence[Statement], top: int = 10) -> list[str]:
    """The writes' span, the share of it with a write at the server, and the waits between writes by their pair."""
    writes = [s for s in statements if s.writes]
    if not writes:
        return ["no write statement"]
    span = writes[-1].end - writes[0].start
    busy, reached, before = 0.0, writes[0].start, writes[0]
    waits: defaultdict[tuple[str, str], float] = defaultdict(float)
    count = Counter[tuple[str, str]]()
    for statement in writes:
        if statement.start > reached:
            waits[before.kind, statement.kind] += statement.start - reached
            count[before.kind, statement.kind] += 1
        if statement.end > reached:
            busy += statement.end - max(statement.start, reached)
            reached, before = statement.end, statement
    lines = [
        f"writes: {span:.2f} s from the first to the last; a write at the server {busy:.2f} s ({busy / span:.0%}), "
        f"none {span - busy:.2f} s"
    ]
    for (came, went), seconds in _largest(waits, top):
        lines.append(f"  {seconds:6.2f} s x{count[came, went]:<4} {came} -> {went}")
    return lines


def transactions_report(statements: Sequence[Statement], top: int = 8) -> list[str]:
    """Write transactions (on a connection, from its first write to its COMMIT: a batch's plan reads on the same
    connection before): their writes, their reads and the time between their statements."""
    by_connection: dict[str, list[Statement]] = {}
    for statement in statements:
        by_connection.setdefault(statement.connection, []).append(statement)
    writes: defaultdict[str, float] = defaultdict(float)
    reads: defaultdict[str, float] = defaultdict(float)
    idle, opened = 0.0, 0
    for own in by_connection.values():
        last: float | None = None
        for statement in own:
            if last is None and statement.writes and statement.text != "COMMIT":
                opened, last = opened + 1, statement.start
            if last is None:
                continue
            idle += statement.start - last
            (writes if statement.writes else reads)[statement.kind] += statement.end - statement.start
            last = None if statement.text == "COMMIT" else statement.end
    lines = [
        f"write transactions ({opened}, first write to COMMIT): writes {sum(writes.values()):.2f} s, reads "
        f"{sum(reads.values()):.2f} s, between statements {idle:.2f} s"
    ]
    lines += [f"  read  {seconds:6.2f} s {kind}" for kind, seconds in _largest(reads, top)]
    lines += [f"  write {seconds:6.2f} s {kind}" for kind, seconds in _largest(writes, top)]
    return lines


def loop_report(steps: Sequence[Step], top: int = 15) -> list[str]:
    """The event loop's time by task, then the tasks' steps by where they waited before and after."""
    by_task: defaultdict[str, float] = defaultdict(float)
    between: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    count = Counter[tuple[str, str, str]]()
    after: dict[str, str] = {}
    for step in steps:
        by_task[step.task] += step.seconds
        if not step.waits_in and step.task not in after:
            continue
        key = (step.task, after.get(step.task, "(start)"), step.waits_in or "(end)")
        after[step.task] = step.waits_in
        between[key] += step.seconds
        count[key] += 1
    lines = ["event loop, by task: " + ", ".join(f"{task} {seconds:.2f} s" for task, seconds in _largest(by_task, 4))]
    for (task, came, went), seconds in _largest(between, top):
        average = seconds / count[task, came, went] * 1000
        lines.append(
            f"  {seconds:6.2f} s x{count[task, came, went]:<4} avg {average:5.1f} ms  {task}: {came} -> {went}"
        )
    return lines


def _largest(totals: dict[Any, float], top: int) -> list[tuple[Any, float]]:
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:top]


def report(path: Path) -> list[str]:
    statements, steps = read(path.read_text(encoding="utf-8").splitlines())
    return [*writes_report(statements), *transactions_report(statements), *loop_report(steps)]


def child_timeline(prefix: Path) -> Path | None:
    """The timeline the measured child wrote (`prefix`.<pid>): the largest, if its workers wrote theirs too."""
    written = sorted(prefix.parent.glob(prefix.name + ".*"), key=lambda path: path.stat().st_size)
    return written[-1] if written else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="a timeline written by a child (its work folder, with --keep)")
    args = parser.parse_args()
    print("\n".join(report(args.file)))


if __name__ == "__main__":
    main()
