"""The interface driven with Pilot on a fresh sandbox (conftest's `sandbox`), at 80x24 like over SSH."""

from __future__ import annotations

import gc
import socket
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from textual import events
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from tests.support.ui import FrozenClock, record_notifications, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run import pipeline
from toolsync_tui.engine.run import thread as run_thread
from toolsync_tui.engine.run.lock import RunLock
from toolsync_tui.engine.run.pipeline import SafetyStop
from toolsync_tui.engine.unattended.schedules import next_runs
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.files import FilesScreen
from toolsync_tui.screens.help import HelpScreen
from toolsync_tui.screens.run import RunScreen
from toolsync_tui.views.formatting import file_size
from toolsync_tui.widgets.report_lines import ReportLines

SIZE = (80, 24)


async def start_run(app: ToolsyncApp, pilot: Any, key: str) -> RunScreen:
    await pilot.press(key)
    screen = app.screen
    assert isinstance(screen, RunScreen)
    assert screen.worker is not None
    await screen.worker.wait()
    await pilot.pause()
    return screen


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- dashboard and header ----------------------------------------------------------------------


async def test_dashboard_lists_every_operation_with_its_files(sandbox: Config) -> None:
    inbox = sandbox.data_dir / "inbox"
    (inbox / "userpictures_b.zip").write_bytes((inbox / "userpictures_sample.zip").read_bytes())
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        assert app.site_loader is not None
        await app.site_loader.wait()
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == len(OPERATIONS) == 14
        rows = {name: [str(cell) for cell in table.get_row(name)] for name in OPERATIONS}
        # At 80 columns the operation, its file and its last run, each whole; the size is in the detail lines.
        assert rows["check"] == ["check", "courses.csv", "never"]
        # Every picture archive of the inbox, counted, their sizes added.
        size = 2 * (inbox / "userpictures_sample.zip").stat().st_size
        assert rows["pictures"][1] == "userpictures_*.zip (2)"
        await wait_until(lambda: "pictures" in getattr(app.screen, "row_counts", {}))  # counted in a worker
        await pilot.press(*["down"] * (len(OPERATIONS) - 1))
        await pilot.pause()
        first, second, third = text_of(app.screen, "#detail").splitlines()
        assert first == "User pictures: inbox/userpictures_*.zip: userpictures_b.zip, userpictures_sample.zip"
        assert second.startswith(f"8 rows · {file_size(size)} · changed ")
        assert second.endswith(" · next run: not scheduled")
        assert third == "never run"


async def test_dashboard_shows_the_last_run_and_the_next_one(sandbox: Config) -> None:
    sandbox.set("operations.users.schedule", "30 2 * * *")
    sandbox.set("cron.timezone", "UTC")
    now = datetime.now() + timedelta(hours=1)  # the run log has the real time; the screen sees it an hour later
    expected_next = next_runs("30 2 * * *", now.astimezone(ZoneInfo("UTC")), 1)[0].strftime("%a %H:%M")
    app = ToolsyncApp(sandbox, clock=FrozenClock(now))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press(*["down"] * list(OPERATIONS).index("users"))
        await start_run(app, pilot, "r")
        await pilot.press("escape")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        cells = [str(cell) for cell in table.get_row("users")]
        # The sample's users are created; their rows' courses are not in the sandbox: parts failed.
        assert cells[4:] == ["parts failed, 1 h ago", expected_next]
        # enrols.csv: a header and two records
        assert [str(cell) for cell in table.get_row("enrols")][3:] == ["2", "never", "not scheduled"]
        _, facts, detail = text_of(app.screen, "#detail").splitlines()
        assert facts.endswith(f"next run: {expected_next}")  # the file was archived: missing now
        assert detail.startswith("last run 20")
        assert detail.endswith(": 3 created, parts of rows failed")
        assert "SANDBOX" in text_of(app.screen, "#site-badge")
        detail = text_of(app.screen, "#site-detail")
        assert detail.startswith("sandbox.sqlite · prefix mdl_ · Moodle 4.5")


