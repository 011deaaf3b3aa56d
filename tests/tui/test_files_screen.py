"""The file preselection screen driven with Pilot on a fresh sandbox (conftest's `sandbox`), at 80x24 like over SSH;
and the engine's preview (pages, row counts) it reads files with."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static

from tests.support.files_ui import USERS_HEADER, highlight, open_files, preview_rows, users_file
from tests.support.tables import rows_of
from tests.support.ui import record_notifications, text_of, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config, load_config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.datadir.catalog import candidates
from toolsync_tui.engine.run import pipeline
from toolsync_tui.engine.run import thread as run_thread
from toolsync_tui.engine.run.lock import RunLock
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.engine.run.preview import count_rows, open_preview
from toolsync_tui.screens.dashboard import DashboardScreen
from toolsync_tui.screens.files import MARK, FilesScreen
from toolsync_tui.screens.help import HelpScreen

SIZE = (80, 24)


def inbox(config: Config) -> Path:
    return config.data_dir / "inbox"


def file_rows(screen: FilesScreen) -> dict[str, list[str]]:
    """The file list: shown name -> its cells."""
    table = screen.query_one("#files", DataTable)
    rows = [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]
    return {row[1]: row for row in rows}


async def page_starts(screen: FilesScreen, line: str) -> None:
    await wait_until(lambda: preview_rows(screen)[0][0].plain == line)


# -- the list --------------------------------------------------------------------------------------


async def test_list_shows_the_inbox_files_with_the_preselection_marked(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        rows = file_rows(screen)
        assert "userimport.csv" in rows
        assert "courses.csv" in rows
        assert "userpictures_sample.zip" not in rows  # an archive is no command file
        assert rows["userimport.csv"][0] == MARK
        assert rows["userimport.csv"][2] == "361 Bytes"
        assert [name for name, row in rows.items() if row[0] == MARK] == ["userimport.csv"]
        assert screen.highlighted is not None
        assert screen.highlighted.shown == "userimport.csv"  # the cursor starts on the preselected file
        assert text_of(screen, "#files-title") == "users · Create and update users · file: inbox/userimport.csv"


async def test_a_preselected_file_outside_the_inbox_is_listed_too(sandbox: Config, tmp_path: Path) -> None:
    elsewhere = tmp_path / "exports" / "people.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text(USERS_HEADER + "jdoe;John;Doe;john.doe@example.edu\n")
    sandbox.set("operations.users.file", str(elsewhere))
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        rows = file_rows(screen)
        assert rows[str(elsewhere)][0] == MARK
        assert rows["userimport.csv"][0] == ""
        assert screen.highlighted is not None
        assert screen.highlighted.path == elsewhere
        assert "1 data row ·" in text_of(screen, "#preview-title")


async def test_filter_narrows_the_list_and_esc_clears_it(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        everything = len(file_rows(screen))
        await pilot.press("slash")
        assert screen.query_one("#filter", Input).has_focus
        await pilot.press(*"USER")  # case does not matter
        assert list(file_rows(screen)) == ["userdelete.csv", "userimport.csv", "usersuspend.csv"]
        await pilot.press(*"im")
        assert list(file_rows(screen)) == ["userimport.csv"]
        await pilot.press(*"xyz")
        assert file_rows(screen) == {}
        assert text_of(screen, "#preview-title") == "No file matches the filter."
        await pilot.press(*["backspace"] * 3, "enter")  # back to the list, the filter kept and in view
        assert list(file_rows(screen)) == ["userimport.csv"]
        assert screen.query_one("#files", DataTable).has_focus
        assert screen.query_one("#filter", Input).display
        await pilot.press("slash", "escape")  # clears the filter and leaves it
        assert not screen.query_one("#filter", Input).display
        assert len(file_rows(screen)) == everything
        assert screen.query_one("#files", DataTable).has_focus
        assert isinstance(app.screen, FilesScreen)
        await pilot.press("escape")  # back to the operations
        assert isinstance(app.screen, DashboardScreen)


async def test_a_slash_typed_in_the_filter_is_part_of_it(sandbox: Config, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "users-2026-11-25.csv").write_text("username\njdoe\n")
    sandbox.set("files.browse_dirs", [str(exports)])
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await pilot.press("slash", *"exports", "slash")  # the second `/` is typed, not taken as the filter key
        assert screen.query_one("#filter", Input).value == "exports/"
        [shown] = file_rows(screen)
        assert shown.endswith("exports/users-2026-11-25.csv")


async def test_help_lists_the_keys_of_the_screen(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        await open_files(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert keys["c"] == "Choose"
        assert keys["v"] == "Dry run"
        assert keys["/"] == "Filter"
        assert keys["enter"] == "Choose the highlighted file (as c)"
        await pilot.press("escape")
        assert isinstance(app.screen, FilesScreen)


# -- the preview -----------------------------------------------------------------------------------


async def test_preview_shows_the_first_page_and_pages_on(sandbox: Config) -> None:
    users_file(sandbox, "paged.csv", 120)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "paged.csv")
        rows = preview_rows(screen)
        assert len(rows) == 50
        assert [cell.plain for cell in rows[0]] == ["2", "u0", "First0", "Last0", "u0@example.edu"]
        assert text_of(screen, "#preview-title") == "paged.csv · 120 data rows · utf-8, separator ';' · page 1 of 3"
        for key, first, count in [("pagedown", "52", 50), ("n", "102", 20), ("n", "102", 20), ("p", "52", 50)]:
            await pilot.press(key)
            await page_starts(screen, first)
            assert len(preview_rows(screen)) == count
        await pilot.press("pageup")
        await page_starts(screen, "2")
        assert screen.page is not None
        assert screen.page.number == 0
        assert text_of(screen, "#preview-title").endswith("page 1 of 3")


async def test_a_large_file_shows_one_page_only(sandbox: Config) -> None:
    users_file(sandbox, "large.csv", 200_000)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "large.csv")
        assert screen.query_one("#preview", DataTable).row_count == 50
        assert "200,000 data rows" in text_of(screen, "#preview-title")
        assert "page 1 of 4,000" in text_of(screen, "#preview-title")
        await pilot.press("pagedown")
        await wait_until(lambda: screen.page is not None and screen.page.number == 1)
        await pilot.pause()
        rows = preview_rows(screen)
        assert len(rows) == 50
        assert rows[0][0].plain == "52"


async def test_a_page_is_shown_with_its_columns_sized(sandbox: Config) -> None:
    """A page's columns are as wide as their widest cell the moment it is shown: DataTable measures columns only once
    its queue runs dry, and a page painted before that (a loaded machine) kept its columns cut to their headers."""
    users_file(sandbox, "paged.csv", 120)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "paged.csv")
        assert screen.page is not None
        table = screen.query_one("#preview", DataTable)
        screen._show_page(screen.page)  # shown again, no turn of the event loop after it
        widths = {
            column.label.plain: column.get_render_width(table) - 2 * table.cell_padding
            for column in table.ordered_columns
        }
        assert widths == {"line": 4, "username": 8, "firstname": 9, "lastname": 8, "email": len("u10@example.edu")}


async def test_a_bad_header_shows_the_error_text(sandbox: Config) -> None:
    (inbox(sandbox) / "colours.csv").write_text("username;firstname;colour\njdoe;John;blue\n")
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "colours.csv")
        problem = text_of(screen, "#file-problem")
        assert problem.startswith("This file cannot be run as it is:\ncolours.csv line 1, column 3: unknown column")
        assert "Traceback" not in problem
        assert screen.query_one("#file-problem", Static).display
        assert not screen.query_one("#preview", DataTable).display
        await highlight(screen, pilot, "userimport.csv")  # the next file shows its rows again
        assert not screen.query_one("#file-problem", Static).display
        assert screen.query_one("#preview", DataTable).row_count == 3


async def test_an_unreadable_encoding_is_a_message(sandbox: Config) -> None:
    sandbox.set("files.encoding", "utf-8")
    (inbox(sandbox) / "latin.csv").write_bytes(b"username;firstname;lastname;email\njdoe;Jos\xe9;Doe;j@example.edu\n")
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "latin.csv")
        assert "0xE9 is not valid UTF-8" in text_of(screen, "#file-problem")


async def test_a_row_with_a_problem_is_highlighted_with_its_message(sandbox: Config) -> None:
    # A row with more values than the header cannot be read (a shorter one can: its missing cells are read as empty).
    (inbox(sandbox) / "broken.csv").write_text(USERS_HEADER + "jdoe;John;Doe;john.doe@example.edu\nasmith;A;S;a@x;y\n")
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "broken.csv")
        good, bad = preview_rows(screen)
        assert good[0].plain == "2"
        assert "bold" not in str(good[1].style)
        assert bad[0].plain == "! 3"  # marked in words too, for a terminal without colours
        assert all("bold" in str(cell.style) for cell in bad)
        message = "line 3 cannot be read: 5 values found, 4 expected (a separator inside a value must be quoted)"
        assert text_of(screen, "#row-problem") == message
        await pilot.press("tab")  # into the preview: a row's own problem follows the cursor
        assert screen.query_one("#preview", DataTable).has_focus
        await pilot.press("down")
        assert text_of(screen, "#row-problem") == message


async def test_pictures_preview_lists_the_archive_and_choosing_is_explained(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = ToolsyncApp(sandbox)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot, "pictures")
        assert list(file_rows(screen)) == ["userpictures_sample.zip"]
        assert file_rows(screen)["userpictures_sample.zip"][0] == MARK  # a run takes it
        rows = [[cell.plain for cell in row] for row in preview_rows(screen)]
        assert rows[:2] == [["1", "admin.jpg", "3,551"], ["2", "students/jdoe.png", "1,087"]]
        assert text_of(screen, "#preview-title") == "userpictures_sample.zip · 4 files · page 1 of 1"
        for key in ("c", "enter"):
            await pilot.press(key)
            assert "every archive named inbox/userpictures_*.zip" in notes[-1][0]
        assert len(notes) == 2
        assert load_config(sandbox.path).operation("pictures").file == "userpictures_"


# -- the dry run -----------------------------------------------------------------------------------


async def test_dry_run_shows_the_counts_and_writes_nothing(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()  # set by the test's loop, waited for on the engine thread's
    real = pipeline.run_operation

    async def held(*args: Any, **options: Any) -> RunResult:
        await asyncio.to_thread(release.wait, 60)  # the screen shows its spinner meanwhile
        return await real(*args, **options)

    monkeypatch.setattr(run_thread, "run_operation", held)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await pilot.press("v")
        assert screen.dry_running
        assert "Dry run of userimport.csv: nothing is written" in text_of(screen, "#dry-run")
        assert screen.check_action("dry_run", ()) is None  # one at a time: greyed in the footer
        release.set()
        await wait_until(lambda: not screen.dry_running)
        await pilot.pause()
        result = screen.dry_run_result
        assert result is not None
        assert screen.dry_run_error is None
        assert result.dry_run
        assert result.counts == {"created": 3}
        summary = text_of(screen, "#dry-run")
        assert "Dry run of userimport.csv, 3 rows, nothing was written" in summary
        assert "created 3   updated 0   deleted 0" in summary
        assert result.report_path is not None
        assert result.report_path.is_file()
        assert f"report: reports/{result.report_path.name}" in summary
    assert (inbox(sandbox) / "userimport.csv").is_file()
    assert not any((sandbox.data_dir / "archive").iterdir())
    assert not any((sandbox.data_dir / "tryback").iterdir())
    gateway = open_gateway(sandbox)
    try:
        assert await rows_of(gateway, gateway.schema.user, username=["jdoe", "asmith", "bprof"]) == []
    finally:
        await gateway.close()


async def test_a_dry_run_that_cannot_run_is_a_message(sandbox: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    app = ToolsyncApp(sandbox)
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        with RunLock(sandbox.data_dir, "users"):  # e.g. the nightly cron run
            await pilot.press("v")
            await wait_until(lambda: not screen.dry_running)
        await pilot.pause()
        assert screen.dry_run_result is None
        assert screen.dry_run_error is not None
        assert screen.dry_run_error.startswith("userimport.csv cannot run: another run is in progress")
        assert text_of(screen, "#dry-run") == screen.dry_run_error
        assert notes[-1][1]["severity"] == "error"


# -- choosing --------------------------------------------------------------------------------------


async def test_choosing_another_file_saves_the_configuration(sandbox: Config) -> None:
    users_file(sandbox, "newcomers.csv", 2)
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        await highlight(screen, pilot, "newcomers.csv")
        await pilot.press("c")
        assert load_config(sandbox.path).operation("users").file == "newcomers.csv"  # relative to the inbox
        assert sandbox.operation("users").file == "newcomers.csv"  # the app's own configuration follows
        assert file_rows(screen)["newcomers.csv"][0] == MARK
        assert file_rows(screen)["userimport.csv"][0] == ""
        assert text_of(screen, "#files-title").endswith("file: inbox/newcomers.csv")
        await highlight(screen, pilot, "userimport.csv")
        await pilot.press("enter")  # enter chooses as well
        assert load_config(sandbox.path).operation("users").file == "userimport.csv"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        assert [str(cell) for cell in app.screen.query_one(DataTable).get_row("users")][1] == "userimport.csv"


async def test_choosing_a_file_outside_the_inbox_keeps_its_absolute_path(sandbox: Config, tmp_path: Path) -> None:
    elsewhere = tmp_path / "people.csv"
    elsewhere.write_text(USERS_HEADER)
    sandbox.set("operations.users.file", str(elsewhere))  # not saved yet
    app = ToolsyncApp(sandbox)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_files(app, pilot)
        assert screen.highlighted is not None
        assert screen.highlighted.path == elsewhere
        await pilot.press("c")
        assert load_config(sandbox.path).operation("users").file == str(elsewhere)
        await highlight(screen, pilot, "userimport.csv")
        await pilot.press("c")
        assert load_config(sandbox.path).operation("users").file == "userimport.csv"
        assert str(elsewhere) not in file_rows(screen)  # no longer preselected: no longer a candidate


# -- the engine's preview --------------------------------------------------------------------------


def test_count_rows_counts_records_not_lines(sandbox: Config) -> None:
    path = inbox(sandbox) / "mixed.csv"
    path.write_text(
        USERS_HEADER + "# a comment\n\njdoe;John;Doe;j@example.edu\n"
        'asmith;"Alice\nMarie";Smith;a@example.edu\nbroken;row\n'
    )
    assert count_rows(sandbox, "users", path) == 3  # the quoted value over two lines is one row
    assert count_rows(sandbox, "check", inbox(sandbox) / "courses.csv") == 4  # no header, two comment lines
    assert count_rows(sandbox, "pictures", inbox(sandbox) / "userpictures_sample.zip") == 4
    path.write_text(USERS_HEADER + "jdoe;John;Doe;j@example.edu\n")  # changed: counted again
    assert count_rows(sandbox, "users", path) == 1


def test_count_rows_of_a_bad_file_raises_file_problem(sandbox: Config) -> None:
    from toolsync_tui.engine.run.command_file import FileProblem

    with pytest.raises(FileProblem, match="file not found"):
        count_rows(sandbox, "users", inbox(sandbox) / "absent.csv")
    (inbox(sandbox) / "bad.csv").write_text("username;colour\njdoe;blue\n")
    with pytest.raises(FileProblem, match="unknown column 'colour'"):
        count_rows(sandbox, "users", inbox(sandbox) / "bad.csv")


def test_pages_are_read_forward_back_and_past_the_end(sandbox: Config) -> None:
    path = users_file(sandbox, "paged.csv", 25)
    preview = open_preview(sandbox, "users", path, page_rows=10)
    try:
        assert preview.columns == ("username", "firstname", "lastname", "email")
        pages = [preview.page(number) for number in (0, 1, 2)]
        assert [page.rows[0].line for page in pages] == [2, 12, 22]
        assert [len(page.rows) for page in pages] == [10, 10, 5]
        assert [page.last for page in pages] == [False, False, True]
        beyond = preview.page(7)
        assert (beyond.number, beyond.rows[0].line) == (2, 22)
        assert preview.page(0).rows[0].values == ("u0", "First0", "Last0", "u0@example.edu")
    finally:
        preview.close()
    empty = open_preview(sandbox, "users", users_file(sandbox, "empty.csv", 0))
    assert (empty.page(3).number, empty.page(3).rows, empty.page(3).last) == (0, (), True)


def test_files_of_the_browse_folders_are_offered_too(sandbox: Config, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "users-2026-11-25.csv").write_text("username\njdoe\n")
    (exports / "photos.zip").write_bytes(b"")
    sandbox.set("files.browse_dirs", [str(exports)])
    shown = {candidate.path for candidate in candidates(sandbox, "users")}
    assert exports / "users-2026-11-25.csv" in shown
    assert sandbox.data_dir / "inbox" / "userimport.csv" in shown
    assert exports / "photos.zip" not in shown  # an archive is not a users file
    assert exports / "photos.zip" in {c.path for c in candidates(sandbox, "pictures")}
