"""Source guards and thresholds on MariaDB (issue 22, items 4 and 5): an empty file, a file far shorter than the last
applied one, a file cut in the middle of a row, a wrong trailer count and a wrong .sha256 are refused with a reason
naming the file (and line); --force runs the first two and never the others; a dry run is never refused but says
why a real run would be; safety_max_rows, update_threshold and update_max_rows stop a run with their own words."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.factories import unique
from tests.support.feeds import accounts, live_accounts, mariadb_site, users_feed
from tests.support.operation_files import inbox_file
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.exits import EXIT_SAFETY
from toolsync_tui.engine.run.guards import last_applied
from toolsync_tui.engine.run.log import RunLog
from toolsync_tui.engine.run.pipeline import SafetyStop, SourceRefused, run_operation
from toolsync_tui.engine.run.stops import GuardStop

Site = tuple[Config, MoodleGateway]


@pytest.fixture
async def maria(project_db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with mariadb_site(project_db_url, tmp_path) as site:
        yield site


def check_file(count: int, tail: str = "") -> str:
    """A course check file (headerless) of `count` course names, none of which exists."""
    return "".join(f"NOPE-{n}\n" for n in range(count)) + tail


def last_run(config: Config) -> tuple[int, str | None]:
    record = RunLog(config.data_dir).recent(1)[0]
    return record.exit_code, record.problem


async def test_an_empty_file_is_refused_and_force_runs_it(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("empty")
    path = inbox_file(config, "userimport.csv", users_feed(prefix, []))

    with pytest.raises(GuardStop) as stop:
        await run_operation(config, gateway, "users")

    assert str(stop.value).startswith("users: userimport.csv has no data rows (a header only)")
    assert "Re-run with --force" in str(stop.value)
    assert last_run(config) == (EXIT_SAFETY, str(stop.value))
    assert path.exists()  # left in the inbox, not held: hold is "cron" and this is no cron run
    forced = await run_operation(config, gateway, "users", force=True)
    assert (forced.rows, forced.exit_code) == (0, 0)
    assert not path.exists()


async def test_a_half_file_is_refused_naming_both_counts(maria: Site) -> None:
    config, gateway = maria
    inbox_file(config, "courses.csv", check_file(10))
    whole = await run_operation(config, gateway, "check")  # every course missing: rows failed, but it went through
    assert (whole.rows, whole.exit_code) == (10, 1)
    inbox_file(config, "courses.csv", check_file(4))

    with pytest.raises(GuardStop, match=r"courses\.csv has 4 data rows, fewer than 50% \(run\.guard_min_share\) of"):
        await run_operation(config, gateway, "check")

    record = last_applied(config.data_dir, "check", "courses.csv")
    assert record is not None
    assert record.run == RunLog(config.data_dir).recent(2)[1].run  # the refused run is not the last applied one
    assert f"of the 10 rows of the last applied file (courses.csv, {record.started})" in str(last_run(config)[1])
    other = inbox_file(config, "extra-courses.csv", check_file(1))  # another name: no part of the feed
    assert (await run_operation(config, gateway, "check", other)).rows == 1
    inbox_file(config, "courses.csv", check_file(5))  # half is enough
    assert (await run_operation(config, gateway, "check")).rows == 5
    config.set("run.guard_min_share", 0.0)  # off
    inbox_file(config, "courses.csv", check_file(1))
    assert (await run_operation(config, gateway, "check")).rows == 1


async def test_by_default_the_row_guards_hold_snapshot_files_only(maria: Site) -> None:
    """An update file of today's changes may be short or empty; in snapshot mode a missing row removes its record."""
    config, gateway = maria
    config.set("run.row_guards", "snapshot")  # the default (feeds.py widens it for the other tests)
    prefix = unique("rowguard")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(10)))
    assert (await run_operation(config, gateway, "users")).counts == {"created": 10}
    inbox_file(config, "userimport.csv", users_feed(prefix, range(2), first="G"))
    assert (await run_operation(config, gateway, "users")).counts == {"updated": 2}
    inbox_file(config, "userimport.csv", users_feed(prefix, []))
    assert (await run_operation(config, gateway, "users")).rows == 0
    inbox_file(config, "userimport.csv", users_feed(prefix, range(10)))
    assert (await run_operation(config, gateway, "users")).counts == {"updated": 2, "unchanged": 8}

    config.set("operations.users.mode", "snapshot")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(2), first="G"))
    with pytest.raises(GuardStop, match=r"userimport\.csv has 2 data rows, fewer than 50% .* of the 10 rows"):
        await run_operation(config, gateway, "users")
    assert (await accounts(gateway, prefix))[f"{prefix}9"] == ("F9", 0)  # nothing suspended


