"""Held runs on MariaDB (issue 22, item 5): a run a source guard or a threshold stops is held rather than aborted (cron
by default, `toolsync run` with hold = "always"): its file waits in held/<id>/ with its dry run's counts and a sample
of what it would remove, the run log says why (exit code 4), the notification says "held" and how to approve; cron
leaves the operation alone while it waits; approving runs it through the normal pipeline, discarding archives it; a
broken delivery is refused, never held; hold_removals_only lets the creates through and holds only the removals."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import run_blocking
from tests.support.factories import unique
from tests.support.feeds import accounts, live_accounts, mariadb_site, users_feed
from tests.support.operation_files import inbox_file
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import HeldRuns
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.exits import EXIT_HELD, EXIT_SAFETY
from toolsync_tui.engine.run.hold import approve_held
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import run_operation
from toolsync_tui.engine.unattended.cron import run_cron

Site = tuple[Config, MoodleGateway]
PARIS = ZoneInfo("Europe/Paris")
RECORDER = """import json, os, sys
from pathlib import Path
saved = {"stdin": sys.stdin.read(), "subject": os.environ.get("TOOLSYNC_SUBJECT")}
Path(sys.argv[0]).with_name("received.json").write_text(json.dumps(saved))
"""


def holding_always(url: str, tmp_path: Path) -> Config:
    """A saved configuration whose `toolsync run` holds (run.hold = "always"), for the command-line tests."""

    async def configured() -> Config:
        async with mariadb_site(url, tmp_path) as (config, _):
            config.set("run.hold", "always")
            config.save()
            return config

    return run_blocking(configured())


@pytest.fixture
async def maria(project_db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with mariadb_site(project_db_url, tmp_path) as site:
        yield site


def recorder(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "notify-admins"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{RECORDER}")
    path.chmod(0o755)
    return path


async def cron_at(config: Config, when: str) -> tuple[list[str], int]:
    lines: list[str] = []
    report = await run_cron(config, now=datetime.fromisoformat(when).replace(tzinfo=PARIS), emit=lines.append)
    return lines, report.exit_code


def received(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "bin" / "received.json"
    saved: dict[str, str] = json.loads(path.read_text())
    path.unlink()
    return saved


async def test_cron_holds_a_half_file_cron_waits_and_approving_applies_it(maria: Site, tmp_path: Path) -> None:
    config, gateway = maria
    config.set("cron.timezone", "Europe/Paris")
    config.set("operations.users.schedule", "0 2 * * *")
    config.set("notify.command", str(recorder(tmp_path)))
    config.set("notify.when", "failures")
    prefix = unique("night")
    assert await cron_at(config, "2026-11-25 01:00") == ([], 0)  # first seen: nothing owed yet
    inbox_file(config, "userimport.csv", users_feed(prefix, range(10)))
    lines, code = await cron_at(config, "2026-11-25 02:05")
    assert (code, len(await accounts(gateway, prefix))) == (0, 10)

    # Night 2: the export broke off after 3 accounts (the rest renamed, to see what lands).
    half = inbox_file(config, "userimport.csv", users_feed(prefix, range(3), first="Half"))
    lines, code = await cron_at(config, "2026-11-26 02:05")

    [held] = HeldRuns(config.data_dir).list()
    reason = (
        "userimport.csv has 3 data rows, fewer than 50% (run.guard_min_share) of the 10 rows of the last applied "
        "file (userimport.csv, "
    )
    assert held.reason.startswith(reason)
    assert (held.operation, held.original, held.removals_only) == ("users", "userimport.csv", False)
    assert held.counts == {"updated": 3}  # its dry run
    assert held.file == config.data_dir / "held" / held.id / "userimport.csv"
    assert held.file.read_text() == users_feed(prefix, range(3), first="Half")
    assert not half.exists()
    assert code == EXIT_HELD
    assert lines == [
        f"users: userimport.csv: HELD for approval ({held.reason}; toolsync held approve {held.short_id}); its dry "
        f"run: 3 rows would be processed in {lines[0].split(' processed in ')[1].split(':')[0]}: 3 updated "
        f"(report {held.report}; table {Path(held.report or '').with_suffix('.csv')})"
    ]
    record = RunLog(config.data_dir).recent(1)[0]
    assert (record.run, record.exit_code, record.problem, record.dry_run) == (held.id, EXIT_HELD, held.reason, True)
    notice = received(tmp_path)
    assert notice["subject"].startswith("toolsync on ")
    assert ": 1 run held for approval; 1 operation" in notice["subject"]
    assert f"  HELD for approval (the run is waiting): {held.reason}\n" in notice["stdin"]
    assert (
        f"  approve: toolsync held approve {held.short_id}   discard: toolsync held discard {held.short_id}\n"
        in (notice["stdin"])
    )
    assert {first for first, _ in (await accounts(gateway, prefix)).values()} == {f"F{n}" for n in range(10)}

    # Night 3: a newer file waits in the inbox while the held run does; cron says so, and tells the administrators.
    newer = inbox_file(config, "userimport.csv", users_feed(prefix, range(10), first="New"))
    lines, code = await cron_at(config, "2026-11-27 02:05")
    assert code == EXIT_HELD
    assert lines == [
        f"users: due 2026-11-27 02:00, not run: users: a run held {held.held_at} waits for approval ({held.reason}); "
        f"approve: toolsync held approve {held.short_id}, or discard: toolsync held discard {held.short_id}"
    ]
    assert newer.exists()
    assert "Not run, a held run waits for approval:\n  - users: a run held " in received(tmp_path)["stdin"]

    [approved] = await approve_held(config, gateway, held.short_id)

    assert (approved.counts, approved.exit_code, approved.dry_run) == ({"updated": 3}, 0, False)
    assert approved.archive_path is not None
    assert approved.archive_path.read_text() == users_feed(prefix, range(3), first="Half")
    assert HeldRuns(config.data_dir).list() == []
    assert not (config.data_dir / "held" / held.id).exists()
    firsts = {name: first for name, (first, _) in (await accounts(gateway, prefix)).items()}
    assert firsts == {f"{prefix}{n}": ("Half" if n < 3 else "F") + str(n) for n in range(10)}
    lines, code = await cron_at(config, "2026-11-28 02:05")  # the newer file runs again at the next slot
    assert code == 0
    assert not newer.exists()


def test_toolsync_run_holds_an_empty_file_with_hold_always_then_list_and_discard(
    project_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = holding_always(project_db_url, tmp_path)
    argv = ["--config", str(config.path)]
    prefix = unique("empty")
    inbox_file(config, "userimport.csv", users_feed(prefix, []))

    assert main([*argv, "run", "users"]) == EXIT_HELD
    [held] = HeldRuns(config.data_dir).list()
    out = capsys.readouterr().out
    assert out.startswith("users: held for approval; its dry run: 0 rows would be processed in ")
    assert f"  note: held for approval, nothing written: {held.reason}; the file waits in " in out
    empty = "userimport.csv has no data rows (a header only): an empty export usually means its source failed"
    assert held.reason == empty
    assert held.counts == {}

    assert main([*argv, "held", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[:3] == [
        f"{held.short_id}  users: userimport.csv, held {held.held_at}",
        f"  why: {held.reason}",
        "  its dry run: no rows",
    ]
    inbox_file(config, "userimport.csv", users_feed(prefix, range(2)))  # a run by hand goes ahead, warned
    assert main([*argv, "run", "users", "--dry-run"]) == 0
    waits = f"waits for approval ({held.approve_command()})"
    warning = f"toolsync: warning: a run of userimport.csv held {held.held_at} {waits}"
    assert capsys.readouterr().err.startswith(warning)
    assert main([*argv, "held", "approve", "nosuchid"]) == 2
    assert "nosuchid: no held run has this id; held runs: " in capsys.readouterr().err

    assert main([*argv, "held", "discard", held.short_id]) == 0
    target = DataStore(config.data_dir).archive / "discarded"
    [discarded] = [path for path in target.iterdir() if not path.name.endswith(".json")]
    assert capsys.readouterr().out == f"users: held run {held.short_id} discarded; its file is in {discarded}\n"
    assert discarded.read_text() == users_feed(prefix, [])
    assert json.loads(discarded.with_name(discarded.name + ".held.json").read_text())["reason"] == held.reason
    assert HeldRuns(config.data_dir).list() == []
    assert main([*argv, "held", "list"]) == 0
    assert capsys.readouterr().out == "no run is held\n"


@pytest.mark.parametrize("broken", ["cut", "checksum", "trailer"])
def test_a_broken_delivery_is_refused_and_not_held(
    project_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    config = holding_always(project_db_url, tmp_path)
    content = users_feed(unique("broken"), range(3))
    if broken == "cut":
        content += "late;La"
    if broken == "trailer":
        content += "#rows: 30\n"
    path = inbox_file(config, "userimport.csv", content)
    if broken == "checksum":
        path.with_name("userimport.csv.sha256").write_text("0" * 64 + "  userimport.csv\n")

    assert main(["--config", str(config.path), "run", "users"]) == EXIT_SAFETY
    err = capsys.readouterr().err
    said = {
        "cut": "userimport.csv line 5: the file ends in the middle of a row",
        "checksum": "userimport.csv: its SHA-256 checksum",
        "trailer": "userimport.csv line 5: its trailer declares 30 data rows (#rows: 30), but the file has 3",
    }
    assert err.startswith(f"toolsync: users: {said[broken]}")
    assert "a broken delivery is refused (--force does not run it); ask the sender for the whole file" in err
    assert path.exists()
    assert HeldRuns(config.data_dir).list() == []
    assert RunLog(config.data_dir).recent(1)[0].exit_code == EXIT_SAFETY


async def test_the_update_threshold_holds_a_file_rewriting_most_accounts(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("rewrite")
    count = 3 * await live_accounts(gateway) + 4  # rewriting them all is more than 75% of the site's accounts
    inbox_file(config, "userimport.csv", users_feed(prefix, range(count)))
    await run_operation(config, gateway, "users")
    config.set("run.update_threshold", 0.75)
    inbox_file(config, "userimport.csv", users_feed(prefix, range(count), first="Rewritten"))

    result = await run_operation(config, gateway, "users", hold=True)

    assert result.held is not None
    assert result.held.reason.startswith(f"this file would update {count} of ")
    assert result.held.counts == {"updated": count}
    assert result.held.sample == []  # it removes nothing
    assert (result.exit_code, result.dry_run) == (EXIT_HELD, True)
    assert {first for first, _ in (await accounts(gateway, prefix)).values()} == {f"F{n}" for n in range(count)}


async def test_hold_removals_only_lets_the_creates_through_and_holds_the_suspensions(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("split")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(6)))
    await run_operation(config, gateway, "users")
    config.set("run.safety_threshold", 0.001)
    config.set("run.safety_min_rows", 2)
    config.set("run.hold_removals_only", True)
    feed = users_feed(prefix, range(9), suspended=[1, 3, 4])  # 6-8 new, 1, 3 and 4 suspended
    inbox_file(config, "userimport.csv", feed)

    result = await run_operation(config, gateway, "users", hold=True)

    held = result.held
    assert held is not None
    assert held.removals_only
    assert held.reason.startswith("this file would delete, unenrol or suspend 3 of ")
    assert held.counts == {"updated": 3}
    assert [line.split(" User")[0] for line in held.sample] == [f"line {n}: updated (suspend)" for n in (3, 5, 6)]
    assert result.counts == {"created": 3, "unchanged": 3, "skipped": 3}
    assert (result.exit_code, result.dry_run) == (EXIT_HELD, False)
    assert result.archive_path is not None  # the file went through
    header, *rows = feed.splitlines(keepends=True)
    assert held.file.read_text() == header + rows[1] + rows[3] + rows[4]  # lines 3, 5 and 6: the suspensions
    assert held.file.parent == config.data_dir / "held" / held.id
    found = await accounts(gateway, prefix)
    assert sorted(found) == sorted(f"{prefix}{n}" for n in range(9))  # the creates landed
    assert all(suspended == 0 for _, suspended in found.values())  # the suspensions did not
    record = RunLog(config.data_dir).recent(1)[0]
    assert (record.exit_code, record.problem, record.dry_run, record.rows) == (EXIT_HELD, held.reason, False, 9)

    [approved] = await approve_held(config, gateway, held.id)

    assert approved.counts == {"updated": 3}
    suspended = {name for name, (_, flag) in (await accounts(gateway, prefix)).items() if flag}
    assert suspended == {f"{prefix}{n}" for n in (1, 3, 4)}
    assert HeldRuns(config.data_dir).list() == []


async def test_a_dry_run_never_holds(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("dry")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(4)))
    await run_operation(config, gateway, "users")
    config.set("run.safety_threshold", 0.001)
    config.set("run.safety_min_rows", 2)
    path = inbox_file(config, "userimport.csv", users_feed(prefix, range(4), suspended=range(4)))

    result = await run_operation(config, gateway, "users", dry_run=True, hold=True)

    assert (result.held, result.counts, result.exit_code) == (None, {"updated": 4}, 0)
    assert path.exists()
    assert HeldRuns(config.data_dir).list() == []


async def test_an_empty_snapshot_file_is_held_with_a_sample_of_the_accounts_it_would_suspend(maria: Site) -> None:
    config, gateway = maria
    config.set("operations.users.mode", "snapshot")
    prefix = unique("snap")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(3)))
    assert (await run_operation(config, gateway, "users")).counts == {"created": 3}
    path = inbox_file(config, "userimport.csv", users_feed(prefix, []))

    result = await run_operation(config, gateway, "users", hold=True)

    held = result.held
    assert held is not None
    assert held.reason.startswith("userimport.csv has no data rows (a header only)")
    assert held.counts.get("updated", 0) >= 3
    mine = [line for line in held.sample if prefix in line]
    assert len(mine) == 3, held.sample
    assert all("(suspend)" in line and line.endswith("; not in the snapshot file") for line in mine)
    assert not path.exists()
    assert all(suspended == 0 for _, suspended in (await accounts(gateway, prefix)).values())


def test_toolsync_held_approve_runs_the_held_file(
    project_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = unique("approve")

    async def configured() -> tuple[Config, int]:
        async with mariadb_site(project_db_url, tmp_path) as (config, gateway):
            config.set("run.hold", "always")
            config.set("run.safety_threshold", 0.001)
            config.set("run.safety_min_rows", 2)
            config.save()
            inbox_file(config, "userimport.csv", users_feed(prefix, range(4)))
            await run_operation(config, gateway, "users")
            return config, len(await accounts(gateway, prefix))

    async def suspended(config: Config) -> int:
        async with mariadb_site(project_db_url, tmp_path / "check") as (_, gateway):
            return sum(flag for _, flag in (await accounts(gateway, prefix)).values())

    config, created = run_blocking(configured())
    argv = ["--config", str(config.path)]
    inbox_file(config, "userimport.csv", users_feed(prefix, range(4), suspended=range(4)))
    assert main([*argv, "run", "users"]) == EXIT_HELD
    [held] = HeldRuns(config.data_dir).list()
    assert held.reason.startswith("this file would delete, unenrol or suspend 4 of ")
    assert (created, run_blocking(suspended(config))) == (4, 0)
    capsys.readouterr()

    assert main([*argv, "held", "approve", held.short_id]) == 0

    out = capsys.readouterr().out
    assert out.startswith("users: 4 rows were processed in ")
    assert ": 4 updated\n" in out
    assert f"  note: held run {held.short_id} approved and run; the hold is removed\n" in out
    assert run_blocking(suspended(config)) == 4
    assert HeldRuns(config.data_dir).list() == []
    archived = Path(out.split("  archived: ")[1].splitlines()[0])
    assert archived.read_text() == users_feed(prefix, range(4), suspended=range(4))


async def test_cron_holds_an_empty_file_and_hold_never_only_stops_it(maria: Site) -> None:
    config, _ = maria
    config.set("cron.timezone", "Europe/Paris")
    config.set("operations.users.schedule", "0 2 * * *")
    await cron_at(config, "2026-11-25 01:00")
    config.set("run.hold", "never")
    path = inbox_file(config, "userimport.csv", users_feed(unique("void"), []))
    lines, code = await cron_at(config, "2026-11-25 02:05")
    assert code == 2  # stopped, as before holds: the operation could not run
    assert lines[0].startswith("users: due 2026-11-25 02:00, could not run: users: userimport.csv has no data rows")
    assert path.exists()
    assert HeldRuns(config.data_dir).list() == []

    config.set("run.hold", "cron")
    lines, code = await cron_at(config, "2026-11-26 02:05")

    [held] = HeldRuns(config.data_dir).list()
    assert code == EXIT_HELD
    assert lines[0].startswith(f"users: userimport.csv: HELD for approval ({held.reason}; ")
    assert held.reason.startswith("userimport.csv has no data rows (a header only)")
    assert not path.exists()
    assert held.file.is_file()


async def test_with_diff_the_held_removals_are_not_taken_for_applied(maria: Site) -> None:
    config, gateway = maria
    config.set("operations.users.diff", True)
    prefix = unique("diffsplit")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(4)))
    await run_operation(config, gateway, "users")
    config.set("run.safety_threshold", 0.001)
    config.set("run.safety_min_rows", 2)
    config.set("run.hold_removals_only", True)
    feed = users_feed(prefix, range(6), suspended=[0, 1])

    inbox_file(config, "userimport.csv", feed)
    first = await run_operation(config, gateway, "users", hold=True)
    inbox_file(config, "userimport.csv", feed)  # the same file again, the hold not yet approved
    second = await run_operation(config, gateway, "users", hold=True)

    assert first.counts == {"created": 2, "unchanged": 2, "skipped": 2}
    assert second.counts == {"unchanged": 4, "skipped": 2}  # the suspensions are held again, not "unchanged"
    assert first.held is not None
    assert second.held is not None
    assert len(HeldRuns(config.data_dir).list()) == 2
