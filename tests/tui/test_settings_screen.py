"""The settings screen driven with Pilot: on the sandbox, against the throwaway MariaDB, with a fake bridge."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, Switch, TabbedContent

from tests.support.bridge_fakes import fake_moodle
from tests.support.ui import Notes, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config, DatabaseSettings, load_config, section_help
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.help import HelpScreen
from toolsync_tui.screens.settings import SettingsScreen

SIZE = (80, 24)


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def field_id(key: str) -> str:
    return "#f-" + key.replace(".", "--")


@asynccontextmanager
async def settings_open(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ToolsyncApp, Pilot[None], SettingsScreen, Notes]]:
    """The app on the dashboard, its header loaded, then the settings pushed (as the dashboard's key will);
    toasts are off under run_test, so what would have been shown is recorded."""
    app = ToolsyncApp(config)
    notes: Notes = []
    original = app.notify

    def spy(message: str, **options: Any) -> None:
        notes.append((message, options))
        original(message, **options)

    monkeypatch.setattr(app, "notify", spy)
    async with app.run_test(size=SIZE) as pilot:
        assert app.site_loader is not None
        await app.site_loader.wait()
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        screen = SettingsScreen(config)
        await app.push_screen(screen)
        await pilot.pause()
        notes.clear()  # what the dashboard said is not this screen's
        yield app, pilot, screen, notes


async def show_section(pilot: Pilot[None], screen: SettingsScreen, section: str) -> None:
    """Bring a section up; its settings are made the first time it is shown."""
    screen.query_one(TabbedContent).active = section
    await section_ready(pilot, screen, section)


async def section_ready(pilot: Pilot[None], screen: SettingsScreen, section: str) -> None:
    await wait_until(lambda: bool(screen.query(f"#form-{section} .field Input, #form-{section} .field Select")))
    await pilot.pause()


def errors(notes: Notes) -> list[str]:
    return [message for message, options in notes if options.get("severity") == "error"]


# -- the form ----------------------------------------------------------------------------------


async def test_the_form_shows_the_current_values(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (app, pilot, screen, _notes):
        assert app.screen is screen
        assert screen.query_one(field_id("database.driver"), Select).value == "sqlite"
        assert screen.query_one(field_id("database.sqlite_path"), Input).value == "sandbox.sqlite"
        password = screen.query_one(field_id("database.password"), Input)
        assert password.password  # masked
        assert password.value == ""
        # What a setting and a section mean is written once, on the model.
        socket = DatabaseSettings.model_fields["socket"]
        assert text_of(screen.row("database.socket"), ".field-help") == socket.description
        assert text_of(screen, "#form-database .section-help").startswith(section_help(DatabaseSettings))
        await show_section(pilot, screen, "files")
        assert screen.query_one(field_id("files.separator"), Select).value == ";"
        assert screen.query_one(field_id("files.report"), Switch).value is True
        await show_section(pilot, screen, "run")
        assert screen.query_one(field_id("run.batch_size"), Input).value == "5000"
        assert screen.query_one(field_id("run.safety_threshold"), Input).value == "0.1"
        await show_section(pilot, screen, "operations")
        assert screen.query_one(field_id("operations.enrols.user_identifier"), Select).value == "username"
        assert screen.query_one(field_id("operations.users.password_rounds"), Select).value == 5000
        # The command file and the schedule belong to other screens; lists are not single values.
        assert not screen.query(field_id("operations.enrols.file"))
        assert not screen.query(field_id("operations.enrols.schedule"))
        assert not screen.query(field_id("operations.enrols.schedule_enabled"))
        assert not screen.query(field_id("files.comment_prefixes"))
        assert text_of(screen, "#status") == "No unsaved changes."
        assert "SANDBOX" in text_of(screen, "#site-badge")


async def test_saving_writes_the_changes_and_keeps_unknown_keys(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.raw["database"]["comment"] = "kept"  # unknown keys, as an administrator may have added them
    sandbox.raw["local"] = {"owner": "it-team"}
    sandbox.save()
    config = load_config(sandbox.path)
    reloads: list[bool] = []
    async with settings_open(config, monkeypatch) as (app, pilot, screen, notes):
        monkeypatch.setattr(app, "load_site", lambda: reloads.append(True))
        # Run section by keyboard: the tabs have the focus, → three times, then tab into the first field.
        await pilot.press("right", "right")
        await section_ready(pilot, screen, "run")
        await pilot.press("tab")
        assert app.focused is screen.query_one(field_id("run.batch_size"), Input)
        await pilot.press(*"2000")  # the whole value is selected on focus: typing replaces it
        # An operation's identifier (a Select): open, one down, choose.
        await show_section(pilot, screen, "operations")
        screen.query_one(field_id("operations.groups.grouping_identifier"), Select).focus()
        await pilot.press("enter", "down", "enter")
        # And a switch.
        screen.query_one(field_id("operations.courses.forceupdate"), Switch).focus()
        await pilot.press("space")
        await pilot.pause()
        assert text_of(screen, "#status").startswith("3 unsaved changes")
        assert str(screen.row("run.batch_size").query_one(".field-label", Static).content) == "batch_size *"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(notes) == []
        assert text_of(screen, "#status") == "No unsaved changes."
        assert reloads == []  # the database did not change: no need to reconnect
        assert app.config.settings.run.batch_size == 2000  # the app sees the saved settings at once

    saved = load_config(config.path)
    assert saved.settings.run.batch_size == 2000
    assert saved.settings.operations.groups.grouping_identifier == "idnumber"
    assert saved.settings.operations.courses.forceupdate is True
    assert saved.raw["database"]["comment"] == "kept"
    assert saved.raw["local"] == {"owner": "it-team"}
    assert saved.settings.operations.enrols.user_identifier == "username"  # untouched values stay as they were
    assert "forceupdate" not in saved.raw["operations"].get("groups", {})


async def test_a_database_change_reconnects_the_header(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    (sandbox.base_dir / "sandbox.sqlite").rename(sandbox.base_dir / "copy.sqlite")
    async with settings_open(sandbox, monkeypatch) as (app, pilot, screen, _notes):
        assert "NO DATABASE" in text_of(screen, "#site-badge")
        screen.query_one(field_id("database.sqlite_path"), Input).value = "copy.sqlite"
        await pilot.press("ctrl+s")
        assert app.site_loader is not None
        await wait_until(lambda: "SANDBOX" in text_of(app.screen, "#site-badge"))
        assert text_of(screen, "#site-detail").startswith("copy.sqlite · prefix mdl_")
    assert load_config(sandbox.path).settings.database.sqlite_path == "copy.sqlite"


@pytest.mark.parametrize(("typed", "why"), [("0", "must be greater than or equal to 1"), ("abc", "whole number")])
async def test_an_invalid_value_is_refused_and_nothing_is_saved(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch, typed: str, why: str
) -> None:
    before = sandbox.path.read_bytes()
    async with settings_open(sandbox, monkeypatch) as (app, pilot, screen, notes):
        await show_section(pilot, screen, "operations")
        screen.query_one(field_id("operations.courses.forceupdate"), Switch).value = True  # a valid change too
        await show_section(pilot, screen, "run")
        # Set directly: typing letters into a number field is not even possible (see below).
        screen.query_one(field_id("run.batch_size"), Input).value = typed
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert sandbox.path.read_bytes() == before
        assert sandbox.settings.run.batch_size == 5000
        assert sandbox.settings.operations.courses.forceupdate is False
        row = screen.row("run.batch_size")
        assert row.problem is not None
        assert why in row.problem
        assert text_of(row, ".field-error") == f"Refused: {row.problem}"
        assert len(errors(notes)) == 1
        assert errors(notes)[0].startswith("Nothing saved: 1 value was refused. run.batch_size: ")
        # The refused field is shown and focused, to be fixed at once.
        assert screen.query_one(TabbedContent).active == "run"
        assert app.focused is screen.query_one(field_id("run.batch_size"), Input)
        await pilot.press("ctrl+u")  # a new value clears the refusal
        await pilot.pause()
        assert row.problem is None
        assert not row.query(".field-error")


async def test_letters_cannot_be_typed_into_a_number_field(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21 item 12: a refused key is said under the field (it was dropped with a bell only), until the next
    key the field takes."""
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, _notes):
        await show_section(pilot, screen, "run")
        field = screen.query_one(field_id("run.batch_size"), Input)
        field.focus()
        await pilot.press("end", *"abc")
        assert field.value == "5000"
        row = screen.row("run.batch_size")
        await pilot.pause()
        said = "Refused: 'c' cannot go in a whole number: digits only, e.g. 5000"
        assert text_of(row, ".field-error") == said
        await pilot.press("backspace")  # a key the field takes: the words go
        await pilot.pause()
        assert field.value == "500"
        assert not row.query(".field-error")
        threshold = screen.query_one(field_id("run.safety_threshold"), Input)
        threshold.focus()
        await pilot.press("end", ",")
        await pilot.pause()
        assert threshold.value == "0.1"
        assert text_of(screen.row("run.safety_threshold"), ".field-error") == (
            "Refused: ',' cannot go in a number: digits and one decimal point, e.g. 0.1"
        )
        threshold.insert_text_at_cursor("\x1b[2J and more text than fits")  # a paste: cut, ESC escaped
        await pilot.pause()
        assert text_of(screen.row("run.safety_threshold"), ".field-error") == (
            "Refused: '\\x1b[2J and more text …' cannot go in a number: digits and one decimal point, e.g. 0.1"
        )


