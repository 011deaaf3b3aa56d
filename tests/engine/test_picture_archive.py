"""Reading picture entries from zip archives: normal walking and every hostile case."""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from toolsync_tui.engine.pictures.archive import (
    Archive,
    ArchiveProblem,
    BadEntry,
    Entry,
    Limits,
    iter_entries,
    value_of,
)

JPEG_LIKE = b"\xff\xd8\xff" + os.urandom(2000)  # incompressible, like a real picture


def make_zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def patch_u16(data: bytearray, offset: int, value: int) -> None:
    data[offset : offset + 2] = struct.pack("<H", value)


def patch_u32(data: bytearray, offset: int, value: int) -> None:
    data[offset : offset + 4] = struct.pack("<I", value)


def only_central_header(data: bytes | bytearray) -> int:
    """Offset of the single central directory record of a one-entry zip."""
    offset = data.index(b"PK\x01\x02")
    assert data.find(b"PK\x01\x02", offset + 4) == -1
    return offset


def test_walks_every_folder_and_strips_the_extension(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "p.zip",
        {"jdoe.jpg": JPEG_LIKE, "sub/dir/asmith.png": b"png", "sub/x.y.jpeg": b"xy", "noext": b"n"},
    )
    got = list(iter_entries(path))
    assert got == [
        Entry("jdoe.jpg", "jdoe", JPEG_LIKE),
        Entry("sub/dir/asmith.png", "asmith", b"png"),
        Entry("sub/x.y.jpeg", "x.y", b"xy"),
        Entry("noext", "noext", b"n"),
    ]


def test_directories_macos_metadata_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.mkdir("sub")
        zf.writestr("sub/jdoe.jpg", b"a")
        zf.writestr("__MACOSX/sub/._jdoe.jpg", b"meta")
        zf.writestr("sub/._jdoe.jpg", b"meta")
        zf.writestr(".DS_Store", b"ds")
        zf.writestr(".git/x.jpg", b"g")
        zf.writestr("./ok.jpg", b"ok")
    assert [(e.name, e.value) for e in iter_entries(path)] == [("sub/jdoe.jpg", "jdoe"), ("./ok.jpg", "ok")]


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("../x.jpg", "x", "goes up a folder"),
        ("sub/../../x.jpg", "x", "goes up a folder"),
        ("/etc/x.jpg", "x", "absolute"),
        ("C:/Windows/x.jpg", "x", "drive letter"),
        ("..\\..\\x.jpg", "x", "backslash"),
        ("sub\\x.jpg", "x", "backslash"),
    ],
)
def test_unsafe_paths_are_bad_entries(tmp_path: Path, name: str, value: str, words: str) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        # ZipInfo keeps the name as given (writestr with a str would strip the leading '/').
        info = zipfile.ZipInfo("placeholder")
        info.filename = name
        zf.writestr(info, b"evil")
        zf.writestr("good.jpg", b"good")
    got = list(iter_entries(path))
    assert isinstance(got[0], BadEntry)
    assert got[0].name == name
    assert got[0].value == value
    assert words in got[0].problem
    assert got[1] == Entry("good.jpg", "good", b"good")


def test_symlink_entry_is_a_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("jdoe.jpg")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    [entry] = iter_entries(path)
    assert isinstance(entry, BadEntry)
    assert "symbolic link" in entry.problem


def test_zip_bomb_by_ratio_is_a_bad_entry(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {"bomb.jpg": bytes(5 * 1024 * 1024), "jdoe.jpg": JPEG_LIKE})
    bomb, good = iter_entries(path)
    assert isinstance(bomb, BadEntry)
    assert "100:1" in bomb.problem
    assert good == Entry("jdoe.jpg", "jdoe", JPEG_LIKE)


def test_small_entries_may_compress_well(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {"flat.png": bytes(100_000)})
    [entry] = iter_entries(path)
    assert isinstance(entry, Entry)


def test_declared_size_understated_is_not_trusted(tmp_path: Path) -> None:
    """The headers claim 1,000 bytes for 5 MB of zeros: reading stops at the claim and the CRC fails."""
    raw = bytearray(make_zip(tmp_path / "p.zip", {"bomb.jpg": bytes(5 * 1024 * 1024)}).read_bytes())
    patch_u32(raw, 22, 1000)  # local header: uncompressed size
    patch_u32(raw, only_central_header(raw) + 24, 1000)  # central directory: uncompressed size
    (tmp_path / "p.zip").write_bytes(raw)
    [entry] = iter_entries(tmp_path / "p.zip")
    assert isinstance(entry, BadEntry)
    assert "damaged" in entry.problem


