"""The mdl_course_sections row Moodle writes for a new section (course_create_section(), course_add_cm_to_section()
for a missing section 0): moodle-db-semantics §3.2."""

from __future__ import annotations

from typing import Any, Final

FORMAT_HTML: Final = 1


def new_section(course: int, number: int, now: int, name: str | None = None, summary: str = "") -> dict[str, Any]:
    return {
        "course": course,
        "section": number,
        "name": name,
        "summary": summary,
        "summaryformat": FORMAT_HTML,
        "sequence": "",
        "visible": 1,
        "availability": None,
        "component": None,
        "itemid": None,
        "timemodified": now,
    }
