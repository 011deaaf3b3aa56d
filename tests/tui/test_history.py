"""The history (engine/datadir/history.py and its screens), on files that real runs on the sandbox left behind."""

from __future__ import annotations

import os
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Log, Static
from textual.widgets._footer import FooterKey

from tests.support.operation_files import date_by_stamp, run_operations
from tests.support.ui import FrozenClock, finished_run, record_notifications, wait_until
from toolsync_tui.app import ToolsyncApp
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir import history
from toolsync_tui.engine.datadir.history import (
    HistoryEntry,
    delete_entries,
    list_history,
    operation_of_file,
    operation_of_report,
    outcome_page,
    outcome_totals,
    report_counts,
    text_view,
    tryback_rows,
    zip_members,
)
from toolsync_tui.engine.rows import counts_text
from toolsync_tui.screens.confirm import ConfirmScreen
from toolsync_tui.screens.help import HelpScreen
from toolsync_tui.screens.history import HistoryScreen, searched
from toolsync_tui.screens.report import PAGE_ROWS, REPORT_LINES, TAIL_LINES, FileScreen, ReportScreen
from toolsync_tui.widgets.entry_table import shortened
from toolsync_tui.widgets.filter_input import admits
from toolsync_tui.widgets.row_detail import RowDetail

SIZE = (80, 24)
NOW = datetime(2026, 1, 5, 9, 5, 0)


# -- helpers, also used by the snapshots ------------------------------------------------------------


async def open_history(app: ToolsyncApp, pilot: Any) -> HistoryScreen:
    await pilot.pause()
    app.push_screen(HistoryScreen(app.config, app.clock))
    await wait_until(lambda: isinstance(app.screen, HistoryScreen))
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, HistoryScreen)
    return screen


def rows_of(screen: HistoryScreen) -> list[tuple[str, str]]:
    """(kind, file name) of each row, top to bottom."""
    return [(entry.kind, entry.name) for entry in screen.shown.values()]


async def choose(pilot: Any, screen: HistoryScreen, name: str) -> None:
    table = screen.query_one(DataTable)
    keys = list(screen.shown)
    target = next(index for index, key in enumerate(keys) if Path(key).name == name)
    table.move_cursor(row=target)
    await pilot.pause()


# -- listing ---------------------------------------------------------------------------------------------


async def test_a_check_run_leaves_a_report_a_tryback_and_an_archive(sandbox: Config) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    entries = list_history(sandbox)
    assert sorted(entry.kind for entry in entries) == ["archive", "report", "tryback"]
    assert {entry.operation for entry in entries} == {"check"}
    report = next(entry for entry in entries if entry.kind == "report")
    assert result.report_path is not None
    assert result.table_path is not None
    assert report.path == result.report_path
    assert report.twin == result.table_path
    assert report.size == result.report_path.stat().st_size + result.table_path.stat().st_size
    assert not report.dry_run
    assert {entry.path for entry in entries if entry.kind != "report"} == {result.tryback_path, result.archive_path}
    assert report_counts(sandbox.data_dir) == {result.report_path.name: {"failed": 4}}


async def test_entries_are_newest_first_with_their_operation(sandbox: Config) -> None:
    await run_operations(sandbox, ("check", False))
    moment = NOW - timedelta(hours=1)
    for folder in ("archive", "reports", "tryback"):
        for path in (sandbox.data_dir / folder).iterdir():
            os.utime(path, (moment.timestamp(),) * 2)  # the check is an hour old ...
    await run_operations(sandbox, ("users", True))  # ... the dry run of the users is new
    entries = list_history(sandbox)
    assert [(entry.kind, entry.operation, entry.dry_run) for entry in entries] == [
        ("report", "users", True),
        ("report", "check", False),  # a run's files have one time: its report first
        ("tryback", "check", False),
        ("archive", "check", False),
    ]
    assert entries[0].name.endswith("_users_userimport_dryrun.txt")
    assert [entry.modified for entry in entries] == sorted((entry.modified for entry in entries), reverse=True)


