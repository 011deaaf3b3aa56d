"""Held runs in the interface (issue 22 items 5 and 7), on the real Moodle 4.5 dump on MariaDB: a suspension file the
safety threshold held, as cron holds it; the dashboard announces it, the held-runs screen approves it (after a
question whose default is No) on the run screen, or discards it."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Button, Static

from tests.support.accounts import add_user
from tests.support.factories import unique
from tests.support.operation_files import header, inbox_file, report_of
from tests.support.ui import finished_run, record_notifications, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import HeldRun, HeldRuns
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.held import HeldScreen

SIZE = (80, 24)
Site = tuple[Config, MoodleGateway]


async def suspended(gateway: MoodleGateway, names: list[str]) -> dict[str, int]:
    user = gateway.schema.user
    async with gateway.reading() as conn:
        found = await gateway.fetch_in(conn, user, "username", names, ["username", "suspended"])
    return dict(zip(found["username"], found["suspended"], strict=True))


async def held_suspensions(config: Config, gateway: MoodleGateway) -> tuple[HeldRun, list[str]]:
    """Three accounts, and a file suspending them all that the safety threshold holds (as cron's runs are held)."""
    config.set("run.safety_min_rows", 2)
    config.set("run.safety_threshold", 0.0001)
    names = [unique("held") for _ in range(3)]
    for name in names:
        await add_user(gateway, username=name, idnumber=f"I{name}")
    inbox_file(config, "usersuspend.csv", header("username", "idnumber") + "".join(f"{n};I{n}\n" for n in names))
    result = await run_operation(config, gateway, "suspendusers", hold=True)
    assert result.held is not None, report_of(result)
    assert await suspended(gateway, names) == dict.fromkeys(names, 0)  # held whole: nothing written
    return result.held, names


async def open_held(app: ToolsyncApp, pilot: Any) -> HeldScreen:
    await wait_until(lambda: isinstance(app.screen, DashboardScreen))
    dashboard = app.screen
    await wait_until(lambda: text_of(dashboard, "#held") == "1 run waiting for approval: a shows them")
    await pilot.press("a")
    await wait_until(lambda: isinstance(app.screen, HeldScreen))
    screen = app.screen
    assert isinstance(screen, HeldScreen)
    await wait_until(lambda: screen.table.row_count == 1)
    return screen


async def test_approving_a_held_run_asks_first_then_runs_it_live(dump_site: Site) -> None:
    config, gateway = dump_site
    held, names = await held_suspensions(config, gateway)
    app = ToolsyncApp(config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_held(app, pilot)
        facts = text_of(screen, "#held-facts")
        assert f"suspendusers · usersuspend.csv · held {held.held_at[:10]}" in facts
        assert f"id {held.id[:8]}" in facts
        assert "of 3 rows, 3 would be updated" in facts
        assert held.reason in facts
        assert "what it would remove" in facts
        assert names[0] in facts  # the dry run's sample

        await pilot.press("a")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.focused is app.screen.query_one("#no", Button)  # No by default
        await pilot.press("enter")
        await wait_until(lambda: app.screen is screen)
        assert [run.id for run in HeldRuns(config.data_dir).list()] == [held.id]  # No: still held, nothing run
        assert await suspended(gateway, names) == dict.fromkeys(names, 0)

        await pilot.press("a")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert "Run suspendusers (" in str(app.screen.query_one("#message", Static).content)
        await pilot.press("y")
        run = await finished_run(app, pilot)
        assert run.error is None, run.error
        assert run.result is not None
        assert run.result.counts == {"updated": 3}, report_of(run.result)
        assert "held run approved" in text_of(run, "#run-title")

        await pilot.press("escape")
        await wait_until(lambda: app.screen is screen)
        await wait_until(lambda: screen.table.row_count == 0)
        assert "No run is waiting for approval" in text_of(screen, "#held-facts")
    assert await suspended(gateway, names) == dict.fromkeys(names, 1)  # applied: rows in the database
    assert HeldRuns(config.data_dir).list() == []


async def test_discarding_a_held_run_asks_then_archives_its_file_unrun(
    dump_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, gateway = dump_site
    _, names = await held_suspensions(config, gateway)
    app = ToolsyncApp(config)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_held(app, pilot)
        await pilot.press("x")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert "Discard the held run of suspendusers" in str(app.screen.query_one("#message", Static).content)
        await pilot.press("y")
        await wait_until(lambda: app.screen is screen and screen.table.row_count == 0)
        await pilot.press("escape")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
        dashboard = app.screen
        await wait_until(lambda: not dashboard.query_one("#held", Static).display)
    assert HeldRuns(config.data_dir).list() == []
    discarded = list((config.data_dir / "archive" / "discarded").glob("*_usersuspend.csv"))
    assert len(discarded) == 1
    assert any("its file is now archive/discarded/" in message for message, _ in notes)
    assert await suspended(gateway, names) == dict.fromkeys(names, 0)  # never run


async def test_the_palette_opens_the_held_runs(dump_site: Site) -> None:
    config, gateway = dump_site
    await held_suspensions(config, gateway)
    app = ToolsyncApp(config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"Held runs")
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, HeldScreen))
        screen = app.screen
        assert isinstance(screen, HeldScreen)
        await wait_until(lambda: screen.table.row_count == 1)
