"""A user's picture rows and content as process_new_icon() leaves them (moodle-db-semantics §9): four files rows in
the user context's icon area, content in the pool by SHA-1, user.picture = f1's id, replaced content trashed."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tests.support.course_factories import add_users
from tests.support.operation_files import Site
from tests.support.tables import rows_of
from toolsync_tui.engine.moodle.contexts import system_context
from toolsync_tui.engine.moodle.filepool import FilePool
from toolsync_tui.engine.moodle.icons import (
    NewIcon,
    current_f1_hashes,
    replace_icons,
    trash_unreferenced,
    user_contexts,
)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def pool_at(tmp_path: Path) -> FilePool:
    (tmp_path / "moodledata" / "filedir").mkdir(parents=True)
    pool = FilePool(tmp_path / "moodledata")
    pool.check()
    return pool


async def test_a_picture_writes_four_rows_the_content_and_user_picture(site: Site, tmp_path: Path) -> None:
    _, gateway = site
    pool = pool_at(tmp_path)
    (user,) = await add_users(gateway, 1)
    first = (("f1.png", b"one-100"), ("f2.png", b"one-35"), ("f3.png", b"one-512"))
    now = int(time.time())
    async with gateway.transaction() as conn:
        context = (await user_contexts(gateway, conn, await system_context(gateway, conn), [user]))[user]
        pictures, replaced = await replace_icons(gateway, conn, pool, [NewIcon(user, context, "image/png", first)], now)
    assert replaced == set()
    rows = await rows_of(gateway, gateway.schema.files, contextid=context)
    assert [r["filename"] for r in rows] == ["f1.png", ".", "f2.png", "f3.png"]  # Moodle's id order
    for row in rows:
        assert (row["component"], row["filearea"], row["itemid"], row["filepath"]) == ("user", "icon", 0, "/")
        assert row["pathnamehash"] == sha1(f"/{context}/user/icon/0/{row['filename']}".encode())
    data = dict(first)
    for row in rows[:1] + rows[2:]:
        assert (row["contenthash"], row["filesize"], row["mimetype"]) == (
            sha1(data[row["filename"]]),
            len(data[row["filename"]]),
            "image/png",
        )
        stored = pool.path(row["contenthash"])
        assert stored.read_bytes() == data[row["filename"]]
        assert stored.parent.name == row["contenthash"][2:4]
        assert stored.parent.parent.name == row["contenthash"][:2]
    assert (rows[1]["contenthash"], rows[1]["filesize"], rows[1]["mimetype"]) == (sha1(b""), 0, None)
    assert pictures == {user: rows[0]["id"]}
    assert (await rows_of(gateway, gateway.schema.user, id=user))[0]["picture"] == rows[0]["id"]

    # A new picture replaces the rows; the old content no row needs goes to the trash after commit.
    second = (("f1.jpg", b"two-100"), ("f2.jpg", b"two-35"), ("f3.jpg", b"one-512"))  # f3 shares its content
    async with gateway.transaction() as conn:
        assert await current_f1_hashes(gateway, conn, [context]) == {context: sha1(b"one-100")}
        _, replaced = await replace_icons(gateway, conn, pool, [NewIcon(user, context, "image/jpeg", second)], now)
        trashed = await trash_unreferenced(gateway, conn, pool, replaced)
    assert trashed == 2
    assert not pool.path(sha1(b"one-100")).exists()
    assert pool.path(sha1(b"one-100"), "trashdir").is_file()
    assert pool.path(sha1(b"one-512")).is_file()  # still used by the new f3
    rows = await rows_of(gateway, gateway.schema.files, contextid=context)
    assert [r["filename"] for r in rows] == ["f1.jpg", ".", "f2.jpg", "f3.jpg"]
    assert (await rows_of(gateway, gateway.schema.user, id=user))[0]["picture"] == rows[0]["id"]


async def test_a_user_without_a_context_gets_one(site: Site) -> None:
    _, gateway = site
    (user,) = await add_users(gateway, 1)
    context = gateway.schema.context
    async with gateway.transaction() as conn:
        await conn.execute(context.delete().where((context.c.contextlevel == 30) & (context.c.instanceid == user)))
        made = (await user_contexts(gateway, conn, await system_context(gateway, conn), [user]))[user]
    row = (await rows_of(gateway, context, id=made))[0]
    assert (row["contextlevel"], row["instanceid"], row["path"], row["depth"]) == (30, user, f"/1/{made}", 2)


def test_the_pool_refuses_a_directory_that_is_not_moodledata(tmp_path: Path) -> None:
    import pytest

    from toolsync_tui.engine.moodle.filepool import FilePoolProblem

    with pytest.raises(FilePoolProblem, match="moodle_data_dir"):
        FilePool(tmp_path).check()
