"""Reading tables back in tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select

from toolsync_tui.engine.moodle.gateway import MoodleGateway


async def rows_of(gateway: MoodleGateway, table: Table, **where: Any) -> list[dict[str, Any]]:
    """The table's rows by id where each named column equals the value (or is in it, for a list)."""
    query = select(table).order_by(table.c.id)
    for name, value in where.items():
        query = query.where(table.c[name].in_(value) if isinstance(value, list) else table.c[name] == value)
    async with gateway.reading() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]
