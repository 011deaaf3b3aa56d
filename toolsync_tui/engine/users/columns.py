"""The columns of the users file (tool_sync-reference §2.2.1) and how they map onto mdl_user."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from toolsync_tui.engine.rows import LINE
from toolsync_tui.engine.run.command_file import ColumnSpec, FileProblem

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
# Where the file's values are stored, for the length checks of engine/run/value_limits.py (numeric columns and
# profile fields, LONGTEXT, count against the packet only). The cohort and courseN parts check their names
# themselves (parts/): a part too long fails that part alone, the account is still written.
VALUE_COLUMNS: Final = {
    "username|oldusername": ("user", "username"),
    **{name: ("user", name) for name in USER_FIELDS},
}

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


# A row enrols its user in at most this many courses (courseN columns): far more than any real file (the original's
# own files rarely pass a dozen), and a bound on a row's work that a hostile header cannot lift. Many more
# enrolments of one user go in an enrolments file, a row each.
MAX_COURSE_COLUMNS: Final = 1_000


def course_indexes(columns: Sequence[str]) -> list[int]:
    """The N of every courseN column, in order (a roleN without its courseN means nothing); FileProblem past
    MAX_COURSE_COLUMNS."""
    indexes = sorted(int(name[6:]) for name in columns if name.startswith("course") and name[6:].isdigit())
    if len(indexes) > MAX_COURSE_COLUMNS:
        raise FileProblem(
            f"the header has {len(indexes):,} courseN columns, at most {MAX_COURSE_COLUMNS:,}: put a user's other "
            "enrolments in an enrolments file (a row each)"
        )
    return indexes


def course_requests(live: pl.DataFrame, indexes: Sequence[int], userid: str) -> pl.DataFrame:
    """A request per row and courseN column with a course: LINE, part ("courseN"), `userid` and the COURSE_PARTS
    and wwwroot cells of that N ("" when the file has no such column).

    Built from the columns themselves, looked up once: a select on a frame as wide as the file costs time in its
    width, and one per N made the whole grow with the square of the number of courseN columns.
    """
    if not indexes:
        raise ValueError("course_requests needs courseN columns")
    cells = {series.name: series for series in live.get_columns()}
    blank = pl.Series([""] * live.height, dtype=pl.String)
    # The numbers whose column names a course on some row, in one pass over the columns.
    used = live.select((pl.col(f"course{n}").fill_null("") != "").any().alias(str(n)) for n in indexes).row(0)
    frames = []
    for n in (n for n, any_course in zip(indexes, used, strict=True) if any_course):
        course = cells[f"course{n}"].fill_null("")
        named = {part: cells.get(f"{part}{n}", blank).fill_null("") for part in (*COURSE_PARTS[1:], "wwwroot")}
        frames.append(
            pl.DataFrame(
                {
                    LINE: cells[LINE],
                    "part": pl.Series([f"course{n}"] * live.height, dtype=pl.String),
                    userid: cells[userid],
                    "course": course,
                    **named,
                }
            )
        )
    if not frames:
        schema: dict[str, pl.DataType] = {LINE: cells[LINE].dtype, "part": pl.String(), userid: cells[userid].dtype}
        return pl.DataFrame(schema=schema | dict.fromkeys((*COURSE_PARTS, "wwwroot"), pl.String()))
    return pl.concat(frames).filter(pl.col("course") != "")
