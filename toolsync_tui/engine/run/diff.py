"""Diff against the previous file (`diff = true` on an operation): only the rows that changed since the operation's
last applied file are resolved and written; the others are reported `unchanged` without a database round trip.

What is compared: a digest of each data row, the cells of the file's known columns as read (trimmed, as the run uses
them) taken by column name, so a file whose columns come in another order is the same file. A row is unchanged when
its digest is among those of the last applied file's rows that went through. The digests are keyed hashes
(BLAKE2b, 128 bits, with a random key of the data directory): the users file holds passwords, and a plain hash of a
row would let whoever copies the digest file test guesses of a password offline; without the key a digest tells
nothing. The password cells are part of the digest, so a changed password makes its row changed.

    <data dir>/state/diff/key                  32 random bytes, made on first use (0600)
    <data dir>/state/diff/<operation>.digests  a JSON header line, then the sorted 16-byte digests (0600)

The header says which run saved the digests, from which file and when, and a fingerprint of what they are valid for:
toolsync's version, the site, the operation's settings (identifiers, mode ...; not its schedule or file name). The
digests are used only when the fingerprint still matches and no run has written since that could have changed what
the rows describe, as the run log tells: a later run of the operation that did not save them (cancelled,
interrupted, killed, stopped by the database, or run without diff) or an undo. Otherwise, and on the first run, every
row is resolved, and the run saves the digests anew.

Only a run that went through saves them (not a dry run, not a cancelled or interrupted one), and only the digests of
the rows that did something or found nothing to do: a failed row, also one with a failed part (a courseN enrolment),
is tried again next time, and so is a skipped one (a removal held for approval, a row the operation skips). The
digests saved are those of this file's rows: a held run's approval (the held rows' file) saves the held rows only, and
the next nightly file is resolved whole once.
What the diff does not do: rows deleted from the file are not its business (snapshot mode); a change made in Moodle to
a record whose row did not change is not repaired (`toolsync run --full` resolves every row once and renews the
digests); nor a change another operation made (an enrolments file unenrolling a user a users row enrolled). Rows are
compared one by one: in a file that names one record in several rows (an enrolment deleted, then added again), a
changed row is written while an unchanged one about the same record is not, though a full run would write both in
order; such files should not use diff.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from toolsync_tui import __version__
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir import privacy
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, PROBLEM, Outcome, outcome_rows
from toolsync_tui.engine.run.log import KEEP, RunLog, RunRecord

FOLDER = Path("state") / "diff"
KEY_NAME = "key"
KEY_BYTES = 32
DIGEST_BYTES = 16
DIGEST = "__digest"  # a row's digest (binary), while the run holds its batch
SAME = "__unchanged"  # whether the row is unchanged since the last applied file
UNCHANGED_ACTION = "none"  # the action of a row with nothing to do, as the operations write it
# The settings that do not change what a row does: when and from where the operation runs, and the diff itself.
UNRELATED_SETTINGS = frozenset({"file", "schedule", "schedule_enabled", "diff"})
# Batches are regrouped so that each one resolves about a batch of changed rows; the unchanged rows read on the way
# ride along with it, up to this many batches' worth of rows (the progress still moves on a file of no change, and a
# group's frames stay small: with 20 batches' worth, a 200,000-row users run peaked at 321 MB, with 4 at 235 MB).
REGROUP = 4
WRITES = (Outcome.CREATED, Outcome.UPDATED, Outcome.DELETED)
WENT = [outcome.value for outcome in (*WRITES, Outcome.UNCHANGED)]  # a row's own outcomes whose digest is kept
UNDO = "undo"  # the operation name of an undo in runs.jsonl


class DiffProblem(Exception):
    """The diff's state cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class Applied:
    """The header of an operation's digests: what they are valid for and where they come from."""

    fingerprint: str
    run: str
    file: str
    applied: str  # ISO date and time the run started
    rows: int

    def words(self) -> str:
        when = datetime.fromisoformat(self.applied).strftime("%Y-%m-%d %H:%M")
        return f"unchanged since the last applied file ({self.file}, {when})"


def folder(data_dir: Path) -> Path:
    return data_dir / FOLDER


def digests_path(data_dir: Path, operation: str) -> Path:
    return folder(data_dir) / f"{operation}.digests"


def fingerprint(config: Config, operation: str, site: str) -> str:
    """What an operation's digests are valid for: toolsync's version, the site and the operation's settings."""
    settings = config.operation(operation).model_dump(mode="json", exclude=set(UNRELATED_SETTINGS))
    described = json.dumps(
        {"version": __version__, "operation": operation, "site": site, "settings": settings}, sort_keys=True
    )
    return hashlib.blake2b(described.encode(), digest_size=16).hexdigest()


