"""A file run batch after batch (TOOLSYNC_OVERLAP=0) and with overlapped writes, each on its own copy of the test's
database: what the overlap tests (tests/engine/test_*_overlap.py) compare."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import make_url

from tests.conftest import Server, database_config
from tests.support.database_copies import copy_database
from tests.support.factories import unique
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run import overlap

T = TypeVar("T")


async def serial_and_overlapped(
    db_server: Server,
    project_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[[Config, MoodleGateway], Awaitable[T]],
    configure: Callable[[Config], None] = lambda config: None,
) -> dict[str, T]:
    """`run` on a copy of the database, batches of 2 rows (and `configure`), with overlap off ("0") and on ("1")."""
    source = make_url(project_db_url).database
    assert source is not None
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv(overlap.OFF_SWITCH, mode)
        url = copy_database(db_server, source, unique(f"{source[:30]}_o{mode}_"))
        config = database_config(tmp_path / unique(f"o{mode}"), url)
        config.set("run.batch_size", 2)
        configure(config)
        gateway = MoodleGateway.for_url(url, "mdl_")
        try:
            results[mode] = await run(config, gateway)
        finally:
            await gateway.close()
    return results
