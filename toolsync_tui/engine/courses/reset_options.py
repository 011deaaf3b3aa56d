"""The cells of a course reset row (resetcourses.csv, tool_sync-reference §2.1.3) as the options of Moodle's
reset_course_userdata(), each cell checked.

As the original: `events`, `notes`, `completion` yes/1 set their reset; `blog_associations` and `comments` do too,
and count as yes when the file has no such column; `local_roles`, `grades`, `groups` and `groupings` take `all` or
one part (yes/1 = all); `roles` takes `all` or role shortnames, whose users are unenrolled; the module columns
(`forum_all`, `quiz_attempts` ...) set `reset_<column>`. Fixed here: `completion` resets only when it says so (the
original also did whenever `blog_associations` was absent), `modules` is applied (the original ignored it): `all`,
module names, or `-name` exclusions, each naming a module's reset form defaults; a module column's no/0 then turns
that one off. Unknown values, roles and modules fail the row, naming the column. Moodle 4.5 has no log reset:
`logs` is checked and reported, and nothing is sent for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

REQUIRED = ("events", "logs", "notes", "grades", "roles", "local_roles", "groups", "groupings", "modules")
MODULE_COLUMNS = (
    "forum_all",
    "forum_subscriptions",
    "glossary_all",
    "chat",
    "data",
    "slots",
    "apointments",  # sic, as the original spells its scheduler option
    "assignment_submissions",
    "assign_submissions",
    "survey_answers",
    "lesson",
    "choice",
    "scorm",
    "quiz_attempts",
)
OPTIONAL = ("blog_associations", "comments", "completion", *MODULE_COLUMNS)

YES = frozenset({"yes", "1"})
NO = frozenset({"no", "0", ""})
FLAGS = {
    "events": "reset_events",
    "notes": "reset_notes",
    "completion": "reset_completion",
    "blog_associations": "delete_blog_associations",
    "comments": "reset_comments",
}
ON_WHEN_ABSENT = frozenset({"blog_associations", "comments"})
# Column -> value -> the options it sets; yes/1 means all.
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "local_roles": {
        "all": ("reset_roles_local", "reset_roles_overrides"),
        "roles": ("reset_roles_local",),
        "overrides": ("reset_roles_overrides",),
    },
    "grades": {
        "all": ("reset_gradebook_items", "reset_gradebook_grades"),
        "items": ("reset_gradebook_items",),
        "grades": ("reset_gradebook_grades",),
    },
    "groups": {
        "all": ("reset_groups_remove", "reset_groups_members"),
        "groups": ("reset_groups_remove",),
        "members": ("reset_groups_members",),
    },
    "groupings": {
        "all": ("reset_groupings_remove", "reset_groupings_members"),
        "groupings": ("reset_groupings_remove",),
        "groups": ("reset_groupings_remove",),  # the original's word for it
        "members": ("reset_groupings_members",),
    },
}
NO_ROLE = 0  # unenrol_users: the users enrolled without any role in the course


@dataclass(frozen=True)
class ResetSite:
    """What a row's values are checked against: the site's roles and installed activity modules."""

    roles: Mapping[str, int]  # shortname's key -> id
    modules: frozenset[str]
    key: Callable[[str], str] = str.lower  # a shortname as the site compares it (text_match.py; `=` on the role)

    def role_name(self, role_id: int) -> str:
        names = {i: name for name, i in self.roles.items()}
        return names.get(role_id, "(users with no role)" if role_id == NO_ROLE else str(role_id))


@dataclass
class RowReset:
    """A row's reset options, or why the row cannot be reset; `logs` when it asked for a log reset."""

    options: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    logs: bool = False


def row_reset(row: Mapping[str, Any], site: ResetSite) -> RowReset:
    """The reset a row asks for. `row` maps the file's columns to their cells (a column absent from the file is
    absent from it)."""
    reset = RowReset()

    def cell(column: str) -> str | None:
        value = row.get(column)
        return None if value is None else str(value).strip()

    def yes(column: str) -> bool | None:
        """True or False, or None when the column is absent, empty, or wrong (then a problem)."""
        value = cell(column)
        if value is None or value == "":
            return None
        if value.lower() in YES | NO:
            return value.lower() in YES
        reset.problems.append(f"{column} '{value}' is not allowed; expected yes, 1, no or 0 (or empty)")
        return None

    for column, option in FLAGS.items():
        if yes(column) or (column in ON_WHEN_ABSENT and cell(column) is None):
            reset.options[option] = 1
    reset.logs = bool(yes("logs"))
    for column, choices in CHOICES.items():
        value = (cell(column) or "").lower()
        if value in YES:
            value = "all"
        if value in NO:
            continue
        if value not in choices:
            allowed = ", ".join(choices)
            reset.problems.append(f"{column} '{cell(column)}' is not allowed; expected {allowed}, yes, 1, no or 0")
            continue
        reset.options.update(dict.fromkeys(choices[value], 1))
    for column in MODULE_COLUMNS:
        answer = yes(column)
        if answer is not None:
            reset.options[f"reset_{column}"] = int(answer)
    roles = _roles(cell("roles") or "", site, reset.problems)
    if roles:
        reset.options["unenrol_users"] = roles
    modules = _modules(cell("modules") or "", site, reset.problems)
    if modules:
        reset.options["modules"] = modules
    return reset


def _roles(value: str, site: ResetSite, problems: list[str]) -> list[int]:
    """unenrol_users: `all` (every role, and the users with none), or role shortnames separated by spaces."""
    names = value.split()
    if [name.lower() for name in names] == ["all"]:
        return [*sorted(site.roles.values()), NO_ROLE]
    ids = []
    for name in names:
        role = site.roles.get(site.key(name))
        if role is None:
            problems.append(f"roles: no role '{name}' on this site (role shortnames separated by spaces, or all)")
        elif role not in ids:
            ids.append(role)
    return ids


def _modules(value: str, site: ResetSite, problems: list[str]) -> list[str]:
    """Modules whose reset form defaults apply: `all`, names, and `-name` exclusions (alone, they start from all)."""
    words = [word.lower() for word in value.split()]
    if words in ([], ["no"], ["0"]):
        return []
    named = {word.lstrip("-") for word in words} - {"all"}
    unknown = sorted(named - site.modules)
    if unknown:
        problems.append(
            f"modules: {', '.join(repr(m) for m in unknown)} not installed on this site "
            f"(installed: {', '.join(sorted(site.modules))})"
        )
        return []
    wanted = set(site.modules) if "all" in words or all(w.startswith("-") for w in words) else set()
    wanted |= {w for w in words if w != "all" and not w.startswith("-")}
    wanted -= {w[1:] for w in words if w.startswith("-")}
    return sorted(wanted)


def describe(options: Mapping[str, Any], site: ResetSite) -> str:
    """The options, shortly, as reset_course_userdata() names them: "reset_events, unenrol_users student, ..."."""
    parts = []
    for name, value in options.items():
        if name == "unenrol_users":
            parts.append("unenrol_users " + " ".join(site.role_name(r) for r in value))
        elif name == "modules":
            parts.append("modules " + " ".join(value))
        elif value:
            parts.append(name)
        else:
            parts.append(f"not {name}")
    return ", ".join(parts) if parts else "nothing to reset"
