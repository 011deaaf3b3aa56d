"""Every snapshot is taken once the screen's tables have sized their columns to their rows (see columns_fit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.support.snapshots import SnapCompare
from tests.support.ui import columns_fit, wait_until


@pytest.fixture
def snap_compare(snap_compare: SnapCompare) -> SnapCompare:
    def compare(
        app: Any, *args: Any, run_before: Callable[[Pilot[Any]], Awaitable[None]] | None = None, **kwargs: Any
    ) -> bool:
        async def settled(pilot: Pilot[Any]) -> None:
            if run_before is not None:
                await run_before(pilot)
            await wait_until(lambda: all(columns_fit(table) for table in pilot.app.screen.query(DataTable)))
            await pilot.pause()

        return snap_compare(app, *args, run_before=settled, **kwargs)

    return compare
