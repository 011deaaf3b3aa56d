"""Cohort-course bindings (cohortscourses.csv): cohort enrolment methods (enrol_cohort) added to and removed from
courses (tool_sync-reference §2.6.2; the rows written: moodle-db-semantics §6.5).

Columns: `cohort` and `course` (required; by the `cohort_identifier` and `course_identifier` settings), `cmd`, `role`,
`enrol`, `makegroup`; `enrolstart` and `enrolend` are accepted and not used (cohort enrolment methods have no
enrolment dates in Moodle). A binding is the cohort method of the course for that cohort and role:

* `add` (default): the method is created as enrol_cohort's add_instance() writes it (status 0, the role, customint1 =
  the cohort, customint2 = the group or 0, sortorder after the course's last method). A disabled one is enabled again;
  an enabled one is `unchanged`. `makegroup` 1 gives the method a group named after the cohort ('<name> cohort',
  '(2)' ... when taken), created as Moodle's "Create new group" option does, also for an existing method without one.
* `del`: disables the binding (update_status()); the users keep their enrolments, suspended by Moodle's sync.
* `restore`: enables a disabled binding again; no binding fails the row.
* `fulldel`: deletes the binding as delete_instance() does, unenrolling every user it enrolled (their roles and
  group memberships from it too).

`role`: empty = the default role of cohort methods (the plugin's `roleid` setting, else student), by shortname or id
(`role_identifier`); `*` = every role, for del, restore and fulldel. A role given to add must be assignable in a
course. The users a binding enrols are materialised by Moodle's own cohort sync (engine/enrol_sync.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.bindings.base import (
    DISABLED,
    ENABLED,
    Instance,
    InstanceBindings,
    Outcome,
    free_group_name,
)
from toolsync_tui.engine.moodle.column_limits import column_limit
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import KeyLookup, answers_by_value, lookup_problem
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, cells
from toolsync_tui.engine.run.command_file import ColumnSpec

COMMANDS = ("add", "del", "restore", "fulldel")
TEXT = ("cohort", "course", "cmd", "role", "enrol", "makegroup")
EVERY_ROLE = "*"
FALLBACK_ROLE = "student"


class CohortBindingsOperation(InstanceBindings):
    name = "cohortscourses"
    title = "Cohort to course bindings"
    plugin = "cohort"
    columns = ColumnSpec(
        required=("cohort", "course"), optional=("cmd", "role", "enrol", "makegroup", "enrolstart", "enrolend")
    )
    removing_commands = ("del", "fulldel")

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.cohortscourses
        self.cohorts = KeyLookup(
            gateway, self.schema.cohort, self.options.cohort_identifier, ["id", "name"], remember=True
        )
        self.courses = self.course_lookup(self.options.course_identifier)
        self.default_role = 0
        self.unused_dates = False

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        await super().prepare(conn, columns)
        plugins = self.schema.config_plugins
        query = select(plugins.c.value).where(plugins.c.plugin == "enrol_cohort", plugins.c.name == "roleid")
        configured = (await conn.execute(query)).scalar_one_or_none()
        roles = dict(self.site.roles.select("roleid", "rolekey").iter_rows())
        if configured is not None and str(configured).isdigit() and int(configured) in roles:
            self.default_role = int(configured)
        else:
            student = self.site.roles.filter(pl.col("rolekey") == FALLBACK_ROLE)["roleid"]
            self.default_role = int(student[0]) if student.len() else 0
        self.unused_dates = bool({"enrolstart", "enrolend"} & set(columns))

    async def finish(self, dry_run: bool) -> list[str]:
        notes = await super().finish(dry_run)
        if self.unused_dates:
            notes.insert(
                0, "enrolstart and enrolend were not used: cohort enrolment methods have no enrolment dates in Moodle"
            )
        return notes

    async def plan_rows(
        self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool
    ) -> tuple[pl.DataFrame, dict[int, list[Instance]]]:
        rows = cells(rows, TEXT).with_columns(pl.col("cmd").str.to_lowercase(), pl.col("enrol").str.to_lowercase())
        cohorts = answers_by_value(await self.cohorts.resolve(conn, rows["cohort"]))
        courses = answers_by_value(await self.courses.resolve(conn, rows["course"]))
        course_ids = sorted({int(c["id"]) for c in courses.values() if c.get("id") is not None})
        by_course = await self.instances(conn, course_ids)
        names = await self.group_names(conn, course_ids)
        planner = _Planner(self, cohorts, courses, by_course, names, dry_run)
        outcomes = [planner.row(row) for row in rows.iter_rows(named=True)]
        return pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row"), by_course

    def instance_fields(self, instance: Instance) -> dict[str, Any]:
        return {"roleid": instance.roleid, **super().instance_fields(instance)}


class _Planner:
    def __init__(
        self,
        op: CohortBindingsOperation,
        cohorts: dict[str, dict[str, Any]],
        courses: dict[str, dict[str, Any]],
        by_course: dict[int, list[Instance]],
        group_names: dict[int, set[str]],
        dry_run: bool,
    ) -> None:
        self.op = op
        self.cohorts = cohorts
        self.courses = courses
        self.by_course = by_course
        self.group_names = group_names
        self.would = "would be " if dry_run else ""
        roles = op.site.roles
        self.role_names = dict(roles.select("roleid", "rolename").iter_rows())
        self.in_course = set(roles.filter(pl.col("in_course"))["roleid"].to_list())
        self.by_shortname = dict(roles.select("rolekey", "roleid").iter_rows())

    def row(self, row: dict[str, Any]) -> Outcome:
        options = self.op.options
        line, cmd = int(row[LINE]), row["cmd"] or "add"
        cohort_cell, course_cell = row["cohort"], row["course"]
        key = f"{cohort_cell}/{course_cell}"

        def fail(why: str) -> Outcome:
            return (line, None, "failed", "check", key, why)

        if cmd not in COMMANDS:
            return fail(f"cmd '{cmd}': expected add, del, restore or fulldel (empty: add)")
        if row["enrol"] not in ("", "cohort"):
            return fail(
                f"enrol '{row['enrol']}': a cohort binding is a cohort enrolment method (enrol cohort, or empty)"
            )
        if row["makegroup"] not in ("", "0", "1"):
            return fail(f"makegroup '{row['makegroup']}': expected 0 or 1")
        if cohort_cell == "":
            return fail("empty cohort: the row names no cohort")
        if course_cell == "":
            return fail("empty course: the row names no course")
        cohort = self.cohorts.get(cohort_cell)
        why = lookup_problem(cohort, cohort_cell, "cohort", "cohort_identifier", options.cohort_identifier)
        if why is not None or cohort is None:
            return fail(str(why))
        course = self.courses.get(course_cell)
        why = lookup_problem(course, course_cell, "course", "course_identifier", options.course_identifier)
        if why is not None or course is None:
            return fail(str(why))
        if int(course["category"] or 0) == 0:
            return fail(f"course '{course_cell}' is the site's front page, which takes no enrolment methods")
        role, why = self._role(row["role"], cmd)
        if why is not None:
            return fail(why)
        cohort_id, course_id, name = int(cohort["id"]), int(course["id"]), str(cohort["name"])
        binding = f"cohort '{name}' to course '{course['shortname']}'"
        shown_role = "every role" if role is None else f"role {self.role_names.get(role, role)}"
        matching = [
            i
            for i in self.by_course.get(course_id, [])
            if not i.removed and i.customint1 == cohort_id and (role is None or i.roleid == role)
        ]
        if cmd == "add":
            assert role is not None
            return self._add(line, key, binding, shown_role, matching, course_id, cohort_id, role, name, row)
        if not matching:
            if cmd == "restore":
                return fail(f"no binding of {binding} with {shown_role} to restore (add creates one)")
            return (line, None, "unchanged", "none", key, f"no binding of {binding} with {shown_role}")
        if cmd == "fulldel":
            users = sum(i.users for i in matching)
            for instance in matching:
                instance.removed = True
            return (
                line,
                None,
                "deleted",
                "remove",
                key,
                f"{len(matching)} binding(s) of {binding} {self.would}deleted, {users} user(s) unenrolled",
            )
        wanted, verb, action = (DISABLED, "disabled", "disable") if cmd == "del" else (ENABLED, "enabled", "enable")
        changing = [i for i in matching if i.status != wanted]
        if not changing:
            return (line, None, "unchanged", "none", key, f"the binding of {binding} is {verb} already")
        for instance in changing:
            instance.status = wanted
        return (line, None, "updated", action, key, f"{len(changing)} binding(s) of {binding} {self.would}{verb}")

    def _role(self, cell: str, cmd: str) -> tuple[int | None, str | None]:
        """The role a row names (None: every role), or why not."""
        if cell == "":
            return self.op.default_role, None
        if cell == EVERY_ROLE:
            if cmd == "add":
                return None, "role *: every role is for del, restore and fulldel; add binds one role"
            return None, None
        if self.op.options.role_identifier == "id":
            role = int(cell) if cell.isdigit() and int(cell) in self.role_names else None
        else:
            role = self.by_shortname.get(self.op.site.match.given_text(cell))
        if role is None:
            return None, f"role '{cell}' not found (role_identifier {self.op.options.role_identifier})"
        if cmd == "add" and role not in self.in_course:
            return None, f"role '{cell}' cannot be assigned in a course"
        return role, None

    def _add(
        self,
        line: int,
        key: str,
        binding: str,
        shown_role: str,
        matching: list[Instance],
        course_id: int,
        cohort_id: int,
        role: int,
        cohort_name: str,
        row: dict[str, Any],
    ) -> Outcome:
        want_group = row["makegroup"] == "1"
        group_name = None
        if want_group and (not matching or (not matching[0].customint2 and matching[0].group_name is None)):
            group_name = self._new_group(course_id, cohort_name)
            # Named after the cohort: a long cohort name makes a name groups.name cannot hold (Moodle fails there too).
            limit = column_limit(self.op.schema.groups, "name", self.op.schema.prefix).chars or 0
            if len(group_name) > limit:
                why = f"makegroup: the new group's name would have {len(group_name):,} characters, at most {limit:,}"
                return (line, None, "failed", "check", key, f"{why} (groups.name): '{group_name[:60]}...'")
        if not matching:
            instance = Instance(None, course_id, role, cohort_id, None, ENABLED)
            message = f"{binding} {self.would}bound with {shown_role}"
            if group_name is not None:
                instance.group_name = group_name
                message += f", with the new group '{instance.group_name}'"
            self.by_course.setdefault(course_id, []).append(instance)
            return (line, None, "created", "add", key, message)
        instance = matching[0]
        done = []
        if instance.status != ENABLED:
            instance.status = ENABLED
            done.append(f"{self.would}enabled again")
        if group_name is not None:
            instance.group_name = group_name
            done.append(f"{self.would}given the new group '{instance.group_name}'")
        if not done:
            return (line, None, "unchanged", "none", key, f"{binding} is bound with {shown_role} already")
        action = "enable" if instance.stored_status == DISABLED and instance.status == ENABLED else "update"
        return (line, None, "updated", action, key, f"the binding of {binding} {' and '.join(done)}")

    def _new_group(self, course_id: int, cohort_name: str) -> str:
        taken = self.group_names.setdefault(course_id, set())
        return free_group_name(f"{cohort_name} cohort", taken, self.op.site.match.given_text)