async def test_the_focused_setting_is_marked(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21 item 12: the focused row's name in reverse video (its rule never applied: Textual restyles on focus
    only the focused widget's ancestors that have a :focus-within rule of their own)."""
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, _notes):
        await show_section(pilot, screen, "run")
        screen.query_one(field_id("run.safety_threshold"), Input).focus()
        await pilot.pause()
        label = screen.row("run.safety_threshold").query_one(".field-label")
        other = screen.row("run.batch_size").query_one(".field-label")
        assert label.styles.text_style.reverse
        assert not other.styles.text_style.reverse
        screen.query_one(field_id("run.batch_size"), Input).focus()
        await pilot.pause()
        assert other.styles.text_style.reverse
        assert not label.styles.text_style.reverse


# -- testing the connection ---------------------------------------------------------------------


async def finished(pilot: Pilot[None], screen: SettingsScreen, which: str) -> str:
    worker = screen.database_test if which == "database" else screen.bridge_test
    assert worker is not None
    await worker.wait()
    await pilot.pause()
    return text_of(screen, f"#{which}-result")


async def test_test_connection_on_the_sandbox_shows_the_site(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, notes):
        await pilot.press("t")  # the section tabs have the focus: t is not typed anywhere
        result = await finished(pilot, screen, "database")
        assert result.startswith("Connected: sandbox.sqlite · prefix mdl_ · Moodle 4.5")
        assert errors(notes) == []


