"""The ownership ledger's own file (engine/datadir/ledger.py): entries per site and kind, private, and a clear word
when it cannot be used."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from toolsync_tui.engine.datadir.ledger import Ledger, LedgerProblem, ledger_path


def test_entries_are_kept_per_site_and_kind_and_a_record_keeps_its_first_run(tmp_path: Path) -> None:
    path = ledger_path(tmp_path)
    one, other = Ledger(path, "site-one"), Ledger(path, "site-two")
    assert one.add("user", [1, 2, 3], "users", "run-a") == 3
    assert one.add("user", [3, 4], "users", "run-b") == 1  # 3 was already ours
    one.add("enrolment", [3], "enrols", "run-b")
    other.add("user", [9], "users", "run-c")
    assert one.owned("user") == {1, 2, 3, 4}
    assert one.counts() == {"user": 4, "enrolment": 1}
    assert other.owned("user") == {9}
    one.forget("user", [2])
    one.prune("user", existing=[1, 3, 77])  # 4 no longer exists in Moodle
    assert one.owned("user") == {1, 3}
    assert one.owned("enrolment") == {3}


def test_the_ledger_file_is_private_and_a_fresh_data_directory_has_none(tmp_path: Path) -> None:
    ledger = Ledger(ledger_path(tmp_path), "site")
    assert ledger.owned("cohort_member") == set()
    assert ledger.counts() == {}
    assert not ledger.path.exists()  # reading never creates it
    ledger.add("cohort_member", [5], "cohorts", "run")
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ledger.path.parent.stat().st_mode) == 0o700


def test_an_unknown_kind_and_an_unusable_file_are_named(tmp_path: Path) -> None:
    ledger = Ledger(ledger_path(tmp_path), "site")
    with pytest.raises(ValueError, match="unknown kind 'users'"):
        ledger.add("users", [1], "users", "run")
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_bytes(b"not a database, a truncated copy" * 100)
    with pytest.raises(LedgerProblem, match=f"the ownership ledger {ledger.path} cannot be used"):
        ledger.owned("user")
