"""The users of `teacherN_account` cells: a user id, a username or an e-mail address naming one live user."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway


async def find_accounts(gateway: MoodleGateway, conn: AsyncConnection, accounts: list[str]) -> dict[str, int]:
    """Folded account -> user id: by id when numeric, else by username, else by e-mail when it names one user."""
    user = gateway.schema.user
    found: dict[str, int] = {}
    live = (user.c.deleted == 0) & (user.c.id > 1)
    numbers = sorted({int(a) for a in accounts if a.isdigit()})
    if numbers:
        rows = await gateway.fetch_in(conn, user, "id", numbers, ["id"], where=live)
        found |= {str(i): int(i) for (i,) in rows.iter_rows()}
    texts = sorted({a for a in accounts if not a.isdigit()})
    for column in ("username", "email"):
        rest = [a for a in texts if a.lower() not in found]
        if not rest:
            break
        rows = await gateway.fetch_in(conn, user, column, rest, ["id", column], where=live, casefold=True)
        counts = Counter(str(v).lower() for _, v in rows.iter_rows())
        found |= {str(v).lower(): int(i) for i, v in rows.iter_rows() if counts[str(v).lower()] == 1}
    return found
