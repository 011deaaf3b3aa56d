"""Old archives, reports and trybacks are removed; the inbox and everything else stay."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from toolsync_tui.engine.datadir.retention import DAY, remove_expired
from toolsync_tui.engine.datadir.store import DataStore

NOW = 1_750_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> DataStore:
    store = DataStore(tmp_path / "data")
    store.ensure()
    return store


def aged(path: Path, days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_symlink():
        path.write_text("x")
    moment = NOW - days * DAY
    os.utime(path, (moment, moment), follow_symlinks=False)
    return path


def test_files_older_than_the_retention_are_removed_in_each_folder(store: DataStore) -> None:
    old = [
        aged(store.archive / "20250101-020000_userimport.csv", 31),
        aged(store.archive / "manual" / "enrols.csv", 40),
        aged(store.reports / "20250101-020000_users_userimport.txt", 30.01),
        aged(store.tryback / "userimport_tryback_20250101-020000.csv", 365),
    ]
    kept = [
        aged(store.archive / "20250301-020000_userimport.csv", 29.99),
        aged(store.reports / "20250301-020000_users_userimport.txt", 1),
        aged(store.tryback / "userimport_tryback_20250301-020000.csv", 0),
    ]

    assert remove_expired(store, 30, now=NOW) == sorted(old)

    assert all(p.exists() for p in kept)
    assert not any(p.exists() for p in old)
    assert (store.archive / "manual").is_dir()  # folders stay


def test_the_inbox_and_the_rest_of_the_data_directory_are_never_touched(store: DataStore) -> None:
    pending = aged(store.inbox / "userimport.csv", 400)
    state = aged(store.root / "schedules.json", 400)

    assert remove_expired(store, 30, now=NOW) == []
    assert pending.exists()
    assert state.exists()


@pytest.mark.parametrize("days", [0, -1])
def test_no_retention_removes_nothing(store: DataStore, days: int) -> None:
    report = aged(store.reports / "old.txt", 10_000)
    assert remove_expired(store, days, now=NOW) == []
    assert report.exists()


def test_missing_folders_are_nothing_to_remove(tmp_path: Path) -> None:
    assert remove_expired(DataStore(tmp_path / "never-created"), 30, now=NOW) == []


def test_a_link_is_judged_by_its_own_time_and_its_target_is_never_touched(store: DataStore, tmp_path: Path) -> None:
    outside = aged(tmp_path / "elsewhere" / "keep.csv", 400)
    outside_folder = outside.parent
    old_link = store.reports / "old-link.csv"
    old_link.symlink_to(outside)
    aged(old_link, 60)
    new_link = store.reports / "new-link.csv"
    new_link.symlink_to(outside)
    aged(new_link, 1)
    folder_link = store.archive / "elsewhere"
    folder_link.symlink_to(outside_folder)
    aged(folder_link, 1)

    assert remove_expired(store, 30, now=NOW) == [old_link]

    assert outside.read_text() == "x"
    assert new_link.is_symlink()
    assert folder_link.is_symlink()  # a recent link to a folder: neither removed nor followed


@pytest.mark.skipif(os.geteuid() == 0, reason="root may remove files from a read-only folder, so chmod cannot deny it")
def test_a_file_that_cannot_be_removed_is_a_problem_and_the_rest_is_removed(store: DataStore) -> None:
    stuck = aged(store.reports / "locked" / "old.txt", 60)
    removable = aged(store.tryback / "old.csv", 60)
    stuck.parent.chmod(0o500)
    problems: list[str] = []
    try:
        assert remove_expired(store, 30, now=NOW, problems=problems) == [removable]
    finally:
        stuck.parent.chmod(0o700)

    assert problems == [f"{stuck} is past its retention time but could not be removed (Permission denied)"]
    assert stuck.exists()


def test_a_removal_refused_is_a_problem_not_an_error(store: DataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = aged(store.archive / "old.csv", 60)
    removable = aged(store.reports / "old.txt", 60)
    unlink = os.unlink

    def immutable(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if Path(path) == stuck:  # as for a file marked immutable (chattr +i), which even root cannot remove
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        unlink(path)

    monkeypatch.setattr(os, "unlink", immutable)
    problems: list[str] = []

    assert remove_expired(store, 30, now=NOW, problems=problems) == [removable]
    assert problems == [f"{stuck} is past its retention time but could not be removed (Operation not permitted)"]
    assert remove_expired(store, 30, now=NOW) == []  # without a list to fill, the problem is only skipped
