"""Expected standard-log rows of enrolment, role, group and cohort changes (issue 19), as a Moodle 4.5 site wrote them
through its own API from the command line: edulevel 0 (LEVEL_OTHER) for all of them, the acting user the admin (2).

in_course(...) builds a row in a course context; in_context(...) in any context; unordered(rows) puts rows in a
canonical order: toolsync writes a batch's events by kind, Moodle call by call, and only the set of rows is compared.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.log_rows import row

COURSE = 50


def in_context(
    event: str,
    objecttable: str | None,
    objectid: int | None,
    crud: str,
    context: tuple[int, int, int],
    *,
    courseid: int = 0,
    relateduserid: int | None = None,
    other: str = "null",
) -> dict[str, Any]:
    """A row of `core\\event\\<event>` in `context` (id, level, instance)."""
    return row(
        f"core\\event\\{event}",
        objecttable,
        objectid,
        crud,
        0,
        context,
        courseid=courseid,
        relateduserid=relateduserid,
        other=other,
    )


def in_course(
    event: str,
    objecttable: str | None,
    objectid: int | None,
    crud: str,
    course: tuple[int, int],
    *,
    relateduserid: int | None = None,
    other: str = "null",
) -> dict[str, Any]:
    """A row of `core\\event\\<event>` in the context of `course` = (course id, course context id)."""
    courseid, contextid = course
    return in_context(
        event,
        objecttable,
        objectid,
        crud,
        (contextid, COURSE, courseid),
        courseid=courseid,
        relateduserid=relateduserid,
        other=other,
    )


def unordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def enrolment_deleted(course: tuple[int, int], ue: dict[str, Any], plugin: str, *, last: bool) -> dict[str, Any]:
    """user_enrolment_deleted of the user_enrolments row `ue` (as stored before), through an instance of `plugin`:
    other = the row's columns as strings, then courseid, enrol and lastenrol, as unenrol_user() logs them."""
    columns = ("id", "status", "enrolid", "userid", "timestart", "timeend", "modifierid", "timecreated", "timemodified")
    snapshot = ",".join(f'"{name}":"{ue[name]}"' for name in columns)
    lastenrol = "true" if last else "false"
    other = (
        f'{{"userenrolment":{{{snapshot},"courseid":"{course[0]}","enrol":"{plugin}","lastenrol":{lastenrol}}},'
        f'"enrol":"{plugin}"}}'
    )
    return in_course(
        "user_enrolment_deleted", "user_enrolments", ue["id"], "d", course, relateduserid=ue["userid"], other=other
    )