async def test_test_connection_uses_the_unsaved_values_against_the_server(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch, project_db_url: str, server_kind: str
) -> None:
    """On MariaDB and on PostgreSQL: the driver chosen on the screen, its connection tested before any save."""
    monkeypatch.delenv("TOOLSYNC_DB_PASSWORD", raising=False)
    url = make_url(project_db_url)
    before = sandbox.path.read_bytes()
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, notes):
        screen.query_one(field_id("database.driver"), Select).value = server_kind
        edits = {"host": url.host, "port": url.port, "user": url.username, "name": url.database}
        for key, value in edits.items():
            screen.query_one(field_id(f"database.{key}"), Input).value = str(value)
        password = screen.query_one(field_id("database.password"), Input)
        password.focus()
        await pilot.press(*str(url.password))
        await pilot.press("ctrl+t")  # from inside a text field
        assert password.value == url.password  # ctrl+t was not typed
        result = await finished(pilot, screen, "database")
        assert result.startswith(f"Connected: {url.host}:{url.port}/{url.database} · prefix mdl_ · Moodle ")
        assert errors(notes) == []

        wrong = free_loopback_port()
        screen.query_one(field_id("database.port"), Input).value = str(wrong)
        await pilot.press("ctrl+t")
        result = await finished(pilot, screen, "database")
        assert result.startswith(f"Failed: cannot use the database at {url.host}:{wrong}/{url.database}")
        assert "check host and port" in result
        assert "Traceback" not in result
        assert len(errors(notes)) == 1
    assert sandbox.path.read_bytes() == before  # a test saves nothing


