"""Course categories named in a file: by id, by idnumber or by path ("Science/Biology", names from the top level down).

A site has hundreds, at most a few thousand categories: the whole table and the categories' context ids are read
once, then every name is answered in memory. Text matches as Moodle's `name = ? AND parent = ?` does on the site's
database (text_match.py: case and accents ignored on MariaDB, exact on PostgreSQL); when several categories answer
(a repeated idnumber, two sibling categories of one name), the lowest id is taken.

`create_paths` adds the missing categories of paths as `core_course_category::create()` writes them (moodle-db-
semantics §2): one INSERT per tree level, then paths and contexts; their sortorder is 0 until fix_course_sortorder()
(engine/sortorder.py) places each new category last among its siblings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.contexts import (
    Context,
    ContextLevel,
    create_contexts,
    instance_contexts,
    system_context,
)
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.text_match import TextMatch

PATH_SEPARATOR = "/"
ROOT = 0  # the parent of top-level categories
NAME_MAX = 255  # course_categories.name


@dataclass(frozen=True)
class Category:
    id: int
    depth: int
    path: str  # of category ids: /2/5
    visible: bool
    context_path: str  # of context ids: /1/12/15


class CategoryProblem(Exception):
    """A category named on the command line does not exist, or names two categories."""


def split_path(text: str) -> list[str] | None:
    """The names of a `Top/Sub/Leaf` path, outer slashes and spaces dropped; None when a name is empty or too long."""
    names = [name.strip() for name in text.strip().strip(PATH_SEPARATOR).split(PATH_SEPARATOR)]
    return names if all(names) and all(len(name) <= NAME_MAX for name in names) else None


@dataclass
class CategoryIndex:
    ids: set[int] = field(default_factory=set)
    idnumbers: dict[str, int] = field(default_factory=dict)  # idnumber's key (match) -> id
    children: dict[tuple[int, str], int] = field(default_factory=dict)  # (parent id, name's key) -> id
    contexts: dict[int, int] = field(default_factory=dict)  # category id -> its context id
    names: dict[int, str] = field(default_factory=dict)
    details: dict[int, Category] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    kids: dict[int, list[int]] = field(default_factory=dict)  # parent id (ROOT: top level) -> ids in Moodle's order
    system: Context | None = None  # the parent context of top-level categories, read when one is first created
    match: TextMatch = field(default_factory=lambda: TextMatch("mariadb"))  # how the site compares names

    @classmethod
    async def read(cls, gateway: MoodleGateway, conn: AsyncConnection) -> CategoryIndex:
        table = gateway.schema.course_categories
        index = cls(match=TextMatch(gateway.kind))
        key = index.match.stored_text
        context_paths = await instance_contexts(gateway, conn, ContextLevel.COURSECAT)
        index.contexts = {category: context.id for category, context in context_paths.items()}
        query = select(
            table.c.id,
            table.c.idnumber,
            table.c.name,
            table.c.parent,
            table.c.depth,
            table.c.path,
            table.c.visible,
            table.c.sortorder,
        ).order_by(table.c.id.desc())
        order: list[tuple[int, int]] = []
        for category, idnumber, name, parent, depth, path, visible, sortorder in await conn.execute(query):
            # Highest id first, so that the lowest id is the one left for a shared name or idnumber.
            ident = int(category)
            index.ids.add(ident)
            if idnumber:
                index.idnumbers[key(str(idnumber))] = ident
            index.children[(int(parent or 0), index.name_key(str(name)))] = ident
            index.names[ident] = str(name)
            index.parents[ident] = int(parent or 0)
            order.append((int(sortorder or 0), ident))
            context_path = context_paths[ident].path if ident in context_paths else ""
            index.details[ident] = Category(ident, int(depth or 0), str(path or ""), bool(visible), context_path)
        for _, ident in sorted(order):
            index.kids.setdefault(index.parents[ident], []).append(ident)
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def resolve(self, text: str) -> int:
        """The category `text` names on the command line: an existing numeric id first, else an idnumber or a path
        of names; CategoryProblem when none, or when an idnumber and a path name two different categories."""
        given = text.strip()
        if given.isdigit() and int(given) in self.ids:
            return int(given)
        by_idnumber, by_path = self.by_idnumber(given), self.by_path(given.strip(PATH_SEPARATOR))
        if by_idnumber is not None and by_path is not None and by_idnumber != by_path:
            raise CategoryProblem(
                f"category '{text}' is ambiguous: the idnumber of category {by_idnumber} "
                f"({self.path_of(by_idnumber)}) and the path of category {by_path}: give its id"
            )
        found = by_idnumber if by_idnumber is not None else by_path
        if found is None:
            raise CategoryProblem(f"category '{text}' not found (give an id, an idnumber or a path such as 'Top/Sub')")
        return found

    def path_of(self, category: int) -> str:
        """`Top/Sub/Leaf`: the names from the top level down."""
        names: list[str] = []
        seen: set[int] = set()
        while category in self.names and category not in seen:  # a broken parent loop ends the walk
            seen.add(category)
            names.append(self.names[category])
            category = self.parents.get(category, ROOT)
        return PATH_SEPARATOR.join(reversed(names))

    def below(self, category: int) -> Iterator[int]:
        """Every category under `category` (ROOT: the whole tree), parents before their children."""
        stack = list(reversed(self.kids.get(category, [])))
        seen: set[int] = {category}
        while stack:
            current = stack.pop()
            if current in seen:  # a parent loop in a damaged table is walked once
                continue
            seen.add(current)
            yield current
            stack.extend(reversed(self.kids.get(current, [])))

    def leaves_first(self, category: int) -> list[int]:
        """The categories under `category`, each after all of its subcategories, siblings in Moodle's order."""
        order: list[int] = []
        stack: list[tuple[int, bool]] = [(category, False)]
        seen: set[int] = set()
        while stack:
            current, expanded = stack.pop()
            if expanded:
                if current != category:
                    order.append(current)
            elif current not in seen:  # a parent loop in a damaged table is walked once
                seen.add(current)
                stack.append((current, True))
                stack.extend((child, False) for child in reversed(self.kids.get(current, [])))
        return order

    def by_id(self, text: str) -> int | None:
        return int(text) if text.isdigit() and int(text) in self.ids else None

    def name_key(self, name: str) -> str:
        """A category name's key: MariaDB (and the sandbox) also ignore the spaces around it, as toolsync always
        has (a path's names are trimmed); PostgreSQL compares the name as stored."""
        return self.match.stored_text(name if self.match.kind == "postgresql" else name.strip())

    def by_idnumber(self, text: str) -> int | None:
        return self.idnumbers.get(self.match.given_text(text))

    def by_path(self, text: str) -> int | None:
        """`Top/Sub/Leaf`: each name a child of the one before it, the first a top-level category."""
        category = 0
        for name in text.split(PATH_SEPARATOR):
            found = self.children.get((category, self.name_key(name.strip())))
            if found is None:
                return None
            category = found
        return category or None

    def by_names(self, names: Sequence[str]) -> int | None:
        return self.by_path(PATH_SEPARATOR.join(names))

    def missing(self, names: Sequence[str]) -> bool:
        return self.by_names(names) is None