def test_declared_size_overstated_is_a_bad_entry(tmp_path: Path) -> None:
    raw = bytearray(make_zip(tmp_path / "p.zip", {"jdoe.jpg": JPEG_LIKE}).read_bytes())
    patch_u32(raw, 22, len(JPEG_LIKE) + 500)
    patch_u32(raw, only_central_header(raw) + 24, len(JPEG_LIKE) + 500)
    (tmp_path / "p.zip").write_bytes(raw)
    [entry] = iter_entries(tmp_path / "p.zip")
    assert isinstance(entry, BadEntry)
    assert "does not match" in entry.problem


def test_entry_over_the_size_limit_is_a_bad_entry(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {"big.jpg": JPEG_LIKE, "small.jpg": b"s"}, zipfile.ZIP_STORED)
    big, small = iter_entries(path, Limits(max_entry_bytes=1000))
    assert isinstance(big, BadEntry)
    assert "larger than 1.0 kB uncompressed" in big.problem
    assert small == Entry("small.jpg", "small", b"s")


def test_too_many_entries_is_an_archive_problem(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {f"u{i}.jpg": b"x" for i in range(6)})
    assert len(list(iter_entries(path, Limits(max_entries=6)))) == 6
    with pytest.raises(ArchiveProblem, match="6 entries, more than the 5 allowed"):
        list(iter_entries(path, Limits(max_entries=5)))


def test_too_much_data_in_total_is_an_archive_problem(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {f"u{i}.jpg": JPEG_LIKE for i in range(3)})
    assert len(list(iter_entries(path, Limits(max_total_bytes=3 * len(JPEG_LIKE))))) == 3
    # Refused as a whole, before any picture is read or written.
    with pytest.raises(ArchiveProblem, match="expands to more than"):
        Archive(path, Limits(max_total_bytes=3 * len(JPEG_LIKE) - 1))


def test_encrypted_entry_is_a_bad_entry(tmp_path: Path) -> None:
    # zipfile cannot write encrypted entries: set the 'encrypted' flag bit in both headers.
    raw = bytearray(make_zip(tmp_path / "p.zip", {"jdoe.jpg": JPEG_LIKE}).read_bytes())
    patch_u16(raw, 6, 0x1)
    patch_u16(raw, only_central_header(raw) + 8, 0x1)
    (tmp_path / "p.zip").write_bytes(raw)
    [entry] = iter_entries(tmp_path / "p.zip")
    assert isinstance(entry, BadEntry)
    assert "encrypted" in entry.problem


def test_corrupt_entry_is_a_bad_entry_and_the_others_still_read(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {"bad.jpg": JPEG_LIKE, "good.jpg": b"good"})
    raw = bytearray(path.read_bytes())
    start = 30 + len("bad.jpg")  # the first entry's compressed data follows its local header
    for i in range(start + 100, start + 140):
        raw[i] ^= 0xFF
    path.write_bytes(raw)
    bad, good = iter_entries(path)
    assert isinstance(bad, BadEntry)
    assert "damaged" in bad.problem
    assert good == Entry("good.jpg", "good", b"good")


def test_unsupported_compression_is_a_bad_entry(tmp_path: Path) -> None:
    raw = bytearray(make_zip(tmp_path / "p.zip", {"jdoe.jpg": JPEG_LIKE}).read_bytes())
    patch_u16(raw, 8, 99)  # 99 = WinZip AES
    patch_u16(raw, only_central_header(raw) + 10, 99)
    (tmp_path / "p.zip").write_bytes(raw)
    [entry] = iter_entries(tmp_path / "p.zip")
    assert isinstance(entry, BadEntry)
    assert "compression method" in entry.problem


def test_not_a_zip_is_an_archive_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(JPEG_LIKE)
    with pytest.raises(ArchiveProblem, match="not a zip archive"):
        list(iter_entries(path))


def test_truncated_zip_is_an_archive_problem(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "p.zip", {"jdoe.jpg": JPEG_LIKE})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArchiveProblem, match="not a zip archive"):
        list(iter_entries(path))


def test_missing_file_is_an_archive_problem(tmp_path: Path) -> None:
    with pytest.raises(ArchiveProblem, match="cannot be read"):
        list(iter_entries(tmp_path / "absent.zip"))


def test_value_of() -> None:
    assert value_of("sub/dir/jdoe.jpg") == "jdoe"
    assert value_of("jdoe") == "jdoe"
    assert value_of("..\\x.JPG") == "x"