def forget(data_dir: Path, operation: str) -> None:
    """Drop an operation's digests: its next diff run resolves every row."""
    digests_path(data_dir, operation).unlink(missing_ok=True)


class RowDiff:
    """One run's diff: which rows are unchanged, and the digests the run saves if it goes through."""

    def __init__(
        self,
        data_dir: Path,
        operation: str,
        columns: Sequence[str],
        fingerprint: str,
        *,
        full: bool = False,
        added_from: int | None = None,
    ) -> None:
        """`columns`: the file's own; `added_from`: the first line of the rows a snapshot added after the file's
        (snapshot/source.py), which are always resolved and never saved (they follow from the ledger, not the file)."""
        self.data_dir = data_dir
        self.added_from = added_from
        self.operation = operation
        self.fingerprint = fingerprint
        self.path = digests_path(data_dir, operation)
        base = hashlib.blake2b(key=_key(data_dir), digest_size=DIGEST_BYTES)
        names = sorted(columns)
        base.update(json.dumps(names).encode())  # another set of columns: every row changed
        self._base = base
        self._columns = names
        self.previous: Applied | None = None
        self._stored: frozenset[bytes] = frozenset()
        self.note: str | None = None  # why the stored digests are not used, for the report
        if full:
            self.note = "--full: every row is resolved; the digests of this file are saved anew"
        else:
            self._load()
        self._kept: set[bytes] = set()  # the digests of the rows that went through (so far)
        self._pending: dict[int, tuple[pl.DataFrame, pl.DataFrame]] = {}  # batch number -> (whole batch, unchanged)

    # -- reading ----------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with self.path.open("rb") as stored:
                header = json.loads(stored.readline())
                data = stored.read()
        except FileNotFoundError:
            self.note = "the first run with diff: every row is resolved"
            return
        except (OSError, ValueError) as exc:
            self.note = f"the digests of the last applied file could not be read ({exc}): every row is resolved"
            return
        try:
            applied = Applied(**header)
        except TypeError:
            self.note = "the digests of the last applied file are of another format: every row is resolved"
            return
        if applied.fingerprint != self.fingerprint:
            self.note = (
                "the operation's settings, the site or toolsync's version changed since the last applied file: "
                "every row is resolved"
            )
            return
        since = _written_since(RunLog(self.data_dir), self.operation, applied.run)
        if since is not None:
            self.note = f"{since} since the last applied file ({applied.file}): every row is resolved"
            return
        self.previous = applied
        self._stored = frozenset(data[i : i + DIGEST_BYTES] for i in range(0, len(data), DIGEST_BYTES))

    def digests(self, batch: pl.DataFrame) -> list[bytes]:
        """Each row's keyed digest: its cells by column name, each with its length (so no two rows collide by
        where one cell ends). Not on every core: hashlib keeps the GIL for inputs under 2 KiB, so threads would take
        turns, and polars' own hash takes a 64-bit seed and is no keyed cryptographic hash (it would not keep a
        password from offline guesses). The batches are read in a worker thread (pipeline._numbered) instead: the
        hashing overlaps the database's turn."""
        cells = [
            part
            for name in self._columns
            for part in (pl.col(name).fill_null("").str.len_bytes().cast(pl.String), pl.lit(":"), pl.col(name))
        ]
        if not cells:
            return [self._base.digest()] * batch.height
        rows = batch.select(pl.concat_str(cells).fill_null("").cast(pl.Binary)).to_series().to_list()
        fresh = self._base.copy
        found = []
        for row in rows:
            digest = fresh()
            digest.update(row)
            found.append(digest.digest())
        return found

    def marked(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The batch with each row's digest and whether it is unchanged (a malformed row never is)."""
        digests = self.digests(batch)
        stored = self._stored
        same = pl.Series(SAME, [d in stored for d in digests], dtype=pl.Boolean) & batch[PROBLEM].is_null()
        if self.added_from is not None:
            same &= batch[LINE] < self.added_from
        return batch.with_columns(pl.Series(DIGEST, digests, dtype=pl.Binary), same.alias(SAME))

    def batches(self, batches: Iterator[pl.DataFrame], size: int) -> Iterator[pl.DataFrame]:
        """The batches marked and regrouped: each holds about `size` changed rows, with the unchanged rows read on
        the way (at most REGROUP batches' worth), so that a file of few changes costs few round trips."""
        held: list[pl.DataFrame] = []
        changed = total = 0
        for batch in batches:
            batch = self.marked(batch)
            held.append(batch)
            changed += batch.height - int(batch[SAME].sum())
            total += batch.height
            if changed >= size or total >= REGROUP * size:
                yield pl.concat(held)
                held, changed, total = [], 0, 0
        if held:
            yield pl.concat(held)

    # -- a batch through the run ------------------------------------------------------------------

    def changed_rows(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The rows to resolve, as the operation takes them."""
        return batch.filter(~pl.col(SAME)).drop(DIGEST, SAME)

    def take(self, batch: pl.DataFrame, number: int) -> pl.DataFrame:
        """The rows of batch `number` to resolve; its unchanged rows' outcomes wait for `merge`."""
        assert self.previous is not None or not batch[SAME].any()
        unchanged = batch.filter(pl.col(SAME))
        words = self.previous.words() if self.previous is not None else ""
        outcomes = outcome_rows(unchanged, Outcome.UNCHANGED, UNCHANGED_ACTION, pl.lit(""), words)
        self._pending[number] = (batch, outcomes)
        return self.changed_rows(batch)

    def merge(self, batch: pl.DataFrame, number: int, outcomes: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Batch `number` whole, with its unchanged rows' outcomes among the others (in line order); the digests of
        its rows that did not fail are kept for `save`."""
        whole, unchanged = self._pending.pop(number, (batch, None))
        if unchanged is not None:
            outcomes = pl.concat([outcomes, unchanged], how="diagonal_relaxed").sort(
                "line", "part", nulls_last=False, maintain_order=True
            )
        if DIGEST in whole.columns:
            # A row went through when its own outcome is one of WENT and no part of it failed; a skipped row (held
            # for approval, not processed ...) did nothing and is resolved again next time.
            went = outcomes.filter(pl.col("part").is_null() & pl.col("outcome").is_in(WENT)).select("line")
            failed = outcomes.filter(pl.col("outcome") == Outcome.FAILED.value).select("line")
            lines = went.join(failed, on="line", how="anti").rename({"line": LINE})
            if self.added_from is not None:
                lines = lines.filter(pl.col(LINE) < self.added_from)
            self._kept.update(whole.join(lines, on=LINE, how="semi")[DIGEST].to_list())
        return whole, outcomes

    @staticmethod
    def no_outcomes() -> pl.DataFrame:
        return pl.DataFrame(schema=OUTCOME_SCHEMA)

    # -- saving -----------------------------------------------------------------------------------

    def save(self, run: str, file: str, started: datetime) -> None:
        """The digests of the rows that went through, for the next run; written whole, then put in place. When they
        cannot be written, the old ones are removed (they no longer describe the database); raises DiffProblem."""
        header = Applied(self.fingerprint, run, file, started.isoformat(timespec="seconds"), len(self._kept))
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            _folder(self.data_dir)
            descriptor = privacy.create_file(temporary)
            with os.fdopen(descriptor, "wb") as out:
                out.write(json.dumps(header.__dict__).encode() + b"\n")
                out.write(b"".join(sorted(self._kept)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            forget(self.data_dir, self.operation)
            raise DiffProblem(
                f"the digests of this file could not be saved in {self.path} ({exc.strerror or exc}): the next run "
                "with diff resolves every row"
            ) from None


def _written_since(log: RunLog, operation: str, saved_by: str) -> str | None:
    """What wrote since run `saved_by` saved the digests, in words; None when nothing did. The run in progress is not
    in the log's list (it is running)."""
    for record in log.recent(KEEP):
        if record.run == saved_by:
            return None
        if record.dry_run or not _wrote(record):
            continue
        if record.operation == operation:
            return f"a run of {operation} that did not save its digests wrote ({_how(record)}, {record.started})"
        if record.operation == UNDO:
            return f"an undo ran ({record.started})"
    return "the run that saved the digests is no longer in the run log"


def _wrote(record: RunRecord) -> bool:
    """Whether a run may have written: rows created, updated or deleted, or stopped while a batch was written."""
    return any(record.counts.get(outcome, 0) for outcome in WRITES) or bool(record.interrupted or record.writing)


def _how(record: RunRecord) -> str:
    if record.cancelled:
        return "cancelled"
    if record.interrupted:
        return "interrupted"
    if record.problem:
        return "stopped"
    return "without diff"


def _folder(data_dir: Path) -> Path:
    path = folder(data_dir)
    for made in reversed([path, *path.parents]):  # each missing one with its parent's rule (privacy.py)
        if not made.is_dir():
            made.mkdir(mode=privacy.folder_mode(made.parent))
    return path


def _key(data_dir: Path) -> bytes:
    """The data directory's digest key, made on first use; only its owner reads it."""
    path = folder(data_dir) / KEY_NAME
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DiffProblem(f"the diff's key {path} cannot be read: {exc.strerror or exc}") from None
    try:
        _folder(data_dir)
        key = secrets.token_bytes(KEY_BYTES)
        descriptor = privacy.create_file(path)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key)
    except OSError as exc:
        raise DiffProblem(f"the diff's key {path} cannot be written: {exc.strerror or exc}") from None
    return key
