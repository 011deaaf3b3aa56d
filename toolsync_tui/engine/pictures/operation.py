"""User pictures from a zip archive (reference §2.3): each image `<value>.<ext>` becomes the picture of the account
its value names, stored as process_new_icon() stores it (moodle-db-semantics §9).

Per batch: the owners are looked up, the images of the pictures to set are made on every core, pictures identical
to the current ones are left alone, then the content goes to the file pool and the rows to the database in the
batch's transaction. Content the replaced pictures no longer need goes to the trash once that has committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, cast

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config, PicturesSettings
from toolsync_tui.engine.moodle.contexts import ContextLevel, instance_contexts, system_context
from toolsync_tui.engine.moodle.filepool import FilePool, FilePoolProblem
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.icons import (
    NewIcon,
    current_f1_hashes,
    replace_icons,
    trash_unreferenced,
    user_contexts,
)
from toolsync_tui.engine.pictures.images import Icons, ImageProblem
from toolsync_tui.engine.pictures.owners import OWNER_PROBLEM, PICTURE, USERID, find_owners
from toolsync_tui.engine.pictures.source import DATA, LATER, NAME, VALUE, ArchiveSource, owner_key
from toolsync_tui.engine.pictures.workers import IconMaker
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, Outcome, OutcomeRow, Rule, first_match
from toolsync_tui.engine.run.command_file import ColumnSpec
from toolsync_tui.engine.run.operation import Operation, SetupProblem, Source

ACTION = "picture"


@dataclass(frozen=True)
class _Entry:
    line: int
    name: str
    value: str
    data: bytes
    userid: int
    had_picture: bool


class PicturesOperation(Operation):
    name = "pictures"
    title = "User pictures"
    columns: ClassVar[ColumnSpec] = ColumnSpec(required=(NAME, VALUE))  # an archive's entries, not a file's header
    # Each picture costs a decode on a core: small batches keep the progress moving and bound the memory held.
    batch_limit = 64
    inputs_suffix = ".zip"

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.icon_maker = IconMaker()
        self.pool: FilePool | None = None
        self.mnethostid = 1
        self._replaced: set[str] = set()  # content hashes the last batch's replaced pictures held

    @property
    def picture_settings(self) -> PicturesSettings:
        return cast(PicturesSettings, self.settings)

    def open_source(self, path: Path) -> Source:
        return ArchiveSource.open(path, owner_key=owner_key(self.gateway.kind, self.picture_settings.user_field))

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        setting = self.picture_settings.moodle_data_dir
        if not setting:
            raise SetupProblem(
                "pictures: set [operations.pictures] moodle_data_dir to the site's $CFG->dataroot (moodledata), "
                "where Moodle keeps its files"
            )
        self.pool = FilePool(self.config.resolve(setting))
        try:
            self.pool.check()
        except FilePoolProblem as problem:
            raise SetupProblem(f"pictures: {problem}") from None
        values = await self.gateway.config_values(["mnet_localhost_id"])
        self.mnethostid = int(values.get("mnet_localhost_id") or 1)
        self.system = await system_context(self.gateway, conn)  # the parent of a user context made here

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        self._replaced = set()
        outcomes: list[OutcomeRow] = []
        later = rows.filter(pl.col(LATER).is_not_null())
        for line, name, superseding in later.select(LINE, NAME, LATER).iter_rows():
            outcomes.append(
                _skipped(line, name, f"a later picture of the archive for the same user wins ({superseding})")
            )
        entries = await self._owned_entries(conn, rows.filter(pl.col(LATER).is_null()), outcomes)
        made = await self.icon_maker.make([entry.data for entry in entries])
        icons: list[tuple[_Entry, Icons]] = []
        for entry, result in zip(entries, made, strict=True):
            if isinstance(result, ImageProblem):
                outcomes.append(_failed(entry.line, entry.name, result.problem))
            else:
                icons.append((entry, result))
        outcomes.extend(await self._store(conn, icons, dry_run))
        return pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row")

    async def _owned_entries(
        self, conn: AsyncConnection, rows: pl.DataFrame, outcomes: list[OutcomeRow]
    ) -> list[_Entry]:
        """The entries whose picture is to be made: their owner found, not kept by `overwrite`, and the last of the
        batch for their owner (two values can name one account: 5 and 05 by id)."""
        settings = self.picture_settings
        owners = await find_owners(self.gateway, conn, settings.user_field, self.mnethostid, rows[VALUE])
        named = rows.join(owners, left_on=VALUE, right_on="value", how="left")
        last_line = named.filter(pl.col(USERID).is_not_null()).group_by(USERID).agg(pl.col(LINE).max().alias("last"))
        named = named.join(last_line, on=USERID, how="left").sort(LINE)
        name = pl.col(NAME)
        rules = [
            Rule(pl.col(USERID).is_null(), Outcome.FAILED, ACTION, pl.format("{}: {}", name, pl.col(OWNER_PROBLEM))),
            Rule(
                pl.col("last") != pl.col(LINE),
                Outcome.SKIPPED,
                ACTION,
                pl.format("{}: a later picture of the archive names the same user (line {})", name, "last"),
            ),
            Rule(
                pl.lit(not settings.overwrite) & (pl.col(PICTURE).fill_null(0) != 0),
                Outcome.SKIPPED,
                ACTION,
                pl.format("{}: the user has a picture already and overwrite is off", name),
            ),
        ]
        decided, kept = first_match(named, rules, name)
        outcomes.extend(decided.rows())
        return [
            _Entry(row[LINE], row[NAME], row[VALUE], row[DATA], row[USERID], bool(row[PICTURE]))
            for row in kept.iter_rows(named=True)
        ]

    async def _store(self, conn: AsyncConnection, icons: list[tuple[_Entry, Icons]], dry_run: bool) -> list[OutcomeRow]:
        """Pictures identical to the users' current ones are unchanged; the others are written (unless dry_run)."""
        if not icons:
            return []
        found = await instance_contexts(self.gateway, conn, ContextLevel.USER, [entry.userid for entry, _ in icons])
        contexts = {user: context.id for user, context in found.items()}
        current = await current_f1_hashes(self.gateway, conn, list(contexts.values()))
        outcomes: list[OutcomeRow] = []
        changed: list[tuple[_Entry, Icons]] = []
        for entry, made in icons:
            context = contexts.get(entry.userid)
            if entry.had_picture and context is not None and current.get(context) == made.f1_sha1:
                outcomes.append(_row(entry.line, Outcome.UNCHANGED, entry.name, f"user {entry.value}: same picture"))
            else:
                changed.append((entry, made))
                outcome = Outcome.UPDATED if entry.had_picture else Outcome.CREATED
                outcomes.append(_row(entry.line, outcome, entry.name, f"user {entry.value} (id {entry.userid})"))
        if changed and not dry_run:
            assert self.pool is not None  # prepare() made it
            contexts = await user_contexts(self.gateway, conn, self.system, [entry.userid for entry, _ in changed])
            new = [NewIcon(entry.userid, contexts[entry.userid], made.mimetype, made.files) for entry, made in changed]
            _, replaced = await replace_icons(self.gateway, conn, self.pool, new, int(time.time()))
            self._replaced = replaced
        return outcomes

    async def after_commit(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        if self._replaced and self.pool is not None:
            async with self.gateway.reading() as conn:
                await trash_unreferenced(self.gateway, conn, self.pool, self._replaced)
        self._replaced = set()
        return outcomes

    async def finish(self, dry_run: bool) -> list[str]:
        self.icon_maker.close()
        return []


def _row(line: int, outcome: Outcome, name: str, message: str) -> OutcomeRow:
    return (line, None, outcome.value, ACTION, name, f"{name}: {message}")


def _failed(line: int, name: str, why: str) -> OutcomeRow:
    return _row(line, Outcome.FAILED, name, why)


def _skipped(line: int, name: str, why: str) -> OutcomeRow:
    return _row(line, Outcome.SKIPPED, name, why)
