"""A headless run stopped mid-way (SIGINT, SIGTERM, kill -9, a lost connection, a full disk) on MariaDB and on
PostgreSQL: what it committed is on record, its report says it was interrupted, the tryback holds the rows it did not
process, and no worker process outlives it (issue 20, items 8, 9 and 12); a data directory a run cannot use is one
line and exit 2 (item 12)."""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import database_config
from tests.support.fault_servers import count_users, kill_connections
from tests.support.headless_runs import (
    cleaned_up,
    descendants,
    finish,
    progress,
    start_run,
    still_running,
    users_file,
    wait_for,
)
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.run.exits import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, EXIT_KILLED, EXIT_TERMINATED
from toolsync_tui.engine.run.log import KILLED, RunLog

ROWS = 3_000
BATCH = 250  # a batch hashes its passwords for a second or so: a signal lands while the run is busy


def config_for(tmp_path: Path, url: str) -> Config:
    config = database_config(tmp_path, url)
    config.set("run.batch_size", BATCH)
    config.save()
    return config


def data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)])
def test_a_signalled_run_stops_after_its_batch_with_everything_committed_on_record(
    dump_db_url: str, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    config = config_for(tmp_path, dump_db_url)
    prefix = f"h5{sig.name.lower()}"
    source = users_file(tmp_path / "userimport.csv", prefix, ROWS)
    run = start_run(config.path, "users", source)
    with cleaned_up(run) as processes:
        wait_for("a committed batch", lambda: count_users(dump_db_url, prefix) >= BATCH, run)
        processes.extend(descendants(run.pid))  # the hashing workers among them
        run.send_signal(sig)
        returncode, out, err = finish(run)

        assert returncode == code, err
        assert "Traceback" not in err
        assert still_running(processes, within=5) == []  # item 9: no worker left holding passwords
    record = RunLog(config.data_dir).recent(1)[0]
    committed = count_users(dump_db_url, prefix)
    assert 0 < committed < ROWS
    assert (record.interrupted, record.exit_code) == (sig.name, code)
    assert record.rows == record.counts["created"] == committed  # exactly what the database holds
    report = Path(str(record.report))
    assert f"  report: {report}" in out
    closing = (
        f"interrupted after {committed:,} rows ({sig.name}); rows after line {record.last_line} were not processed"
    )
    assert closing in report.read_text()
    assert report.read_text().endswith("end of report\n")
    # The tryback holds every row the run did not process, the file stays in the inbox for a re-run.
    tryback = next((config.data_dir / "tryback").iterdir())
    assert len(data_lines(tryback)) == ROWS - committed
    assert data_lines(tryback) == data_lines(source)[committed:]
    assert source.exists()


def test_a_second_sigint_stops_at_once_with_the_batch_in_progress_rolled_back(dump_db_url: str, tmp_path: Path) -> None:
    config = config_for(tmp_path, dump_db_url)
    prefix = "h5twice"
    source = users_file(tmp_path / "userimport.csv", prefix, ROWS)
    run = start_run(config.path, "users", source)
    with cleaned_up(run):

        def recorded() -> bool:
            page = progress(config.data_dir)
            return page is not None and page.rows >= BATCH

        wait_for("a batch on record", recorded, run)
        run.send_signal(signal.SIGINT)  # while the next batch's passwords are hashed
        time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        returncode, out, err = finish(run)

    assert returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    record = RunLog(config.data_dir).recent(1)[0]
    committed = count_users(dump_db_url, prefix)
    assert (record.interrupted, record.rows, record.counts) == ("SIGINT", committed, {"created": committed})
    assert f"users: interrupted after {committed:,} rows (SIGINT)" in out
    assert f"  report: {record.report}" in out
    assert (
        Path(str(record.report))
        .read_text()
        .endswith(
            "the batch in progress was rolled back, not written; the command file stays in the inbox\nend of report\n"
        )
    )


def test_a_run_whose_connection_is_lost_records_what_it_committed_and_names_its_report(
    dump_db_url: str, tmp_path: Path
) -> None:
    """A lost connection (MariaDB's KILL CONNECTION, PostgreSQL's pg_terminate_backend) stops the run (exit 2, one
    line): the line names the report, and the run log holds the rows committed before it, not 0."""
    config = config_for(tmp_path, dump_db_url)
    prefix = "h5lost"
    source = users_file(tmp_path / "userimport.csv", prefix, ROWS)
    run = start_run(config.path, "users", source)
    with cleaned_up(run):

        def recorded() -> bool:
            page = progress(config.data_dir)
            return page is not None and page.rows >= BATCH

        wait_for("a batch on record", recorded, run)
        time.sleep(0.1)  # the next batch's transaction is open while its passwords are hashed
        assert kill_connections(dump_db_url) >= 1
        returncode, _, err = finish(run)

    assert returncode == EXIT_CANNOT_RUN, err
    assert "Traceback" not in err
    record = RunLog(config.data_dir).recent(1)[0]
    committed = count_users(dump_db_url, prefix)
    assert 0 < committed < ROWS
    assert (record.rows, record.counts, record.exit_code) == (committed, {"created": committed}, EXIT_CANNOT_RUN)
    assert str(record.problem).startswith("the connection to the database was lost: "), record.problem
    assert f"(report: {record.report})" in err.splitlines()[-1]
    assert record.verdict.word() == "interrupted"


def test_a_killed_run_is_on_record_with_what_it_committed_and_the_next_run_says_so(
    dump_db_url: str, tmp_path: Path
) -> None:
    config = config_for(tmp_path, dump_db_url)
    prefix = "h5killed"
    source = users_file(tmp_path / "userimport.csv", prefix, ROWS)
    run = start_run(config.path, "users", source)
    with cleaned_up(run) as processes:

        def recorded() -> bool:
            page = progress(config.data_dir)
            return page is not None and page.rows >= 2 * BATCH

        wait_for("a second batch on record", recorded, run)
        processes.extend(descendants(run.pid))
        assert len(processes) >= 2, processes  # the forkserver, the hashing workers, the resource tracker
        os.kill(run.pid, signal.SIGKILL)  # while the next batch's passwords are hashed
        assert finish(run)[0] == -signal.SIGKILL
        assert still_running(processes, within=5) == []  # item 9: the workers died with the run

    [record] = RunLog(config.data_dir).recent(1)  # the interface's history and dashboard read this
    committed = count_users(dump_db_url, prefix)
    assert (record.interrupted, record.exit_code) == (KILLED, EXIT_KILLED)
    assert record.rows == record.counts["created"] == committed
    report = Path(str(record.report))
    assert report.exists()

    again = start_run(config.path, "users", source)  # the same file: what was done comes out unchanged
    with cleaned_up(again):
        returncode, out, err = finish(again)
    assert returncode == 0, err
    assert f"the previous users run (started {record.started}) was interrupted after {committed:,} rows" in out
    # The killed run's report is closed with the words of its end; the log holds its last line and the new run's.
    closing = f"interrupted after {committed:,} rows ({KILLED}); rows after line {record.last_line} were not processed"
    assert closing in report.read_text()
    assert report.read_text().endswith("end of report\n")
    killed, last = RunLog(config.data_dir).recent(2)[::-1]
    assert (killed.rows, killed.exit_code, last.exit_code) == (committed, EXIT_KILLED, 0)
    assert last.counts == {"created": ROWS - committed, "unchanged": committed}
    assert count_users(dump_db_url, prefix) == ROWS


def file_size_limit(limit: int) -> Callable[[], None]:
    """A child whose files cannot grow past `limit` bytes: a full disk as a run meets it, for any user (no mount).
    SIGXFSZ ignored, the write fails with EFBIG, as it fails with ENOSPC on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_data_file_that_cannot_be_written_stops_the_run_with_every_committed_row_on_record(
    dump_db_url: str, tmp_path: Path
) -> None:
    """Item 12: a file of the data directory the run cannot write (a full disk) stops it, the batch in progress rolled
    back; the run log counts every row committed; one clear message, exit 2, no traceback. The first file to outgrow
    the limit is the ownership ledger (datadir/ledger.py), written ahead of each batch's commit: it grows faster than
    the report, whose own failure the run meets the same way (_Run._write)."""
    config = config_for(tmp_path, dump_db_url)
    prefix = "h5full"
    source = users_file(tmp_path / "userimport.csv", prefix, ROWS)
    run = start_run(config.path, "users", source, preexec=file_size_limit(100_000))  # a few batches' records
    with cleaned_up(run):
        returncode, out, err = finish(run)

    assert returncode == EXIT_CANNOT_RUN, err
    assert "Traceback" not in err + out
    committed = count_users(dump_db_url, prefix)
    assert 0 < committed < ROWS  # stopped early: no row written that the ledger could not account for
    [record] = RunLog(config.data_dir).recent(1)
    assert (record.rows, record.counts, record.exit_code) == (committed, {"created": committed}, EXIT_CANNOT_RUN)
    assert "ledger.sqlite cannot be used" in str(record.problem)
    assert "the batch in progress was rolled back" in err
    assert source.exists()  # not archived: it runs again as it is


def _a_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize(
    ("setup", "named"),
    [
        (lambda data: _a_file(data), "data"),  # a file where the data directory should be
        (lambda data: _a_file(data.parent / "parent") and data.with_name("parent") / "data", "parent"),
        (lambda data: _a_file(data / "reports"), "reports"),  # a file where a folder of it should be
        (lambda data: (data / "runs.jsonl").mkdir(parents=True), "runs.jsonl"),  # a folder where its log should be
    ],
    ids=["data-dir-is-a-file", "parent-is-a-file", "reports-is-a-file", "run-log-is-a-folder"],
)
def test_an_unusable_data_directory_is_one_clear_line_and_exit_2(
    dump_db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: Callable[[Path], object],
    named: str,
) -> None:
    """Item 12. (A folder without write permission is the same OSError, but root, as CI may run, writes anyway.)"""
    config = config_for(tmp_path, dump_db_url)
    placed = setup(config.data_dir)
    if isinstance(placed, Path) and placed.name == "data":  # the data directory under a file
        config.set("files.data_dir", str(placed))
        config.save()
    source = users_file(tmp_path / "userimport.csv", "h5dir", 3)

    assert main(["--config", str(config.path), "run", "users", str(source)]) == EXIT_CANNOT_RUN
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("toolsync: the data directory ")
    assert named in err
    assert count_users(dump_db_url, "h5dir") == 0
