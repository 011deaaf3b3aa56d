"""What a course batch's plan read and what its write changes, as BatchPlan keys (engine/run/overlap.py).

With overlapping writes, batch N+1 is planned while batch N is written: a plan whose reads meet the writes of the
batch in flight is planned again once that write has ended, so that it sees what the write did, as a run batch
after batch would. The keys:

* ("course", column, folded value): a course named by shortname or idnumber. Read by the row's identifier, by the
  shortname and idnumber it gives (taken by another course?) and by its template's shortname; written for every
  value a created or updated course has before or after the write. Folded by text_match.collation_text: a superset
  of what any site's lookup deems equal (a batch planned again for nothing at worst).
* ("course id", id): an existing course the plan found (its stored dates, category); written when it is updated.
* ("category", folded path of names): a category the row names by path. Written for every path (and each of its
  prefixes) the batch's write creates; a plan that read the path as missing would say "(new category)" and plan its
  creation, one that read it as present could use a category whose creation is then rolled back.

The write plans the batch's later rounds (rows naming a course again) itself, on its own connection after the
previous write: only their writes need keys. Sortorders and course counts are computed in the write
(fix_course_sortorder() reads the stored order there), never in the plan.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from toolsync_tui.engine.courses.plan import Plan
from toolsync_tui.engine.courses.values import CourseRow
from toolsync_tui.engine.moodle.categories import split_path
from toolsync_tui.engine.moodle.text_match import collation_text

NAMED_BY = ("shortname", "idnumber")


def read_keys(rows: Iterable[CourseRow], identifier: str, plan: Plan, category_by_path: bool) -> frozenset[Hashable]:
    """What the plan of these rows (one round) relied on."""
    keys: set[Hashable] = set()
    for row in rows:
        keys.add(_course(identifier, row.key))
        keys.update(_course(column, row.values.get(column)) for column in NAMED_BY)
        if row.template:
            keys.add(_course("shortname", row.template))
        if category_by_path and (path := _path(row.category)) is not None:
            keys.add(("category", path))
    keys.update(("course id", int(course["id"])) for _, course, _, _ in plan.updates)
    keys.discard(None)
    return frozenset(keys)


def write_keys(plan: Plan, later: Iterable[CourseRow], identifier: str, category_by_path: bool) -> frozenset[Hashable]:
    """What the write of a planned round, and of the batch's later rounds, may change."""
    keys: set[Hashable] = set()
    for row, record, _ in plan.creates:
        keys.update(_course(column, record.get(column)) for column in NAMED_BY)
        keys.add(_course(identifier, row.key))
    for row, course, values, _ in plan.updates:
        keys.add(("course id", int(course["id"])))
        keys.update(_course(column, source.get(column)) for column in NAMED_BY for source in (course, values))
        keys.add(_course(identifier, row.key))
    for row in later:  # planned in the write: whatever they name may change
        keys.add(_course(identifier, row.key))
        keys.update(_course(column, row.values.get(column)) for column in NAMED_BY)
        if category_by_path and (path := _path(row.category)) is not None:
            keys.update(_prefixes(path))
    for path in plan.new_paths:
        keys.update(_prefixes(collation_text(path)))  # folded as _path() folds a row's
    keys.discard(None)
    return frozenset(keys)


def _course(column: str, value: Any) -> Hashable:
    return ("course", column, collation_text(str(value))) if value not in (None, "") else None


def _path(text: str) -> str | None:
    """A category cell as a folded path of names (None when it is empty or not a path)."""
    if not text or text.isdigit():
        return None
    names = split_path(text)
    return collation_text("/".join(names)) if names else None


def _prefixes(path: str) -> list[Hashable]:
    parts = path.split("/")
    return [("category", "/".join(parts[: n + 1])) for n in range(len(parts))]
