"""Issue 21 items 1-4: nothing removes or cancels at 2 a.m. without a question (Pilot, on a fresh sandbox, 80x24).

Enter opens an operation and never runs it; a run that can remove or suspend shows its real dry run's counts and asks,
No by default; esc leaves a run going; cancelling and quitting ask; a cancelled run's summary tells one story; the
safety threshold's question speaks the interface's words.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from textual.widgets import Button, DataTable, ProgressBar, Static

from tests.support.ui import finished_run, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run import pipeline
from toolsync_tui.engine.run import thread as run_thread
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import Progress, RunResult, SafetyStop
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.operation import OperationScreen
from toolsync_tui.screens.run import RunScreen
from toolsync_tui.screens.run_confirm import RunConfirmScreen

SIZE = (80, 24)


async def choose(app: ToolsyncApp, pilot: Any, name: str) -> None:
    await pilot.press(*["down"] * list(OPERATIONS).index(name))
    await pilot.pause()
    assert isinstance(app.screen, DashboardScreen)
    chosen = app.screen.table.chosen
    assert chosen is not None
    assert chosen.name == name


def runs_logged(config: Config) -> list[tuple[str, bool]]:
    return [(record.operation, record.dry_run) for record in reversed(RunLog(config.data_dir).recent())]


def shown(app: ToolsyncApp) -> object:
    return app.screen  # not narrowed by an earlier isinstance


async def dry_run_shown(app: ToolsyncApp) -> RunConfirmScreen:
    await wait_until(lambda: isinstance(app.screen, RunConfirmScreen) and bool(app.screen.results))
    screen = app.screen
    assert isinstance(screen, RunConfirmScreen)
    await wait_until(lambda: not screen.query_one("#yes", Button).disabled)
    return screen


# -- item 1: enter opens, a removal asks ---------------------------------------------------------------------------


async def test_slash_enter_enter_opens_suspendusers_and_runs_nothing(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"suspendu", "enter", "enter")
        await wait_until(lambda: isinstance(app.screen, OperationScreen))
        assert isinstance(app.screen, OperationScreen)
        assert app.screen.operation == "suspendusers"
        facts = text_of(app.screen, "#facts")
        assert facts.startswith("Suspend users: inbox/usersuspend.csv")
        assert "never run" in facts
        await pilot.press("enter", "enter")  # nothing runs from enter, however often
        await pilot.pause()
        assert isinstance(app.screen, OperationScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
    assert runs_logged(sandbox) == []


@pytest.mark.parametrize("name", ["suspendusers", "deleteusers"])
async def test_a_removal_shows_its_dry_run_counts_and_enter_says_no(sandbox: Config, name: str) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await choose(app, pilot, name)
        await pilot.press("r")
        screen = await dry_run_shown(app)
        [result] = screen.results
        assert result.dry_run  # a real dry run, through the engine's thread runner
        assert result.report_path is not None
        assert result.report_path.name.endswith("_dryrun.txt")
        message = str(screen.query_one("#message", Static).content)
        for outcome, rows in result.counts.items():
            assert f"{rows} row{'s' if rows > 1 else ''} would be" in message, outcome
        assert screen.focused is screen.query_one("#no", Button)
        await pilot.press("enter")  # the default answer: no
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
    assert runs_logged(sandbox) == [(name, True)]  # the dry run only


async def test_y_runs_the_removal_after_its_dry_run(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await choose(app, pilot, "suspendusers")
        await pilot.press("r")
        await dry_run_shown(app)
        await pilot.press("y")
        run = await finished_run(app, pilot)
        assert run.result is not None
        assert not run.result.dry_run
    assert runs_logged(sandbox) == [("suspendusers", True), ("suspendusers", False)]


async def test_a_users_file_that_cannot_remove_runs_without_a_question(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await choose(app, pilot, "users")  # userimport.csv has no deleted or suspended column
        await pilot.press("r")
        await finished_run(app, pilot)


async def test_a_users_file_with_a_deleted_column_asks(sandbox: Config) -> None:
    sample = sandbox.data_dir / "inbox" / "userimport.csv"
    header, first, *_ = sample.read_text().splitlines()
    sample.write_text(f"{header};deleted\n{first};0\n")  # the column is enough: Operation.may_destroy
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await choose(app, pilot, "users")
        await pilot.press("r")
        await dry_run_shown(app)
        await pilot.press("n")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
    assert runs_logged(sandbox) == [("users", True)]


# -- items 2 and 3: a run left, cancelled, quit --------------------------------------------------------------------

TOTAL = 5_000
DONE = {"created": 1_000, "updated": 200}


def held_run(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The engine's run, pinned: 1,200 of 5,000 rows done, then it waits until cancelled (or `release` is set), and
    ends as the pipeline ends a cancelled run: the rows not reached counted as skipped."""
    release = threading.Event()

    async def held(config: Config, gateway: Any, name: str, source: Any, **options: Any) -> RunResult:
        cancel: threading.Event = options["cancel"]
        options["on_progress"](Progress(name, 1_200, TOTAL, dict(DONE), 100.0, 1, 12.0, ["line 1200: created"]))
        while not cancel.is_set() and not release.is_set():  # noqa: ASYNC110 (threading events, set from elsewhere)
            await asyncio.sleep(0.01)
        counts = dict(DONE) | ({"skipped": TOTAL - 1_200} if cancel.is_set() else {"created": TOTAL - 200})
        return RunResult(name, source, options["dry_run"], counts, TOTAL, 12.0, cancelled=cancel.is_set())

    monkeypatch.setattr(run_thread, "run_operation", held)
    return release


