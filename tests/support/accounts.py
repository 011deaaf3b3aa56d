"""Accounts for the users tests: a user row written straight into mdl_user, and a user read back by id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from toolsync_tui.engine.moodle.gateway import MoodleGateway


async def user_by_id(gateway: MoodleGateway, user_id: int) -> dict[str, Any]:
    user = gateway.schema.user
    async with gateway.reading() as conn:
        return dict((await conn.execute(select(user).where(user.c.id == user_id))).one()._mapping)


async def add_user(gateway: MoodleGateway, **values: Any) -> int:
    user = gateway.schema.user
    row = {"firstname": "F", "lastname": "L", "mnethostid": 1, "confirmed": 1, "email": "", **values}
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, user, [row])
        found = await gateway.fetch_in(conn, user, "username", [row["username"]], ["id"])
    return int(found["id"][0])
