"""Nightly users feeds for the guard and hold tests: files of accounts, and what the database holds of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import func, select

from tests.conftest import database_config
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway

HEADER = "username;firstname;lastname;email;idnumber"


def users_feed(prefix: str, numbers: Iterable[int], *, first: str = "F", suspended: Iterable[int] = ()) -> str:
    """A users file of accounts <prefix><n>; `suspended`: the numbers whose row suspends the account."""
    suspend = set(suspended)
    lines = [HEADER + ";suspended"]
    lines += [f"{prefix}{n};{first}{n};L{n};{prefix}{n}@example.org;I{prefix}{n};{int(n in suspend)}" for n in numbers]
    return "\n".join(lines) + "\n"


async def accounts(gateway: MoodleGateway, prefix: str) -> dict[str, tuple[str, int]]:
    """username -> (firstname, suspended) of the live accounts named <prefix>..."""
    user = gateway.schema.user
    async with gateway.reading() as conn:
        rows = await conn.execute(
            select(user.c.username, user.c.firstname, user.c.suspended).where(
                user.c.username.like(f"{prefix}%") & (user.c.deleted == 0)
            )
        )
        return {row.username: (row.firstname, int(row.suspended)) for row in rows}


async def live_accounts(gateway: MoodleGateway) -> int:
    """The accounts not deleted: the users file's threshold base (site_settings.active_accounts)."""
    user = gateway.schema.user
    async with gateway.reading() as conn:
        return int((await conn.execute(select(func.count()).where(user.c.deleted == 0))).scalar_one())


@asynccontextmanager
async def mariadb_site(url: str, tmp_path: Path) -> AsyncIterator[tuple[Config, MoodleGateway]]:
    """A configuration and a gateway on a MariaDB database, with a data directory of the test's own; the row guards
    hold update files too (these feeds are whole exports in update mode)."""
    config = database_config(tmp_path, url)
    config.set("run.row_guards", "all")
    gateway = MoodleGateway.for_url(url, "mdl_")
    try:
        yield config, gateway
    finally:
        await gateway.close()