async def running(app: ToolsyncApp, pilot: Any) -> RunScreen:
    await pilot.press("r")  # check: courses.csv, which removes nothing
    await wait_until(lambda: isinstance(app.screen, RunScreen) and app.screen._progress is not None)
    await pilot.pause(0.2)
    assert isinstance(app.screen, RunScreen)
    return app.screen


async def test_esc_leaves_the_run_going_and_the_dashboard_shows_it(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = held_run(monkeypatch)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        run = await running(app, pilot)
        await pilot.press("escape")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
        await pilot.pause(0.6)
        assert run.running
        assert run.worker is not None
        assert run.worker.is_running
        dashboard = app.screen
        assert isinstance(dashboard, DashboardScreen)
        assert str(dashboard.query_one(DataTable).get_row("check")[-1]) == "running 24 %"
        assert text_of(dashboard, "#detail").endswith("\nnow running: line 1,200 of 5,000 (enter shows it)")
        await pilot.press("enter")  # back to the run
        assert app.screen is run
        await pilot.press("escape", "r")  # r too
        assert app.screen is run
        release.set()
        assert run.worker is not None
        await run.worker.wait()
        assert run.result is not None
        assert not run.result.cancelled


async def test_cancel_asks_and_no_is_the_default(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    held_run(monkeypatch)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        run = await running(app, pilot)
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.message == (
            "Cancel the run of check? 1,200 rows applied so far, the rest will be reported as not processed."
        )
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert shown(app) is run  # no: the run goes on
        assert run.running
        await pilot.press("c", "y")
        assert run.worker is not None
        await run.worker.wait()
        await pilot.pause()
        assert run.result is not None
        assert run.result.cancelled


async def test_a_cancelled_run_tells_one_story(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    held_run(monkeypatch)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        run = await running(app, pilot)
        await pilot.press("c", "y")
        assert run.worker is not None
        await run.worker.wait()
        await pilot.pause()
        state = text_of(run, "#state")
        assert state == "Cancelled: 3,800 rows were not processed (counted as skipped). The file stays in the inbox."
        assert text_of(run, "#summary").startswith("1,200 of 5,000 rows were processed in ")
        assert text_of(run, "#counters") == "created 1,000   updated 200"
        bar = run.query_one("#bar", ProgressBar)
        assert bar.percentage is not None
        assert round(bar.percentage * 100) == 24


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
async def test_quitting_during_a_run_asks_first(sandbox: Config, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    held_run(monkeypatch)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        run = await running(app, pilot)
        await pilot.press("escape", key)  # from the dashboard too
        assert isinstance(app.screen, ConfirmScreen)
        assert "Cancel the run of check? 1,200 rows applied so far" in app.screen.message
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.is_running
        assert run.running
        await pilot.press(key, "y")
        assert run.worker is not None
        await run.worker.wait()
        await wait_until(lambda: not app.is_running)
        assert run.result is not None
        assert run.result.cancelled


# -- item 4: the safety threshold in the interface's words ---------------------------------------------------------


def tripping(monkeypatch: pytest.MonkeyPatch, name: str, destructive: int, base: int) -> list[bool]:
    attempts: list[bool] = []
    real = pipeline.run_operation

    async def guarded(*args: Any, force: bool = False, **options: Any) -> pipeline.RunResult:
        if not options.get("dry_run"):
            attempts.append(force)
            if not force:
                raise SafetyStop(name, destructive, base, 0.1)
        return await real(*args, force=force, **options)

    monkeypatch.setattr(run_thread, "run_operation", guarded)
    return attempts


async def test_the_safety_question_says_what_would_be_removed(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = tripping(monkeypatch, "deleteusers", 1, 5)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await choose(app, pilot, "deleteusers")
        await pilot.press("r")
        await dry_run_shown(app)
        await pilot.press("y")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert isinstance(app.screen, ConfirmScreen)
        message = app.screen.message
        assert message.startswith("deleteusers would delete 1 of 5 active users (20%): more than the safety threshold")
        assert "--force" not in message
        assert "records" not in message
        await pilot.press("enter")  # no
        await wait_until(lambda: isinstance(app.screen, RunScreen) and not app.screen.running)
    assert attempts == [False]
