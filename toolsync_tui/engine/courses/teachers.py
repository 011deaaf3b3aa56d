"""The users of `teacherN_account` cells: a user id, a username or an e-mail address naming one live user."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.text_match import TextMatch, user_rule


async def find_accounts(gateway: MoodleGateway, conn: AsyncConnection, accounts: list[str]) -> dict[str, int]:
    """Account cell -> user id: by id when numeric, else by username, else by e-mail when it names one user. As
    get_users_listing() matches them on the site's database: the username with `=` (lower-cased first, as Moodle stores
    it), the e-mail case-insensitively."""
    user = gateway.schema.user
    found: dict[str, int] = {}
    live = (user.c.deleted == 0) & (user.c.id > 1)
    numbers = sorted({int(a) for a in accounts if a.isdigit()})
    if numbers:
        rows = await gateway.fetch_in(conn, user, "id", numbers, ["id"], where=live)
        ids = {int(i) for (i,) in rows.iter_rows()}
        found |= {a: int(a) for a in accounts if a.isdigit() and int(a) in ids}
    for column in ("username", "email"):
        rest = sorted({a for a in accounts if not a.isdigit() and a not in found})
        if not rest:
            break
        match = TextMatch(gateway.kind, user_rule(column))
        rows = await gateway.fetch_in(
            conn, user, column, match.values(rest), ["id", column], where=live, casefold=match.casefold
        )
        holders: dict[str, set[int]] = {}
        for i, value in rows.iter_rows():
            holders.setdefault(match.stored_text(str(value)), set()).add(int(i))
        for account in rest:
            if len(ids := holders.get(match.given_text(account), set())) == 1:
                found[account] = next(iter(ids))
    return found
