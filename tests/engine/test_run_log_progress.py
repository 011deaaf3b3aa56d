"""The run log's first and last lines and the progress page between them: how a run that never wrote its last line
(kill -9, a crash, a full disk at its end) reads, and how the next run or the interface's start closes it (issue 20,
item 8). The end-to-end proofs on MariaDB are in test_interrupted_runs.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from toolsync_tui.engine.datadir.history import report_results
from toolsync_tui.engine.run.exits import EXIT_KILLED
from toolsync_tui.engine.run.log import KEEP, KILLED, LOG_NAME, PROGRESS_NAME, STARTED, TRIM_ABOVE, RunLog, RunRecord
from toolsync_tui.engine.run.pipeline import close_unfinished_runs


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def killed_run(data_dir: Path, report: Path) -> None:
    """What a run leaves when it is killed in its third batch: its first line and its progress page."""
    journal = RunLog(data_dir).begin(RunRecord("users", "userimport.csv", "2026-01-05T09:00:00"))
    journal.progress(rows=500, counts={"created": 500}, last_line=501, report=str(report), writing=[502, 751])
    report.write_text("heading\n\nline 2: created (create) ...\n")
    journal._close()  # kill -9: nothing more is written, and the process is gone
    gone = dead_pid()
    for path in (data_dir / LOG_NAME, data_dir / PROGRESS_NAME):
        path.write_text(json.dumps({**json.loads(path.read_text()), "pid": gone}) + "\n")


def test_a_run_without_its_last_line_reads_as_interrupted_with_what_it_had_committed(tmp_path: Path) -> None:
    killed_run(tmp_path, tmp_path / "report.txt")

    [record] = RunLog(tmp_path).recent()

    assert (record.rows, record.counts, record.last_line) == (500, {"created": 500}, 501)
    assert (record.interrupted, record.exit_code, record.verdict.word()) == (KILLED, EXIT_KILLED, "interrupted")
    assert record.verdict.brief() == "interrupted after 500 rows: 500 created"
    assert record.interrupted_words() == (
        f"interrupted after 500 rows ({KILLED}); rows after line 501 were not processed; lines 502-751 were being "
        "written: they may have been committed"
    )


def test_a_run_in_progress_is_not_listed_until_it_ends(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    journal = log.begin(RunRecord("users", "userimport.csv", "2026-01-05T09:00:00"))  # this process: alive
    journal.progress(rows=250, counts={"created": 250}, last_line=251)
    assert log.recent() == []

    journal.end(RunRecord("users", "userimport.csv", "2026-01-05T09:00:00", rows=300, counts={"created": 300}))

    [record] = log.recent()
    assert (record.rows, record.interrupted, record.state) == (300, None, "done")
    assert not (tmp_path / PROGRESS_NAME).exists()
    assert len((tmp_path / LOG_NAME).read_text().splitlines()) == 2  # its first and last lines, read as one run


def test_the_interface_start_closes_a_killed_run_and_its_report(tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    killed_run(tmp_path, report)

    [note] = close_unfinished_runs(tmp_path)

    assert note.startswith("the previous users run (started 2026-01-05T09:00:00) was interrupted after 500 rows")
    assert note.endswith(f"its report: {report}")
    assert report.read_text().endswith(
        f"interrupted after 500 rows ({KILLED}); rows after line 501 were not processed; lines 502-751 were being "
        "written: they may have been committed\nend of report\n"
    )
    assert close_unfinished_runs(tmp_path) == []  # closed once: the log holds its last line now
    [record] = RunLog(tmp_path).recent()
    assert (record.rows, record.exit_code) == (500, EXIT_KILLED)
    assert not (tmp_path / PROGRESS_NAME).exists()


def test_a_last_line_the_log_could_not_take_is_written_by_the_next_run(tmp_path: Path) -> None:
    """A full disk at the very end: the progress page holds the run's last line (marked done), not an interruption."""
    log = RunLog(tmp_path)
    journal = log.begin(RunRecord("users", "userimport.csv", "2026-01-05T09:00:00"))
    final = RunRecord("users", "userimport.csv", "2026-01-05T09:00:00", rows=3, counts={"created": 3})
    (tmp_path / LOG_NAME).rename(tmp_path / "saved")
    (tmp_path / LOG_NAME).mkdir()  # the log cannot take a line now
    with pytest.raises(IsADirectoryError):
        journal.end(final)
    (tmp_path / LOG_NAME).rmdir()
    (tmp_path / "saved").rename(tmp_path / LOG_NAME)
    first = json.loads((tmp_path / LOG_NAME).read_text())
    (tmp_path / LOG_NAME).write_text(json.dumps({**first, "pid": dead_pid()}) + "\n")

    assert close_unfinished_runs(tmp_path) == ["the previous users run (started 2026-01-05T09:00:00) was recorded late"]
    [record] = RunLog(tmp_path).recent()
    assert (record.rows, record.interrupted, record.exit_code) == (3, None, 0)


def test_older_lines_without_a_run_id_read_as_before(tmp_path: Path) -> None:
    line = {"operation": "courses", "file": "courses.csv", "started": "2025-01-05T09:00:00", "rows": 4}
    (tmp_path / LOG_NAME).write_text(json.dumps(line) + "\n" + json.dumps({**line, "rows": 5}) + "\n")

    assert [record.rows for record in RunLog(tmp_path).recent()] == [5, 4]


def test_trimming_the_log_keeps_the_first_line_of_a_run_in_progress(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    log.begin(RunRecord("users", "userimport.csv", "2026-01-05T09:00:00"))  # this process: in progress
    other = RunRecord("courses", "courses.csv", "2026-01-05T09:00:00", problem="x" * 500)
    while (tmp_path / LOG_NAME).stat().st_size <= TRIM_ABOVE:  # other processes' runs, until the log is trimmed
        log.add(other)

    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert len(lines) <= KEEP + 1
    assert sum(json.loads(line)["state"] == STARTED for line in lines) == 1  # a kill now is still found


def test_the_history_says_a_killed_runs_report_was_interrupted_with_what_it_committed(tmp_path: Path) -> None:
    report = tmp_path / "20260105-090000_users_userimport.txt"
    killed_run(tmp_path, report)

    assert report_results(tmp_path) == {report.name: f"500 created; interrupted ({KILLED})"}
