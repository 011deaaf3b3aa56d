"""The files screen at 80x24 (issue 21, item 11; issue 20, item 14): the highlighted file stays in view, ages move on,
Home/End and go-to-line in the paged preview, PgDn held down skips pages as fast as keys come, a dry run's progress;
and a value's control characters shown escaped."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from tests.support.files_ui import cursor_line, highlight, open_files, preview_rows, settled, users_file
from tests.support.snapshots import FILE_TIME
from tests.support.ui import FrozenClock, text_of, touch_all, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.run import pipeline
from toolsync_tui.engine.run import thread as run_thread
from toolsync_tui.engine.run.pipeline import Progress, RunResult
from toolsync_tui.engine.run.preview import CommandFilePreview, Page
from toolsync_tui.screens import files
from toolsync_tui.screens.files import FilesScreen

SIZE = (80, 24)


def in_view(table: DataTable[Any]) -> bool:
    top = int(table.scroll_y)
    return top <= table.cursor_row < top + table.scrollable_content_region.height - 1  # less the header


# -- the list --------------------------------------------------------------------------------------


async def test_a_rescan_keeps_the_highlighted_file_in_view(sandbox: Config) -> None:
    for index in range(40):
        users_file(sandbox, f"z{index:02}.csv", 1)
    sandbox.set("operations.users.file", "z39.csv")  # the last of the list
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        table = screen.query_one("#files", DataTable)
        assert screen.highlighted is not None
        assert screen.highlighted.shown == "z39.csv"
        await wait_until(lambda: in_view(table))
        await highlight(screen, pilot, "z20.csv")
        await pilot.pause()
        screen.rescan()  # as its timer does: the rows are filled again
        await pilot.pause()
        await wait_until(lambda: in_view(table))
        assert screen.highlighted is not None
        assert screen.highlighted.shown == "z20.csv"


async def test_ages_move_on_without_a_key(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "RESCAN_SECONDS", 0.05)
    touch_all(sandbox.data_dir / "inbox", FILE_TIME)
    clock = FrozenClock(FILE_TIME + timedelta(minutes=5))
    app = ToolsyncApp(sandbox, clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        table = screen.query_one("#files", DataTable)

        def age() -> str:
            return str(table.get_row(str(screen.store.inbox / "userimport.csv"))[3])

        assert age() == "5 minutes ago"
        clock.wall = FILE_TIME + timedelta(hours=2)
        await wait_until(lambda: age() == "2 hours ago")
        assert screen.highlighted is not None
        assert screen.highlighted.shown == "userimport.csv"  # the cursor stays where it was


# -- the preview -----------------------------------------------------------------------------------


async def test_held_pagedown_skips_to_where_the_keys_reached(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key never waits for a page: pages are read one at a time, and only the one asked for last."""
    users_file(sandbox, "large.csv", 2_000)
    gate = threading.Event()
    gate.set()
    read: list[int] = []
    real = CommandFilePreview.page

    def slow(preview: CommandFilePreview, number: int) -> Page:
        gate.wait(30)
        read.append(number)
        return real(preview, number)

    monkeypatch.setattr(CommandFilePreview, "page", slow)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "large.csv")
        gate.clear()  # a slow disk: no page comes until the keys are all in
        read.clear()
        await pilot.press(*["pagedown"] * 6)
        assert "page 7 of 40…" in text_of(screen, "#preview-title")  # where the keys lead, at once
        gate.set()
        await wait_until(lambda: screen.page is not None and screen.page.number == 6)
        await pilot.pause()
        assert preview_rows(screen)[0][0].plain == str(2 + 6 * 50)
        assert read == [1, 6]  # the page asked first (being read when the others came), then the last one
        assert text_of(screen, "#preview-title").endswith("page 7 of 40")


async def test_home_and_end_go_to_the_first_and_last_row_of_the_file(sandbox: Config) -> None:
    users_file(sandbox, "large.csv", 2_021)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "large.csv")
        await pilot.press("end")  # from the file list
        await wait_until(lambda: screen.page is not None and screen.page.number == 40)
        await pilot.pause()
        assert cursor_line(screen) == "2022"
        assert text_of(screen, "#preview-title").endswith("page 41 of 41")
        await pilot.press("tab", "home")  # from the preview
        assert screen.query_one("#preview", DataTable).has_focus
        await wait_until(lambda: screen.page is not None and screen.page.number == 0)
        await pilot.pause()
        assert cursor_line(screen) == "2"
        await pilot.press("end")
        await wait_until(lambda: screen.page is not None and screen.page.number == 40)
        await pilot.pause()
        assert cursor_line(screen) == "2022"


