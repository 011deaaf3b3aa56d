"""What an operation provides to the pipeline: its file's columns and how to apply one batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config, OperationSettings
from toolsync_tui.engine.connect import BridgeLink
from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.event_log import EventLog
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.welcome_messages import WelcomeQueue
from toolsync_tui.engine.run.command_file import ColumnSpec, CommandFile
from toolsync_tui.engine.run.value_limits import StoredColumns, ValueLimits


class PreviousWrite(Protocol):
    """The write in flight while a batch is planned (run/overlap.py). Awaited, it returns once that write has ended;
    `writes` names what it changes once committed (its BatchPlan.writes): a plan may take those as written and say so
    (BatchPlan.assumes) instead of waiting."""

    @property
    def writes(self) -> frozenset[Hashable]: ...

    def __call__(self) -> Awaitable[None]: ...


# A planned batch's writes, on the connection whose transaction they run in; the batch's final outcomes when the
# writing changes them (a part planned only once ids exist, a deletion Moodle refused ...), else None.
BatchWrite = Callable[[AsyncConnection], Awaitable[pl.DataFrame | None]]


@dataclass(frozen=True)
class _NothingInFlight:
    writes: frozenset[Hashable] = frozenset()

    async def __call__(self) -> None:
        return None


nothing_in_flight: PreviousWrite = _NothingInFlight()


@dataclass
class BatchPlan:
    """A batch planned, not written (Operation.plan_batch): its outcomes if its write commits, and that write.

    `reads` and `writes` name what the plan relied on and what the write changes, as hashable keys the operation
    chooses (("user", "jdupont"), ("group", courseid, name) ...). With overlapping writes, the next batch is planned
    while this one's write runs: when that plan's `reads` meet this write's `writes`, it may have read the state
    before the write, and it is planned again once the write has ended (run/overlap.py). `assumes`: the keys of that
    write's `writes` (PreviousWrite.writes) the plan took as written; it is planned again if that write does not
    commit."""

    outcomes: pl.DataFrame
    write: BatchWrite
    reads: frozenset[Hashable] = field(default_factory=frozenset)
    writes: frozenset[Hashable] = field(default_factory=frozenset)
    assumes: frozenset[Hashable] = field(default_factory=frozenset)

    async def apply(self, conn: AsyncConnection, dry_run: bool) -> pl.DataFrame:
        """The batch written on `conn` unless dry_run, in the caller's transaction; its outcomes."""
        if dry_run:
            return self.outcomes
        written = await self.write(conn)
        return self.outcomes if written is None else written


class SetupProblem(Exception):
    """The site or the configuration cannot take this operation at all (a Moodle data directory missing ...)."""


class Tryback(Protocol):
    """The failed rows of a run, written so that the file can be run again as it is."""

    def add(self, rows: pl.DataFrame) -> None: ...

    def close(self) -> Path | None:
        """The file written, or None when no row failed."""
        ...


class Source(Protocol):
    """What a run reads: a command file, or an archive of pictures.

    Its batches carry LINE (the record's line, or the entry's position in an archive), PROBLEM (null when the
    record is well formed) and the `columns`."""

    @property
    def name(self) -> str: ...

    @property
    def columns(self) -> list[str]: ...

    @property
    def physical_lines(self) -> int:
        """Lines (or entries) in all: the progress bar's end."""
        ...

    def describe(self) -> str:
        """How the source was read, for the report's heading: "utf-8, separator ';'"."""
        ...

    def batches(self, size: int) -> Iterator[pl.DataFrame]: ...

    def tryback(self, path: Path) -> Tryback: ...


