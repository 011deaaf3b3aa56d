"""What a run came to, in words: the one wording of the report's summary, the command line, the run screen, the
dashboard, cron's lines and the notifications.

It works on counts and flags only, so that a run just done (RunResult.verdict) and a line of the run log
(RunRecord.verdict) read alike, and so that the command line and cron word it without loading the interface.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from toolsync_tui.engine.rows import Outcome, counts_text
from toolsync_tui.engine.words import duration_text, plural

Tone = Literal["success", "warning", "error"]


def parts_failed_text(count: int) -> str:
    """ "3 parts of rows failed"; 0: some, how many is not known (a run log's record)."""
    return f"{plural(count, 'part')} of rows failed" if count else "parts of rows failed"


@dataclass(frozen=True)
class Verdict:
    rows: int
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> rows, of the rows' own outcomes
    seconds: float = 0.0
    dry_run: bool = False
    cancelled: bool = False
    failed_details: int = 0  # failed parts of rows (a user's course2 enrolment ...), beyond the rows' own outcomes
    # The run log keeps no count of failed parts, only an exit code that says some failed (RunRecord.verdict).
    some_parts_failed: bool = False
    problem: str | None = None  # why the run could not happen (a run log's record)
    interrupted: str | None = None  # why it stopped mid-way: "SIGINT", "SIGTERM", a full disk, killed (run/log.py)
    held: bool = False  # held for approval (a run log's record): it ran as a dry run, its file waits in held/

    @property
    def failed(self) -> int:
        return self.counts.get(Outcome.FAILED, 0)

    @property
    def not_processed(self) -> int:
        """The rows a cancel left untouched: the pipeline counts them as skipped (a cancelled run skips no other)."""
        return self.counts.get(Outcome.SKIPPED, 0) if self.cancelled else 0

    @property
    def done(self) -> dict[str, int]:
        """The outcomes of the rows the run did process."""
        return {k: v for k, v in self.counts.items() if not (self.cancelled and k == Outcome.SKIPPED)}

    @property
    def parts_failed(self) -> bool:
        return bool(self.failed_details) or self.some_parts_failed

    def processed(self, seconds: float | None = None) -> str:
        """ "1,200 rows were processed in 2.0 s"; `seconds` replaces the run's own measure (the run screen's clock)."""
        verb = "would be" if self.dry_run else "were"
        took = duration_text(self.seconds if seconds is None else seconds)
        if self.cancelled:  # never "100,000 rows were processed" next to "75,000 were not"
            return f"{self.rows - self.not_processed:,} of {self.rows:,} rows {verb} processed in {took}"
        verb = "was" if self.rows == 1 and not self.dry_run else verb
        return f"{plural(self.rows, 'row')} {verb} processed in {took}"

    def summary(self) -> str:
        """The report's last words, the command line's, cron's and each run's in a notification:
        "4 rows were processed in 0.3 s: 3 created, 1 failed; 2 parts of rows failed"."""
        details = f"; {parts_failed_text(self.failed_details)}" if self.parts_failed else ""
        if self.interrupted:
            details += f"; interrupted ({self.interrupted})"
        if self.cancelled:
            details += f"; cancelled, {self.not_processed:,} not processed"
        return f"{self.processed()}: {counts_text(self.done) or 'nothing to do'}{details}"

    def headline(self) -> tuple[str, Tone]:
        """The run screen's closing state, and how it should look."""
        if self.interrupted:
            done = counts_text(self.counts) or "nothing done"
            return f"Interrupted ({self.interrupted}) after {plural(self.rows, 'row')}: {done}.", "error"
        if self.cancelled:
            kept = "" if self.dry_run else " The file stays in the inbox."
            left = self.not_processed
            were = "was" if left == 1 else "were"
            return f"Cancelled: {plural(left, 'row')} {were} not processed (counted as skipped).{kept}", "warning"
        written = "Dry run finished, nothing was written" if self.dry_run else "Finished"
        if not self.rows:
            return f"{written}: the file has no data rows.", "warning"
        if self.failed:
            return f"{written}: {self.failed:,} of {plural(self.rows, 'row')} failed, see the report.", "error"
        if self.parts_failed:  # e.g. a user created, but not enrolled in the course its row names
            parts = parts_failed_text(self.failed_details)
            return f"{written}: every row was applied, but {parts}, see the report.", "error"
        return f"{written}: every row succeeded.", "success"

    def brief(self) -> str:
        """A few words: "3 created, 1 failed", "3 created, parts of rows failed", "cancelled", "could not run"."""
        if self.held:
            return f"held for approval: {counts_text(self.counts) or 'no rows'} (dry run)"
        if self.problem and not self.rows:
            return "could not run"
        if self.interrupted or self.problem:  # stopped mid-way: what it had done
            done = counts_text(self.counts) or "nothing done"
            return f"interrupted after {plural(self.rows, 'row')}: {done}" + (" (dry run)" if self.dry_run else "")
        words = "cancelled" if self.cancelled else counts_text(self.counts) or "no rows"
        if self.parts_failed:
            words += f", {parts_failed_text(self.failed_details)}"
        return f"{words} (dry run)" if self.dry_run else words

    def word(self) -> str:
        """Whether it went well, for a narrow column: "ok", "4 failed", "parts failed", "cancelled"."""
        if self.held:  # a dry run by nature (holding.py): no "(dry)"
            return "held"
        if self.problem and not self.rows:
            word = "could not run"
        elif self.interrupted or self.problem:
            word = "interrupted"
        elif self.cancelled:
            word = "cancelled"
        elif self.failed:
            word = f"{self.failed:,} failed"
        elif self.parts_failed:
            word = "parts failed"
        else:
            word = "ok"
        return f"{word} (dry)" if self.dry_run else word


def combined(verdicts: Sequence[Verdict]) -> Verdict:
    """The runs of a series (each picture archive in turn) as one: their counts added, the last one's flags."""
    counts: Counter[str] = Counter()
    for verdict in verdicts:
        counts.update(verdict.counts)
    last = verdicts[-1]
    return Verdict(
        sum(verdict.rows for verdict in verdicts),
        dict(counts),
        sum(verdict.seconds for verdict in verdicts),
        last.dry_run,
        last.cancelled,
        sum(verdict.failed_details for verdict in verdicts),
        any(verdict.some_parts_failed for verdict in verdicts),
    )


def tally(verdicts: Sequence[Verdict]) -> str:
    """Several operations' runs at once (a cron call's notification): "2 operations, 1 row failed, 1 cancelled"."""
    failed = sum(verdict.failed for verdict in verdicts)
    details = sum(verdict.failed_details for verdict in verdicts)
    cancelled = sum(verdict.cancelled for verdict in verdicts)
    words = [plural(len(verdicts), "operation")]
    if failed:
        words.append(f"{plural(failed, 'row')} failed")
    if details:
        words.append(parts_failed_text(details))
    if cancelled:
        words.append(f"{cancelled:,} cancelled")
    if len(words) == 1:
        words.append("all rows succeeded")
    return ", ".join(words)


# What each operation's safety threshold counts, in the interface's words ("delete 1 of 5 users"); `{n} of {base}`.
REMOVALS: dict[str, str] = {
    "deletecourses": "delete {n} of the site's {base} courses",
    "resetcourses": "reset {n} of the site's {base} courses (their users' work is removed)",
    "metacourses": "remove or disable {n} of {base} meta link enrolment methods",
    "users": "delete or suspend {n} of {base} active users",
    "deleteusers": "delete {n} of {base} active users",
    "suspendusers": "suspend {n} of {base} active users",
    "enrols": "unenrol, disable or unassign {n} of {base} enrolments",
    "groupmembers": "remove {n} of {base} group memberships",
    "cohorts": "remove or delete {n} of {base} cohort members and cohorts",
    "cohortscourses": "remove or disable {n} of {base} cohort sync enrolment methods",
}


def removal_words(operation: str, destructive: int, base: int) -> str:
    """ "delete 1 of 5 active users": what a run would remove or suspend, counted as the safety threshold counts."""
    template = REMOVALS.get(operation, "remove or suspend {n} of {base} existing records")
    return template.format(n=f"{destructive:,}", base=f"{base:,}")


def safety_question(operation: str, destructive: int, base: int, threshold: float) -> str:
    """The interface's question when the safety threshold stops a run (the command line names --force instead)."""
    share = destructive / base if base else 1.0
    return (
        f"{operation} would {removal_words(operation, destructive, base)} ({share:.0%}): more than the safety "
        f"threshold of {threshold:.0%} (Settings, run). Nothing has been written yet.\n\nRun it anyway?"
    )


def counters_text(counts: dict[str, int]) -> str:
    """The run screen's live counters, on one line at 80 columns: the outcomes so far, zeros left out."""
    return "   ".join(f"{outcome} {counts[outcome]:,}" for outcome in Outcome if counts.get(outcome)) or "no rows yet"
