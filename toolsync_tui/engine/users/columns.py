"""The columns of the users file (tool_sync-reference §2.2.1) and how they map onto mdl_user."""

from __future__ import annotations

from typing import Final

from toolsync_tui.engine.run.command_file import ColumnSpec

REQUIRED: Final = ("username", "firstname", "lastname")

# File columns written to the mdl_user column of the same name.
USER_FIELDS: Final = (
    "idnumber",
    "email",
    "auth",
    "institution",
    "department",
    "city",
    "country",
    "lang",
    "timezone",
    "phone1",
    "phone2",
    "address",
    "description",
    "mailformat",
    "maildisplay",
    "maildigest",
    "autosubscribe",
    "trackforums",
    "emailstop",
    "firstnamephonetic",
    "lastnamephonetic",
    "middlename",
    "alternatename",
)
NUMERIC_FIELDS: Final = frozenset(
    {"mailformat", "maildisplay", "maildigest", "autosubscribe", "trackforums", "emailstop", "suspended", "deleted"}
)
# Columns of the original's files that Moodle 4.5 no longer has in mdl_user: accepted, their values ignored.
RETIRED_FIELDS: Final = ("icq", "url", "htmleditor")

SPECIAL: Final = ("password", "suspended", "deleted", "oldusername", "mnethostid", "cohort", "cohortid")
COURSE_PARTS: Final = ("course", "role", "group", "enrol", "start", "end")

USERS_FILE: Final = ColumnSpec(
    required=REQUIRED,
    optional=(*USER_FIELDS, *SPECIAL, *RETIRED_FIELDS),
    patterns=(
        *((rf"{part}\d+", f"{part}N") for part in COURSE_PARTS),
        (r"wwwroot\d*", "wwwrootN"),
        (r"profile_field_.+", "profile_field_<shortname>"),
    ),
)


def course_indexes(columns: list[str]) -> list[int]:
    """The N of every courseN column, in order (a roleN without its courseN means nothing)."""
    return sorted(int(name[6:]) for name in columns if name.startswith("course") and name[6:].isdigit())
