"""The schedules screen driven with Pilot on a fresh sandbox, at 80x24, against a stand-in crontab program.

The clock is pinned (naive local time, as the system clock gives it) and so is the local zone (TZ=UTC), while the
schedules are read in Europe/Paris: next runs show the conversion. The real crontab is never touched.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Select, Static

from tests.support.schedules import NOW, executable, fake_crontab, local_zone, scheduled
from tests.support.ui import FrozenClock, Notes, record_notifications, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config, load_config
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.unattended import crontab
from toolsync_tui.engine.unattended.crontab import MARKER
from toolsync_tui.screens import schedules
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.help import HelpScreen
from toolsync_tui.screens.schedules import SchedulesScreen
from toolsync_tui.views.cron_words import reading
from toolsync_tui.widgets.schedule_editor import ScheduleEditor

SIZE = (80, 24)


@pytest.fixture
def local_utc() -> Iterator[None]:
    with local_zone("UTC"):
        yield


@pytest.fixture
def site(sandbox: Config, tmp_path: Path, local_utc: None) -> Config:
    fake_crontab(sandbox, tmp_path / "fake bin")
    scheduled(sandbox)
    return sandbox


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return tmp_path / "fake bin" / "crontab.txt"


async def open_schedules(pilot: Pilot[Any]) -> SchedulesScreen:
    """The screen pushed over the dashboard, as the dashboard's key does, with the crontab read."""
    app = pilot.app
    assert isinstance(app, ToolsyncApp)
    assert app.site_loader is not None
    await app.site_loader.wait()
    await app.push_screen(SchedulesScreen(app.config, app.clock))
    return await crontab_settled(pilot)


async def crontab_settled(pilot: Pilot[Any]) -> SchedulesScreen:
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, SchedulesScreen)
    assert screen.crontab_worker is not None
    await screen.crontab_worker.wait()
    await pilot.pause()
    return screen


def on_top(app: ToolsyncApp) -> object:
    """The current screen, read afresh (mypy keeps an earlier isinstance narrowing of app.screen)."""
    return app.screen


def read(path: Path) -> str:
    return path.read_text()


def write(path: Path, text: str) -> None:
    path.write_text(text)


def row(screen: SchedulesScreen, name: str) -> list[str]:
    return [str(cell) for cell in screen.query_one(DataTable).get_row(name)]


async def edit(pilot: Pilot[Any], name: str) -> ScheduleEditor:
    """Highlight the operation with the arrows, then `e`."""
    await pilot.press(*["down"] * list(OPERATIONS).index(name), "e")
    await pilot.pause()
    editor = pilot.app.screen
    assert isinstance(editor, ScheduleEditor)
    return editor


def saved(config: Config, name: str) -> tuple[str, bool]:
    operation = load_config(config.path).operation(name)
    return operation.schedule, operation.schedule_enabled


def app_for(config: Config) -> ToolsyncApp:
    return ToolsyncApp(config, clock=FrozenClock(NOW))


# -- the table -----------------------------------------------------------------------------------------------------


