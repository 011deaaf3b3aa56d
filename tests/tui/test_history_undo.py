"""Undo from the history (issue 22 items 6 and 7), on the real Moodle 4.5 dump on MariaDB: `u` on a run's file says why
a run cannot be undone; else the undo's dry run and a question (No by default), then the undo on the run screen, which
leaves the database as it was before the run and is listed in the history like any run."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Button, Static

from tests.support import table_compare
from tests.support.accounts import add_user
from tests.support.factories import unique
from tests.support.operation_files import header, inbox_file, report_of
from tests.support.ui import finished_run, record_notifications, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.changes.undo import undo_refusal
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import RunResult, run_operation
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.history import HistoryScreen, run_of
from toolsync_tui.screens.undo_confirm import UndoConfirmScreen

SIZE = (80, 24)
Site = tuple[Config, MoodleGateway]
FILES = {"users": "userimport.csv", "deleteusers": "userdelete.csv"}
# As the engine's undo tests: the standard log keeps the run's events, and dirty-user flags are written forward.
NOT_COMPARED = {"logstore_standard_log", "cache_flags"}


async def run(config: Config, gateway: MoodleGateway, name: str, content: str, **options: Any) -> RunResult:
    inbox_file(config, FILES[name], content)
    return await run_operation(config, gateway, name, **options)


def changed(before: dict[str, int], url: str) -> set[str]:
    return table_compare.changed_tables(before, table_compare.checksums(url)) - NOT_COMPARED


async def open_history(app: ToolsyncApp, pilot: Any) -> HistoryScreen:
    await wait_until(lambda: isinstance(app.screen, DashboardScreen))
    assert app.site_loader is not None
    await app.site_loader.wait()  # its status shown before another screen's site bar comes
    await app.push_screen(HistoryScreen(app.config, app.clock))
    await wait_until(lambda: isinstance(app.screen, HistoryScreen))
    screen = app.screen
    assert isinstance(screen, HistoryScreen)
    await wait_until(lambda: screen.table.row_count > 0)
    await pilot.pause()
    return screen


@pytest.mark.parametrize(
    ("operation", "dry_run", "why"),
    [("users", True, "was a dry run"), ("deleteusers", False, "cannot be undone: it deleted users")],
)
async def test_undo_of_a_run_that_cannot_be_undone_says_why(
    dump_site: Site, monkeypatch: pytest.MonkeyPatch, operation: str, dry_run: bool, why: str
) -> None:
    config, gateway = dump_site
    name = unique("gone")
    await add_user(gateway, username=name, idnumber=f"I{name}")
    columns = ("username", "firstname", "lastname", "email") if operation == "users" else ("username", "idnumber")
    row = f"{name};F;L;{name}@example.org\n" if operation == "users" else f"{name};I{name}\n"
    await run(config, gateway, operation, header(*columns) + row, dry_run=dry_run)
    [record] = RunLog(config.data_dir).recent()
    assert record.run is not None
    reason = undo_refusal(config.data_dir, record.run)  # the engine's words, which the history shows
    assert reason is not None
    assert why in reason
    app = ToolsyncApp(config)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        assert f"run {record.run[:8]}" in text_of(screen, "#detail")  # the id `toolsync undo` takes
        await pilot.press("u")
        await wait_until(lambda: any(reason in message for message, _ in notes))
        await pilot.pause()
        assert app.screen is screen  # no question, no run
    [options] = [options for message, options in notes if message == reason]
    assert options["title"] == f"Run {record.run[:8]} cannot be undone"
    assert [each.operation for each in RunLog(config.data_dir).recent()] == [operation]  # nothing was tried


async def test_undo_of_a_users_run_asks_after_its_dry_run_then_restores_the_database(
    dump_site: Site, dump_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, gateway = dump_site
    before = table_compare.checksums(dump_db_url)
    names = [unique("undo") for _ in range(2)]
    content = header("username", "firstname", "lastname", "email") + "".join(
        f"{n};F;L;{n}@example.org\n" for n in names
    )
    result = await run(config, gateway, "users", content)
    assert result.counts == {"created": 2}, report_of(result)
    assert "user" in changed(before, dump_db_url)
    [record] = RunLog(config.data_dir).recent()
    assert record.run is not None
    app = ToolsyncApp(config)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        assert f"run {record.run[:8]}" in text_of(screen, "#detail")

        await pilot.press("u")  # answered No: nothing undone
        await wait_until(lambda: isinstance(app.screen, UndoConfirmScreen))
        question = app.screen
        await wait_until(lambda: not question.query_one("#yes", Button).disabled)  # after its dry run
        message = str(question.query_one("#message", Static).content)
        assert "Undo of users on userimport.csv" in message
        assert "would be deleted or removed" in message
        assert question.focused is question.query_one("#no", Button)  # No by default
        await pilot.press("enter")
        await wait_until(lambda: app.screen is screen)
        assert any(f"Run {record.run[:8]} was not undone" in message for message, _ in notes)
        assert "user" in changed(before, dump_db_url)

        await pilot.press("u")
        await wait_until(lambda: isinstance(app.screen, UndoConfirmScreen))
        question = app.screen
        await wait_until(lambda: not question.query_one("#yes", Button).disabled)
        await pilot.press("y")
        undo = await finished_run(app, pilot)
        assert undo.error is None, undo.error
        assert undo.result is not None
        assert undo.result.counts.get("failed", 0) == 0, report_of(undo.result)
        assert f"Undo of run {record.run[:8]}" in text_of(undo, "#run-title")
        assert changed(before, dump_db_url) == set(), report_of(undo.result)  # the database as before the run

        await pilot.press("escape")  # the undo is a run of the history's, like any
        await wait_until(lambda: app.screen is screen)
        latest = RunLog(config.data_dir).recent(1)[0]
        assert latest.operation == "undo"
        assert latest.run is not None
        await wait_until(lambda: screen.table.chosen is not None and screen.table.row_count > 0)
        rows = screen.table.entries.items()
        [key] = [key for key, entry in rows if (found := run_of(entry, screen.runs)) and found.run == latest.run]
        assert [str(cell) for cell in screen.table.get_row(key)[1:3]] == ["report", "undo"]  # kind, operation
