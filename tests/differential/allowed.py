"""The differences between toolsync (database A) and Moodle's own APIs (database B) that the differential test
accepts: the one list, each entry with its reason. Only permanent differences belong here, never a defect waiting for
its fix (those stay visible: the test fails, or is marked xfail naming them, until they are fixed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support.table_compare import Difference


@dataclass(frozen=True)
class Allowed:
    table: str
    column: str | None  # None: a row on one side only (see `only`) or any column
    reason: str
    key: str = ""  # a regular expression the natural key must match (searched)
    only: str = ""  # "A" or "B": rows present on that side only
    values: str = ""  # a regular expression "<A value> | <B value>" must match (fully)

    def matches(self, difference: Difference) -> bool:
        if difference.table != self.table or (self.key and not re.search(self.key, difference.key)):
            return False
        if self.values and not re.fullmatch(self.values, f"{difference.a_value} | {difference.b_value}"):
            return False
        if self.only:
            return difference.column is None and difference.only == self.only
        return self.column is None or difference.column == self.column


ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "logstore_standard_log",
        None,
        "topicN names a section of a course the same row creates: create_course() cannot name sections, so Moodle's "
        "API path logs course_section_created and then course_section_updated (course_update_section()); toolsync "
        "writes the named section at once and logs its creation only (its course_section_created rows match)",
        key=r'course_section_updated", "course_sections", "PHYS101#[12]"',
        only="B",
    ),
    Allowed(
        "logstore_standard_log",
        None,
        "self=1 on a course the same row creates: create_course() adds the site's default methods (self disabled) and "
        "update_status() then enables it (enrol_instance_updated); toolsync creates the method enabled at once (its "
        "enrol_instance_created row matches)",
        key=r'enrol_instance_updated", "enrol", "PHYS101/self',
        only="B",
    ),
    # User pictures (pictures step, process_new_icon() on Moodle's side). Everything else of the icon rows matches:
    # the four rows of the user/icon/0 area, their names (f1/f2/f3 .jpg for a JPEG, .png otherwise), mimetype,
    # author, license, source, userid, times; and user.picture is set on both sides.
    Allowed(
        "files",
        "contenthash",
        "the icons' pixels: toolsync resizes with Pillow's bicubic filter and encodes with Pillow (PNG level 1 with "
        "its adaptive row filters, JPEG quality 90); Moodle resizes with GD's imagecopyresampled() and encodes with "
        "GD (PNG level 1, PNG_NO_FILTER; JPEG quality 90), and then core_fileredact's EXIF remover (on by default, "
        "no exiftool path: its GD method) decodes every new image/jpeg file and encodes it again at quality 90. The "
        "same image, other bytes",
        key=r'^\["30:[^"]+", "user", "icon", 0, "/", "f[123]\.(jpg|png)"\]$',
        values=r"[0-9a-f]{40} \| [0-9a-f]{40}",
    ),
    Allowed(
        "files",
        "filesize",
        "the icons' sizes follow their bytes (see the contenthash entry above); both sides store content",
        key=r'^\["30:[^"]+", "user", "icon", 0, "/", "f[123]\.(jpg|png)"\]$',
        values=r"[1-9]\d* \| [1-9]\d*",
    ),
    Allowed(
        "user",
        "picture",
        "a JPEG picture: process_new_icon() returns the id of the f1.jpg row it created, but core_fileredact's EXIF "
        "remover (a hook on every file creation) has already deleted that row and written the re-encoded f1.jpg as a "
        "new one, so Moodle's user.picture names a files row that no longer exists; toolsync's names its f1.jpg. "
        "user.picture is only a revision for the picture's URLs (non-zero: has a picture), so both serve the picture",
        values=r"30:[^ ]+/user/icon/0/f1\.jpg \| <gone> files",
    ),
    # Rows of one file that undo each other within a batch: toolsync plans the batch as a whole and writes (and logs)
    # the state it leaves, while Moodle's API path writes and logs each row in turn. The report still lists every row.
    Allowed(
        "logstore_standard_log",
        None,
        "cohort COH-C created, filled, freed and deleted by rows of one cohorts batch: the cohort never exists in "
        "toolsync's database, so there is no cohort to log (Moodle's path logs its creation, members and deletion)",
        key=r'cohort_(created|deleted|member_added|member_removed)", "cohort", "<gone> cohort"',
        only="B",
    ),
    Allowed(
        "logstore_standard_log",
        None,
        "bob added to COH-A and removed from it by rows of one cohorts batch: the membership is never written",
        key=r'cohort_member_(added|removed)", "cohort", "Cohort A", "10:system", "bob"',
        only="B",
    ),
    Allowed(
        "logstore_standard_log",
        None,
        "COH-D created and renamed by rows of one cohorts batch: toolsync creates it with its final name and logs "
        "cohort_created only (that row matches); Moodle's path logs the rename as cohort_updated",
        key=r'cohort_updated", "cohort", "Cohort D renamed"',
        only="B",
    ),
    Allowed(
        "logstore_standard_log",
        None,
        "alice added to T1 then shifted to T2, carol added to T2 then deleted, by rows of one group members batch: "
        "those memberships are never written (Moodle's path logs them added and removed)",
        key=r'group_member_(added|removed)", "groups", "PHYS101/(Tutor 1", "50:PHYS101", "alice|Tutor Two", '
        r'"50:PHYS101", "carol)"',
        only="B",
    ),
)


def unexpected(differences: list[Difference]) -> list[Difference]:
    """The differences no entry of ALLOWED accepts."""
    return [d for d in differences if not any(entry.matches(d) for entry in ALLOWED)]
