"""The Textual interface: the dashboard of operations, with the connected site always in view."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker

from toolsync_tui.commands import OperationCommands
from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.run.pipeline import close_unfinished_runs
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.help import HelpScreen, keys_of
from toolsync_tui.screens.history import HistoryScreen
from toolsync_tui.screens.schedules import SchedulesScreen
from toolsync_tui.screens.settings import SettingsScreen
from toolsync_tui.views.clock import Clock, SystemClock
from toolsync_tui.views.site_status import SiteStatus, connecting, failed, ready

# An unreachable MariaDB host can leave a TCP connect hanging for minutes; say so much sooner.
SITE_TIMEOUT = 15.0


class ToolsyncApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "toolsync"
    COMMANDS = App.COMMANDS | {OperationCommands}  # run, dry run, files and history of each operation by its name
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    site_status: reactive[SiteStatus] = reactive(SiteStatus("connecting", "…", ""))

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        super().__init__()
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.site_loader: Worker[None] | None = None
        self.set_reactive(ToolsyncApp.site_status, connecting(config.settings.database, config.base_dir))
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"  # redraws are costly over SSH; an explicit setting still wins

    def on_mount(self) -> None:
        # Pushed rather than returned by get_default_screen(): Textual 8.2 loads a screen's CSS_PATH
        # only for pushed screens and modes.
        self.push_screen(DashboardScreen(self.config, self.clock))
        for warning in self.config.warnings:
            self.notify(warning, title="Configuration", severity="warning", markup=False)
        self.make_data_dir_private()
        for note in close_unfinished_runs(self.config.data_dir):  # a run killed since the last look
            self.notify(note, title="Interrupted run", severity="warning", markup=False)
        self.site_loader = self.load_site()

    def make_data_dir_private(self) -> None:
        """The data directory's modes given at start too, not only when a run starts: a passwords file dropped in the
        inbox is private while the interface merely shows it. Whatever fails is said, never raised: the interface
        still opens (and says where the directory is) when the directory cannot be used."""
        data_dir = self.config.data_dir
        try:
            problems = DataStore(data_dir).ensure(group_readable=self.config.settings.files.group_readable)
        except OSError as problem:
            problems = [f"{data_dir} cannot be used: {problem.strerror or problem}"]
        for text in problems:
            self.notify(text, title="Data directory", severity="warning", markup=False)

    @work(exclusive=True, group="site", exit_on_error=False)
    async def load_site(self) -> None:
        """Read which site this is; any failure becomes the header's error text, never a traceback."""
        database = self.config.settings.database
        self.site_status = connecting(database, self.config.base_dir)
        try:
            gateway = open_gateway(self.config)
            try:
                info = await asyncio.wait_for(gateway.site_info(), SITE_TIMEOUT)
            finally:
                await gateway.close()
        except DatabaseError as problem:
            status = failed(str(problem))
        except TimeoutError:
            status = failed(f"no answer from the database within {SITE_TIMEOUT:.0f} s: check host and port")
        except Exception as unexpected:  # e.g. a driver error the gateway does not translate
            status = failed(f"cannot use the database: {type(unexpected).__name__}: {unexpected}")
        else:
            status = ready(info, self.config.base_dir)
        self.site_status = status
        if status.state == "error":
            self.notify(status.detail, title="Database", severity="error", markup=False)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Reconnect", "Read the site information from the database again", self.load_site)
        yield SystemCommand("History", "Reports, trybacks and archives of every operation", self._history)
        yield SystemCommand("Schedules", "When toolsync cron runs each operation; the crontab line", self._schedules)
        yield SystemCommand("Settings", "Database, files, bridge, identifiers and switches", self._settings)

    def _history(self) -> None:
        self.push_screen(HistoryScreen(self.config, self.clock))

    def _schedules(self) -> None:
        self.push_screen(SchedulesScreen(self.config, self.clock))

    def _settings(self) -> None:
        self.push_screen(SettingsScreen(self.config))

    async def action_quit(self) -> None:
        """q, and ctrl+q: with a run going on, the dashboard asks first (No by default) and quits once it stopped."""
        dashboard = next((screen for screen in self.screen_stack if isinstance(screen, DashboardScreen)), None)
        if dashboard is None or not dashboard.quit_asking():
            self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(keys_of(self, self.screen)))
