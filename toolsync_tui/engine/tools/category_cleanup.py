"""Empty course categories: found in one read of the tree and the course counts, deleted through the Moodle bridge.

A category is empty when no course lives in it or in any of its subcategories, however deep: it goes with all its
(empty) subcategories. With `ignore_subcategories`, as tool_sync did without its "ignore subcategories" box, only
categories with no course and no subcategory at all go; a parent they leave empty goes at the next run. Courses are
counted by `course.category` (`coursecount` may be stale). The start category itself is never deleted.

Deletion runs Moodle's core_course_category::delete_full() for each category, leaves first: the bridge refuses a
category that still holds a course or a subcategory, so a category whose child was not deleted is not deleted either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select

from toolsync_tui.config import RunSettings
from toolsync_tui.engine.moodle.categories import ROOT, CategoryIndex
from toolsync_tui.engine.moodle.gateway import MoodleGateway


class CategoryDeleter(Protocol):
    """What deleting needs of the Moodle bridge: id -> None when deleted, else why not."""

    async def delete_categories(
        self, category_ids: Sequence[int], on_result: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[int, str | None]: ...


class CleanupSafetyStop(Exception):
    """The run would delete more than the configured share of the site's categories: exit code 3."""


@dataclass(frozen=True)
class CleanupPlan:
    start: int  # ROOT: the whole tree
    start_label: str
    empty: list[int]  # leaves first: the order of deletion
    paths: dict[int, str]  # category id -> its path of names
    site_categories: int

    def label(self, category: int) -> str:
        return f"{self.paths[category]} (id {category})"

    def over_threshold(self, run: RunSettings) -> str | None:
        """Why deleting every planned category needs --force, or None when it does not (as the pipeline's check)."""
        count, base = len(self.empty), self.site_categories
        if run.safety_threshold <= 0 or count < max(run.safety_min_rows, 1) or count <= run.safety_threshold * base:
            return None
        return (
            f"{count} of the site's {base} categories ({count / base:.0%}) is more than the safety threshold of "
            f"{run.safety_threshold:.0%}"
        )

    def check_safety(self, run: RunSettings, *, force: bool) -> None:
        reason = self.over_threshold(run)
        if reason and not force:
            raise CleanupSafetyStop(f"deleting {reason}. Nothing was deleted. Re-run with --force if this is intended.")

    def outcome_lines(self, outcomes: dict[int, str | None]) -> list[str]:
        lines = []
        for category in self.empty:
            if category in outcomes:
                why = outcomes[category]
                lines.append(
                    f"deleted: {self.label(category)}" if why is None else f"not deleted: {self.label(category)}: {why}"
                )
        return lines


async def plan_cleanup(
    gateway: MoodleGateway, under: str | None = None, *, ignore_subcategories: bool = False
) -> CleanupPlan:
    """The empty categories under `under` (id, idnumber or path of names; None: the whole tree), leaves first."""
    course = gateway.schema.course
    async with gateway.reading() as conn:
        tree = await CategoryIndex.read(gateway, conn)
        rows = await conn.execute(select(course.c.category, func.count()).group_by(course.c.category))
        own = {int(category): int(count) for category, count in rows}
    start = ROOT if under is None else tree.resolve(under)
    order = tree.leaves_first(start)
    holding: dict[int, int] = {}  # courses in a category and all its subcategories
    for category in order:  # each after its subcategories
        holding[category] = own.get(category, 0) + sum(holding.get(c, 0) for c in tree.kids.get(category, []))
    if ignore_subcategories:
        empty = [c for c in order if not own.get(c) and not tree.kids.get(c)]
    else:
        empty = [c for c in order if not holding[c]]
    return CleanupPlan(
        start=start,
        start_label="the top level" if start == ROOT else f"{tree.path_of(start)} (id {start})",
        empty=empty,
        paths={c: tree.path_of(c) for c in empty},
        site_categories=len(tree),
    )


async def delete_planned(plan: CleanupPlan, deleter: CategoryDeleter) -> dict[int, str | None]:
    """Delete the plan's categories, leaves first. A failed bridge call raises BridgeError, whose `done` holds the
    outcomes known before it."""
    outcomes = await deleter.delete_categories(plan.empty)
    return {c: outcomes.get(c, "the bridge gave no outcome for this category") for c in plan.empty}