async def test_the_share_is_of_the_last_files_own_rows_never_of_the_rows_a_snapshot_added(maria: Site) -> None:
    config, gateway = maria
    config.set("operations.users.mode", "snapshot")
    config.set("run.safety_threshold", 0.0)  # a few accounts of a small site are over any share
    prefix = unique("share")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(10)))
    assert (await run_operation(config, gateway, "users")).counts == {"created": 10}
    inbox_file(config, "userimport.csv", users_feed(prefix, range(6)))
    night = await run_operation(config, gateway, "users")  # 6 of the file's rows, 4 suspensions of the snapshot's
    assert (night.rows, night.file_rows) == (10, 6)

    inbox_file(config, "userimport.csv", users_feed(prefix, range(4)))  # 4 of 6: more than half
    assert (await run_operation(config, gateway, "users")).counts == {"unchanged": 4, "updated": 2}
    active = {name for name, (_, suspended) in (await accounts(gateway, prefix)).items() if not suspended}
    assert active == {f"{prefix}{n}" for n in range(4)}


async def test_a_tryback_is_not_held_to_the_share_of_the_whole_file(maria: Site) -> None:
    config, gateway = maria
    inbox_file(config, "courses.csv", check_file(10))
    await run_operation(config, gateway, "check")
    tryback = inbox_file(config, "courses_tryback_20261206-020000.csv", check_file(1))
    assert (await run_operation(config, gateway, "check", tryback)).rows == 1


@pytest.mark.parametrize(
    ("last_row", "why"),
    [
        ("cut1;F1", "it has 2 of the header's 6 values"),
        ('cut1;F1;L1;cut1@example.org;"Icut', "a quote opened in it is never closed"),
    ],
)
async def test_a_file_cut_in_the_middle_of_a_row_is_refused_even_with_force(
    maria: Site, last_row: str, why: str
) -> None:
    config, gateway = maria
    prefix = unique("cut")
    path = inbox_file(config, "userimport.csv", users_feed(prefix, range(3)) + last_row)  # no line break at the end

    for force in (False, True):
        with pytest.raises(SourceRefused) as refused:
            await run_operation(config, gateway, "users", force=force, hold=True)
        assert f"userimport.csv line 5: the file ends in the middle of a row (no line break after it, and {why})" in (
            str(refused.value)
        )
        assert "a broken delivery is refused (--force does not run it)" in str(refused.value)

    assert last_run(config)[0] == EXIT_SAFETY
    assert path.exists()
    assert not (config.data_dir / "held").exists()  # never held: no approval makes it whole
    assert await accounts(gateway, prefix) == {}


async def test_a_whole_last_row_without_its_line_break_is_no_cut(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("whole")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(3)).rstrip("\n"))
    assert (await run_operation(config, gateway, "users")).counts == {"created": 3}


async def test_the_trailer_count_must_match(maria: Site) -> None:
    config, gateway = maria
    inbox_file(config, "courses.csv", check_file(3, "#rows: 4\n\n"))
    declared = r"courses\.csv line 4: its trailer declares 4 data rows \(#rows: 4\), but "
    with pytest.raises(SourceRefused, match=declared):
        await run_operation(config, gateway, "check", force=True)
    assert "the file has 3" in (last_run(config)[1] or "")
    inbox_file(config, "courses.csv", check_file(3, "// Rows = 3"))  # another comment prefix, no line break
    assert (await run_operation(config, gateway, "check")).rows == 3  # the trailer is no row


