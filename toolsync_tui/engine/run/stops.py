"""Why a run stops before it writes anything: a threshold (removals or updates, as a share or a count) or a source
guard (engine/run/guards.py). --force, or the interface's confirmation, runs it all the same; an unattended run may be
held for approval instead (engine/datadir/held.py). A broken delivery (a cut file, a checksum or row count that does
not match) is refused whatever is forced, and never held: no approval makes the file whole."""

from __future__ import annotations

from typing import Literal

from toolsync_tui.config import RunSettings
from toolsync_tui.engine.run.verdict import safety_question

StopKind = Literal["removals", "updates", "guard"]
FORCE = "Nothing was written. Re-run with --force (or confirm in the interface) if this is intended."


class SafetyStop(Exception):
    """The run would remove (or update) more than a threshold allows, or a source guard stopped it: exit code 3.

    `destructive` is what the run would remove (or update, `kind` "updates"), `base` the existing records it draws
    from, `threshold` the share it went past; `limit`, when not 0, is the count it went past instead."""

    def __init__(
        self,
        operation: str,
        destructive: int,
        base: int,
        threshold: float,
        *,
        limit: int = 0,
        kind: StopKind = "removals",
        reason: str | None = None,
    ) -> None:
        self.operation = operation
        self.destructive = destructive
        self.base = base
        self.threshold = threshold
        self.limit = limit
        self.kind: StopKind = kind
        self.reason = reason or self._reason()  # the stop in a few words, without the advice
        super().__init__(f"{operation}: {self.reason}. {FORCE}")

    def _reason(self) -> str:
        verb = "update" if self.kind == "updates" else "delete, unenrol or suspend"
        if self.limit:
            setting = "run.update_max_rows" if self.kind == "updates" else "run.safety_max_rows"
            return f"this file would {verb} {self.destructive:,} records, more than {setting} allows ({self.limit:,})"
        share = self.destructive / self.base if self.base else 1.0
        what = "the update threshold (run.update_threshold)" if self.kind == "updates" else "the safety threshold"
        return (
            f"this file would {verb} {self.destructive:,} of {self.base:,} existing records ({share:.0%}), "
            f"more than {what} of {self.threshold:.0%}"
        )

    @property
    def question(self) -> str:
        """The interface's question before it runs the file past this stop."""
        if self.kind == "removals" and not self.limit:
            return safety_question(self.operation, self.destructive, self.base, self.threshold)
        return f"{self.operation}: {self.reason}. Nothing has been written yet.\n\nRun it anyway?"


class GuardStop(SafetyStop):
    """A source guard refused the file (no data rows, far fewer than the last applied file's): --force runs it."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(operation, 0, 0, 0.0, kind="guard", reason=reason)


class BrokenDelivery(Exception):
    """The file is not what its sender sent: cut in the middle of a row, or a row count or checksum that does not
    match. Refused whatever is forced, never held: exit code 3."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(
            f"{operation}: {reason}. Nothing was written: a broken delivery is refused (--force does not run it); "
            "ask the sender for the whole file"
        )


def threshold_stop(
    operation: str, run: RunSettings, destructive: int, updated: int, base: int, rows: int
) -> SafetyStop | None:
    """The first threshold a run would go past (removals before updates; a share before a count), or None.

    `destructive`: the records it would remove or suspend; `updated`: the rows it would update; `base`: the existing
    records they draw from (the operation's own count); `rows`: the file's rows the pre-pass saw, the update share's
    base for an operation that has no count of its own."""
    least = max(run.safety_min_rows, 1)
    if run.safety_threshold > 0 and destructive >= least and destructive > run.safety_threshold * base:
        return SafetyStop(operation, destructive, base, run.safety_threshold)
    if run.safety_max_rows and destructive > run.safety_max_rows:
        return SafetyStop(operation, destructive, base, run.safety_threshold, limit=run.safety_max_rows)
    drawn = base or rows
    if run.update_threshold > 0 and updated >= least and updated > run.update_threshold * drawn:
        return SafetyStop(operation, updated, drawn, run.update_threshold, kind="updates")
    if run.update_max_rows and updated > run.update_max_rows:
        return SafetyStop(operation, updated, drawn, run.update_threshold, limit=run.update_max_rows, kind="updates")
    return None
