"""A user's picture as `process_new_icon()` leaves it (moodle-db-semantics §9): the file area user/icon/0 of the
user's context holds f1 (100x100), the directory entry `.`, f2 (35x35) and f3 (512x512), in that id order, and
`user.picture` is the id of f1 (the revision Moodle puts in picture URLs).

Replacing a picture deletes the area's old rows first; content the pool no longer needs goes to the trash once the
transaction has committed (`trash_unreferenced`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.contexts import Context, ContextLevel, create_contexts, instance_contexts
from toolsync_tui.engine.moodle.filepool import FilePool
from toolsync_tui.engine.moodle.gateway import MoodleGateway

COMPONENT: Final = "user"
FILEAREA: Final = "icon"
ITEMID: Final = 0
FILEPATH: Final = "/"
DIRECTORY: Final = "."
EMPTY_SHA1: Final = hashlib.sha1(b"").hexdigest()


@dataclass(frozen=True)
class NewIcon:
    """A user's new picture: the files of the area (f1, f2, f3 with their bytes) and their mimetype."""

    userid: int
    contextid: int
    mimetype: str
    files: tuple[tuple[str, bytes], ...]


def pathnamehash(contextid: int, filename: str) -> str:
    """file_storage::get_pathname_hash() for the icon area."""
    return hashlib.sha1(f"/{contextid}/{COMPONENT}/{FILEAREA}/{ITEMID}{FILEPATH}{filename}".encode()).hexdigest()


async def user_contexts(
    gateway: MoodleGateway, conn: AsyncConnection, system: Context, user_ids: Sequence[int]
) -> dict[int, int]:
    """User id -> the id of its context, created under the `system` context where missing, as
    context_user::instance() does."""
    found = await instance_contexts(gateway, conn, ContextLevel.USER, user_ids)
    missing = [(u, system.path) for u in sorted(set(user_ids)) if u not in found]
    created = await create_contexts(gateway, conn, ContextLevel.USER, missing)
    return {user: context.id for user, context in (found | created).items()}


async def current_f1_hashes(
    gateway: MoodleGateway, conn: AsyncConnection, context_ids: Sequence[int]
) -> dict[int, str]:
    """Context id -> the content hash of the user's current f1 (any extension): what an unchanged picture matches."""
    files = gateway.schema.files
    rows = await gateway.fetch_in(
        conn,
        files,
        "contextid",
        sorted(set(context_ids)),
        ["contextid", "filename", "contenthash"],
        where=_icon_area(gateway) & files.c.filename.like("f1.%"),
    )
    return {int(ctx): str(contenthash) for ctx, _, contenthash in rows.iter_rows()}


async def replace_icons(
    gateway: MoodleGateway, conn: AsyncConnection, pool: FilePool, icons: Sequence[NewIcon], now: int
) -> tuple[dict[int, int], set[str]]:
    """Write the icons' content to the pool, then their rows in place of the areas' old ones and user.picture.
    Returns user id -> the new picture value (f1's id), and the content hashes the old rows held (for
    trash_unreferenced after commit)."""
    if not icons:
        return {}, set()
    files = gateway.schema.files
    contexts = sorted({icon.contextid for icon in icons})
    old = await gateway.fetch_in(conn, files, "contextid", contexts, ["id", "contenthash"], where=_icon_area(gateway))
    await gateway.delete_in(conn, files, "id", [int(i) for i in old["id"]] if old.height else [])
    rows: list[dict[str, Any]] = []
    for icon in icons:
        entries = [(name, data) for name, data in icon.files]
        # f1, then the directory entry (created with the first file of the area), then f2 and f3.
        for position, (name, data) in enumerate([*entries[:1], (DIRECTORY, b""), *entries[1:]]):
            is_dir = position == 1
            rows.append(
                {
                    "contenthash": EMPTY_SHA1 if is_dir else pool.store(data),
                    "pathnamehash": pathnamehash(icon.contextid, name),
                    "contextid": icon.contextid,
                    "component": COMPONENT,
                    "filearea": FILEAREA,
                    "itemid": ITEMID,
                    "filepath": FILEPATH,
                    "filename": name,
                    "userid": None,
                    "filesize": len(data),
                    "mimetype": None if is_dir else icon.mimetype,
                    "status": 0,
                    "source": None,
                    "author": None,
                    "license": None,
                    "timecreated": now,
                    "timemodified": now,
                    "sortorder": 0,
                    "referencefileid": None,
                }
            )
    await gateway.insert_many(conn, files, rows)
    firsts = {pathnamehash(icon.contextid, icon.files[0][0]): icon.userid for icon in icons}
    found = await gateway.fetch_in(conn, files, "pathnamehash", sorted(firsts), ["id", "pathnamehash"])
    pictures = {firsts[str(h)]: int(i) for i, h in found.iter_rows()}
    await gateway.update_many(conn, gateway.schema.user, "id", [{"id": u, "picture": p} for u, p in pictures.items()])
    replaced = {str(h) for h in old["contenthash"]} - {EMPTY_SHA1} if old.height else set()
    return pictures, replaced


async def trash_unreferenced(gateway: MoodleGateway, conn: AsyncConnection, pool: FilePool, hashes: set[str]) -> int:
    """Move to the trash the content of these hashes that no files row references any more; how many."""
    if not hashes:
        return 0
    files = gateway.schema.files
    used = await gateway.fetch_in(conn, files, "contenthash", sorted(hashes), ["contenthash"])
    unused = hashes - {str(h) for h in used["contenthash"]} if used.height else set(hashes)
    for contenthash in sorted(unused):
        pool.trash(contenthash)
    return len(unused)


def _icon_area(gateway: MoodleGateway) -> Any:
    files = gateway.schema.files
    return and_(files.c.component == COMPONENT, files.c.filearea == FILEAREA, files.c.itemid == ITEMID)
