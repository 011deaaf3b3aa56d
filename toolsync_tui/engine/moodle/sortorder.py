"""Category and course order as Moodle keeps it: the rules of `fix_course_sortorder()` (lib/datalib.php; moodle-db-
semantics §1.2), planned in memory from one read of the categories and courses, written as bulk updates of what
changed.

* Categories: unsorted ones (sortorder 0: new) go last among their siblings; a preorder walk of the tree, siblings by
  (sortorder, id), gives the k-th category `k * MAX_COURSES_IN_CATEGORY` and repairs parent, depth and path
  (a category whose parent is missing becomes a top-level one, last).
* coursecount = the courses whose `category` is the category.
* Courses: a category with a course outside [sortorder, sortorder + MAX] has its courses rebased (sortorder MOD MAX +
  the category's); then a category with shared values (a new course inserted with 0 shares the category's own value
  after the rebase, so do several new ones) or gaps is renumbered by (sortorder ASC, id DESC): newest first. The
  front page keeps sortorder 1.

Idempotent, like the original: run after any write that adds, moves or removes courses or categories, in the same
transaction. Creating n courses then fixing once gives the order n creations with a fix each give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.contexts import (
    SITE_COURSE,
    ContextLevel,
    child_path,
    instance_contexts,
    move_contexts,
    system_context,
)
from toolsync_tui.engine.moodle.gateway import MoodleGateway

MAX_COURSES_IN_CATEGORY: Final = 10_000  # unless $CFG->maxcoursesincategory
MAX_COURSE_CATEGORIES: Final = 10_000
CATEGORY_EVENT: Final = "changesincoursecat"
COURSE_EVENT: Final = "changesincourse"


@dataclass
class SortorderFix:
    """What a fix changed: rows per table, and the MUC events Moodle would purge for it."""

    categories: int = 0
    courses: int = 0
    events: set[str] = field(default_factory=set)
    moved_categories: dict[int, str] = field(default_factory=dict)  # repaired category id -> its new path


async def max_courses_in_category(gateway: MoodleGateway) -> int:
    value = (await gateway.config_values(["maxcoursesincategory"])).get("maxcoursesincategory", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_COURSES_IN_CATEGORY


async def fix_course_sortorder(
    gateway: MoodleGateway, conn: AsyncConnection, max_in_category: int = MAX_COURSES_IN_CATEGORY
) -> SortorderFix:
    schema = gateway.schema
    table, course = schema.course_categories, schema.course
    columns = ("id", "parent", "sortorder", "depth", "path", "coursecount")
    categories = [dict(zip(columns, row, strict=True)) for row in await conn.execute(select(*table.c[columns]))]
    counts = {
        int(category): int(n)
        for category, n in await conn.execute(select(course.c.category, func.count()).group_by(course.c.category))
    }
    courses = pl.DataFrame(
        (await conn.execute(select(course.c.id, course.c.category, course.c.sortorder))).all(),
        schema={"id": pl.Int64, "category": pl.Int64, "sortorder": pl.Int64},
        orient="row",
    )
    fix = SortorderFix()
    category_rows = plan_categories(categories, counts, max_in_category, fix)
    sortorders = {int(c["id"]): int(c["sortorder"]) for c in categories}
    sortorders.update({row["id"]: row["sortorder"] for row in category_rows if "sortorder" in row})
    course_rows = plan_courses(courses, sortorders, max_in_category)
    if course_rows:
        fix.events.add(COURSE_EVENT)
    await gateway.update_many(conn, table, "id", category_rows)
    await gateway.update_many(conn, course, "id", course_rows)
    await _repath_contexts(gateway, conn, fix.moved_categories)
    fix.categories, fix.courses = len(category_rows), len(course_rows)
    return fix


async def _repath_contexts(gateway: MoodleGateway, conn: AsyncConnection, moved: dict[int, str]) -> None:
    """The contexts of repaired categories (and all below them) follow their category's new place, parents first."""
    if not moved:
        return
    contexts = await instance_contexts(gateway, conn, ContextLevel.COURSECAT)
    root = await system_context(gateway, conn)
    for category, path in sorted(moved.items(), key=lambda item: item[1].count("/")):
        ids = [int(part) for part in path.strip("/").split("/")]
        if category not in contexts or any(i not in contexts for i in ids[:-1]):
            continue  # context_cleanup_task builds what is missing
        parent = contexts[ids[-2]].path if len(ids) > 1 else root.path
        own = contexts[category]
        new_path = child_path(parent, own.id)
        await move_contexts(gateway, conn, [(own.path, new_path)])
        contexts[category] = own._replace(path=new_path)