async def test_home_and_end_in_the_filter_move_in_the_text(sandbox: Config) -> None:
    users_file(sandbox, "large.csv", 200)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "large.csv")
        await pilot.press("slash", *"large", "home")
        field = screen.query_one("#filter", Input)
        assert field.cursor_position == 0
        await pilot.press("end")
        assert field.cursor_position == 5
        await pilot.pause()
        assert screen.page is not None
        assert screen.page.number == 0


@pytest.mark.parametrize("comment_every", [0, 7], ids=["plain", "with-comments"])
async def test_go_to_line(sandbox: Config, comment_every: int) -> None:
    path = users_file(sandbox, "large.csv", 2_000, comment_every=comment_every)
    lines = path.read_text().splitlines()
    target = next(number for number in range(1234, 2000) if not lines[number - 1].startswith("#"))
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "large.csv")
        await pilot.press("g")
        field = screen.query_one("#goto", Input)
        assert field.has_focus
        await pilot.press(*str(target), "enter")
        await wait_until(lambda: cursor_line(screen) == str(target))
        assert not screen.query_one("#goto-row").display
        assert screen.query_one("#preview", DataTable).has_focus
        assert (
            preview_rows(screen)[screen.query_one("#preview", DataTable).cursor_row][1].plain
            == lines[target - 1].split(";")[0]
        )
        await pilot.press("g", *"99999", "enter")  # past the end: the last row
        await wait_until(lambda: screen.page is not None and screen.page.last)
        last = max(number for number, text in enumerate(lines, start=1) if not text.startswith("#"))
        await wait_until(lambda: cursor_line(screen) == str(last))
        await pilot.press("g", "1", "escape")  # esc leaves the field, not the screen
        assert isinstance(app.screen, FilesScreen)
        assert not screen.query_one("#goto-row").display


async def test_a_value_with_control_characters_is_shown_escaped(sandbox: Config) -> None:
    (sandbox.data_dir / "inbox" / "hostile.csv").write_text(
        "username;firstname;lastname;email\njdoe;\x1b[31mRed\x1b[0m;Do\x07e;j\tdoe@example.edu\n"
    )
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "hostile.csv")
        [row] = preview_rows(screen)
        assert [cell.plain for cell in row[1:]] == ["jdoe", "\\x1b[31mRed\\x1b[0m", "Do\\x07e", "j\\tdoe@example.edu"]
        assert not any("\x1b" in cell.plain or "\x07" in cell.plain for cell in row)


# -- the dry run -----------------------------------------------------------------------------------


async def test_a_dry_run_shows_its_progress(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = pipeline.run_operation

    async def reporting(*args: Any, **options: Any) -> RunResult:
        progress = Progress("users", 100_001, 200_001, {"created": 100_000}, 5_000.0, 2_000, 20.0)
        options["on_progress"](progress)
        await asyncio.to_thread(release.wait, 60)
        return await real(*args, **options)

    monkeypatch.setattr(run_thread, "run_operation", reporting)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await pilot.press("v")
        await wait_until(lambda: "line 100,001 of 200,001 (50 %)" in text_of(screen, "#dry-run"))
        release.set()
        await wait_until(lambda: not screen.dry_running)
        assert "line 100,001" not in text_of(screen, "#dry-run")


async def test_the_highlighted_file_stays_in_view_when_the_list_shrinks(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run's summary takes three lines under the preview: the list gives them room, and its highlighted row
    must not go out of sight."""
    for index in range(40):
        users_file(sandbox, f"z{index:02}.csv", 1)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        table = screen.query_one("#files", DataTable)
        height = table.scrollable_content_region.height
        await pilot.press(*["down"] * 20)  # the list scrolls: the highlighted row is the last in sight
        await settled(screen, pilot)
        assert in_view(table)
        await pilot.press("v")
        await wait_until(lambda: not screen.dry_running)
        await pilot.pause()
        assert table.scrollable_content_region.height < height  # the summary took room from the list
        await pilot.pause()
        await pilot.pause()
        assert in_view(table)  # at once, not when the list is next looked at again
