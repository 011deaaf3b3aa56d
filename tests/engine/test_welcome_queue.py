"""The welcome queue puts a batch's new enrolments in the order a row-by-row run makes them, and dates each new
course-contact role from the first enrolment that sees it (a row's role comes after its own welcome)."""

from __future__ import annotations

import polars as pl

from toolsync_tui.engine.moodle.bridge.client import WelcomeRole
from toolsync_tui.engine.moodle.welcome_messages import WelcomeQueue


def enrolments(*rows: tuple[int, int, int, int]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["line", "req", "enrolid", "userid"], orient="row")


def roles(*rows: tuple[int, int, int, int, int]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["line", "req", "courseid", "userid", "roleid"], orient="row")


def test_enrolments_in_file_order_and_roles_seen_from_the_next_enrolment() -> None:
    queue = WelcomeQueue()
    # Two calls of one batch (the enrolments file's generations): line 5 comes before line 7 whatever the call.
    queue.add(enrolments((2, 0, 10, 100), (7, 1, 10, 102)), roles((2, 0, 1, 100, 3)))
    queue.add(enrolments((5, 0, 10, 101)), roles((6, 0, 1, 200, 3)))
    batch = queue.take()
    assert batch.enrolments == [(10, 100), (10, 101), (10, 102)]
    assert batch.roles == [WelcomeRole(1, 100, 3, 2), WelcomeRole(1, 200, 3, 3)]
    assert len(queue) == 0
    assert queue.take().enrolments == []


def test_a_role_after_every_enrolment_is_seen_by_none() -> None:
    queue = WelcomeQueue()
    queue.add(enrolments((3, 0, 4, 7), (3, 1, 5, 7)), roles((3, 1, 9, 7, 3), (1, 0, 9, 8, 3)))
    batch = queue.take()
    # users file line 3: course1 then course2 (req 0, 1); the role of course2's request is seen by no enrolment.
    assert batch.roles == [WelcomeRole(9, 7, 3, 3), WelcomeRole(9, 8, 3, 1)]