def plan_categories(
    categories: list[dict[str, Any]], counts: dict[int, int], max_in_category: int, fix: SortorderFix
) -> list[dict[str, Any]]:
    """The changed columns of each category whose sortorder, parent, depth, path or coursecount is not Moodle's."""
    unsorted = max_in_category * MAX_COURSE_CATEGORIES
    current = {int(c["id"]): c for c in categories}
    order = sorted(current.values(), key=lambda c: (int(c["sortorder"]) or unsorted, int(c["id"])))
    children: dict[int, list[dict[str, Any]]] = {}
    broken = []
    for category in order:
        parent = int(category["parent"] or 0)
        if parent and parent not in current:
            broken.append(category)
        else:
            children.setdefault(parent, []).append(category)
    changes: dict[int, dict[str, Any]] = {}
    if any(int(c["sortorder"]) == 0 for c in categories):
        fix.events.add(CATEGORY_EVENT)
    position = 0
    # Preorder, without recursion: the stack holds (category, parent id, parent depth, parent path), next on top.
    stack = [(c, 0, 0, "") for c in reversed([*children.get(0, []), *broken])]
    while stack:
        category, parent, depth, path = stack.pop()
        position += max_in_category
        ident = int(category["id"])
        own_path = f"{path}/{ident}"
        wanted: dict[str, Any] = {"parent": parent, "depth": depth + 1, "path": own_path, "sortorder": position}
        changed = {name: value for name, value in wanted.items() if _differs(category[name], value)}
        if changed.keys() & {"parent", "depth", "path"}:
            fix.moved_categories[ident] = own_path
        if changed:
            changes[ident] = changed
        stack.extend((child, ident, depth + 1, own_path) for child in reversed(children.get(ident, [])))
    for ident, category in current.items():
        if int(category["coursecount"]) != counts.get(ident, 0):
            changes.setdefault(ident, {})["coursecount"] = counts.get(ident, 0)
    if changes:
        fix.events.add(CATEGORY_EVENT)
    return [{"id": ident, **changed} for ident, changed in sorted(changes.items())]


def plan_courses(
    courses: pl.DataFrame, category_sortorders: dict[int, int], max_in_category: int
) -> list[dict[str, Any]]:
    """id and sortorder of each course whose sortorder changes, the front page included."""
    cats = pl.DataFrame(
        {"category": list(category_sortorders), "base": list(category_sortorders.values())},
        schema={"category": pl.Int64, "base": pl.Int64},
    )
    placed = courses.join(cats, on="category", how="inner")
    outside = (pl.col("sortorder") < pl.col("base")) | (pl.col("sortorder") > pl.col("base") + max_in_category)
    rebased = placed.with_columns(
        pl.when(outside.any().over("category"))
        .then(pl.col("sortorder") % max_in_category + pl.col("base"))
        .otherwise(pl.col("sortorder"))
        .alias("new")
    )
    # Shared values are looked for among all the site's courses, the front page too, as the original's self-join does.
    others = courses.join(cats, on="category", how="anti").select(pl.col("sortorder").alias("new"))
    values = pl.concat([rebased.select("new"), others])["new"].value_counts()
    shared = set(values.filter(pl.col("count") > 1)["new"].to_list())
    stats = rebased.group_by("category").agg(
        pl.col("base").first(),
        pl.len().alias("n"),
        pl.col("new").min().alias("low"),
        pl.col("new").max().alias("high"),
        pl.col("new").is_in(list(shared)).any().alias("shared"),
    )
    gap = (pl.col("high") != pl.col("base") + pl.col("n")) | (pl.col("low") != pl.col("base") + 1)
    shift = (
        ~pl.col("shared")
        & gap
        & (pl.col("low") == pl.col("base"))
        & (pl.col("high") == pl.col("base") + pl.col("n") - 1)
    )
    stats = stats.with_columns(shift.alias("shift"), (pl.col("shared") | (gap & ~shift)).alias("resort")).select(
        "category", "shift", "resort"
    )
    planned = (
        rebased.join(stats, on="category")
        .sort("category", "new", pl.col("id"), descending=[False, False, True])
        .with_columns(
            pl.when(pl.col("resort"))
            .then(pl.col("base") + pl.int_range(1, pl.len() + 1).over("category"))
            .when(pl.col("shift"))
            .then(pl.col("new") + 1)
            .otherwise(pl.col("new"))
            .alias("new")
        )
    )
    changed = planned.filter(pl.col("new") != pl.col("sortorder")).select("id", pl.col("new").alias("sortorder"))
    site = courses.filter((pl.col("id") == SITE_COURSE) & (pl.col("sortorder") != 1))
    rows = changed.to_dicts()
    if site.height:
        rows.append({"id": SITE_COURSE, "sortorder": 1})
    return rows


def _differs(stored: Any, wanted: Any) -> bool:
    return stored is None or (str(stored) != str(wanted))
