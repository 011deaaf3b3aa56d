"""Counts, durations and sizes, worded once for every message (engine/words.py): issue 21 item 12."""

from __future__ import annotations

import pytest

from toolsync_tui.engine.run.interrupt import interrupted_words
from toolsync_tui.engine.run.verdict import Verdict
from toolsync_tui.engine.words import duration_text, plural, size_text


def test_one_is_singular() -> None:
    assert plural(1, "row") == "1 row"
    assert plural(0, "row") == "0 rows"
    assert plural(1_200, "row") == "1,200 rows"
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


@pytest.mark.parametrize(
    ("verdict", "said"),
    [
        (Verdict(1, {"created": 1}, 0.2), "1 row was processed in 0.2 s"),
        (Verdict(1, {"created": 1}, 0.2, dry_run=True), "1 row would be processed in 0.2 s"),
        (Verdict(2, {"created": 2}, 0.2), "2 rows were processed in 0.2 s"),
    ],
)
def test_a_run_of_one_row_says_row(verdict: Verdict, said: str) -> None:
    assert verdict.processed() == said


def test_interrupted_after_one_row() -> None:
    assert interrupted_words("SIGINT", 1, 2) == "interrupted after 1 row (SIGINT); rows after line 2 were not processed"
    headline, _tone = Verdict(1, {"created": 1}, interrupted="SIGINT").headline()
    assert headline.startswith("Interrupted (SIGINT) after 1 row:")


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.0, "0.0 s"),
        (0.44, "0.4 s"),
        (59.94, "59.9 s"),
        # Rounded before the form is chosen: never "60.0 s", nor "1 minute and 60 seconds".
        (59.96, "1 minute"),
        (119.6, "2 minutes"),
        (125.2, "2 minutes and 5 seconds"),
        (3_725, "1 hour, 2 minutes and 5 seconds"),
    ],
)
def test_a_duration_is_rounded_once(seconds: float, said: str) -> None:
    assert duration_text(seconds) == said
    assert Verdict(2, {"created": 2}, seconds).processed().endswith(f" in {said}")


def test_sizes_are_decimal_everywhere() -> None:
    assert size_text(1) == "1 Byte"
    assert size_text(999) == "999 Bytes"
    assert size_text(1_000) == "1.0 kB"
    assert size_text(9_733) == "9.7 kB"
    assert size_text(30_000_000) == "30.0 MB"