def test_which_operation_a_file_belongs_to(sandbox: Config) -> None:
    assert operation_of_file(sandbox, "courses_tryback_20260105-090500.csv") == "check"
    assert operation_of_file(sandbox, "courses_tryback_20260105-090500-2.csv") == "check"
    # A tryback's tryback still names the command file first.
    assert operation_of_file(sandbox, "courses_tryback_20260105-090500_tryback_20260105-091000.csv") == "check"
    assert operation_of_file(sandbox, "userimport.csv") == "users"
    assert operation_of_file(sandbox, "userpictures_sample_tryback_20260105-090500.zip") == "pictures"
    assert operation_of_file(sandbox, "userpictures_sample_tryback_20260105-090500.csv") is None
    assert operation_of_file(sandbox, "notes_tryback_20260105-090500.csv") is None
    assert operation_of_report("20260105-090500_deleteusers_userdelete_dryrun-2.txt") == "deleteusers"
    assert operation_of_report("20260105-090500_nosuch_userdelete.txt") is None
    assert operation_of_report("20260105-090500_undo_userimport.txt") == "undo"  # found by History's filter
    sandbox.set("operations.deletecourses.file", "courses.csv")  # two operations read courses.csv: no guessing
    assert operation_of_file(sandbox, "courses_tryback_20260105-090500.csv") is None


async def test_archived_files_and_stray_files_are_listed_too(sandbox: Config) -> None:
    archive = sandbox.data_dir / "archive"
    (archive / "20260105-090500_userimport.csv").write_text("username\n")
    (archive / "20260105-090500_userpictures_b.zip").write_bytes(b"")
    (archive / "notes.txt").write_text("kept by hand\n")
    (archive / ".partial").write_text("")  # hidden: a copy in progress
    (sandbox.data_dir / "reports" / "20260105-090500_check_courses.csv").write_text("line\n")  # its text is gone
    operations = {entry.name: (entry.kind, entry.operation, entry.twin) for entry in list_history(sandbox)}
    assert operations == {
        "20260105-090500_userimport.csv": ("archive", "users", None),
        "20260105-090500_userpictures_b.zip": ("archive", "pictures", None),
        "notes.txt": ("archive", None, None),
        "20260105-090500_check_courses.csv": ("report", "check", None),
    }


def test_a_filter_matches_name_operation_and_kind(tmp_path: Path) -> None:
    entry = HistoryEntry("tryback", tmp_path / "courses_tryback_x.csv", 10, NOW, "check")
    texts = searched(entry)  # the history's texts, under the one rule of every `/` filter
    assert admits("", *texts)
    assert admits("COURSES", *texts)
    assert admits("check", *texts)
    assert admits("tryb", *texts)
    assert not admits("report", *texts)


# -- deleting --------------------------------------------------------------------------------------------


async def test_delete_removes_a_report_with_its_table(sandbox: Config) -> None:
    await run_operations(sandbox, ("check", False))
    report = next(entry for entry in list_history(sandbox) if entry.kind == "report")
    done = delete_entries(sandbox, [report])
    assert done.removed == list(report.files)
    assert done.freed == report.size
    assert done.problems == []
    assert not any((sandbox.data_dir / "reports").iterdir())


def test_delete_never_touches_anything_outside_the_history_folders(sandbox: Config) -> None:
    inbox_file = sandbox.data_dir / "inbox" / "courses.csv"
    link = sandbox.data_dir / "archive" / "20260105-090500_courses.csv"
    link.symlink_to(inbox_file)
    outside = HistoryEntry("archive", inbox_file, 1, NOW)
    sneaky = HistoryEntry("archive", sandbox.data_dir / "archive" / ".." / "inbox" / "userimport.csv", 1, NOW)
    done = delete_entries(sandbox, [outside, sneaky, HistoryEntry("archive", link, 1, NOW)])
    assert done.removed == [link]  # the link itself ...
    assert inbox_file.is_file()  # ... never what it points to
    assert (sandbox.data_dir / "inbox" / "userimport.csv").is_file()
    assert len(done.problems) == 2
    assert all("not in archive/, reports/ or tryback/" in problem for problem in done.problems)


# -- reading -----------------------------------------------------------------------------------------------


async def test_tryback_rows_counts_what_a_rerun_would_run(sandbox: Config, tmp_path: Path) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    assert result.tryback_path is not None
    assert tryback_rows(sandbox, "check", result.tryback_path) == 4
    pictures = tmp_path / "userpictures_x_tryback_20260105-090500.zip"
    with zipfile.ZipFile(pictures, "w") as archive:
        archive.writestr("students/", b"")
        archive.writestr("students/jdoe.png", b"png")
        archive.writestr("bprof.jpg", b"jpg")
    assert tryback_rows(sandbox, "pictures", pictures) == 2
    members, total = zip_members(pictures, 1)
    assert total == 2
    assert [member.name for member in members] == ["students/jdoe.png"]


