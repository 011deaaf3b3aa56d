"""The run log: newest first, each operation's last run, a damaged line passed over, trimmed when it grows."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolsync_tui.engine.run import log as runlog
from toolsync_tui.engine.run.log import RunLog, RunRecord


def record(operation: str, minute: int, **fields: object) -> RunRecord:
    return RunRecord(operation, f"{operation}.csv", f"2026-11-25T10:{minute:02d}:00", **fields)  # type: ignore[arg-type]


def test_runs_come_back_newest_first_and_by_operation(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    assert log.recent() == []
    log.add(record("users", 1, rows=3, counts={"created": 3}))
    log.add(record("enrols", 2, exit_code=2, problem="enrols.csv: unknown column 'x'"))
    log.add(record("users", 3, rows=3, counts={"unchanged": 3}))
    assert [(r.operation, r.started_at.minute) for r in log.recent()] == [("users", 3), ("enrols", 2), ("users", 1)]
    last = log.last_by_operation()
    assert last["users"].counts == {"unchanged": 3}
    assert last["enrols"].problem == "enrols.csv: unknown column 'x'"
    assert (tmp_path / "runs.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_damaged_line_is_passed_over(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    log.add(record("users", 1))
    with (tmp_path / "runs.jsonl").open("a") as out:
        out.write('{"operation": "users", "fi\n')  # a line cut short by a full disk
    log.add(record("users", 2))
    assert [r.started_at.minute for r in log.recent()] == [2, 1]


def test_the_log_is_trimmed_to_its_latest_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runlog, "TRIM_ABOVE", 2_000)
    monkeypatch.setattr(runlog, "KEEP", 5)
    log = RunLog(tmp_path)
    for minute in range(30):
        log.add(record("users", minute))
    kept = log.recent(100)
    assert 5 <= len(kept) < 30  # trimmed to the last 5 whenever it passed 2,000 bytes
    assert (tmp_path / "runs.jsonl").stat().st_size <= 2_000
    assert kept[0].started_at.minute == 29
    assert [r.started_at.minute for r in kept] == sorted((r.started_at.minute for r in kept), reverse=True)
