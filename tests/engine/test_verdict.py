"""One wording of what a run came to, for a run just done and for a line of the run log alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_HELD, EXIT_OK, EXIT_ROWS_FAILED
from toolsync_tui.engine.run.log import RunRecord
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.engine.run.verdict import Verdict, combined, counters_text, safety_question, tally
from toolsync_tui.engine.words import duration_text


def test_the_summary_counts_each_outcome_and_the_failed_parts() -> None:
    verdict = Verdict(1_200, {"failed": 1, "created": 1_199}, 2.04, failed_details=3)
    assert verdict.summary() == "1,200 rows were processed in 2.0 s: 1,199 created, 1 failed; 3 parts of rows failed"
    assert Verdict(1, {"created": 1}, failed_details=1).summary().endswith("; 1 part of rows failed")
    assert Verdict(0, {}, 0.01, dry_run=True).summary() == "0 rows would be processed in 0.0 s: nothing to do"
    assert Verdict(4, {"failed": 4}, 0.3).processed(75) == "4 rows were processed in 1 minute and 15 seconds"


def test_durations_read_in_seconds_then_in_words() -> None:
    assert duration_text(0.04) == "0.0 s"
    assert duration_text(59.9) == "59.9 s"
    assert duration_text(3_725) == "1 hour, 2 minutes and 5 seconds"


@pytest.mark.parametrize(
    ("verdict", "headline", "tone"),
    [
        (Verdict(4, {"created": 4}), "Finished: every row succeeded.", "success"),
        (Verdict(4, {"failed": 4}), "Finished: 4 of 4 rows failed, see the report.", "error"),
        (
            Verdict(3, {"created": 3}, failed_details=3),
            "Finished: every row was applied, but 3 parts of rows failed, see the report.",
            "error",
        ),
        (Verdict(0, {}, dry_run=True), "Dry run finished, nothing was written: the file has no data rows.", "warning"),
        (
            Verdict(10, {"created": 2, "skipped": 8}, cancelled=True),
            "Cancelled: 8 rows were not processed (counted as skipped). The file stays in the inbox.",
            "warning",
        ),
    ],
)
def test_the_run_screen_headline(verdict: Verdict, headline: str, tone: str) -> None:
    assert verdict.headline() == (headline, tone)


def record(**fields: Any) -> RunRecord:
    return RunRecord("users", "userimport.csv", "2026-01-05T08:00:00", **fields)


def test_a_logged_run_reads_as_it_was_told() -> None:
    assert record(counts={"created": 3}, rows=3).verdict.brief() == "3 created"
    assert record(counts={"created": 3}, rows=3).verdict.word() == "ok"
    assert record(counts={"failed": 1}, rows=1, exit_code=EXIT_ROWS_FAILED).verdict.word() == "1 failed"
    # The log keeps no count of failed parts: an exit code 1 with no row failed says some did.
    parts = record(counts={"created": 3}, rows=3, exit_code=EXIT_ROWS_FAILED, dry_run=True).verdict
    assert parts.parts_failed
    assert (parts.brief(), parts.word()) == ("3 created, parts of rows failed (dry run)", "parts failed (dry)")
    cancelled = record(counts={"skipped": 3}, rows=3, exit_code=EXIT_ROWS_FAILED, cancelled=True).verdict
    assert (cancelled.brief(), cancelled.word()) == ("cancelled", "cancelled")
    problem = record(exit_code=EXIT_CANNOT_RUN, problem="courses.csv: no such file").verdict
    assert (problem.brief(), problem.word()) == ("could not run", "could not run")
    assert record(exit_code=EXIT_OK).verdict.brief() == "no rows"


def test_a_run_and_its_log_line_say_the_same(tmp_path: Path) -> None:
    result = RunResult("users", tmp_path / "userimport.csv", False, {"created": 3}, 3, 0.5, failed_details=3)
    logged = record(counts=result.counts, rows=result.rows, duration=result.duration, exit_code=result.exit_code)
    assert result.verdict.word() == logged.verdict.word() == "parts failed"
    assert result.verdict.brief() == "3 created, 3 parts of rows failed"
    assert logged.verdict.brief() == "3 created, parts of rows failed"  # how many, the log does not keep


def test_a_series_reads_as_one_and_a_cron_call_as_a_tally() -> None:
    first = Verdict(4, {"created": 1, "failed": 3}, 1.0)
    second = Verdict(4, {"unchanged": 1, "failed": 3}, 2.0, failed_details=1)
    both = combined([first, second])
    assert (both.rows, both.counts, both.seconds, both.failed_details) == (
        8,
        {"created": 1, "failed": 6, "unchanged": 1},
        3.0,
        1,
    )
    assert tally([first, second]) == "2 operations, 6 rows failed, 1 part of rows failed"
    assert tally([Verdict(3, {"created": 3})]) == "1 operation, all rows succeeded"
    assert tally([Verdict(3, {"skipped": 3}, cancelled=True)]) == "1 operation, 1 cancelled"


def test_a_cancelled_run_tells_one_story() -> None:
    """Issue 21 item 3: never "100,000 rows were processed" next to "75,000 rows were not processed"."""
    verdict = Verdict(100_000, {"created": 25_000, "skipped": 75_000}, 2.0, cancelled=True)
    assert verdict.processed() == "25,000 of 100,000 rows were processed in 2.0 s"
    assert verdict.summary() == (
        "25,000 of 100,000 rows were processed in 2.0 s: 25,000 created; cancelled, 75,000 not processed"
    )
    assert verdict.headline()[0].startswith("Cancelled: 75,000 rows were not processed")


def test_the_run_counters_fit_80_columns() -> None:
    counts = {"created": 400_000, "updated": 300_000, "unchanged": 200_000, "failed": 100_000}
    assert len(counters_text(counts)) <= 80
    assert counters_text({}) == "no rows yet"


@pytest.mark.parametrize(
    ("operation", "words"),
    [
        ("deleteusers", "deleteusers would delete 1 of 5 active users (20%)"),
        ("suspendusers", "suspendusers would suspend 1 of 5 active users (20%)"),
        ("deletecourses", "deletecourses would delete 1 of the site's 5 courses (20%)"),
        ("enrols", "enrols would unenrol, disable or unassign 1 of 5 enrolments (20%)"),
    ],
)
def test_the_safety_question_says_what_would_be_removed(operation: str, words: str) -> None:
    """Issue 21 item 4: the interface's words, not the command line's --force nor "existing records"."""
    question = safety_question(operation, 1, 5, 0.1)
    assert question.startswith(words + ": more than the safety threshold of 10%")
    assert "--force" not in question
    assert "records" not in question


def test_a_held_run_reads_as_held_never_as_interrupted() -> None:
    """A held run is logged as a dry run with its reason as `problem` (holding.py): every surface says held."""
    why = "userimport.csv has no data rows (a header only): an empty export usually means its source failed"
    held = RunRecord("users", "userimport.csv", "2026-12-06T02:00:00", rows=3, counts={"updated": 3}, dry_run=True)
    held = RunRecord(**{**held.__dict__, "exit_code": EXIT_HELD, "problem": why})
    assert held.verdict.word() == "held"
    assert held.verdict.brief() == "held for approval: 3 updated (dry run)"