def test_a_huge_text_shows_its_start_and_its_end_only(tmp_path: Path) -> None:
    report = tmp_path / "big.txt"
    with report.open("w") as out:
        out.writelines(f"line {number}: created (create) user u{number}\n" for number in range(1, 1_000_001))
        out.write("1000000 rows were processed\nend of report\n")
    view = text_view(report, 5_000, 3)
    assert len(view.head) == 5_000
    assert view.head[-1] == "line 5000: created (create) user u5000"
    assert view.tail == ["line 1000000: created (create) user u1000000", "1000000 rows were processed", "end of report"]
    assert not view.complete
    small = tmp_path / "small.txt"
    small.write_text("a\nb\n")
    assert text_view(small, 5_000, 3).head == ["a", "b"]
    assert text_view(small, 5_000, 3).complete
    assert text_view(small, 1, 3).tail == ["b"]


def test_a_cut_read_never_splits_a_character(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "HEAD_BYTES", 30)
    monkeypatch.setattr(history, "TAIL_BYTES", 30)
    path = tmp_path / "accents.txt"
    path.write_text("".join(f"é{n:03d} ligne\n" for n in range(100)))  # 12 bytes a line
    view = text_view(path, 10, 5)
    assert view.head == ["é000 ligne", "é001 ligne"]
    assert view.tail == ["é098 ligne", "é099 ligne"]
    assert not view.complete


def test_a_command_file_in_windows_1252_reads(tmp_path: Path) -> None:
    path = tmp_path / "20260105-090500_courses.csv"
    path.write_bytes("BIO101;Biologie générale\n".encode("windows-1252"))
    assert text_view(path, 10).head == ["BIO101;Biologie générale"]


async def test_the_outcome_table_pages_by_outcome(sandbox: Config) -> None:
    [result] = await run_operations(sandbox, ("users", True))
    assert result.table_path is not None
    assert outcome_totals(result.table_path) == {"created": 3, "failed": 3}
    failed = outcome_page(result.table_path, "failed", 0, 10)
    assert failed["line"].to_list() == [2, 3, 4]
    assert failed["part"].to_list() == ["course1"] * 3
    assert outcome_page(result.table_path, None, 2, 3).height == 3
    assert outcome_page(result.table_path, "deleted", 0, 10).height == 0
    assert counts_text({"failed": 1, "created": 1200}) == "1,200 created, 1 failed"


def test_a_long_name_is_cut_in_its_middle() -> None:
    assert shortened("20260105-090500_check_courses.txt", 40) == "20260105-090500_check_courses.txt"
    cut = shortened("20260105-090500_cohortscourses_cohortscourses_dryrun.txt", 20)
    assert len(cut) == 20
    assert cut == "20260105-0…ryrun.txt"


# -- the screen ----------------------------------------------------------------------------------------------


async def test_the_history_screen_lists_the_runs_files(sandbox: Config) -> None:
    await run_operations(sandbox, ("check", False), ("cohorts", False))
    date_by_stamp(sandbox.data_dir)
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        assert sorted(kind for kind, _ in rows_of(screen)) == ["archive"] * 2 + ["report"] * 2 + ["tryback"] * 2
        table = screen.query_one(DataTable)
        assert table.row_count == 6
        first = [str(cell) for cell in table.get_row_at(0)]
        assert first[1] in ("report", "tryback", "archive")
        assert str(screen.query_one("#status", Static).content).startswith("All: 6 shown (")
        await pilot.press("2")  # reports only
        assert [kind for kind, _ in rows_of(screen)] == ["report", "report"]
        await choose(pilot, screen, next(name for _, name in rows_of(screen) if "_check_" in name))
        detail = str(screen.query_one("#detail", Static).content)
        assert detail.startswith("reports/")
        assert detail.endswith(" · check · 4 failed")
        await pilot.press("1")
        assert len(rows_of(screen)) == 6
        await pilot.press("escape")
        assert not isinstance(app.screen, HistoryScreen)


