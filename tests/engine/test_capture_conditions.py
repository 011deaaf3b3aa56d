"""Which rows an UPDATE by a condition touches, known from the condition alone (no query): the change capture of a
run's writes reads the values before of those rows only."""

from __future__ import annotations

from sqlalchemy import column, table

from toolsync_tui.engine.changes.capture import _listed_ids

CONTEXT = table("mdl_context", column("id"), column("depth"))


def test_an_id_list_and_an_id_range_are_known_without_a_query() -> None:
    assert _listed_ids(CONTEXT.c.id.in_([4, 9, 7])) == [4, 9, 7]
    assert _listed_ids(CONTEXT.c.id.between(11, 14)) == [11, 12, 13, 14]


def test_any_other_condition_is_left_to_a_query() -> None:
    assert _listed_ids(CONTEXT.c.id > 3) is None
    assert _listed_ids(CONTEXT.c.depth.between(1, 2)) is None
    assert _listed_ids(CONTEXT.c.depth.in_([1, 2])) is None
    assert _listed_ids((CONTEXT.c.id.between(1, 2)) & (CONTEXT.c.depth == 2)) is None
