"""Test data written straight into the tables (only what the tested operation reads)."""

from __future__ import annotations

import itertools

from toolsync_tui.engine.moodle.gateway import MoodleGateway

_unique = itertools.count(1)


def unique(prefix: str) -> str:
    """Names that do not collide between tests sharing a module database."""
    return f"{prefix}{next(_unique):05d}"


async def add_courses(gateway: MoodleGateway, courses: list[dict[str, object]]) -> list[int]:
    """Insert course rows (shortname, fullname, idnumber ...) in category 1; returns their ids."""
    table = gateway.schema.course
    rows = [
        {
            "category": 1,
            "fullname": c["shortname"],
            "idnumber": "",
            "summary": "",
            "format": "topics",
            "timecreated": 0,
            "timemodified": 0,
            "cacherev": 0,
            "sortorder": 0,
            **c,
        }
        for c in courses
    ]
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, table, rows)
        found = await gateway.fetch_in(conn, table, "shortname", [c["shortname"] for c in courses], ["id", "shortname"])
    by_name = dict(zip(found["shortname"], found["id"], strict=True))
    return [by_name[c["shortname"]] for c in courses]
