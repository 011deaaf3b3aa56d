"""The names runs give their files in the data directory, written and read back by one class."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from toolsync_tui.engine.datadir.store import DataStore, Kind, StoredName, stamp_time, timestamp

STAMP = "20260105-090500"


def test_a_stamp_reads_back_as_its_moment() -> None:
    moment = datetime(2026, 1, 5, 9, 5, 0)
    assert timestamp(moment) == STAMP
    assert stamp_time(STAMP) == moment


@pytest.mark.parametrize(
    ("name", "suffix", "written"),
    [
        (StoredName("report", STAMP, "userimport", "users"), ".txt", "20260105-090500_users_userimport.txt"),
        (
            StoredName("report", STAMP, "userdelete", "deleteusers", True),
            ".csv",
            f"{STAMP}_deleteusers_userdelete_dryrun.csv",
        ),
        (StoredName("tryback", STAMP, "courses.csv"), "", "courses_tryback_20260105-090500.csv"),
        (StoredName("tryback", STAMP, "userpictures_b.zip"), "", "userpictures_b_tryback_20260105-090500.zip"),
        (StoredName("archive", STAMP, "courses.csv"), "", "20260105-090500_courses.csv"),
    ],
)
def test_each_name_reads_back_as_it_was_written(name: StoredName, suffix: str, written: str) -> None:
    assert name.format(suffix) == written
    assert StoredName.parse(name.kind, written) == name


def test_what_the_store_writes_is_what_it_reads(tmp_path: Path) -> None:
    store = DataStore(tmp_path)
    store.ensure()
    source = store.inbox / "userimport.csv"
    source.write_text("username\n")
    text, table = store.report_paths(STAMP, "users", source, True)
    tryback = store.tryback_path(STAMP, source)
    archived = store.archive_file(source, STAMP, "copy")
    assert archived is not None
    assert StoredName.of(text) == StoredName.of(table) == StoredName("report", STAMP, "userimport", "users", True)
    assert StoredName.of(tryback) == StoredName("tryback", STAMP, "userimport.csv")
    assert StoredName.of(archived) == StoredName("archive", STAMP, "userimport.csv")
    assert StoredName.of(source) is None  # the inbox holds command files, not a run's files


def test_a_name_taken_in_the_same_second_reads_back_too() -> None:
    dry = StoredName.parse("report", f"{STAMP}_deleteusers_userdelete_dryrun-2.txt")
    assert dry == StoredName("report", STAMP, "userdelete", "deleteusers", True)
    assert StoredName.parse("tryback", f"courses_tryback_{STAMP}-2.csv") == StoredName("tryback", STAMP, "courses.csv")
    # An archived courses-2.csv may be the second courses.csv of that second, or a file of that name: kept as it is.
    assert StoredName.parse("archive", f"{STAMP}_courses-2.csv") == StoredName("archive", STAMP, "courses-2.csv")


def test_a_trybacks_tryback_names_the_tryback_it_came_from() -> None:
    name = StoredName.parse("tryback", f"courses_tryback_{STAMP}_tryback_20260105-091000.csv")
    assert name == StoredName("tryback", "20260105-091000", f"courses_tryback_{STAMP}.csv")


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("report", "notes_dryrun.txt"),
        ("report", "20260105_users_x.txt"),
        ("tryback", "courses_tryback_x.csv"),
        ("archive", "notes.txt"),
    ],
)
def test_a_file_put_there_by_hand_is_no_runs(kind: Kind, name: str) -> None:
    assert StoredName.parse(kind, name) is None
