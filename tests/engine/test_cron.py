"""`toolsync cron` on the sandbox: due operations run in dependency order on their files and leave their run log,
absent files are passed over, a held data directory keeps the operation due, calls never overlap, the drop directory
feeds the inbox, expired files go, and the command line prints one line per operation."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.mail import Inbox, serve
from tests.support.schedules import FAKE_CRONTAB, executable
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.run.lock import RunLock
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.unattended.cron import CRON_LOCK, run_cron

PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS)


def schedule(config: Config, **schedules: str) -> None:
    config.set("cron.timezone", "Europe/Paris")
    for name, expression in schedules.items():
        config.set(f"operations.{name}.schedule", expression)
    config.save()


async def quiet_cron(config: Config, when: str) -> list[str]:
    lines: list[str] = []
    await run_cron(config, now=at(when), emit=lines.append)
    return lines


async def test_due_operations_run_in_dependency_order_once(sandbox: Config) -> None:
    # Listed out of order on purpose: users before courses is not how they run.
    schedule(sandbox, users="0 2 * * *", courses="0 2 * * *", cohorts="0 3 * * *")
    assert await quiet_cron(sandbox, "2026-11-25 01:00") == []  # first seen: nothing owed yet
    report_lines = await quiet_cron(sandbox, "2026-11-25 02:05")
    assert [line.split(":")[0] for line in report_lines] == ["courses", "users"]
    assert report_lines[0].startswith("courses: uploadcourses.csv: ")
    assert "users: userimport.csv: 3 rows were processed" in report_lines[1]
    inbox = DataStore(sandbox.data_dir).inbox
    assert not (inbox / "userimport.csv").exists()  # archived
    assert (inbox / "cohorts.csv").exists()  # not due yet
    runs = RunLog(sandbox.data_dir).recent()
    assert [(run.operation, run.file) for run in runs] == [
        ("users", "userimport.csv"),
        ("courses", "uploadcourses.csv"),
    ]
    assert runs[0].counts == {"created": 3}
    assert await quiet_cron(sandbox, "2026-11-25 02:10") == []  # handled: not again
    assert [line.split(":")[0] for line in await quiet_cron(sandbox, "2026-11-25 03:00")] == ["cohorts"]


async def test_a_paused_schedule_does_not_run(sandbox: Config) -> None:
    schedule(sandbox, users="0 * * * *")
    await quiet_cron(sandbox, "2026-11-25 09:30")
    sandbox.set("operations.users.schedule_enabled", False)
    assert await quiet_cron(sandbox, "2026-11-25 10:00") == []
    sandbox.set("operations.users.schedule_enabled", True)
    assert await quiet_cron(sandbox, "2026-11-25 10:05") == []  # its slots while paused are not owed
    assert (await quiet_cron(sandbox, "2026-11-25 11:00"))[0].startswith("users: userimport.csv")


async def test_an_absent_file_is_passed_over_cleanly(sandbox: Config) -> None:
    schedule(sandbox, enrols="*/5 * * * *")
    (DataStore(sandbox.data_dir).inbox / "enrols.csv").unlink()
    await quiet_cron(sandbox, "2026-11-25 10:00")
    report = await run_cron(sandbox, now=at("2026-11-25 10:05"), emit=lambda _: None)
    assert report.lines == ["enrols: due 2026-11-25 10:05, nothing to run (enrols.csv is not in the inbox)"]
    assert report.exit_code == 0
    assert RunLog(sandbox.data_dir).recent() == []


async def test_every_picture_archive_runs(sandbox: Config) -> None:
    schedule(sandbox, pictures="@hourly")
    inbox = DataStore(sandbox.data_dir).inbox
    (inbox / "userpictures_b.zip").write_bytes((inbox / "userpictures_sample.zip").read_bytes())
    await quiet_cron(sandbox, "2026-11-25 09:30")
    lines = await quiet_cron(sandbox, "2026-11-25 10:00")
    assert [line.split(": ")[1] for line in lines] == ["userpictures_b.zip", "userpictures_sample.zip"]


async def test_a_held_data_directory_keeps_the_operation_due(sandbox: Config) -> None:
    schedule(sandbox, users="0 * * * *")
    await quiet_cron(sandbox, "2026-11-25 09:30")
    with RunLock(sandbox.data_dir, "users"):  # a run from the interface
        lines = await quiet_cron(sandbox, "2026-11-25 10:00")
    assert len(lines) == 1
    assert lines[0].startswith("users: due 2026-11-25 10:00, not run: another run is in progress")
    assert lines[0].endswith("it stays due")
    lines = await quiet_cron(sandbox, "2026-11-25 10:05")
    assert lines[0].startswith("users: userimport.csv: 3 rows were processed")


async def test_cron_calls_never_overlap(sandbox: Config) -> None:
    schedule(sandbox, users="0 * * * *")
    await quiet_cron(sandbox, "2026-11-25 09:30")
    with RunLock(sandbox.data_dir, "cron", CRON_LOCK):
        lines = await quiet_cron(sandbox, "2026-11-25 10:00")
    assert lines == ["an earlier toolsync cron is still running: nothing done this time"]
    assert (DataStore(sandbox.data_dir).inbox / "userimport.csv").exists()


async def test_problems_make_exit_code_2_and_the_slot_is_not_retried(sandbox: Config) -> None:
    schedule(sandbox, users="0 * * * *")
    (DataStore(sandbox.data_dir).inbox / "userimport.csv").write_text("username;nonsense\njdoe;x\n")
    await quiet_cron(sandbox, "2026-11-25 09:30")
    report = await run_cron(sandbox, now=at("2026-11-25 10:00"), emit=lambda _: None)
    assert report.exit_code == 2
    assert report.problems[0].startswith("users: userimport.csv")
    assert "nonsense" in report.problems[0]
    assert RunLog(sandbox.data_dir).recent()[0].problem is not None
    assert await quiet_cron(sandbox, "2026-11-25 10:05") == []  # waits for the next slot, no retry storm


async def test_the_drop_directory_feeds_the_run_of_the_same_call(sandbox: Config, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    sandbox.set("cron.drop_dir", str(drop))
    schedule(sandbox, users="0 * * * *")
    inbox = DataStore(sandbox.data_dir).inbox
    new = (inbox / "userimport.csv").read_text().replace("jdoe", "jdoe2")
    (inbox / "userimport.csv").unlink()
    (drop / "userimport.csv").write_text(new)
    (drop / "groups.csv").write_text("still being written")
    old = time.time() - 600
    os.utime(drop / "userimport.csv", (old, old))
    await quiet_cron(sandbox, "2026-11-25 09:30")  # takes the file; the schedule is first seen
    lines = await quiet_cron(sandbox, "2026-11-25 10:00")
    assert "users: userimport.csv: 3 rows were processed" in lines[-1]
    assert (drop / "groups.csv").exists()  # too recent: left for next time
    assert not (drop / "userimport.csv").exists()
    assert (sandbox.data_dir / "captures.jsonl").read_text().count("userimport.csv") == 2  # source and target


async def test_expired_files_are_removed_never_pending_ones(sandbox: Config) -> None:
    sandbox.set("cron.retention_days", 30)
    sandbox.save()
    store = DataStore(sandbox.data_dir)
    old_report = store.reports / "20250101-000000_users_userimport.txt"
    old_report.write_text("old")
    old = time.time() - 40 * 86400
    os.utime(old_report, (old, old))
    os.utime(store.inbox / "userimport.csv", (old, old))
    lines = await quiet_cron(sandbox, "2026-11-25 10:00")
    assert lines == ["retention: removed 1 archive, report or tryback file older than 30 days"]
    assert not old_report.exists()
    assert (store.inbox / "userimport.csv").exists()


class _StoppedClock(datetime):
    """The wall clock held at one minute: the command's two calls must not straddle a minute's turn."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _StoppedClock:
        return cls.fromisoformat("2026-11-25T10:00:30+01:00").astimezone(tz)