class Operation(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    columns: ClassVar[ColumnSpec]
    # Actions counted by the safety threshold (delete, unenrol, suspend ...).
    destructive_actions: ClassVar[frozenset[str]] = frozenset()
    # Reads only: never needs a write transaction, and may use larger batches.
    read_only: ClassVar[bool] = False
    # On MariaDB, a batch's write may run while the next batch is planned (plan_batch).
    overlaps_writes: bool = False  # an operation may turn it off in prepare() (a setting that needs batches in turn)
    # At most this many rows per batch, whatever run.batch_size says (None: no limit): rows that each run Moodle's
    # PHP for seconds (a course delete) keep the progress moving and a failed call costs few rows.
    batch_limit: ClassVar[int | None] = None
    # Not None: the `file` setting is a name prefix and the operation runs on every <prefix>*<suffix> of the inbox in
    # turn, one run each (picture archives).
    inputs_suffix: ClassVar[str | None] = None
    # The run opens the Moodle bridge for it, once, before prepare() (take_bridge); the others never start PHP.
    uses_bridge: ClassVar[bool] = False
    # Where the file's values are stored: file column (a regex of the whole name) -> (schema table, column). Each such
    # value is checked against its column's length, every value against the server's packet (value_limits.py).
    value_columns: ClassVar[StoredColumns] = {}

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        self.config = config
        self.gateway = gateway
        self.schema = gateway.schema
        self.bridge: MoodleBridge | None = None  # None: no bridge configured (or the operation uses none)
        self.dry_run = False  # the run's mode, set by the run before take_bridge() and prepare()
        # Moodle's standard log of the run's writes: loaded by the run before prepare(); logs nothing until then.
        self.event_log = EventLog.disabled()
        # The enrolments a batch creates, whose welcome messages the run sends once the batch has committed.
        self.welcome = WelcomeQueue()

    @property
    def settings(self) -> OperationSettings:
        return self.config.operation(self.name)

    def open_source(self, path: Path) -> Source:
        """The run's input, checked as a whole (readable, header ...) before any row is used; raises FileProblem."""
        return CommandFile.open(path, self.columns, self.config.settings.files)

    def checked_batches(self, source: Source, size: int) -> Iterator[pl.DataFrame]:
        """The source's batches, a value the database cannot take failing its row (PROBLEM); after site_info()."""
        limits = ValueLimits.of(source.columns, self.value_columns, self.schema, self.gateway.packet)
        for batch in source.batches(size):
            yield limits.check(batch)

    def take_bridge(self, link: BridgeLink) -> None:
        """With uses_bridge: the run's bridge, before prepare() or before the first write (needs_bridge_to_plan). A
        configured bridge that does not work stops the run (BridgeError); an operation that can go on without it, or
        explains its absence itself, overrides."""
        self.bridge = link.working()

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        """With uses_bridge: whether prepare() or the plans use the bridge (take_bridge then comes before prepare()).
        An operation that needs it only after a commit or in finish() says False: PHP's start-up check then runs
        while the run prepares and plans its first batch, and the bridge is handed over before the first write."""
        return True

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Read what the whole run needs once (site settings, role ids ...), knowing the file's columns.

        Raises FileProblem for a header the site cannot take (a profile field it does not have ...), SetupProblem for
        a site or configuration that cannot take the operation.
        """

    @abstractmethod
    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        """Resolve, plan and (unless dry_run) write one batch of well-formed rows.

        Returns exactly one outcome row per input row (see outcomes.OUTCOME_SCHEMA).
        """

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        """With overlaps_writes: plan a batch (reads on `conn`) without writing; the pipeline runs its write in conn's
        transaction while the next batch is planned on another connection (READ COMMITTED). Either the plan names its
        `reads` and `writes` (BatchPlan), or `await previous()`, which returns when the previous batch's write has
        ended, comes before any read that write may change. A dry run is the plan alone (apply_planned)."""
        raise NotImplementedError(f"{self.name} does not overlap its writes")

    async def apply_planned(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        """apply() of an operation that plans its batches: the plan, then (unless dry_run) its write."""
        return await (await self.plan_batch(conn, rows)).apply(conn, dry_run)

    async def after_commit(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        """After a batch's transaction has committed (never in a dry run): work that needs the batch's rows visible to
        other processes, such as the Moodle bridge. Returns the batch's outcomes, with detail rows added if need be."""
        return outcomes

    def may_destroy(self, columns: Sequence[str]) -> bool:
        """Whether a file with these columns can lead to destructive actions (then the safety pre-pass runs)."""
        return bool(self.destructive_actions)

    def safety_candidates(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The rows of a batch that can lead to a destructive action: the safety pre-pass dry-runs only these (a
        file of additions then costs the pre-pass a read of the file, no database work)."""
        return rows

    async def finish(self, dry_run: bool) -> list[str]:
        """After the last batch, also after a failure: release what the run held, purge caches; notes for the
        report."""
        return []

    async def safety_base(self, conn: AsyncConnection) -> int:
        """How many existing records the destructive actions draw from (the threshold's 100%)."""
        return 0

    async def removals_after_rows(self, conn: AsyncConnection) -> int:
        """Records the run would remove beyond its rows' actions (a purge after the last batch), counted by the
        safety threshold with them; called after the safety pre-pass has seen every row."""
        return 0
