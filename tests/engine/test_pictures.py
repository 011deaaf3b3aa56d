"""The pictures operation end to end: archives in the inbox, users found by the user_field setting, the icon rows,
the pool's content and user.picture as Moodle leaves them, and every hostile entry a clear failed row."""

from __future__ import annotations

import hashlib
import io
import random
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.course_factories import add_users
from tests.support.images import png_header_only
from tests.support.operation_files import Site, inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.pictures.images import Icons, make_icons
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult, run_inputs, run_operation


def picture(fmt: str = "JPEG", size: tuple[int, int] = (320, 240), seed: int = 1) -> bytes:
    """An image with content (noise on a colour), so that its icons are not flat."""
    image = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def archive(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # as given: ZipInfo would clean a leading '/'
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def moodledata(site: Site, tmp_path: Path) -> Path:
    config, _ = site
    root = tmp_path / "moodledata"
    (root / "filedir").mkdir(parents=True)
    config.set("operations.pictures.moodle_data_dir", str(root))
    return root


async def run_archive(site: Site, content: bytes, name: str = "userpictures_1.zip", **options: Any) -> RunResult:
    config, gateway = site
    path = inbox_file(config, name, content)
    return await run_operation(config, gateway, "pictures", path, **options)


async def usernames(gateway: MoodleGateway, ids: list[int]) -> list[str]:
    return [row["username"] for row in await rows_of(gateway, gateway.schema.user, id=ids)]


async def icon_rows(gateway: MoodleGateway, userid: int) -> list[dict[str, Any]]:
    context = gateway.schema.context
    [ctx] = await rows_of(gateway, context, contextlevel=30, instanceid=userid)
    return await rows_of(gateway, gateway.schema.files, contextid=ctx["id"], component="user", filearea="icon")


async def f1_name(gateway: MoodleGateway, userid: int) -> str:
    return str((await icon_rows(gateway, userid))[0]["filename"])


def pool_files(root: Path, area: str = "filedir") -> set[str]:
    return {path.name for path in (root / area).rglob("*") if path.is_file()}


async def test_pictures_become_the_users_icons_as_moodle_stores_them(site: Site, tmp_path: Path) -> None:
    _, gateway = site
    root = moodledata(site, tmp_path)
    ids = await add_users(gateway, 2)
    jpeg, png = picture("JPEG"), picture("PNG", (200, 300), seed=2)
    names = await usernames(gateway, ids)
    result = await run_archive(site, archive({f"{names[0]}.jpg": jpeg, f"staff/{names[1]}.png": png}))
    assert (result.counts, result.rows) == ({"created": 2}, 2)
    assert result.archive_path is not None
    assert result.archive_path.is_file()
    assert result.tryback_path is None
    assert f"line 2: created (picture) staff/{names[1]}.png: user {names[1]} (id {ids[1]})" in report_of(result)
    for userid, data, extension in ((ids[0], jpeg, "jpg"), (ids[1], png, "png")):
        icons = make_icons(data)
        assert isinstance(icons, Icons)
        rows = await icon_rows(gateway, userid)
        assert [row["filename"] for row in rows] == [f"f1.{extension}", ".", f"f2.{extension}", f"f3.{extension}"]
        made = dict(icons.files)
        for row in rows:
            if row["filename"] == ".":
                continue
            content = (
                root / "filedir" / row["contenthash"][:2] / row["contenthash"][2:4] / row["contenthash"]
            ).read_bytes()
            assert content == made[row["filename"]]
            assert row["contenthash"] == hashlib.sha1(content).hexdigest()
        [user] = await rows_of(gateway, gateway.schema.user, id=userid)
        assert user["picture"] == rows[0]["id"]  # f1's id, the revision in picture URLs
    assert len(pool_files(root)) == 6


async def test_the_same_picture_again_is_unchanged_and_costs_no_write(site: Site, tmp_path: Path) -> None:
    _, gateway = site
    moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    [name] = await usernames(gateway, [userid])
    content = archive({f"{name}.jpg": picture()})
    await run_archive(site, content)
    before = await icon_rows(gateway, userid)
    result = await run_archive(site, content, "userpictures_2.zip")
    assert result.counts == {"unchanged": 1}
    assert await icon_rows(gateway, userid) == before  # same ids, same times


async def test_a_new_picture_replaces_the_old_and_trashes_its_content(site: Site, tmp_path: Path) -> None:
    _, gateway = site
    root = moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    [name] = await usernames(gateway, [userid])
    # Content of this test only: the module's other users' pictures keep theirs in the pool.
    await run_archive(site, archive({f"{name}.jpg": picture(seed=userid * 2)}))
    old = await icon_rows(gateway, userid)
    result = await run_archive(
        site, archive({f"{name}.png": picture("PNG", seed=userid * 2 + 1)}), "userpictures_2.zip"
    )
    assert result.counts == {"updated": 1}
    new = await icon_rows(gateway, userid)
    assert [row["filename"] for row in new] == ["f1.png", ".", "f2.png", "f3.png"]
    [user] = await rows_of(gateway, gateway.schema.user, id=userid)
    assert user["picture"] == new[0]["id"] != old[0]["id"]
    old_content = {row["contenthash"] for row in old if row["filename"] != "."}
    assert old_content <= pool_files(root, "trashdir")
    assert not old_content & pool_files(root)


async def test_overwrite_off_keeps_existing_pictures(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    ids = await add_users(gateway, 2)
    names = await usernames(gateway, ids)
    await run_archive(site, archive({f"{names[0]}.jpg": picture()}))
    config.set("operations.pictures.overwrite", False)
    result = await run_archive(
        site, archive({f"{names[0]}.png": picture("PNG"), f"{names[1]}.png": picture("PNG")}), "userpictures_2.zip"
    )
    assert result.counts == {"skipped": 1, "created": 1}
    assert "the user has a picture already and overwrite is off" in report_of(result)
    assert await f1_name(gateway, ids[0]) == "f1.jpg"


@pytest.mark.parametrize("field", ["id", "idnumber", "email", "hostedusername"])
async def test_every_user_field_names_the_account(site: Site, tmp_path: Path, field: str) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    user = gateway.schema.user
    async with gateway.transaction() as conn:
        await gateway.update_many(conn, user, "id", [{"id": userid, "idnumber": f"N{userid}"}])
    [row] = await rows_of(gateway, user, id=userid)
    value = {
        "id": str(userid),
        "idnumber": row["idnumber"],
        "email": row["email"].upper(),  # as MariaDB's collation compares, and the lookups on SQLite
        "hostedusername": f"{row['username']}@1",
    }[field]
    config.set("operations.pictures.user_field", field)
    result = await run_archive(site, archive({f"{value}.jpg": picture()}))
    assert result.counts == {"created": 1}, report_of(result)
    [row] = await rows_of(gateway, user, id=userid)
    assert row["picture"] > 0


async def test_entries_that_name_no_single_account_fail(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    ids = await add_users(gateway, 3)
    user = gateway.schema.user
    async with gateway.transaction() as conn:
        await gateway.update_many(
            conn,
            user,
            "id",
            [
                {"id": ids[0], "email": "twin@example.com"},
                {"id": ids[1], "email": "twin@example.com"},
                {"id": ids[2], "email": "gone@example.com", "deleted": 1},
            ],
        )
    config.set("operations.pictures.user_field", "email")
    result = await run_archive(
        site, archive({"twin@example.com.jpg": picture(), "gone@example.com.jpg": picture(), "nobody.png": picture()})
    )
    assert result.counts == {"failed": 3}
    report = report_of(result)
    assert "line 1: failed (picture) twin@example.com.jpg: 2 users have email 'twin@example.com'" in report
    assert "line 2: failed (picture) gone@example.com.jpg: no user has email 'gone@example.com'" in report
    assert "line 3: failed (picture) nobody.png: no user has email 'nobody'" in report
    assert result.tryback_path is not None
    with zipfile.ZipFile(result.tryback_path) as tryback:
        assert tryback.namelist() == ["twin@example.com.jpg", "gone@example.com.jpg", "nobody.png"]


async def test_hosted_usernames_need_a_host(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    [name] = await usernames(gateway, [userid])
    config.set("operations.pictures.user_field", "hostedusername")
    result = await run_archive(site, archive({f"{name}.jpg": picture(), f"{name}@7.jpg": picture()}))
    assert result.counts == {"failed": 2}
    report = report_of(result)
    assert f"{name}.jpg: '{name}' is not username@mnethostid" in report
    assert f"{name}@7.jpg: no user has username '{name}'" in report  # an account of host 1, not 7


async def test_the_last_picture_of_an_archive_for_a_user_wins(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    [name] = await usernames(gateway, [userid])
    config.set("run.batch_size", 1)  # the two entries in different batches
    result = await run_archive(site, archive({f"{name}.jpg": picture(), f"later/{name.upper()}.png": picture("PNG")}))
    assert result.counts == {"skipped": 1, "created": 1}
    assert f"a later picture of the archive for the same user wins (later/{name.upper()}.png)" in report_of(result)
    assert await f1_name(gateway, userid) == "f1.png"


async def test_two_values_naming_one_account_in_a_batch_keep_the_last(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    config.set("operations.pictures.user_field", "id")
    result = await run_archive(site, archive({f"{userid}.jpg": picture(), f"0{userid}.png": picture("PNG")}))
    assert result.counts == {"skipped": 1, "created": 1}
    assert "a later picture of the archive names the same user (line 2)" in report_of(result)
    assert await f1_name(gateway, userid) == "f1.png"


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


async def test_hostile_entries_fail_clearly_and_nothing_lands_outside_the_pool(site: Site, tmp_path: Path) -> None:
    _, gateway = site
    root = moodledata(site, tmp_path)
    ids = await add_users(gateway, 4)
    name, text, cut, huge = await usernames(gateway, ids)
    good = picture()
    truncated = picture(size=(400, 400))[:2000]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry_name, data in {
            "../escape.jpg": good,
            "/etc/absolute.jpg": good,
            "bomb.png": bytes(50 * 1024 * 1024),  # 50 MB of zeros: ~50 KB compressed
            f"{text}.jpg": b"these are not the pixels you are looking for",
            f"{cut}.jpg": truncated,
            f"{huge}.png": png_header_only(100_000, 100_000),
            f"{name}.jpg": good,
        }.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = entry_name
            zf.writestr(info, data)
        zf.writestr(symlink_entry("link.jpg"), "/etc/passwd")
        zf.writestr("ratio.png", bytes(5 * 1024 * 1024))  # under the size limit, but 5 MB from ~5 KB
    result = await run_archive(site, buffer.getvalue())
    assert result.counts == {"failed": 8, "created": 1}
    report = report_of(result)
    for expected in (
        "line 1: failed (read) ../escape.jpg: its path goes up a folder ('..')",
        "line 2: failed (read) /etc/absolute.jpg: its path is absolute",
        "line 3: failed (read) bomb.png: it is larger than 30.0 MB uncompressed",
        f"line 4: failed (picture) {text}.jpg: not a JPEG, PNG, GIF or WebP image",
        f"line 5: failed (picture) {cut}.jpg: the image is damaged or truncated",
        f"line 6: failed (picture) {huge}.png: the image is too large",
        "line 8: failed (read) link.jpg: it is a symbolic link",
        "line 9: failed (read) ratio.png: it compresses more than 100:1 (a zip bomb?)",
    ):
        assert expected in report, report
    assert f"line 7: created (picture) {name}.jpg" in report
    # Only the good picture's three icons reached the pool; nothing was extracted anywhere.
    assert len(pool_files(root)) == 3
    assert not [path for path in tmp_path.rglob("*") if path.name in ("escape.jpg", "absolute.jpg")]  # noqa: ASYNC240
    # The tryback holds the failed pictures it can hand back as they were; the hostile entries only the report names.
    assert result.tryback_path is not None
    with zipfile.ZipFile(result.tryback_path) as tryback:
        assert tryback.namelist() == [f"{text}.jpg", f"{cut}.jpg", f"{huge}.png"]
        assert tryback.read(f"{cut}.jpg") == truncated


async def test_an_unusable_archive_stops_before_anything_is_written(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    root = moodledata(site, tmp_path)
    path = inbox_file(config, "userpictures_1.zip", b"PK\x03\x04 this is not really a zip")
    with pytest.raises(RunProblem, match=r"userpictures_1\.zip is not a zip archive"):
        await run_operation(config, gateway, "pictures", path)
    assert path.is_file()  # left in the inbox
    assert pool_files(root) == set()


async def test_a_missing_data_directory_is_a_setting_to_fix(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    path = inbox_file(config, "userpictures_1.zip", archive({"x.jpg": picture()}))
    config.set("operations.pictures.moodle_data_dir", "")
    with pytest.raises(RunProblem, match=r"set \[operations.pictures\] moodle_data_dir"):
        await run_operation(config, gateway, "pictures", path)
    config.set("operations.pictures.moodle_data_dir", str(tmp_path / "nowhere"))
    with pytest.raises(RunProblem, match="has no filedir/"):
        await run_operation(config, gateway, "pictures", path)
    assert path.is_file()


async def test_dry_run_makes_the_icons_but_writes_nothing(site: Site, tmp_path: Path) -> None:
    _, gateway = site
    root = moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    [name] = await usernames(gateway, [userid])
    result = await run_archive(site, archive({f"{name}.jpg": picture(), "notes.jpg": b"text"}), dry_run=True)
    assert result.counts == {"created": 1, "failed": 1}
    assert result.archive_path is None
    assert result.tryback_path is None
    assert pool_files(root) == set()
    assert await rows_of(gateway, gateway.schema.context, contextlevel=30, instanceid=userid) == []
    [user] = await rows_of(gateway, gateway.schema.user, id=userid)
    assert user["picture"] == 0


async def test_every_archive_of_the_inbox_runs_in_name_order(site: Site, tmp_path: Path) -> None:
    config, gateway = site
    moodledata(site, tmp_path)
    [userid] = await add_users(gateway, 1)
    [name] = await usernames(gateway, [userid])
    for sample in DataStore(config.data_dir).inbox.glob("*.zip"):  # the sandbox's sample archive
        sample.unlink()
    inbox_file(config, "userpictures_b.zip", archive({f"{name}.png": picture("PNG")}))
    inbox_file(config, "userpictures_a.zip", archive({f"{name}.jpg": picture()}))
    inbox_file(config, "other_pictures.zip", archive({f"{name}.gif": picture("GIF")}))  # not the prefix
    results = await run_inputs(config, gateway, "pictures")
    assert [(r.source.name, r.counts) for r in results] == [
        ("userpictures_a.zip", {"created": 1}),
        ("userpictures_b.zip", {"updated": 1}),
    ]
    assert await f1_name(gateway, userid) == "f1.png"
    assert [path.name for path in DataStore(config.data_dir).inbox.glob("*.zip")] == ["other_pictures.zip"]
    assert all(r.report_path is not None and r.report_path.is_file() for r in results)