def test_the_command_prints_a_line_per_operation_and_exits_with_the_worst_code(
    sandbox: Config, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("toolsync_tui.engine.unattended.cron.datetime", _StoppedClock)
    schedule(sandbox, check="* * * * *")
    # First seen this minute: due at once. The sample names courses the sandbox lacks: rows failed, exit 1.
    assert main(["--config", str(sandbox.path), "cron"]) == 1
    out = capsys.readouterr().out
    # The duration is the machine's: under load the four rows may take a tenth of a second.
    assert re.match(r"check: courses\.csv: 4 rows were processed in \d+\.\d s: 4 failed \(report ", out), out
    assert len(out.splitlines()) == 1
    assert main(["--config", str(sandbox.path), "cron"]) == 0
    assert capsys.readouterr().out == ""


def test_cron_needs_an_explicit_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOOLSYNC_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["cron"]) == 2
    assert "no configuration found: give --config PATH" in capsys.readouterr().err


@pytest.fixture
def mailbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback, and what it received."""
    received = Inbox()
    with serve(received) as port:
        yield received, port


async def test_failures_are_mailed_to_the_administrators(sandbox: Config, mailbox: tuple[Inbox, int]) -> None:
    received, smtp_port = mailbox
    schedule(sandbox, check="0 * * * *")
    for key, value in {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "sender": "toolsync@moodle.example.edu",
        "recipients": ["admins@example.edu"],
    }.items():
        sandbox.set(f"notify.{key}", value)
    await quiet_cron(sandbox, "2026-11-25 09:30")
    assert received.messages == []
    await quiet_cron(sandbox, "2026-11-25 10:00")
    [mail] = received.messages
    assert mail["Subject"] == "toolsync on sandbox sandbox.sqlite: 1 operation, 4 rows failed"
    assert received.recipients == [["admins@example.edu"]]
    body = mail.get_body(("plain",))
    assert body is not None
    assert "4 rows were processed" in body.get_content()
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename().endswith("_check_courses.txt")
    assert "line 6: failed (not found) Course with shortname 'NOPE999' not found" in attachment.get_content()


def test_crontab_show_install_remove_from_the_command_line(
    sandbox: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = executable(tmp_path / "fake-crontab", FAKE_CRONTAB)  # keeps its table beside itself
    table = tmp_path / "crontab.txt"
    sandbox.set("cron.crontab_command", str(fake))
    sandbox.save()
    arguments = ["--config", str(sandbox.path), "crontab"]
    assert main([*arguments, "show"]) == 0
    assert capsys.readouterr().out == "no toolsync line in this user's crontab\n"
    assert main([*arguments, "install", "--every", "10"]) == 0
    installed = capsys.readouterr().out
    assert installed.startswith("installed: */10 * * * * ")
    assert f"-m toolsync_tui --config {sandbox.path} cron" in installed
    assert main([*arguments, "show"]) == 0
    assert capsys.readouterr().out.startswith("*/10 * * * * ")
    assert main([*arguments, "remove"]) == 0
    assert capsys.readouterr().out == "removed the toolsync line\n"
    assert "toolsync_tui" not in table.read_text()