async def test_the_table_shows_schedules_states_and_next_runs(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        table = screen.query_one(DataTable)
        assert [str(key.value) for key in table.rows] == list(OPERATIONS)
        assert row(screen, "check") == ["check", "0 2 * * *  nightly 02:00", "enabled", "Tue 06 Jan 02:00"]
        assert row(screen, "users") == ["users", "*/15 * * * *  every 15 minutes", "enabled", "Mon 05 Jan 10:15"]
        assert row(screen, "enrols") == ["enrols", "0 */6 * * *  every 6 hours", "paused", "—"]
        assert row(screen, "courses") == ["courses", "off", "—", "—"]
        assert "Europe/Paris" in text_of(screen, "#zone")
        assert "SANDBOX" in text_of(screen, "#site-badge")


async def test_slash_filters_the_operations_and_the_editor_opens_on_the_one_shown(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        table = screen.query_one(DataTable)
        await pilot.press("slash", *"group", "enter")  # names and titles: groups, groupmembers
        assert [str(key.value) for key in table.rows] == ["groups", "groupmembers"]
        assert table.has_focus
        await pilot.press("down", "e")
        editor = on_top(app)
        assert isinstance(editor, ScheduleEditor)
        assert editor.operation == "groupmembers"
        await pilot.press("escape")  # the editor closes
        await pilot.press("slash", "escape")  # the filter is cleared
        assert [str(key.value) for key in table.rows] == list(OPERATIONS)
        assert on_top(app) is screen


async def test_a_wide_terminal_adds_the_titles(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_schedules(pilot)
        assert row(screen, "check")[:2] == ["check", "Course existence check"]


async def test_a_time_zone_that_does_not_exist_is_said_and_runs_are_not_guessed(site: Config) -> None:
    site.set("cron.timezone", "Mars/Olympus")
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        assert "'Mars/Olympus' is not a time zone" in text_of(screen, "#zone")
        assert row(screen, "check")[-1] == "—"
        editor = await edit(pilot, "check")
        assert "Next runs unknown" in text_of(editor, "#verdict")


# -- editing -------------------------------------------------------------------------------------------------------


async def test_choosing_a_preset_saves_the_config(site: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_for(site)
    notes: Notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        editor = await edit(pilot, "courses")
        assert editor.query_one(Select).has_focus  # no schedule yet: "off" is a preset
        await pilot.press("enter", *["down"] * 4, "enter")  # open the list, down to "Nightly at 02:00"
        assert editor.query_one(Select).value == "nightly"
        assert editor.query_one(Input).value == "0 2 * * *"
        assert "Next runs (Europe/Paris): Tue 06 Jan 02:00, Wed 07 Jan 02:00" in text_of(editor, "#verdict")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert on_top(app) is screen
        assert saved(site, "courses") == ("0 2 * * *", True)
        assert row(screen, "courses")[1:] == ["0 2 * * *  nightly 02:00", "enabled", "Tue 06 Jan 02:00"]
        assert ("courses runs nightly 02:00", "Schedule saved") in [(m, o.get("title")) for m, o in notes]


async def test_off_saves_an_empty_schedule(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        editor = await edit(pilot, "check")
        await pilot.press("enter", "home", "enter")
        assert editor.query_one(Input).value == ""
        assert text_of(editor, "#verdict") == "Not scheduled: toolsync cron will not run it."
        await pilot.click("#save")
        await pilot.pause()
        assert saved(site, "check") == ("", True)
        assert row(screen, "check")[1:] == ["off", "—", "—"]


async def test_an_invalid_expression_shows_the_error_and_is_not_saved(site: Config) -> None:
    before = site.path.read_text()
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        editor = await edit(pilot, "check")
        await pilot.press("tab", *"61 2 * * *")  # focus selects the whole expression: typing replaces it
        assert editor.query_one(Input).value == "61 2 * * *"
        verdict = editor.query_one("#verdict", Static)
        assert str(verdict.content).startswith("'61 2 * * *' is not a cron expression: five fields")
        assert verdict.has_class("-error")
        assert editor.query_one("#save", Button).disabled
        assert editor.query_one(Select).value == "custom"
        await pilot.press("enter", "ctrl+s")  # neither saves
        assert on_top(app) is editor
        await pilot.press("escape")
        await pilot.pause()
        assert on_top(app) is screen
        assert site.path.read_text() == before
        assert site.operation("check").schedule == "0 2 * * *"


async def test_a_valid_custom_expression_shows_next_runs_and_saves(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        editor = await edit(pilot, "groups")
        await pilot.press("enter", "end", "enter")  # Custom: the expression gets the focus
        assert editor.query_one(Input).has_focus
        await pilot.press(*"30 6 * * 1-5")
        assert text_of(editor, "#verdict") == (
            "Weekdays 06:30. Next runs (Europe/Paris): Tue 06 Jan 06:30, Wed 07 Jan 06:30, Thu 08 Jan 06:30"
        )
        assert not editor.query_one("#save", Button).disabled
        await pilot.press("enter")
        await pilot.pause()
        assert on_top(app) is screen
        assert saved(site, "groups") == ("30 6 * * 1-5", True)
        assert row(screen, "groups")[1:] == ["30 6 * * 1-5  weekdays 06:30", "enabled", "Tue 06 Jan 06:30"]


def painted(table: DataTable[Any]) -> list[str]:
    """The table's lines as the screen would paint them now."""
    return [table.render_line(y).text.rstrip() for y in range(table.size.height)]


async def test_the_columns_keep_their_widths_after_an_edit(site: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21 item 8: the table is filled again as the editor closes, and the screen is painted at once, before the
    table has had an idle moment to measure its rows: the columns stayed cut to their labels (`deletecou  off`)."""
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        table = screen.query_one(DataTable)
        refill = screen.refresh_table

        def refill_and_paint() -> None:  # the paint that follows the editor's closing, made certain
            refill()
            painted(table)

        monkeypatch.setattr(screen, "refresh_table", refill_and_paint)
        editor = await edit(pilot, "users")
        editor.query_one(Input).focus()
        await pilot.press("ctrl+u", *"30 2 * * *", "enter")
        await pilot.pause()
        await wait_until(lambda: saved(site, "users") == ("30 2 * * *", True))
        lines = painted(table)
        assert lines[0].split() == ["Operation", "Schedule", "State", "Next", "run"]
        assert " deletecourses   off " in lines[2]
        assert " users           30 2 * * *  nightly 02:30   enabled  Tue 06 Jan 02:30" in lines


async def test_typing_a_preset_expression_selects_the_preset(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        await open_schedules(pilot)
        editor = await edit(pilot, "groups")
        await pilot.press("tab", *"0 */6 * * *")
        assert editor.query_one(Select).value == "six_hours"


# -- pausing -------------------------------------------------------------------------------------------------------


async def test_space_pauses_and_resumes_and_saves(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        await pilot.press("space")
        assert saved(site, "check") == ("0 2 * * *", False)
        assert row(screen, "check")[2:] == ["paused", "—"]
        await pilot.press("space")
        assert saved(site, "check") == ("0 2 * * *", True)
        assert row(screen, "check")[2:] == ["enabled", "Tue 06 Jan 02:00"]


async def test_an_operation_without_schedule_has_nothing_to_pause(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(site)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await open_schedules(pilot)
        await pilot.press(*["down"] * list(OPERATIONS).index("courses"), "space")
        assert saved(site, "courses") == ("", True)
        assert notes[-1][0] == "courses has no schedule to pause: e sets one"


# -- the crontab ---------------------------------------------------------------------------------------------------


async def test_install_then_remove_the_crontab_line(site: Config, table: Path) -> None:
    write(table, "MAILTO=admin@example.org\n")
    line = crontab.cron_line(site, 5)
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        assert text_of(screen, "#crontab-line") == line
        assert text_of(screen, "#crontab-state").startswith("Crontab: not installed")
        assert "site's file owner" in text_of(screen, "#crontab-owner")
        await pilot.press("i")
        await crontab_settled(pilot)
        assert read(table) == f"MAILTO=admin@example.org\n{MARKER}\n{line}\n"
        assert text_of(screen, "#crontab-state").startswith("Crontab: installed")
        await pilot.press("x")  # asks first; "n" keeps the line
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert on_top(app) is screen
        assert line in read(table)
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await crontab_settled(pilot)
        assert read(table) == "MAILTO=admin@example.org\n"
        assert text_of(screen, "#crontab-state").startswith("Crontab: not installed")


async def test_a_different_installed_line_is_said(site: Config, table: Path) -> None:
    write(table, f"{MARKER}\n*/10 * * * * /old/python -m toolsync_tui --config /old/toolsync.toml cron\n")
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        assert text_of(screen, "#crontab-state") == (
            "Crontab: another toolsync line is installed: i replaces it with this one"
        )


async def test_crontab_problems_are_toasts_not_tracebacks(
    site: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = executable(tmp_path / "broken" / "crontab", "#!/bin/sh\necho 'crontab: permission denied' >&2\nexit 3\n")
    site.set("cron.crontab_command", shlex.quote(str(broken)))
    app = app_for(site)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        state = text_of(screen, "#crontab-state")
        assert state.startswith("Crontab: cannot be read or changed:")
        assert "failed with exit code 3: crontab: permission denied" in state
        await pilot.press("i")
        await crontab_settled(pilot)
        errors = [message for message, options in notes if options.get("severity") == "error"]
        assert len(errors) == 2
        assert all("permission denied" in message and "Traceback" not in message for message in errors)


async def test_a_missing_crontab_program_is_said(site: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    site.set("cron.crontab_command", "/nonexistent/crontab")
    app = app_for(site)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await open_schedules(pilot)
        assert notes[-1][0] == "the crontab command /nonexistent/crontab was not found: install cron, or set " + (
            "cron.crontab_command"
        )


async def test_a_config_that_cannot_be_written_changes_nothing(site: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    site.path.with_suffix(".toml.tmp").mkdir()  # where the save writes first: fails even for root
    before = site.path.read_text()
    app = app_for(site)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        await pilot.press("space")
        message, options = notes[-1]
        assert options["severity"] == "error"
        assert message.startswith(f"Not saved: {site.path}: ")
        assert site.operation("check").schedule_enabled  # not even in memory
        assert row(screen, "check")[2] == "enabled"
        assert site.path.read_text() == before


# -- keys, going back -------------------------------------------------------------------------------------------------


async def test_help_and_escape(site: Config) -> None:
    app = app_for(site)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_schedules(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert keys["e"] == "Edit"
        assert keys["enter"] == "Edit the chosen operation's schedule"
        await pilot.press("escape")
        assert on_top(app) is screen
        await pilot.press("enter")  # enter edits too
        assert isinstance(app.screen, ScheduleEditor)
        await pilot.press("escape", "escape")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))


# -- plain readings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("*/15 * * * *", "every 15 minutes"),
        ("* * * * *", "every minute"),
        ("0 * * * *", "hourly"),
        ("@hourly", "hourly"),
        ("20 * * * *", "hourly at :20"),
        ("0 */6 * * *", "every 6 hours"),
        ("0 2 * * *", "nightly 02:00"),
        ("30 13 * * *", "daily 13:30"),
        ("@daily", "nightly 00:00"),
        ("0 3 * * 0", "weekly, Sunday 03:00"),
        ("0 3 * * 7", "weekly, Sunday 03:00"),
        ("0 3 * * mon", "weekly, Monday 03:00"),
        ("30 6 * * 1-5", "weekdays 06:30"),
        ("0 4 1 * *", "monthly, day 1 at 04:00"),
        ("0 4 1 6 *", ""),
        ("5,35 * * * *", ""),
    ],
)
def test_plain_readings(expression: str, said: str) -> None:
    assert reading(expression) == said


def test_the_owner_note_warns_when_the_crontab_is_not_the_owners(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedules, "owner_of", lambda path: "www-data")
    monkeypatch.setattr(schedules, "current_user", lambda: "root")
    note, warning = schedules.owner_note(sandbox)
    assert warning
    assert note == (
        "cron must run toolsync as the site's file owner: www-data owns moodledata; you are root: install it from "
        "www-data's session, or use crontab -u www-data"
    )
    sandbox.set("cron.crontab_command", "crontab -u www-data")  # names the owner's crontab already
    assert schedules.owner_note(sandbox) == (
        "cron must run toolsync as the site's file owner: www-data owns moodledata",
        False,
    )