async def create_paths(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    index: CategoryIndex,
    paths: Sequence[Sequence[str]],
    *,
    visible: bool,
    now: int,
) -> list[int]:
    """Create the categories missing from these paths of names (see split_path), top level first; the index learns
    them. A new category is visible when `visible` and its parent is. Returns the new categories' ids."""
    created: list[int] = []
    if paths and index.system is None:
        index.system = await system_context(gateway, conn)
    for level in range(max((len(p) for p in paths), default=0)):
        wanted: dict[tuple[int, str], str] = {}  # (parent id, folded name) -> the name as first written
        for names in paths:
            if len(names) > level and index.missing(names[: level + 1]):
                parent = (index.by_names(names[:level]) or 0) if level else 0
                wanted.setdefault((parent, index.name_key(names[level])), names[level])
        if wanted:
            created += await _create_level(gateway, conn, index, wanted, visible, now)
    return created


async def _create_level(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    index: CategoryIndex,
    wanted: dict[tuple[int, str], str],
    visible: bool,
    now: int,
) -> list[int]:
    """One INSERT for categories of one tree level, read back by parent and name; then their paths and contexts."""
    table = gateway.schema.course_categories
    parents = {parent_id: index.details.get(parent_id) for parent_id, _ in wanted}

    def row(parent_id: int, name: str) -> dict[str, object]:
        parent = parents[parent_id]
        return {
            "name": name,
            "idnumber": None,
            "description": "",
            "descriptionformat": 0,
            "parent": parent_id,
            "sortorder": 0,
            "coursecount": 0,
            "visible": int(visible and (parent is None or parent.visible)),
            "visibleold": int(visible),
            "timemodified": now,
            "depth": (parent.depth if parent else 0) + 1,
            "path": "",
        }

    rows = [row(parent_id, name) for (parent_id, _), name in wanted.items()]
    given = await gateway.insert_many(conn, table, rows)
    found: list[tuple[Any, ...]]
    if given is not None:  # the server's ids, in order: no read-back
        found = [(i, r["parent"], r["name"], r["visible"], r["depth"]) for i, r in zip(given, rows, strict=True)]
    else:
        read = await gateway.fetch_in(
            conn,
            table,
            "parent",
            sorted(parents),
            ["id", "parent", "name", "visible", "depth"],
            where=table.c.path == "",
        )
        found = list(read.sort("id").iter_rows())
    names: dict[int, str] = {}
    new: list[Category] = []
    for ident, parent_id, name, shown, depth in sorted(found, key=lambda f: int(f[0])):
        if (int(parent_id), index.name_key(str(name))) in wanted and int(ident) not in index.ids:
            parent = parents[int(parent_id)]
            names[int(ident)] = str(name)
            new.append(Category(int(ident), int(depth), f"{parent.path if parent else ''}/{ident}", bool(shown), ""))
    await gateway.update_many(conn, table, "id", [{"id": c.id, "path": c.path} for c in new])
    parent_of = {c.id: parents[_parent_id(c)] for c in new}
    assert index.system is not None  # create_paths() read it
    root = index.system.path
    contexts = await create_contexts(
        gateway,
        conn,
        ContextLevel.COURSECAT,
        [(c.id, parent.context_path if (parent := parent_of[c.id]) else root) for c in new],
    )
    for category in new:
        parent_id = _parent_id(category)
        name = names[category.id]
        context_id, context_path = contexts[category.id]
        index.ids.add(category.id)
        index.names[category.id] = name
        index.parents[category.id] = parent_id
        index.kids.setdefault(parent_id, []).append(category.id)
        index.children[(parent_id, index.name_key(name))] = category.id
        index.contexts[category.id] = context_id
        index.details[category.id] = Category(
            category.id, category.depth, category.path, category.visible, context_path
        )
    return [c.id for c in new]


def _parent_id(category: Category) -> int:
    """The parent's id, from the category's path of ids (0 for a top-level one)."""
    parts = category.path.strip("/").split("/")
    return int(parts[-2]) if len(parts) > 1 else 0