async def test_only_one_operations_files_when_asked(sandbox: Config) -> None:
    await run_operations(sandbox, ("check", False), ("cohorts", False))
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.push_screen(HistoryScreen(sandbox, app.clock, operation="cohorts"))
        await wait_until(lambda: isinstance(app.screen, HistoryScreen))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        assert {entry.operation for entry in screen.shown.values()} == {"cohorts"}
        assert len(screen.shown) == 3


async def test_the_filter_narrows_the_list_enter_keeps_it_and_esc_clears_it(sandbox: Config) -> None:
    await run_operations(sandbox, ("check", False), ("cohorts", False))
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await pilot.press("slash")
        field = screen.query_one("#filter", Input)
        assert field.has_focus
        await pilot.press(*"cohorts")
        assert len(rows_of(screen)) == 3
        assert all("cohorts" in name for _, name in rows_of(screen))
        await pilot.press("enter")  # back to the list, the filter kept
        assert app.screen is screen
        assert screen.query_one(DataTable).has_focus
        assert field.display  # a filter in force stays in view
        await pilot.press("3")  # and the kind keys narrow further
        assert rows_of(screen) == [("tryback", name) for _, name in rows_of(screen)]
        assert len(rows_of(screen)) == 1
        await pilot.press("slash", *["backspace"] * 7, "enter")
        assert len(rows_of(screen)) == 2  # every tryback
        assert not field.display
        await pilot.press("slash", *"check", "escape")  # esc clears the filter, and leaves the screen alone
        assert app.screen is screen
        assert screen.query_one(DataTable).has_focus
        assert not field.display
        assert len(rows_of(screen)) == 2


async def test_open_a_report_and_show_its_failed_outcomes(sandbox: Config) -> None:
    await run_operations(sandbox, ("users", True))
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await pilot.press("enter")
        report = app.screen
        assert isinstance(report, ReportScreen)
        text = report.query_one(Log).lines
        assert "line 2: created (create) User account would be added: 'jdoe'" in text
        assert text[-1] == "end of report"
        table = report.query_one("#outcomes", DataTable)
        assert table.row_count == 6
        assert str(report.query_one("#page", Static).content) == "records 1 to 6 of 6"
        await pilot.press("o")  # all -> failed
        assert report.outcome == "failed"
        assert table.row_count == 3
        assert {str(table.get_row_at(row)[2]) for row in range(3)} == {"failed"}
        assert str(report.query_one("#page", Static).content) == "failed records 1 to 3 of 3"
        await pilot.press("o")  # -> skipped: none
        assert table.row_count == 0
        assert str(report.query_one("#page", Static).content) == "no skipped records"
        report.show_outcome(None)
        await pilot.pause()
        assert table.row_count == 6
        await pilot.press("escape")
        assert app.screen is screen


async def test_open_a_tryback_shows_its_rows(sandbox: Config) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    assert result.tryback_path is not None
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await choose(pilot, screen, result.tryback_path.name)
        await pilot.press("enter")
        viewer = app.screen
        assert isinstance(viewer, FileScreen)
        assert viewer.query_one(Log).lines[-1] == "NOPE999;a course that does not exist"
        assert str(viewer.query_one("#view-title", Static).content).startswith("tryback · check · ")
        await pilot.press("escape")
        assert app.screen is screen


async def test_rerun_a_tryback_after_confirming(sandbox: Config) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    tryback = result.tryback_path
    assert tryback is not None
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await choose(pilot, screen, tryback.name)
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        question = str(app.screen.query_one("#message", Static).content)
        assert question.startswith(f"Run check (Course existence check) on {tryback.name}: 4 rows?")
        await pilot.press("y")
        run = await finished_run(app, pilot)
        assert run.entry.files == (tryback,)
        assert run.result is not None
        assert run.result.counts == {"failed": 4}
        assert not tryback.exists()  # archived as a command file is
        assert run.result.archive_path is not None
        assert run.result.archive_path.name.endswith(f"_{tryback.name}")
        await pilot.press("escape")  # back to the history, which sees the new files
        assert app.screen is screen
        names = [name for _, name in rows_of(screen)]
        assert run.result.archive_path.name in names
        assert tryback.name not in names


