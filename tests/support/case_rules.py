"""Values given in another case than stored, for tests of case-insensitive matching written for MariaDB.

On MariaDB (utf8mb4_unicode_ci) and the SQLite sandbox a lookup ignores case; on PostgreSQL Moodle's own lookups are
exact, so a value in another case names nothing there (tests/moodle/test_case_rules.py shows both outcomes). A test
whose subject is something else keeps its MariaDB wording and gives PostgreSQL the stored spelling.
"""

from __future__ import annotations

from toolsync_tui.engine.moodle.gateway import MoodleGateway


def cased(gateway: MoodleGateway, given: str, stored: str) -> str:
    """`given` (another case of `stored`) where the site's lookups ignore case, else `stored`."""
    return stored if gateway.kind == "postgresql" else given
