"""Course categories named in a file: by id, by idnumber or by path ("Science/Biology", names from the top level down).

A site has hundreds, at most a few thousand categories: the whole table and the categories' context ids are read
once, then every name is answered in memory. Text matches case-insensitively, as MariaDB's collation compares; when
several categories answer (a repeated idnumber, two sibling categories of one name), the lowest id is taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .contexts import ContextLevel
from .gateway import MoodleGateway

PATH_SEPARATOR = "/"


@dataclass
class CategoryIndex:
    ids: set[int] = field(default_factory=set)
    idnumbers: dict[str, int] = field(default_factory=dict)  # lower-cased idnumber -> id
    children: dict[tuple[int, str], int] = field(default_factory=dict)  # (parent id, lower-cased name) -> id
    contexts: dict[int, int] = field(default_factory=dict)  # category id -> its context id

    @classmethod
    async def read(cls, gateway: MoodleGateway, conn: AsyncConnection) -> CategoryIndex:
        table, context = gateway.schema.course_categories, gateway.schema.context
        index = cls()
        query = select(table.c.id, table.c.idnumber, table.c.name, table.c.parent).order_by(table.c.id.desc())
        for category, idnumber, name, parent in await conn.execute(query):
            # Highest id first, so that the lowest id is the one left for a shared name or idnumber.
            index.ids.add(int(category))
            if idnumber:
                index.idnumbers[str(idnumber).lower()] = int(category)
            index.children[(int(parent or 0), str(name).strip().lower())] = int(category)
        rows = await conn.execute(
            select(context.c.instanceid, context.c.id).where(context.c.contextlevel == int(ContextLevel.COURSECAT))
        )
        index.contexts = {int(instance): int(ctx) for instance, ctx in rows}
        return index

    def by_id(self, text: str) -> int | None:
        return int(text) if text.isdigit() and int(text) in self.ids else None

    def by_idnumber(self, text: str) -> int | None:
        return self.idnumbers.get(text.lower())

    def by_path(self, text: str) -> int | None:
        """`Top/Sub/Leaf`: each name a child of the one before it, the first a top-level category."""
        category = 0
        for name in text.split(PATH_SEPARATOR):
            found = self.children.get((category, name.strip().lower()))
            if found is None:
                return None
            category = found
        return category or None