async def test_missing_sandbox_database_shows_an_error_in_the_header(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.base_dir / "sandbox.sqlite").unlink()
    app = ToolsyncApp(sandbox)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        assert app.site_loader is not None
        await app.site_loader.wait()
        await pilot.pause()
        assert text_of(app.screen, "#site-badge").strip() == "NO DATABASE"
        assert "does not exist" in text_of(app.screen, "#site-detail")
        assert "Traceback" not in text_of(app.screen, "#site-detail")
        assert notes
        assert notes[0][1]["severity"] == "error"


async def test_unreachable_mariadb_shows_an_error_in_the_header(sandbox: Config) -> None:
    sandbox.set("database.driver", "mariadb")
    sandbox.set("database.port", free_loopback_port())  # nothing listens there: refused at once
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        assert app.site_loader is not None
        await app.site_loader.wait()
        await pilot.pause()
        assert text_of(app.screen, "#site-badge").strip() == "NO DATABASE"
        assert "cannot use the database at 127.0.0.1" in text_of(app.screen, "#site-detail")


async def test_help_lists_the_keys_of_the_current_screen(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert keys["r"] == "Run"
        assert keys["d"] == "Dry run"
        assert keys["enter"] == "Open the chosen operation: its file, its runs, what can be done"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_slash_filters_the_operations_and_keys_act_on_the_one_shown(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(DataTable)
        await pilot.press("slash", *"Delete")  # case does not matter; names and titles
        assert [str(key.value) for key in table.rows] == ["deletecourses", "deleteusers"]
        await pilot.press("enter")  # back to the list, the filter kept
        assert table.has_focus
        await pilot.press("down", "f")
        screen = app.screen
        assert isinstance(screen, FilesScreen)
        assert screen.operation == "deleteusers"
        await pilot.press("escape", "slash", "escape")  # back, then the filter cleared
        assert [str(key.value) for key in table.rows] == list(OPERATIONS)


async def test_keys_typed_right_after_slash_go_to_the_filter(sandbox: Config) -> None:
    """Over SSH keys come in bursts: the ones behind `/` must not reach the dashboard (c would open the settings)."""
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key, character in [("slash", "/"), *((c, c) for c in "cohort")]:
            app.post_message(events.Key(key, character))  # all queued before any is handled
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert [str(key.value) for key in app.screen.query_one(DataTable).rows] == ["cohorts", "cohortscourses"]


async def test_screen_changes_leave_no_old_footer_keys_alive(sandbox: Config) -> None:
    """Textual's Footer keeps every key it ever showed (Textualize/textual#6666); ours only those it shows."""
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(20):
            await pilot.press("question_mark")  # the help opens and closes: the dashboard's footer is rebuilt
        await pilot.pause()
        gc.collect()
        shown = sum(len(screen.query(FooterKey)) for screen in app.screen_stack)
        alive = sum(isinstance(thing, FooterKey) for thing in gc.get_objects())
        assert shown > 0
        assert alive == shown


# -- running --------------------------------------------------------------------------------------


async def test_run_check_shows_the_summary_and_writes_the_report(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(app, pilot, "r")
        result = screen.result
        assert result is not None
        assert screen.error is None
        assert result.counts == {"failed": 4}
        assert result.rows == 4
        assert not result.dry_run
        assert result.report_path is not None
        assert result.report_path.is_file()
        assert result.tryback_path is not None
        assert result.tryback_path.is_file()
        assert result.archive_path is not None
        assert result.archive_path.is_file()
        assert not (sandbox.data_dir / "inbox" / "courses.csv").exists()  # archived (moved)
        assert "failed 4" in text_of(screen, "#counters")
        assert text_of(screen, "#state") == "Finished: 4 of 4 rows failed, see the report."
        summary = text_of(screen, "#summary")
        assert summary.startswith("4 rows were processed in ")
        assert f"report   reports/{result.report_path.name}" in summary
        assert f"archived archive/{result.archive_path.name}" in summary
        written = screen.query_one(ReportLines).written
        assert "line 6: failed (not found) Course with shortname 'NOPE999' not found" in written
        await pilot.press("escape")  # back, and the dashboard sees the file is gone
        assert isinstance(app.screen, DashboardScreen)
        assert [str(c) for c in app.screen.query_one(DataTable).get_row("check")][1] == "courses.csv (missing)"


async def test_rows_applied_with_failed_parts_are_not_called_a_success(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*["down"] * list(OPERATIONS).index("users"))
        screen = await start_run(app, pilot, "r")
        result = screen.result
        assert result is not None
        # The sample users are created, but their courses are not on the sandbox until the courses file has run.
        assert result.counts == {"created": 3}
        assert result.failed_details == 3
        assert (
            text_of(screen, "#state") == "Finished: every row was applied, but 3 parts of rows failed, see the report."
        )
        assert screen.query_one("#state").has_class("-error")
        assert result.tryback_path is not None  # the rows go to the tryback, to redo what failed
        # Their messages are longer than the screen is wide: wrapped, every word of each is on the screen.
        log = screen.query_one(ReportLines)
        long = [line for line in log.written if len(line) > SIZE[0]]
        assert long
        shown = " ".join(strip.text.strip() for strip in log.lines)
        assert all(" ".join(line.split()) in " ".join(shown.split()) for line in long)
        assert max(strip.cell_length for strip in log.lines) <= log.scrollable_content_region.width


async def test_pictures_run_each_archive_in_turn_with_its_own_files(sandbox: Config) -> None:
    inbox = sandbox.data_dir / "inbox"
    (inbox / "userpictures_b.zip").write_bytes((inbox / "userpictures_sample.zip").read_bytes())
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*["down"] * (len(OPERATIONS) - 1))
        screen = await start_run(app, pilot, "r")
        assert screen.error is None
        # The sandbox has the admin account only: jdoe, asmith and bprof come with the users sample.
        assert [result.source.name for result in screen.results] == ["userpictures_b.zip", "userpictures_sample.zip"]
        assert [result.counts for result in screen.results] == [
            {"created": 1, "failed": 3},
            {"unchanged": 1, "failed": 3},
        ]
        assert all(result.archive_path is not None and result.archive_path.is_file() for result in screen.results)
        assert text_of(screen, "#counters") == "created 1   unchanged 1   failed 6"  # zeros left out: fits 80 columns
        summary = text_of(screen, "#summary").splitlines()
        assert summary[0] == "userpictures_b.zip: 4 rows were processed in " + summary[0].split(" in ")[1]
        assert any(line.startswith("userpictures_sample.zip: 4 rows were processed") for line in summary)
        log = screen.query_one(ReportLines).written
        assert "-- userpictures_sample.zip (2 of 2)" in log
        assert "line 1: created (picture) admin.jpg: user admin (id 2)" in log
        assert "line 2: failed (picture) students/jdoe.png: no user has username 'jdoe'" in log
        assert list(inbox.glob("userpictures_*")) == []


async def test_enter_opens_the_chosen_operation_and_r_runs_it(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        screen = await start_run(app, pilot, "r")
        assert screen.result is not None
        assert screen.result.counts == {"failed": 4}


async def test_dry_run_writes_no_tryback_and_keeps_the_file(sandbox: Config) -> None:
    inbox_file = sandbox.data_dir / "inbox" / "courses.csv"
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(app, pilot, "d")
        result = screen.result
        assert result is not None
        assert result.dry_run
        assert result.counts == {"failed": 4}
        assert result.tryback_path is None
        assert result.archive_path is None
        assert result.report_path is not None
        assert result.report_path.name.endswith("_dryrun.txt")
        assert inbox_file.is_file()
        assert not any((sandbox.data_dir / "tryback").iterdir())
        assert not any((sandbox.data_dir / "archive").iterdir())
        assert "DRY RUN" in text_of(screen, "#run-title")
        assert text_of(screen, "#state").startswith("Dry run finished, nothing was written")


async def test_cancel_right_after_start_skips_the_remaining_rows(sandbox: Config) -> None:
    lines = 300_000
    inbox_file = sandbox.data_dir / "inbox" / "courses.csv"
    inbox_file.write_text("".join(f"C{i:06d};course {i}\n" for i in range(lines)))
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        # simulate_key does not wait for the CPU to go idle (pilot.press would, for seconds, while
        # the engine works), so "c" reaches the screen right after the run has started.
        app.simulate_key("r")
        await wait_until(lambda: isinstance(app.screen, RunScreen) and app.screen.running)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert screen.worker is not None
        app.simulate_key("c")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        app.simulate_key("y")  # the question first (issue 21)
        await screen.worker.wait()
        await pilot.pause()
        result = screen.result
        assert result is not None
        assert result.cancelled
        assert result.rows == lines  # every row accounted for: the rest are skipped, not dropped
        assert result.counts.get("skipped", 0) > 0
        assert sum(result.counts.values()) == lines
        assert result.archive_path is None
        assert inbox_file.is_file()
        assert text_of(screen, "#state").startswith("Cancelled: ")
        assert not screen.running
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_quit_while_running_cancels_first(sandbox: Config) -> None:
    (sandbox.data_dir / "inbox" / "courses.csv").write_text("".join(f"C{i:06d}\n" for i in range(300_000)))
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE):
        app.simulate_key("r")
        await wait_until(lambda: isinstance(app.screen, RunScreen) and app.screen.running)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert screen.worker is not None
        app.simulate_key("q")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        app.simulate_key("y")  # the question first (issue 21)
        await screen.worker.wait()  # the run ends by itself, cancelled, with its report written
        assert screen.result is not None
        assert screen.result.cancelled
        assert screen.result.report_path is not None
        assert screen.result.report_path.is_file()
        await wait_until(lambda: not app.is_running)


async def test_run_with_missing_file_only_notifies(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    (sandbox.data_dir / "inbox" / "courses.csv").unlink()
    app = ToolsyncApp(sandbox)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert len(notes) == 1
        assert "courses.csv is missing" in notes[0][0]


async def test_unreadable_file_is_a_message_not_a_crash(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.set("files.encoding", "utf-8")
    (sandbox.data_dir / "inbox" / "courses.csv").write_bytes(b"BIO101;caf\xe9\n")  # latin-1, not UTF-8
    app = ToolsyncApp(sandbox)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(app, pilot, "r")
        assert screen.result is None
        assert screen.error is not None
        assert screen.error.startswith("Could not run: courses.csv line 1, byte 11: 0xE9 is not valid UTF-8")
        assert text_of(screen, "#state") == screen.error
        assert notes[-1][1]["severity"] == "error"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_run_while_another_holds_the_lock_is_a_message(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        with RunLock(sandbox.data_dir, "users"):  # e.g. the nightly cron run
            screen = await start_run(app, pilot, "r")
        assert screen.result is None
        assert text_of(screen, "#state").startswith("Could not run: another run is in progress")


def fake_threshold(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The check never deletes, so it never trips the threshold: make the first attempt do so."""
    attempts: list[bool] = []
    real = pipeline.run_operation

    async def guarded(*args: Any, force: bool = False, **options: Any) -> pipeline.RunResult:
        attempts.append(force)
        if not force:
            raise SafetyStop("check", 40, 100, 0.1)
        return await real(*args, force=force, **options)

    monkeypatch.setattr(run_thread, "run_operation", guarded)
    return attempts


@pytest.mark.parametrize(("answer", "confirmed"), [("y", True), ("n", False)])
async def test_safety_stop_asks_and_reruns_with_force_on_yes(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch, answer: str, confirmed: bool
) -> None:
    attempts = fake_threshold(monkeypatch)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        screen = app.screen_stack[-2]
        assert isinstance(screen, RunScreen)
        assert screen.worker is not None
        assert "40 of 100" in str(app.screen.query_one("#message", Static).content)
        await pilot.press(answer)
        await screen.worker.wait()
        await pilot.pause()
        assert attempts == ([False, True] if confirmed else [False])
        if confirmed:
            assert screen.result is not None
            assert screen.result.counts == {"failed": 4}
        else:
            assert screen.result is None
            assert text_of(screen, "#state").startswith("Stopped by the safety threshold")


@pytest.mark.parametrize(
    ("key", "screen"),
    [("f", "FilesScreen"), ("h", "HistoryScreen"), ("s", "SchedulesScreen"), ("c", "SettingsScreen")],
)
async def test_dashboard_keys_open_each_screen_and_esc_comes_back(sandbox: Config, key: str, screen: str) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        await wait_until(lambda: type(app.screen).__name__ == screen)
        await pilot.press("escape")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))


async def test_the_palette_opens_the_history_of_every_operation(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"History")
        await pilot.press("enter")
        await wait_until(lambda: type(app.screen).__name__ == "HistoryScreen")
        assert getattr(app.screen, "operation", "missing") is None
