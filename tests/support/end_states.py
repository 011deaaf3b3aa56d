"""Two runs' end states compared table by table (tests/faults): a run stopped and run again against a clean run, each
on its own copy of the same template database.

Built on table_compare, which translates ids to natural keys. What it sets aside, and why that is right here:
- every table's `id`, and ids in other columns only through what they name: a stopped run's rolled-back batches use
  up auto-increment values, so the same rows get other ids than in the clean run;
- times within the tests' window (table_compare.Names.time: from the template's making to a day after the
  comparison): timecreated, timemodified, timeadded, timestart, the log's timecreated ... are each run's own clock;
- password hashes compared by algorithm and rounds only (`$6$ hash`): each hashing draws a new salt. That the
  passwords are right is checked apart (`password_mismatches`);
- log rows the run again writes beyond the clean run's, when they come in pairs that undo each other (a membership
  added and removed, a role assigned and unassigned, an enrolment created and deleted, for the same user and object):
  a file that adds something and removes it further on does both again when it is run again after a stop that came
  after both, and Moodle's log records what was done. Every other log row must be the same (`unexplained`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import crypt_r  # type: ignore[import-untyped]  # no py.typed: one function used

from tests.support import table_compare
from tests.support.table_compare import Difference
from toolsync_tui.engine.datadir.protected_groups import TABLE, state_path


def checksums(url: str) -> dict[str, int]:
    return table_compare.checksums(url)


def written(before: Mapping[str, int], *urls: str) -> set[str]:
    """The tables any of the databases changed from the template's checksums."""
    return set().union(*(table_compare.changed_tables(before, checksums(url)) for url in urls))


def differences(
    stopped: str, clean: str, tables: Iterable[str], window: tuple[int, int]
) -> tuple[list[Difference], list[str]]:
    """Every difference of the stopped-and-run-again database from the clean one, and the written tables the
    comparison cannot translate (no natural key declared in table_compare.TABLES)."""
    return table_compare.compare(stopped, clean, tables, window)


LOG = "logstore_standard_log"
# An event, and the event that undoes it (table_compare translates both to the same object, context and user).
UNDONE_BY = {
    "\\core\\event\\group_member_added": "\\core\\event\\group_member_removed",
    "\\core\\event\\cohort_member_added": "\\core\\event\\cohort_member_removed",
    "\\core\\event\\role_assigned": "\\core\\event\\role_unassigned",
    "\\core\\event\\user_enrolment_created": "\\core\\event\\user_enrolment_deleted",
}


def unexplained(found: list[Difference]) -> list[Difference]:
    """The differences left once the run again's extra log rows that undo each other in pairs are set aside."""
    undoing = {undo: do for do, undo in UNDONE_BY.items()}
    balance: dict[tuple[Any, ...], int] = {}
    extra: dict[tuple[Any, ...], list[Difference]] = {}
    left = []
    for difference in found:
        row = difference.a_value if difference.table == LOG and difference.only == "A" else None
        event = str((row or {}).get("eventname"))
        if row is None or (event not in UNDONE_BY and event not in undoing):
            left.append(difference)
            continue
        key = (undoing.get(event, event), *(row.get(c) for c in ("objecttable", "objectid", "contextid")))
        key += (row.get("relateduserid"),)
        balance[key] = balance.get(key, 0) + (1 if event in UNDONE_BY else -1)
        extra.setdefault(key, []).append(difference)
    return left + [d for key, rows in extra.items() if balance[key] for d in rows]


def render(found: list[Difference], limit: int = 40) -> str:
    """The first `limit` differences, one line each: the stopped run run again (A) against the clean run (B)."""
    lines = []
    for d in found[:limit]:
        if d.column is None:
            side = "only after the stopped run" if d.only == "A" else "only after the clean run"
            row = d.a_value if d.only == "A" else d.b_value
            shown = {k: v for k, v in (row or {}).items() if v not in (None, "", 0)}
            lines.append(f"{d.table} {d.key}: {side}: {_short(shown, 300)}")
        else:
            a, b = _short(d.a_value), _short(d.b_value)
            lines.append(f"{d.table} {d.key} .{d.column}: stopped+again {a} | clean {b}")
    if len(found) > limit:
        lines.append(f"... and {len(found) - limit} more")
    return "\n".join(lines)


def _short(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def password_mismatches(url: str, passwords: Mapping[str, str]) -> list[str]:
    """The idnumbers whose stored hash does not verify their password (the file's last for that account)."""
    wrong = []
    with table_compare.connect(url) as db, db.cursor() as cursor:
        cursor.execute("SELECT idnumber, password FROM mdl_user WHERE deleted = 0 AND idnumber <> ''")
        stored: dict[str, Any] = {str(idnumber): str(hashed) for idnumber, hashed in cursor.fetchall()}
    for idnumber, password in passwords.items():
        hashed = stored.get(idnumber)
        if hashed is None or crypt_r.crypt(password, hashed) != hashed:
            wrong.append(idnumber)
    return wrong


def protected_memberships(data_dir: Path, url: str) -> set[tuple[str, str, str]]:
    """The group memberships the data directory protects (protect_groups) that still hold, their entry naming the
    stored row's id, as (course shortname, group name, username): the part of a run's end state kept outside
    Moodle's tables."""
    path = state_path(data_dir)
    if not path.exists():
        return set()
    with closing(sqlite3.connect(path)) as state:
        entries = {(m, g, u) for g, u, m in state.execute(f"SELECT groupid, userid, memberid FROM {TABLE}")}
    held = set()
    ids = sorted(m for m, _, _ in entries)
    with table_compare.connect(url) as db, db.cursor() as cursor:
        for start in range(0, len(ids), 1000):
            chunk = ",".join(str(int(i)) for i in ids[start : start + 1000])
            cursor.execute(
                "SELECT m.id, m.groupid, m.userid, c.shortname, g.name, u.username FROM mdl_groups_members m "
                "JOIN mdl_groups g ON g.id = m.groupid JOIN mdl_course c ON c.id = g.courseid "
                f"JOIN mdl_user u ON u.id = m.userid WHERE m.id IN ({chunk})"
            )
            for member, group, user, course, name, username in cursor.fetchall():
                if (member, group, user) in entries:
                    held.add((str(course), str(name), str(username)))
    return held
