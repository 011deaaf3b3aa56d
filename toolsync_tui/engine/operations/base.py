"""What an operation provides to the pipeline: its file's columns and how to apply one batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from ...config import Config, OperationSettings
from ..command_file import ColumnSpec
from ..gateway import MoodleGateway


class Operation(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    columns: ClassVar[ColumnSpec]
    # Actions counted by the safety threshold (delete, unenrol, suspend ...).
    destructive_actions: ClassVar[frozenset[str]] = frozenset()
    # Reads only: never needs a write transaction, and may use larger batches.
    read_only: ClassVar[bool] = False

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        self.config = config
        self.gateway = gateway
        self.schema = gateway.schema

    @property
    def settings(self) -> OperationSettings:
        return self.config.operation(self.name)

    async def prepare(self, conn: AsyncConnection) -> None:  # noqa: B027 (optional hook)
        """Read what the whole run needs once (site settings, role ids ...)."""

    @abstractmethod
    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        """Resolve, plan and (unless dry_run) write one batch of well-formed rows.

        Returns exactly one outcome row per input row (see outcomes.OUTCOME_SCHEMA).
        """

    async def safety_base(self, conn: AsyncConnection) -> int:
        """How many existing records the destructive actions draw from (the threshold's 100%)."""
        return 0
