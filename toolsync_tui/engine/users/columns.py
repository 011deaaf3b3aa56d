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

# Every file column written to the mdl_user column of its name: on create, and on update where the cell is not empty
# and differs from the stored value, as user_update_user() writes every changed attribute it is given. In this order
# the report names what an update changed. `username` changes only through `oldusername` (a rename).
USER_COLUMNS: Final = ("username", "firstname", "lastname", *USER_FIELDS, "suspended")
# The other columns, and what they do instead (tool_sync-reference §2.2.1, contract §3).
HANDLED_APART: Final = {
    "password": "hashed (or *NOPASS*, or 'to be generated' on create); written when it no longer matches the stored"
    " hash, with the preference auth_manual_passwordupdatetime for manual accounts",
    "deleted": "1 deletes the account; otherwise an account marked deleted is revived",
    "oldusername": "names the account to rename (allow_rename)",
    "mnethostid": "must be this site's mnet_localhost_id, which every account found already has: nothing to write",
    "cohort": "cohort membership (created by name if missing)",
    "cohortid": "the idnumber of a cohort the row creates",
}
COURSE_PARTS: Final = ("course", "role", "group", "enrol", "start", "end")

USERS_FILE: Final = ColumnSpec(
    required=REQUIRED,
    optional=(*USER_FIELDS, *SPECIAL, *RETIRED_FIELDS),
    patterns=(
        *((rf"{part}\d+", f"{part}N") for part in COURSE_PARTS),
        (r"wwwroot\d*", "wwwrootN"),
        (r"profile_field_.+", "profile_field_<shortname>"),
    ),
    short_rows=True,
)


def course_indexes(columns: list[str]) -> list[int]:
    """The N of every courseN column, in order (a roleN without its courseN means nothing)."""
    return sorted(int(name[6:]) for name in columns if name.startswith("course") and name[6:].isdigit())