async def test_a_wrong_sha256_is_refused_and_a_right_one_goes_to_the_archive_with_its_file(maria: Site) -> None:
    config, gateway = maria
    content = check_file(3)
    path = inbox_file(config, "courses.csv", content)
    checksum = path.with_name("courses.csv.sha256")
    checksum.write_text(f"{hashlib.sha256(b'another file').hexdigest()}  courses.csv\n")

    wrong = r"courses\.csv: its SHA-256 checksum \([0-9a-f]{16}\.\.\.\) does not match courses\.csv\.sha256"
    with pytest.raises(SourceRefused, match=wrong):
        await run_operation(config, gateway, "check", force=True)
    checksum.write_text("not a checksum\n")
    with pytest.raises(SourceRefused, match=r"courses\.csv\.sha256 is not in sha256sum's format"):
        await run_operation(config, gateway, "check")

    checksum.write_text(f"{hashlib.sha256(content.encode()).hexdigest()} *exports/courses.csv\n")
    result = await run_operation(config, gateway, "check")
    assert result.rows == 3
    assert not checksum.exists()
    assert result.archive_path is not None
    assert result.archive_path.with_name(result.archive_path.name + ".sha256").is_file()


async def test_a_picture_archive_is_checked_against_its_sha256(maria: Site) -> None:
    config, gateway = maria
    archive = inbox_file(config, "userpictures_night.zip", b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
    archive.with_name(archive.name + ".sha256").write_text("0" * 64 + "  userpictures_night.zip\n")
    with pytest.raises(SourceRefused, match=r"userpictures_night\.zip: its SHA-256 checksum"):
        await run_operation(config, gateway, "pictures", archive)


async def test_a_dry_run_is_never_refused_and_says_what_a_real_run_would_meet(maria: Site) -> None:
    config, gateway = maria
    path = inbox_file(config, "courses.csv", check_file(0, "#rows: 2\n"))
    result = await run_operation(config, gateway, "check", dry_run=True, hold=True)
    assert result.held is None
    assert result.notes[0] == (
        "a real run would refuse this file: courses.csv line 1: its trailer declares 2 data rows (#rows: 2), but the "
        "file has 0"
    )
    assert path.exists()
    assert not (config.data_dir / "held").exists()


async def test_safety_max_rows_stops_a_run_removing_more_records_than_it_allows(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("max")
    inbox_file(config, "userimport.csv", users_feed(prefix, range(6)))
    await run_operation(config, gateway, "users")
    config.set("run.safety_threshold", 0.0)  # the share off: the count alone
    config.set("run.safety_max_rows", 3)
    inbox_file(config, "userimport.csv", users_feed(prefix, range(6), suspended=range(4)))

    with pytest.raises(SafetyStop) as stop:
        await run_operation(config, gateway, "users")

    assert str(stop.value) == (
        "users: this file would delete, unenrol or suspend 4 records, more than run.safety_max_rows allows (3). "
        "Nothing was written. Re-run with --force (or confirm in the interface) if this is intended."
    )
    assert all(suspended == 0 for _, suspended in (await accounts(gateway, prefix)).values())
    config.set("run.safety_max_rows", 4)
    assert (await run_operation(config, gateway, "users")).counts == {"updated": 4, "unchanged": 2}


async def test_update_thresholds_stop_a_file_rewriting_most_accounts(maria: Site) -> None:
    config, gateway = maria
    prefix = unique("upd")
    count = 3 * await live_accounts(gateway) + 4  # so that rewriting them all is more than 75% of the site's
    inbox_file(config, "userimport.csv", users_feed(prefix, range(count)))
    await run_operation(config, gateway, "users")
    base = await live_accounts(gateway)
    config.set("run.update_threshold", 0.75)
    inbox_file(config, "userimport.csv", users_feed(prefix, range(count), first="Renamed"))

    with pytest.raises(SafetyStop) as stop:
        await run_operation(config, gateway, "users")

    share = count / base
    assert str(stop.value).startswith(
        f"users: this file would update {count} of {base} existing records ({share:.0%}), more than the update "
        "threshold (run.update_threshold) of 75%. Nothing was written."
    )
    assert stop.value.kind == "updates"
    assert {first for first, _ in (await accounts(gateway, prefix)).values()} == {f"F{n}" for n in range(count)}
    config.set("run.update_threshold", 0.0)
    config.set("run.update_max_rows", count - 1)
    with pytest.raises(SafetyStop, match=rf"would update {count} records, more than run\.update_max_rows allows"):
        await run_operation(config, gateway, "users")
    config.set("run.update_max_rows", count)
    assert (await run_operation(config, gateway, "users")).counts == {"updated": count}
    assert DataStore(config.data_dir).inbox.joinpath("userimport.csv").exists() is False
