"""A run held instead of stopped (run.hold): what pipeline._Run does when a threshold or a source guard stops it.

Held whole, the run goes on as a dry run (its report is the dry run's; nothing is written) and its file then waits in
held/<id>/ with what the dry run found: its counts and a sample of what it would remove. With run.hold_removals_only
and a removal threshold, the run goes on for real without the rows that would remove (the safety pre-pass found
them): those are set aside, reported as skipped, and held as a file of their own (the header, then those rows as they
were written, named as a tryback: approving runs them alone, never as a snapshot's whole truth). Removals that are no
row of the file (a purge after the run) cannot be set aside: such a run is held whole.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import polars as pl

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import SAMPLE, SHORT_ID, HeldRun, HeldRuns, held_record
from toolsync_tui.engine.datadir.store import StoredName, timestamp
from toolsync_tui.engine.rows import LINE, Outcome, count_outcomes, outcome_rows
from toolsync_tui.engine.run.operation import Source, Tryback
from toolsync_tui.engine.run.report import report_lines
from toolsync_tui.engine.run.stops import SafetyStop

HELD_ACTION = "held"


class Holding:
    """One run's hold: off unless the run may be held (`enabled`)."""

    def __init__(self, config: Config, enabled: bool = False) -> None:
        self.config = config
        self.enabled = enabled
        self.removals_only = config.settings.run.hold_removals_only
        self.stop: SafetyStop | None = None  # why the run is held; None: it is not
        self.whole = False  # held whole (a dry run), rather than its removals only
        self.lines: set[int] = set()  # the lines of the rows that would remove (the safety pre-pass)
        self.counts: Counter[str] = Counter()  # what the held rows would come to
        self.sample: list[str] = []  # report lines of what they would remove
        self.aside: Tryback | None = None  # the held rows' file, while the run writes it
        self.aside_path: Path | None = None

    # -- before the run: the safety pre-pass, then the stop -------------------------------------------------

    def saw(self, planned: pl.DataFrame, removing: pl.Expr) -> None:
        """A batch of the safety pre-pass: the lines of its rows that would remove, what they come to, a sample."""
        if not self.enabled:
            return
        removals = planned.filter(removing)
        lines = removals["line"].unique().to_list()
        self.lines.update(lines)
        self.counts.update(count_outcomes(planned.filter(pl.col("line").is_in(lines))))
        self._sample(removals)

    def take(self, stop: SafetyStop, removals_beyond_rows: int) -> bool:
        """Whether the run goes on held rather than stop: whole (a dry run), or without its removals."""
        if not self.enabled:
            return False
        self.stop = stop
        if self.removals_only and stop.kind == "removals" and self.lines and not removals_beyond_rows:
            return True
        self.whole = True
        self.counts, self.sample = Counter(), []  # the dry run's, now
        return True

    # -- during the run -------------------------------------------------------------------------------------

    def observe(self, outcomes: pl.DataFrame, removing: pl.Expr) -> None:
        """A batch of a run held whole (its dry run): a sample of what it would remove."""
        if self.whole and len(self.sample) < SAMPLE:
            self._sample(outcomes.filter(removing))

    def set_aside(self, batch: pl.DataFrame, source: Source, run_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The batch's rows to run, and those held (removals only), which the held file takes."""
        if self.stop is None or self.whole or batch.is_empty():
            return batch, batch.clear()
        aside = pl.col(LINE).is_in(list(self.lines))
        held = batch.filter(aside)
        if held.is_empty():
            return batch, held
        if self.aside is None:
            folder = HeldRuns(self.config.data_dir).folder(run_id)
            self.aside_path = folder / StoredName("tryback", timestamp(), Path(source.name).name).format()
            self.aside = source.tryback(self.aside_path)
        self.aside.add(held)
        return batch.filter(~aside), held  # skipped: the diff never takes them for applied (diff.py)

    def held_outcomes(self, held: pl.DataFrame, run_id: str) -> pl.DataFrame:
        words = f"held for approval with the run's other removals (toolsync held approve {run_id[:8]})"
        return outcome_rows(held, Outcome.SKIPPED, HELD_ACTION, pl.lit(""), words)

    # -- after the run --------------------------------------------------------------------------------------

    def hold(
        self, run_id: str, operation: str, path: Path, counts: dict[str, int], report: Path | None
    ) -> HeldRun | None:
        """The hold made: the command file (held whole) or the held rows' file moved or written into held/<id>/; None
        when no row was set aside after all."""
        assert self.stop is not None
        runs = HeldRuns(self.config.data_dir)
        record = held_record(
            run_id,
            operation,
            path.name,
            self.stop.reason,
            counts if self.whole else dict(self.counts),
            self.sample,
            removals_only=not self.whole,
            report=str(report) if report else None,
        )
        if self.whole:
            return runs.hold(record, path)
        if self.aside is None or self.aside_path is None:
            return None
        self.aside.close()
        return runs.hold(record, self.aside_path)

    def note(self, run_id: str) -> str:
        """The report's and the command line's words for the hold, said as the run goes on held."""
        assert self.stop is not None
        short = run_id[:SHORT_ID]
        where = HeldRuns(self.config.data_dir).root / run_id
        then = f"approve: toolsync held approve {short}; or discard: toolsync held discard {short}"
        if self.whole:
            return f"held for approval, nothing written: {self.stop.reason}; the file waits in {where} ({then})"
        return (
            f"the rows that would remove are held for approval ({self.stop.reason}); the others ran; the held rows "
            f"wait in {where} ({then})"
        )

    def abandon(self, run_id: str | None) -> None:
        """A run that did not go through holds nothing: the held rows' file, if begun, is removed."""
        if self.aside is not None:
            self.aside.close()
        if self.aside_path is not None:
            shutil.rmtree(self.aside_path.parent, ignore_errors=True)

    def _sample(self, removals: pl.DataFrame) -> None:
        room = SAMPLE - len(self.sample)
        if room > 0 and not removals.is_empty():
            self.sample += removals.head(room).select(report_lines()).to_series().to_list()