async def test_test_connection_refuses_an_invalid_value_first(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, notes):
        screen.query_one(field_id("database.prefix"), Input).value = "mdl-"
        await pilot.press("t")
        await pilot.pause()
        assert screen.database_test is None
        assert screen.row("database.prefix").problem == "only letters, digits and _ are allowed (got 'mdl-')"
        assert errors(notes)[0].startswith("Not tested: 1 value was refused. database.prefix: ")


# -- testing the bridge -------------------------------------------------------------------------


async def test_test_bridge_without_moodle_dir_says_what_to_set(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, notes):
        await show_section(pilot, screen, "bridge")
        await pilot.press("t")
        await pilot.pause()
        assert screen.bridge_test is None  # nothing to run
        result = text_of(screen, "#bridge-result")
        assert result.startswith("Failed: no bridge: set moodle_dir to the Moodle site's directory")
        assert len(errors(notes)) == 1


async def test_test_bridge_asks_the_site(sandbox: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_moodle(sandbox, tmp_path)  # a site directory and a `php` answering `info` as the bridge script does
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, notes):
        await show_section(pilot, screen, "bridge")
        screen.query_one("#test-bridge").focus()
        await pilot.press("enter")  # the button
        result = await finished(pilot, screen, "bridge")
        assert result.startswith("The bridge works")
        assert errors(notes) == []

        screen.query_one(field_id("bridge.moodle_dir"), Input).value = str(tmp_path / "nowhere")
        await pilot.press("ctrl+t")
        result = await finished(pilot, screen, "bridge")
        assert result == f"Failed: bridge info: [bridge] moodle_dir {tmp_path / 'nowhere'} is not a directory"


async def test_the_test_key_follows_the_section(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (_app, pilot, screen, _notes):
        await show_section(pilot, screen, "files")
        await pilot.press("t")
        await pilot.pause()
        assert screen.database_test is None
        assert screen.bridge_test is None


# -- leaving ------------------------------------------------------------------------------------


async def test_esc_with_unsaved_changes_asks_first(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (app, pilot, screen, _notes):
        await show_section(pilot, screen, "run")
        screen.query_one(field_id("run.safety_min_rows"), Input).value = "20"
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmScreen)
        assert "run.safety_min_rows" in app.screen.message
        await pilot.press("n")
        assert app.screen_stack[-1] is screen  # (app.screen is still narrowed to the question for mypy)
        assert screen.query_one(field_id("run.safety_min_rows"), Input).value == "20"
        await pilot.press("escape", "y")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))
    assert load_config(sandbox.path).settings.run.safety_min_rows == 10


async def test_esc_without_changes_leaves_at_once(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (app, pilot, _screen, _notes):
        await pilot.press("escape")
        await wait_until(lambda: isinstance(app.screen, DashboardScreen))


async def test_help_lists_the_keys(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with settings_open(sandbox, monkeypatch) as (app, pilot, screen, _notes):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert keys["^s"] == "Save"
        assert keys["^t"] == "Test connection"
        assert keys["esc"] == "Back"
        await pilot.press("escape")
        assert app.screen_stack[-1] is screen
