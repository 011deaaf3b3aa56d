"""Driving the files screen with Pilot: command files written to the inbox, the screen opened, a file highlighted,
the preview's rows read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tests.support.ui import wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.screens.files import FilesScreen

USERS_HEADER = "username;firstname;lastname;email\n"


def users_file(config: Config, name: str, rows: int, *, comment_every: int = 0) -> Path:
    """A users file of `rows` rows in the inbox; with `comment_every`, a comment line after every so many rows."""
    path = config.data_dir / "inbox" / name
    lines = [USERS_HEADER]
    for index in range(rows):
        lines.append(f"u{index};First{index};Last{index};u{index}@example.edu\n")
        if comment_every and index % comment_every == comment_every - 1:
            lines.append(f"# after u{index}\n")
    path.write_text("".join(lines))
    return path


def preview_rows(screen: FilesScreen) -> list[list[Text]]:
    table = screen.query_one("#preview", DataTable)
    return [table.get_row_at(index) for index in range(table.row_count)]


def cursor_line(screen: FilesScreen) -> str:
    """The line number shown in the preview's row under the cursor."""
    table = screen.query_one("#preview", DataTable)
    return str(table.get_row_at(table.cursor_row)[0].plain) if table.row_count else ""  # "": being read


async def settled(screen: FilesScreen, pilot: Any) -> None:
    """The highlighted file is shown: its first page (or why it cannot be read) and its row count."""
    await wait_until(lambda: (screen.page is not None or screen.file_problem is not None) and not screen.counting)
    await pilot.pause()


async def open_files(app: ToolsyncApp, pilot: Any, operation: str = "users") -> FilesScreen:
    await pilot.pause()  # the dashboard is up
    app.push_screen(FilesScreen(app.config, operation, app.clock))
    await wait_until(lambda: isinstance(app.screen, FilesScreen))
    screen = app.screen
    assert isinstance(screen, FilesScreen)
    await settled(screen, pilot)
    return screen


async def highlight(screen: FilesScreen, pilot: Any, name: str) -> None:
    table = screen.query_one("#files", DataTable)
    table.move_cursor(row=table.get_row_index(str(screen.store.inbox / name)))
    await wait_until(lambda: screen.highlighted is not None and screen.highlighted.shown == name)
    await settled(screen, pilot)
