"""A run end to end: the course existence check, and the pipeline's guarantees, on SQLite and MariaDB."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select

from tests.support.case_rules import cased
from tests.support.factories import add_courses, unique
from tests.support.operation_files import FlagPurge, inbox_file
from toolsync_tui.config import Config
from toolsync_tui.engine import registry
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.rows import LINE, Outcome, outcome_rows
from toolsync_tui.engine.run.gil import RUN_SWITCH_INTERVAL
from toolsync_tui.engine.run.lock import RunLock
from toolsync_tui.engine.run.pipeline import Progress, RunProblem, SafetyStop, run_inputs, run_operation

Site = tuple[Config, MoodleGateway]


async def test_check_reports_found_and_missing_courses_with_tryback_and_archive(site: Site) -> None:
    config, gateway = site
    bio, chem = unique("BIO"), unique("CHEM")
    [bio_id, _] = await add_courses(
        gateway,
        [{"shortname": bio, "fullname": "Biology", "idnumber": "B-1"}, {"shortname": chem, "fullname": "Chemistry"}],
    )
    chem_given = cased(gateway, chem.lower(), chem)  # another case where the site's lookups ignore it (MariaDB)
    content = f"# nightly export\n{bio};first year\n\nNOPE-1;gone\n{chem_given}\n;empty identifier\nNOPE-2\n"
    source = inbox_file(config, "courses.csv", content)

    result = await run_operation(config, gateway, "check")

    assert result.counts == {"unchanged": 2, "failed": 3}
    assert result.rows == 5
    assert result.exit_code == 1
    assert result.report_path is not None
    assert result.tryback_path is not None
    report = result.report_path.read_text()
    assert (
        f"line 2: unchanged (found) Course with shortname '{bio}' found: id {bio_id}, shortname '{bio}', "
        f"fullname 'Biology', idnumber 'B-1'" in report
    )
    assert "line 4: failed (not found) Course with shortname 'NOPE-1' not found" in report
    assert f"line 5: unchanged (found) Course with shortname '{chem_given}' found" in report
    assert "line 6: failed (check) empty course identifier" in report
    assert "5 rows were processed" in report
    assert report.endswith("end of report\n")
    table = pl.read_csv(result.table_path, schema_overrides={"key": pl.String})
    assert table["line"].to_list() == [2, 4, 5, 6, 7]
    assert table["outcome"].to_list() == ["unchanged", "failed", "unchanged", "failed", "failed"]
    # The tryback holds exactly the failing rows as written, ready to run again.
    assert result.tryback_path.read_text() == "NOPE-1;gone\n;empty identifier\nNOPE-2\n"
    assert oct(result.tryback_path.stat().st_mode & 0o777) == "0o600"
    assert oct(result.report_path.stat().st_mode & 0o777) == "0o600"
    assert not source.exists()
    assert result.archive_path is not None
    assert result.archive_path.read_text() == content
    assert result.archive_path.name.endswith("_courses.csv")


async def test_check_remembers_answers_across_batches_whatever_the_case(site: Site) -> None:
    config, gateway = site
    name = unique("Mixed")
    await add_courses(gateway, [{"shortname": name}])
    config.set("run.batch_size", 10_000)
    lines = [name, name.upper(), name.lower(), "NOPE", "nope"] * 5000  # 25,000 lines over 3 batches
    inbox_file(config, "courses.csv", "\n".join(lines) + "\n")
    result = await run_operation(config, gateway, "check")
    assert result.rows == 25_000
    if gateway.kind == "postgresql":  # Moodle's lookup of a shortname is exact there: only `name` itself is found
        assert result.counts == {"unchanged": 5_000, "failed": 20_000}
    else:
        assert result.counts == {"unchanged": 15_000, "failed": 10_000}


@pytest.mark.parametrize("identifier", ["idnumber", "id"])
async def test_check_by_other_identifiers(site: Site, identifier: str) -> None:
    config, gateway = site
    name = unique("ID")
    [course_id] = await add_courses(gateway, [{"shortname": name, "idnumber": f"{name}-X"}])
    config.set("operations.check.identifier", identifier)
    known = str(course_id) if identifier == "id" else f"{name}-X"
    inbox_file(config, "courses.csv", f"{known}\n999999\nabc\n")

    result = await run_operation(config, gateway, "check")

    report = result.report_path.read_text() if result.report_path else ""
    assert f"line 1: unchanged (found) Course with {identifier} '{known}' found: id {course_id}" in report
    assert f"line 2: failed (not found) Course with {identifier} '999999' not found" in report
    if identifier == "id":
        assert "line 3: failed (check) id 'abc' is not a number" in report
    assert result.counts == {"unchanged": 1, "failed": 2}


async def test_the_front_page_is_not_a_course_to_find(site: Site) -> None:
    config, gateway = site
    inbox_file(config, "courses.csv", "lab\n")  # the front page's shortname in the real dump
    result = await run_operation(config, gateway, "check")
    assert result.counts == {"failed": 1}


async def test_dry_run_reports_without_tryback_or_archive(site: Site) -> None:
    config, gateway = site
    source = inbox_file(config, "courses.csv", "NOPE\n")
    result = await run_operation(config, gateway, "check", dry_run=True)
    assert result.counts == {"failed": 1}
    assert result.report_path is not None
    assert result.report_path.name.endswith("_dryrun.txt")
    assert "DRY RUN" in result.report_path.read_text()
    assert result.tryback_path is None
    assert result.archive_path is None
    assert source.exists()
    assert list(DataStore(config.data_dir).tryback.iterdir()) == []


async def test_a_file_that_cannot_be_read_stops_before_any_report(site: Site) -> None:
    config, gateway = site
    config.set("files.encoding", "utf-8")
    source = inbox_file(config, "courses.csv", b"BIO\nCH\xc9M\n")
    with pytest.raises(RunProblem, match=r"courses.csv line 2, byte 3: 0xC9 is not valid UTF-8"):
        await run_operation(config, gateway, "check")
    store = DataStore(config.data_dir)
    assert list(store.reports.iterdir()) == []
    assert list(store.archive.iterdir()) == []
    assert source.exists()


async def test_a_missing_preselected_file_is_a_clear_problem(site: Site) -> None:
    config, gateway = site
    DataStore(config.data_dir).preselected("courses.csv").unlink(missing_ok=True)
    with pytest.raises(RunProblem, match=r"inbox/courses.csv: file not found"):
        await run_operation(config, gateway, "check")


async def test_tryback_keeps_the_source_encoding_and_line_endings(site: Site) -> None:
    config, gateway = site
    inbox_file(config, "courses.csv", b"CAF\xc9-1;caf\xe9\r\nCR\xc8ME\r\n")
    result = await run_operation(config, gateway, "check")
    assert result.report_path is not None
    assert result.tryback_path is not None
    assert "Course with shortname 'CAFÉ-1' not found" in result.report_path.read_text()
    assert result.tryback_path.read_bytes() == b"CAF\xc9-1;caf\xe9\r\nCR\xc8ME\r\n"


async def test_progress_events_count_up_to_the_whole_file(site: Site) -> None:
    config, gateway = site
    config.set("run.batch_size", 10_000)
    inbox_file(config, "courses.csv", "".join(f"C{i}\n" for i in range(25_000)))
    events: list[Progress] = []
    result = await run_operation(config, gateway, "check", on_progress=events.append)
    assert [e.batch for e in events] == [1, 2, 3]
    assert [e.lines_done for e in events] == [10_000, 20_000, 25_000]
    assert all(e.lines_total == 25_000 for e in events)
    assert events[-1].counts == {"failed": 25_000} == result.counts
    assert len(events[-1].recent) == 50
    assert events[-1].recent[-1] == "line 25000: failed (not found) Course with shortname 'C24999' not found"


async def test_a_run_passes_the_gil_between_its_threads_every_half_millisecond(site: Site) -> None:
    """The journal's and the reader's threads give the run's event loop its turn after 0.5 ms, not Python's 5 ms:
    set from the run's start (its progress sees it) and kept; a host's shorter interval is left as it is."""
    config, gateway = site
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        inbox_file(config, "courses.csv", "C1\nC2\n")
        seen: list[float] = []
        await run_operation(config, gateway, "check", on_progress=lambda _: seen.append(sys.getswitchinterval()))
        assert seen
        assert set(seen) == {RUN_SWITCH_INTERVAL}
        assert sys.getswitchinterval() == RUN_SWITCH_INTERVAL
        sys.setswitchinterval(0.0001)
        inbox_file(config, "courses.csv", "C1\n")
        await run_operation(config, gateway, "check")
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(before)


async def test_cancel_finishes_the_batch_in_flight_and_reports_the_rest(site: Site) -> None:
    config, gateway = site
    source = inbox_file(config, "courses.csv", "".join(f"C{i}\n" for i in range(30_000)))
    cancel = threading.Event()
    result = await run_operation(config, gateway, "check", cancel=cancel, on_progress=lambda _: cancel.set())
    assert result.cancelled
    assert result.exit_code == 1
    assert result.counts == {"failed": 10_000, "skipped": 20_000}
    assert result.report_path is not None
    assert "line 10001: skipped (not processed) not processed: the run was cancelled" in result.report_path.read_text()
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().count("\n") == 30_000  # failed and unprocessed rows, to run again
    assert source.exists()
    assert result.archive_path is None


async def test_a_run_holding_the_lock_refuses_a_second(site: Site) -> None:
    config, gateway = site
    inbox_file(config, "courses.csv", "X\n")
    with RunLock(config.data_dir, "users"), pytest.raises(RunProblem, match="another run is in progress"):
        await run_operation(config, gateway, "check")


@pytest.fixture
async def flags(site: Site, monkeypatch: pytest.MonkeyPatch) -> tuple[Config, MoodleGateway, str]:
    config, gateway = site
    flagtype = unique("purge/")
    monkeypatch.setattr(FlagPurge, "flagtype", flagtype)
    monkeypatch.setitem(registry.OPERATIONS, "flagpurge", registry.OperationInfo(FlagPurge))
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.cache_flags,
            [{"flagtype": flagtype, "name": f"f{i}", "value": "1", "expiry": 0} for i in range(40)],
        )
    return config, gateway, flagtype


async def remaining(gateway: MoodleGateway, flagtype: str) -> int:
    flags = gateway.schema.cache_flags
    async with gateway.reading() as conn:
        return int((await conn.execute(select(func.count()).where(flags.c.flagtype == flagtype))).scalar_one())


async def test_safety_threshold_stops_before_writing_and_force_goes_on(
    flags: tuple[Config, MoodleGateway, str], tmp_path: Path
) -> None:
    config, gateway, flagtype = flags
    path = tmp_path / "purge.csv"
    path.write_text("".join(f"f{i}\n" for i in range(12)))  # 12 of 40 = 30% > 10%, and >= 10 rows
    with pytest.raises(SafetyStop, match=r"would delete, unenrol or suspend 12 of 40 existing records \(30%\)"):
        await run_operation(config, gateway, "flagpurge", path)
    assert await remaining(gateway, flagtype) == 40
    result = await run_operation(config, gateway, "flagpurge", path, force=True)
    assert result.counts == {"deleted": 12}
    assert await remaining(gateway, flagtype) == 28


@pytest.mark.parametrize("answer", [True, False, None])
async def test_a_series_asks_at_each_safety_stop_and_goes_on_with_force_when_told(
    flags: tuple[Config, MoodleGateway, str], tmp_path: Path, answer: bool | None
) -> None:
    config, gateway, flagtype = flags
    first, second = tmp_path / "purge_a.csv", tmp_path / "purge_b.csv"
    first.write_text("".join(f"f{i}\n" for i in range(12)))  # 12 of 40: past the threshold
    second.write_text("".join(f"f{i}\n" for i in range(12, 24)))  # 12 of the 28 left: past it too
    asked: list[SafetyStop] = []

    async def confirm(stop: SafetyStop) -> bool:
        asked.append(stop)
        return bool(answer)

    series = run_inputs(config, gateway, "flagpurge", [first, second], confirm=None if answer is None else confirm)
    if not answer:  # no one to ask (the command line, cron), or not confirmed: the series stops, nothing written
        with pytest.raises(SafetyStop):
            await series
        assert [stop.destructive for stop in asked] == ([] if answer is None else [12])
        assert await remaining(gateway, flagtype) == 40
        return
    results = await series
    assert [stop.destructive for stop in asked] == [12, 12]  # each input asks for itself
    assert [result.counts for result in results] == [{"deleted": 12}, {"deleted": 12}]
    assert await remaining(gateway, flagtype) == 16


async def test_safety_threshold_lets_small_removals_through(
    flags: tuple[Config, MoodleGateway, str], tmp_path: Path
) -> None:
    config, gateway, flagtype = flags
    path = tmp_path / "purge.csv"
    path.write_text("f1\nf2\nf3\n")  # 3 rows: under safety_min_rows
    result = await run_operation(config, gateway, "flagpurge", path)
    assert result.counts == {"deleted": 3}
    assert await remaining(gateway, flagtype) == 37


async def test_a_database_error_rolls_back_its_batch_only(
    flags: tuple[Config, MoodleGateway, str], tmp_path: Path
) -> None:
    config, gateway, flagtype = flags
    config.set("run.batch_size", 3)
    config.set("run.safety_threshold", 0.0)
    path = tmp_path / "purge.csv"
    path.write_text("f1\nf2\nf3\nf4\npoison\nf5\nf6\nf7\nf8\n")
    result = await run_operation(config, gateway, "flagpurge", path)
    assert result.counts == {"deleted": 6, "failed": 3}
    assert await remaining(gateway, flagtype) == 34  # f4 and f5 came back with the rolled-back batch
    assert result.report_path is not None
    report = result.report_path.read_text()
    assert "line 4: failed (write) the database refused the batch: " in report
    assert "; nothing of this batch was written" in report
    assert result.tryback_path is not None
    assert result.tryback_path.read_text() == "f4\npoison\nf5\n"


def test_every_row_has_exactly_one_outcome_line_in_the_table(tmp_path: Path) -> None:
    # Guard of the outcome model itself: the batch helper gives one outcome per row, with its line.
    rows = pl.DataFrame({LINE: [3, 9], "name": ["a", "b"]})
    outcomes = outcome_rows(rows, Outcome.SKIPPED, "x", pl.col("name"), "why")
    assert outcomes.rows() == [(3, None, "skipped", "x", "a", "why"), (9, None, "skipped", "x", "b", "why")]


@pytest.mark.parametrize("site", ["mariadb", "postgresql"], indirect=True)  # a connection dying: a server matter
async def test_a_lost_connection_stops_the_run_and_says_so(
    flags: tuple[Config, MoodleGateway, str], tmp_path: Path
) -> None:
    config, gateway, flagtype = flags
    config.set("run.batch_size", 3)
    config.set("run.safety_threshold", 0.0)
    path = tmp_path / "purge.csv"
    path.write_text("f1\nf2\nf3\nf4\nkill\nf5\nf6\n")
    with pytest.raises(RunProblem, match=r"the connection to the database was lost: .*rolled back"):
        await run_operation(config, gateway, "flagpurge", path)
    assert await remaining(gateway, flagtype) == 37  # the first batch stays; the killed one rolled back
    [report] = DataStore(config.data_dir).reports.glob("*.txt")
    assert "the run stopped after 3 rows" in report.read_text()
    assert path.exists()


def test_files_of_two_runs_in_the_same_second_do_not_overwrite_each_other(tmp_path: Path) -> None:
    store = DataStore(tmp_path)
    store.ensure()
    source = store.inbox / "userimport.csv"
    first_text, first_table = store.report_paths("20261124-020000", "users", source, False)
    first_text.write_text("first")
    second_text, second_table = store.report_paths("20261124-020000", "users", source, False)
    first_tryback = store.tryback_path("20261124-020000", source)
    first_tryback.write_text("failed rows")
    assert (first_text.name, first_table.name) == (
        "20261124-020000_users_userimport.txt",
        "20261124-020000_users_userimport.csv",
    )
    assert (second_text.name, second_table.name) == (
        "20261124-020000_users_userimport-2.txt",
        "20261124-020000_users_userimport-2.csv",
    )
    assert store.tryback_path("20261124-020000", source).name == "userimport_tryback_20261124-020000-2.csv"
    source.write_text("a;b\n")
    assert store.archive_file(source, "20261124-020000", "copy") == store.archive / "20261124-020000_userimport.csv"
    assert store.archive_file(source, "20261124-020000", "copy") == store.archive / "20261124-020000_userimport-2.csv"


async def test_values_a_spreadsheet_would_run_as_formulas_are_neutralised_in_the_csv_twin_only(site: Site) -> None:
    """CSV injection (OWASP): a cell of the report's CSV twin starting with = + - @ TAB or CR is written after an
    apostrophe, so that a spreadsheet shows it as text; the text report shows the value as it is, and the history
    screen reads the table back as the run gave it (a value already starting with an apostrophe gets one more)."""
    from toolsync_tui.engine.datadir.history import outcome_page

    config, gateway = site
    hostile = ['=HYPERLINK("http://x.invalid","y")', "+1+2", "-3", "@SUM(A1)", "'=quoted", "plain"]
    inbox_file(config, "courses.csv", "".join(f"{value}\n" for value in hostile))

    result = await run_operation(config, gateway, "check")

    assert result.table_path is not None
    assert result.report_path is not None
    keys = pl.read_csv(result.table_path, schema_overrides={"key": pl.String})["key"].to_list()
    assert keys == ['\'=HYPERLINK("http://x.invalid","y")', "'+1+2", "'-3", "'@SUM(A1)", "''=quoted", "plain"]
    assert 'Course with shortname \'=HYPERLINK("http://x.invalid","y")\' not found' in result.report_path.read_text()
    assert outcome_page(result.table_path, None, 0, 10)["key"].to_list() == hostile
