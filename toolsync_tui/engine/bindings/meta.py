"""Metacourse bindings (metacourses.csv): course meta links (enrol_meta) added and removed (tool_sync-reference
§2.1.5).

Columns: `master` (the course whose participants are copied) and `meta` (the course that gets them), both by the
`identifier` setting; `cmd` add (default) or del. The meta link is the enrol_meta method of the meta course whose
customint1 is the master course:

* `add`: created as enrol_meta's add_instance() writes it (status 0, customint1 = the master, customint2 = 0: no group,
  sortorder after the course's last method); a disabled one is enabled again; an enabled one is `unchanged`.
* `del`: deleted as delete_instance() does, unenrolling every user it enrolled (the original never removed links).

A course cannot be linked to itself, and the site's front page takes part in no link. The users a link enrols are
materialised by Moodle's own meta sync (engine/enrol_sync.py).
"""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.bindings.base import ENABLED, Instance, InstanceBindings, Outcome
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.lookup import answers_by_value, lookup_problem
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, cells
from toolsync_tui.engine.run.command_file import ColumnSpec

COMMANDS = ("add", "del")
TEXT = ("master", "meta", "cmd")


class MetaBindingsOperation(InstanceBindings):
    name = "metacourses"
    title = "Metacourse bindings"
    plugin = "meta"
    columns = ColumnSpec(required=("master", "meta"), optional=("cmd",))
    removing_commands = ("del",)

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.metacourses
        self.courses = self.course_lookup(self.options.identifier)

    async def plan_rows(
        self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool
    ) -> tuple[pl.DataFrame, dict[int, list[Instance]]]:
        rows = cells(rows, TEXT).with_columns(pl.col("cmd").str.to_lowercase())
        courses = answers_by_value(await self.courses.resolve(conn, pl.concat([rows["master"], rows["meta"]])))
        metas = sorted({int(c["id"]) for c in courses.values() if c.get("id") is not None})
        by_course = await self.instances(conn, metas)
        would = "would be " if dry_run else ""
        outcomes = [self._row(row, courses, by_course, would) for row in rows.iter_rows(named=True)]
        return pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row"), by_course

    def _row(
        self,
        row: dict[str, Any],
        courses: dict[str, dict[str, Any]],
        by_course: dict[int, list[Instance]],
        would: str,
    ) -> Outcome:
        line, cmd = int(row[LINE]), row["cmd"] or "add"
        key = f"{row['master']}/{row['meta']}"

        def fail(why: str) -> Outcome:
            return (line, None, "failed", "check", key, why)

        if cmd not in COMMANDS:
            return fail(f"cmd '{cmd}': expected add or del (empty: add)")
        found = []
        for column in ("master", "meta"):
            value = row[column]
            if value == "":
                return fail(f"empty {column}: the row names no {column} course")
            answer = courses.get(value)
            why = lookup_problem(answer, value, "course", "identifier", self.options.identifier)
            if why is not None or answer is None:
                return fail(f"{column}: {why}")
            if int(answer["category"] or 0) == 0:
                return fail(f"{column} course '{value}' is the site's front page, which takes part in no meta link")
            found.append(answer)
        master, meta = found
        if master["id"] == meta["id"]:
            return fail(f"course '{row['meta']}' cannot be a meta link of itself")
        link = f"the meta link of course '{meta['shortname']}' to master course '{master['shortname']}'"
        meta_id, master_id = int(meta["id"]), int(master["id"])
        matching = [i for i in by_course.get(meta_id, []) if not i.removed and i.customint1 == master_id]
        if cmd == "del":
            if not matching:
                return (
                    line,
                    None,
                    "unchanged",
                    "none",
                    key,
                    f"no meta link of course '{meta['shortname']}' to master course '{master['shortname']}'",
                )
            users = sum(i.users for i in matching)
            for instance in matching:
                instance.removed = True
            return (line, None, "deleted", "remove", key, f"{link} {would}deleted, {users} user(s) unenrolled")
        if not matching:
            by_course.setdefault(meta_id, []).append(Instance(None, meta_id, 0, master_id, None, ENABLED))
            return (line, None, "created", "add", key, f"{link} {would}created")
        instance = matching[0]
        if instance.status == ENABLED:
            return (line, None, "unchanged", "none", key, f"{link} exists already")
        instance.status = ENABLED
        return (line, None, "updated", "enable", key, f"{link} {would}enabled again")
