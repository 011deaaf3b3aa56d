"""Taking complete command files from the drop directory into the inbox, on real files with a pinned clock."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from toolsync_tui.engine.datadir import dropdir
from toolsync_tui.engine.datadir.dropdir import Capture, FileChanged, capture, copy_across

NOW = 1_750_000_000.0  # the pinned clock; file times are set relative to it
SETTLE = 60


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "sync"
    folder.mkdir()
    return folder


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "data" / "inbox"


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "data" / "captured.jsonl"


def dropped(folder: Path, name: str, content: bytes = b"idnumber;email\n1;a@example.org\n", age: float = 600) -> Path:
    path = folder / name
    path.write_bytes(content)
    os.utime(path, (NOW - age, NOW - age))
    return path


def run(drop: Path, inbox: Path, record: Path) -> Capture:
    return capture(drop, inbox, settle_seconds=SETTLE, lock_files=["alock.txt"], record=record, now=NOW)


def sha1(content: bytes) -> str:
    return hashlib.sha1(content).hexdigest()


def test_complete_files_move_to_the_inbox_and_each_gets_a_record_line(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "userimport.csv", b"users")
    dropped(drop, "enrols.csv", b"enrols rows")

    result = run(drop, inbox, record)

    assert [(c.source.name, c.target, c.size, c.sha1, c.replaced) for c in result.captured] == [
        ("enrols.csv", inbox / "enrols.csv", 11, sha1(b"enrols rows"), False),
        ("userimport.csv", inbox / "userimport.csv", 5, sha1(b"users"), False),
    ]
    assert (result.waiting, result.locked_by, result.notes) == ([], None, [])
    assert (inbox / "userimport.csv").read_bytes() == b"users"
    assert list(drop.iterdir()) == []
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[1] == {
        "time": datetime.fromtimestamp(NOW).astimezone().isoformat(timespec="seconds"),
        "source": str(drop / "userimport.csv"),
        "target": str(inbox / "userimport.csv"),
        "size": 5,
        "sha1": sha1(b"users"),
        "replaced": False,
    }
    assert stat.S_IMODE(record.stat().st_mode) == 0o600


def test_the_record_is_appended_to_run_after_run(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "groups.csv")
    run(drop, inbox, record)
    dropped(drop, "cohorts.csv")
    run(drop, inbox, record)
    assert [json.loads(line)["target"] for line in record.read_text().splitlines()] == [
        str(inbox / "groups.csv"),
        str(inbox / "cohorts.csv"),
    ]


def test_a_file_changed_recently_waits_for_the_next_run(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "userimport.csv", age=SETTLE - 1)

    result = run(drop, inbox, record)

    assert result.captured == []
    assert result.waiting == [
        ("userimport.csv", f"still being written (last changed 59 s ago; taken once unchanged for {SETTLE} s)")
    ]
    assert (drop / "userimport.csv").exists()
    assert not (inbox / "userimport.csv").exists()
    assert not record.exists()


def test_a_file_dated_in_the_future_waits(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "userimport.csv", age=-30)
    (waiting,) = run(drop, inbox, record).waiting
    assert "in the future" in waiting[1]


def test_a_file_written_while_it_is_read_waits_and_stays_whole(
    drop: Path, inbox: Path, record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = dropped(drop, "userimport.csv", b"first half")
    read = dropdir._hash_file

    def writer_still_at_it(path: Path) -> str:
        digest = read(path)
        with path.open("ab") as out:  # the feeder appends between the check and the move
            out.write(b" second half")
        return digest

    monkeypatch.setattr(dropdir, "_hash_file", writer_still_at_it)
    result = run(drop, inbox, record)

    assert result.captured == []
    assert result.waiting == [("userimport.csv", "still being written (it changed while it was being read)")]
    assert source.read_bytes() == b"first half second half"
    assert not inbox.joinpath("userimport.csv").exists()


def test_nothing_is_taken_while_the_feeder_holds_its_lock(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "userimport.csv")
    dropped(drop, "alock.txt", b"", age=3 * 3600 - 1)

    result = run(drop, inbox, record)

    assert result == Capture(captured=[], waiting=[], locked_by="alock.txt", notes=[])
    assert (drop / "userimport.csv").exists()
    assert (drop / "alock.txt").exists()


def test_a_lock_older_than_three_hours_is_reported(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "userimport.csv")
    dropped(drop, "alock.txt", b"", age=3 * 3600 + 5 * 60)

    result = run(drop, inbox, record)

    assert result.locked_by == "alock.txt"
    assert result.captured == []
    assert result.notes == [
        f"The feeder's lock {drop / 'alock.txt'} has been there for 3 hours and 5 minutes: the feeder may have died "
        "while writing. Nothing is taken while it is there; check the feeder, then delete the lock."
    ]


def test_a_lock_put_during_the_run_leaves_the_rest_for_next_time(
    drop: Path, inbox: Path, record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped(drop, "a.csv")
    dropped(drop, "b.csv")
    read = dropdir._hash_file

    def feeder_locks(path: Path) -> str:
        (drop / "alock.txt").touch()
        return read(path)

    monkeypatch.setattr(dropdir, "_hash_file", feeder_locks)
    result = run(drop, inbox, record)

    assert [c.target.name for c in result.captured] == ["a.csv"]
    assert result.waiting == [("b.csv", "the feeder put its lock alock.txt during this run")]
    assert result.locked_by is None


def test_hidden_and_underscore_names_and_lock_names_are_ignored(drop: Path, inbox: Path, record: Path) -> None:
    for name in (".userimport.csv.part", "_report.txt"):
        dropped(drop, name)

    result = run(drop, inbox, record)

    assert result == Capture(captured=[], waiting=[], locked_by=None, notes=[])
    assert sorted(p.name for p in drop.iterdir()) == [".userimport.csv.part", "_report.txt"]
    assert not inbox.exists() or list(inbox.iterdir()) == []


def test_sub_folders_and_symbolic_links_are_left_alone(drop: Path, inbox: Path, record: Path, tmp_path: Path) -> None:
    (drop / "2024").mkdir()
    dropped(drop / "2024", "userimport.csv")
    outside = dropped(tmp_path, "secret.txt", b"not for the inbox")
    (drop / "link.csv").symlink_to(outside)

    result = run(drop, inbox, record)

    assert (result.captured, result.waiting) == ([], [])
    assert result.notes == [f"{drop / 'link.csv'} is a symbolic link; it is left alone (only plain files are taken)."]
    assert (drop / "2024" / "userimport.csv").exists()
    assert (drop / "link.csv").is_symlink()
    assert outside.read_bytes() == b"not for the inbox"


def test_a_named_pipe_is_left_alone(drop: Path, inbox: Path, record: Path) -> None:
    os.mkfifo(drop / "enrols.csv")
    result = run(drop, inbox, record)
    assert result.notes == [
        f"{drop / 'enrols.csv'} is not a plain file; it is left alone (only plain files are taken)."
    ]


def test_a_newer_drop_replaces_the_inbox_file_of_the_same_name(drop: Path, inbox: Path, record: Path) -> None:
    inbox.mkdir(parents=True)
    (inbox / "userimport.csv").write_bytes(b"yesterday")
    dropped(drop, "userimport.csv", b"today")

    (taken,) = run(drop, inbox, record).captured

    assert taken.replaced is True
    assert (inbox / "userimport.csv").read_bytes() == b"today"
    assert json.loads(record.read_text())["replaced"] is True


def test_a_missing_drop_directory_is_a_note_not_an_error(tmp_path: Path, inbox: Path, record: Path) -> None:
    result = run(tmp_path / "nowhere", inbox, record)
    assert result == Capture(
        [], [], None, [f"The drop directory {tmp_path / 'nowhere'} does not exist: nothing to take."]
    )
    assert not inbox.exists()


def test_the_inbox_as_drop_directory_moves_nothing(inbox: Path, record: Path) -> None:
    inbox.mkdir(parents=True)
    dropped(inbox, "userimport.csv")
    result = run(inbox, inbox, record)
    assert result.captured == []
    assert result.notes == [f"The drop directory {inbox} is the inbox itself: nothing to move."]


def test_a_file_that_cannot_be_moved_is_a_note_and_the_others_are_taken(drop: Path, inbox: Path, record: Path) -> None:
    for name in ("a.csv", "b.csv", "c.csv"):
        dropped(drop, name)
    (inbox / "b.csv").mkdir(parents=True)  # a folder is in the way: the rename fails for this file only

    result = run(drop, inbox, record)

    assert [c.target.name for c in result.captured] == ["a.csv", "c.csv"]
    (note,) = result.notes
    assert note.startswith(f"{drop / 'b.csv'} could not be moved to the inbox (")
    assert note.endswith("); it stays in the drop directory.")
    assert (drop / "b.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode, so chmod cannot deny it")
def test_an_unreadable_file_is_a_note_and_the_others_are_taken(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "a.csv")
    dropped(drop, "b.csv").chmod(0)

    result = run(drop, inbox, record)

    assert [c.target.name for c in result.captured] == ["a.csv"]
    assert result.notes == [
        f"{drop / 'b.csv'} could not be moved to the inbox (Permission denied); it stays in the drop directory."
    ]


def test_the_inbox_copy_is_private_whatever_the_feeder_allowed(drop: Path, inbox: Path, record: Path) -> None:
    dropped(drop, "open.csv").chmod(0o666)
    dropped(drop, "private.csv").chmod(0o600)
    run(drop, inbox, record)
    assert stat.S_IMODE((inbox / "open.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE((inbox / "private.csv").stat().st_mode) == 0o600


def test_the_inbox_copy_is_group_readable_where_the_inbox_is(drop: Path, inbox: Path, record: Path) -> None:
    inbox.mkdir(parents=True)
    inbox.chmod(0o750)  # files.group_readable
    dropped(drop, "open.csv").chmod(0o666)
    run(drop, inbox, record)
    assert stat.S_IMODE((inbox / "open.csv").stat().st_mode) == 0o640


# Another filesystem: copied under a hidden name, flushed, renamed, and only then removed from the drop directory.


def test_copy_across_copies_then_removes_the_source(drop: Path, inbox: Path) -> None:
    source = dropped(drop, "userimport.csv", b"rows")
    source.chmod(0o644)
    inbox.mkdir(parents=True)

    digest = copy_across(source, inbox / "userimport.csv", os.lstat(source))

    assert digest == sha1(b"rows")
    assert not source.exists()
    target = inbox / "userimport.csv"
    assert target.read_bytes() == b"rows"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_mtime == NOW - 600  # the drop time, as a rename would keep it
    assert [p.name for p in inbox.iterdir()] == ["userimport.csv"]


def test_copy_across_refuses_a_source_changed_since_it_was_found_complete(drop: Path, inbox: Path) -> None:
    source = dropped(drop, "userimport.csv", b"rows")
    before = os.lstat(source)
    with source.open("ab") as out:
        out.write(b" and more")
    inbox.mkdir(parents=True)

    with pytest.raises(FileChanged):
        copy_across(source, inbox / "userimport.csv", before)

    assert source.read_bytes() == b"rows and more"
    assert list(inbox.iterdir()) == []  # neither the final name nor the hidden partial copy


def test_copy_across_withdraws_the_copy_when_the_source_cannot_be_removed(
    drop: Path, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = dropped(drop, "userimport.csv", b"rows")
    inbox.mkdir(parents=True)
    unlink = os.unlink

    def drop_dir_read_only(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if Path(path) == source:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        unlink(path)

    monkeypatch.setattr(os, "unlink", drop_dir_read_only)
    with pytest.raises(PermissionError):
        copy_across(source, inbox / "userimport.csv", os.lstat(source))

    assert source.read_bytes() == b"rows"  # taken next time, once, rather than now and again next time
    assert list(inbox.iterdir()) == []


def test_a_rename_refused_across_mounts_falls_back_to_a_copy(
    drop: Path, inbox: Path, record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped(drop, "userimport.csv", b"rows")
    replace = os.replace

    def bind_mount(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(source).parent == drop:  # same device number, yet the kernel refuses: another mount of it
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        replace(source, target)

    monkeypatch.setattr(os, "replace", bind_mount)
    (taken,) = run(drop, inbox, record).captured

    assert (taken.sha1, (inbox / "userimport.csv").read_bytes()) == (sha1(b"rows"), b"rows")
    assert list(drop.iterdir()) == []


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no writable /dev/shm on another filesystem than the test folder")
    with tempfile.TemporaryDirectory(dir=shm) as folder:
        yield Path(folder)


def test_a_drop_directory_on_another_filesystem_is_copied(other_filesystem: Path, inbox: Path, record: Path) -> None:
    dropped(other_filesystem, "userimport.csv", b"rows")

    (taken,) = run(other_filesystem, inbox, record).captured

    assert (taken.source, taken.target, taken.sha1) == (
        other_filesystem / "userimport.csv",
        inbox / "userimport.csv",
        sha1(b"rows"),
    )
    assert (inbox / "userimport.csv").read_bytes() == b"rows"
    assert [p.name for p in inbox.iterdir()] == ["userimport.csv"]
    assert list(other_filesystem.iterdir()) == []