async def test_rerun_refuses_what_is_not_a_tryback_of_a_known_operation(
    sandbox: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    await run_operations(sandbox, ("check", False))
    stray = sandbox.data_dir / "tryback" / "notes_tryback_20260105-090500.csv"
    stray.write_text("x\n")
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    notes = record_notifications(app, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await choose(pilot, screen, stray.name)
        await pilot.press("t")
        await pilot.press("2", "t")  # a report
        await pilot.pause()
        assert app.screen is screen
        assert [message for message, _ in notes] == [
            f"No operation's command file is named like {stray.name}: cannot tell which operation runs it",
            f"t runs a tryback again; {next(iter(screen.shown.values())).name} is a report",
        ]


@pytest.mark.parametrize(("answer", "deleted"), [("y", True), ("n", False)])
async def test_delete_the_marked_files_after_confirming(sandbox: Config, answer: str, deleted: bool) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    tryback, archived = result.tryback_path, result.archive_path
    assert tryback is not None
    assert archived is not None
    size = tryback.stat().st_size + archived.stat().st_size
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await choose(pilot, screen, tryback.name)
        await pilot.press("space")
        await choose(pilot, screen, archived.name)
        await pilot.press("space")
        assert screen.marked == {tryback, archived}
        assert "2 marked" in str(screen.query_one("#status", Static).content)
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        question = str(app.screen.query_one("#message", Static).content)
        assert question.startswith(f"Delete 2 files ({size} Bytes)?\n")
        await pilot.press(answer)
        await pilot.pause()
        assert app.screen is screen
        assert tryback.exists() is not deleted
        assert archived.exists() is not deleted
        assert result.report_path is not None
        assert result.report_path.exists()  # not marked: kept either way
        assert len(rows_of(screen)) == (1 if deleted else 3)
        assert screen.marked == (set() if deleted else {tryback, archived})


async def test_delete_without_marks_takes_the_chosen_report_and_its_table(sandbox: Config) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    assert result.report_path is not None
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        await choose(pilot, screen, result.report_path.name)
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        assert str(app.screen.query_one("#message", Static).content).startswith("Delete 2 files (")
        await pilot.press("y")
        await pilot.pause()
        assert not any((sandbox.data_dir / "reports").iterdir())


async def test_help_lists_the_history_keys(sandbox: Config) -> None:
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await open_history(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert keys["del"] == "Delete"
        assert keys["t"] == "Re-run"
        assert keys["/"].startswith("Filter")
        assert keys["u"] == "Undo"
        assert keys["enter"].startswith("Open")


async def test_a_huge_report_is_shown_bounded_and_its_table_page_by_page(sandbox: Config) -> None:
    reports = sandbox.data_dir / "reports"
    rows = 1_200
    text = reports / "20260105-090500_users_userimport.txt"
    text.write_text(
        "toolsync: Create and update users\n\n"
        + "".join(f"line {n}: created (create) User account added: 'u{n}'\n" for n in range(2, 200_002))
        + "\n200000 rows were processed in 9.0 s: 200000 created\nend of report\n"
    )
    table = text.with_suffix(".csv")
    table.write_text(
        "line,part,outcome,action,key,message\n"
        + "".join(f"{n},,{'failed' if n % 2 else 'created'},create,u{n},message {n}\n" for n in range(2, rows + 2))
    )
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await open_history(app, pilot)
        await pilot.press("enter")
        report = app.screen
        assert isinstance(report, ReportScreen)
        lines = report.query_one(Log).lines
        assert len(lines) == REPORT_LINES + 1 + TAIL_LINES
        assert lines[REPORT_LINES].startswith(f"… only the first {REPORT_LINES:,} lines and the last ones are shown")
        assert lines[-1] == "end of report"
        outcomes = report.query_one("#outcomes", DataTable)
        page = report.query_one("#page", Static)
        assert outcomes.row_count == PAGE_ROWS
        assert str(page.content) == f"records 1 to {PAGE_ROWS} of {rows:,}"
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")  # past the end: stays
        assert str(page.content) == f"records {2 * PAGE_ROWS + 1:,} to {rows:,} of {rows:,}"
        assert outcomes.row_count == rows - 2 * PAGE_ROWS
        await pilot.press("o")  # failed only: back to the first page
        assert str(page.content) == f"failed records 1 to {PAGE_ROWS} of {rows // 2}"
        assert str(outcomes.get_row_at(0)[4]) == "u3"


async def test_open_a_picture_tryback_lists_its_entries(sandbox: Config) -> None:
    tryback = sandbox.data_dir / "tryback" / "userpictures_sample_tryback_20260105-090500.zip"
    with zipfile.ZipFile(tryback, "w") as archive:
        archive.writestr("students/jdoe.png", b"png")
        archive.writestr("bprof.jpg", b"jpeg")
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await open_history(app, pilot)
        await pilot.press("enter")
        viewer = app.screen
        assert isinstance(viewer, FileScreen)
        assert [line.split() for line in viewer.query_one(Log).lines] == [
            ["2", "entries"],
            ["3", "Bytes", "students/jdoe.png"],
            ["4", "Bytes", "bprof.jpg"],
        ]
        assert str(viewer.query_one("#view-title", Static).content).startswith("tryback · pictures · User pictures")


# -- every file stays its operation's after its `file` setting changes (issue 21, item 5) -------------------------


async def test_a_runs_files_keep_their_operation_after_its_file_setting_changes(sandbox: Config) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    sandbox.set("operations.check.file", "courses-2027.csv")  # another preselected file: courses.csv is no one's
    assert {entry.operation for entry in list_history(sandbox)} == {"check"}
    assert result.report_path is not None
    result.report_path.unlink()  # its report removed: the run log still links the tryback and the archive
    assert result.table_path is not None
    result.table_path.unlink()
    assert [(entry.kind, entry.operation) for entry in list_history(sandbox)] == [
        ("tryback", "check"),
        ("archive", "check"),
    ]
    (sandbox.data_dir / "runs.jsonl").unlink()  # neither report nor log: the setting decides, as before
    assert {entry.operation for entry in list_history(sandbox)} == {None}


async def test_a_tryback_of_a_tryback_belongs_to_the_run_that_made_it(sandbox: Config) -> None:
    stamp = "20260105-090500"
    reports, trybacks = sandbox.data_dir / "reports", sandbox.data_dir / "tryback"
    (reports / f"{stamp}_deletecourses_courses_tryback_20260104-080000.txt").write_text("report\n")
    (trybacks / f"courses_tryback_20260104-080000_tryback_{stamp}.csv").write_text("x\n")
    (trybacks / "courses_tryback_20260104-080000.csv").write_text("x\n")  # no report, no log: the setting's (check)
    operations = {entry.name: entry.operation for entry in list_history(sandbox) if entry.kind == "tryback"}
    assert operations == {
        f"courses_tryback_20260104-080000_tryback_{stamp}.csv": "deletecourses",
        "courses_tryback_20260104-080000.csv": "check",
    }


async def test_after_a_file_change_the_history_of_an_operation_still_shows_and_reruns_its_files(
    sandbox: Config,
) -> None:
    [result] = await run_operations(sandbox, ("check", False))
    sandbox.set("operations.check.file", "courses-2027.csv")
    assert result.tryback_path is not None
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.push_screen(HistoryScreen(sandbox, app.clock, operation="check"))
        await wait_until(lambda: isinstance(app.screen, HistoryScreen))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        assert sorted(kind for kind, _ in rows_of(screen)) == ["archive", "report", "tryback"]
        await choose(pilot, screen, result.tryback_path.name)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, FileScreen))
        title = str(app.screen.query_one("#view-title", Static).content)
        assert title.startswith("tryback · check · Course existence check")
        await pilot.press("escape")
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        question = str(app.screen.query_one("#message", Static).content)
        assert question.startswith(f"Run check (Course existence check) on {result.tryback_path.name}: 4 rows?")


# -- the history at 80 columns (issue 21, item 6) ----------------------------------------------------------------


async def test_at_80_columns_the_history_shows_operation_and_result_whole_names_a_title_and_q_and_help(
    sandbox: Config,
) -> None:
    await run_operations(sandbox, ("check", False), ("users", True))
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(app, pilot)
        table = screen.query_one(DataTable)
        labels = [str(column.label) for column in table.ordered_columns]
        assert labels == [" ", "Kind", "Operation", "File", "Age", "Result"]
        rows = [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]
        assert [row[2:4] for row in rows] == [
            ["users", "userimport.csv"],  # the command file, whole: kind, operation and age have their columns
            ["check", "courses.csv"],
            ["check", "courses.csv"],
            ["check", "courses.csv"],
        ]
        assert [row[5] for row in rows] == ["dry run: 3 created", "4 failed", "", ""]
        assert sum(column.get_render_width(table) for column in table.ordered_columns) <= SIZE[0]
        assert str(screen.query_one("#view-title", Static).content).startswith("History · ")
        detail = str(screen.query_one("#detail", Static).content)
        assert "20260105" not in detail or detail.startswith("reports/")  # the stored name whole, below the table
        assert screen.query_one("#detail", Static).region.height == 2
        keys = {key.key: key.region for key in screen.query(FooterKey)}
        for key in ("q", "question_mark"):
            assert key in keys
            assert 0 < keys[key].right <= SIZE[0], f"{key} is not in the footer at 80 columns"
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        await pilot.pause()
        dialog = help_screen.query_one("#dialog")
        assert dialog.region.height <= SIZE[1]
        assert dialog.max_scroll_y == 0  # every key in view, nothing scrolled out
        assert dict(help_screen.keys)["space"].startswith("Mark")


# -- a row read whole, and `/` in the report viewer (issue 21, item 7) -------------------------------------------


async def test_the_highlighted_rows_message_is_shown_whole_under_the_report_table(sandbox: Config) -> None:
    await run_operations(sandbox, ("users", True))
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await open_history(app, pilot)
        await pilot.press("enter")
        report = app.screen
        assert isinstance(report, ReportScreen)
        table = report.query_one("#outcomes", DataTable)
        table.focus()
        await pilot.press("down")  # line 2's course1: failed, its message cut in the table at 80 columns
        await pilot.pause()
        detail = report.query_one(RowDetail)
        shown = str(detail.content)
        assert shown.startswith("line 2, course1: failed (enrol) · BIO101")
        assert "course 'BIO101' not found (course_identity shortname" in shown
        assert detail.region.height >= 2  # wrapped, not cut
        assert detail.region.right <= SIZE[0]
        keys = {key.key for key in report.query(FooterKey)}
        assert "d" in keys  # the pane is in the footer (and so in the help): d hides and shows it
        await pilot.press("d")
        assert not detail.display
        await pilot.press("d")
        assert detail.display
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        await pilot.pause()
        assert ("d", "Detail") in help_screen.keys
        assert ("/", "Search") in help_screen.keys
        assert help_screen.query_one("#dialog").max_scroll_y == 0  # every key in view at 80x24


async def test_slash_searches_a_100_000_row_report_quickly(sandbox: Config) -> None:
    reports = sandbox.data_dir / "reports"
    rows = 100_000
    text = reports / "20260105-090500_users_userimport.txt"
    text.write_text("toolsync: Create and update users\nend of report\n")
    text.with_suffix(".csv").write_text(
        "line,part,outcome,action,key,message\n"
        + "".join(
            f"{n},,{'failed' if n % 1000 == 0 else 'created'},create,u{n},"
            + (f"course 'BIO{n}' not found" if n % 1000 == 0 else f"User account added: 'u{n}'")
            + "\n"
            for n in range(2, rows + 2)
        )
    )
    app = ToolsyncApp(sandbox, clock=FrozenClock(NOW))
    async with app.run_test(size=SIZE) as pilot:
        await open_history(app, pilot)
        await pilot.press("enter")
        report = app.screen
        assert isinstance(report, ReportScreen)
        page = report.query_one("#page", Static)
        outcomes = report.query_one("#outcomes", DataTable)
        await pilot.press("slash")
        assert report.query_one("#search", Input).has_focus
        started = time.monotonic()
        await pilot.press(*"bio")
        await wait_until(lambda: str(page.content) == "records 1 to 100 of 100 holding 'bio'")
        assert time.monotonic() - started < 5
        assert outcomes.row_count == 100
        assert str(outcomes.get_row_at(0)[4]) == "u1000"
        await pilot.press("enter")  # to the table, the search kept
        assert outcomes.has_focus
        await pilot.press("o")  # and narrowed by outcome too
        await wait_until(lambda: str(page.content) == "failed records 1 to 100 of 100 holding 'bio'")
        await pilot.press("o")
        await wait_until(lambda: str(page.content) == "no skipped records holding 'bio'")
        report.query_one("#search", Input).focus()
        await pilot.press("escape")  # cleared: every record again
        await wait_until(lambda: str(page.content) == "no skipped records")
        report.show_outcome(None)
        await wait_until(lambda: str(page.content) == f"records 1 to {PAGE_ROWS} of {rows:,}")
