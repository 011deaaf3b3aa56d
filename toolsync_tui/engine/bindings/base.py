"""What the cohort-course and metacourse binding files share: enrolment methods of one plugin (enrol_cohort,
enrol_meta) planned row by row over the instances of the batch's courses, then written in bulk
(engine/enrol_instances.py), and after the run Moodle's own sync of the courses whose methods changed
(engine/enrol_sync.py) and the cache purge of the enrolments a deletion removed (engine/cache_purge.py).

Binding files are short (a row per course and cohort or course pair), so rows are planned one after the other, each
seeing what the rows before it did; reads and writes are still one statement per batch and kind.

A batch's write records the standard-log events Moodle's enrol API logs for it (moodle/course_events.py):
group_created (makegroup), enrol_instance_created (add_instance()), enrol_instance_updated (update_status(), and
update_instance() for a new group), then delete_instance()'s unenrolments and enrol_instance_deleted. The enrolments
a new or enabled method brings are Moodle's sync's, which logs them itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle import course_events
from toolsync_tui.engine.moodle.enrol_instances import (
    DISABLED,
    ENABLED,
    add_instance,
    course_instances,
    delete_instances,
    instances_logged,
    next_sortorders,
    set_status,
)
from toolsync_tui.engine.moodle.enrol_sync import sync_after_run
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.groups import create_groups
from toolsync_tui.engine.moodle.lookup import KeyLookup
from toolsync_tui.engine.moodle.site_settings import UserSite
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects, purge_after_run
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.parts.course_enrolments import EnrolmentSite, read_enrolment_site
from toolsync_tui.engine.rows import OutcomeRow
from toolsync_tui.engine.run.operation import BatchPlan, Operation, PreviousWrite, nothing_in_flight

Outcome = OutcomeRow
DESTRUCTIVE = frozenset({"disable", "remove"})


@dataclass
class Instance:
    """An enrolment method of the batch's courses, as the rows before the current one left it."""

    id: int | None  # None: created by this batch
    courseid: int
    roleid: int
    customint1: int
    customint2: int | None
    status: int
    stored_status: int | None = None  # None: new
    stored_group: int | None = None
    removed: bool = False
    group_name: str | None = None  # a group to create for it (makegroup)
    users: int = 0  # users enrolled through it (a deletion unenrols them)

    @classmethod
    def stored(cls, row: dict[str, Any], users: int) -> Instance:
        group = int(row["customint2"]) if row["customint2"] is not None else None
        return cls(
            id=int(row["id"]),
            courseid=int(row["courseid"]),
            roleid=int(row["roleid"] or 0),
            customint1=int(row["customint1"] or 0),
            customint2=group,
            status=int(row["status"]),
            stored_status=int(row["status"]),
            stored_group=group,
            users=users,
        )


class InstanceBindings(Operation):
    """Rows that add, enable, disable and delete instances of `plugin`; subclasses plan a row (`plan_row`)."""

    plugin: ClassVar[str]
    destructive_actions: ClassVar[frozenset[str]] = DESTRUCTIVE
    removing_commands: ClassVar[tuple[str, ...]] = ()  # the cmd values the safety pre-pass dry-runs
    uses_bridge = True
    overlaps_writes = True

    def needs_bridge_to_plan(self, columns: Sequence[str]) -> bool:
        return False  # the bridge after the run only (the enrol sync, cache purges)

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.effects = EnrolmentEffects()
        self.synced_courses: set[int] = set()
        self.session_timeout = 0
        self._site: EnrolmentSite | None = None

    @property
    def site(self) -> EnrolmentSite:
        if self._site is None:
            raise RuntimeError("prepare() must run before apply()")
        return self._site

    def course_lookup(self, identifier: str) -> KeyLookup:
        """Courses by the file's identifier, once per run (these files change no course)."""
        return KeyLookup(self.gateway, self.schema.course, identifier, ["id", "category", "shortname"], remember=True)

    def may_destroy(self, columns: Sequence[str]) -> bool:
        return "cmd" in columns

    def safety_candidates(self, rows: pl.DataFrame) -> pl.DataFrame:
        if "cmd" not in rows.columns:
            return rows.clear()
        return rows.filter(pl.col("cmd").str.strip_chars().str.to_lowercase().is_in(self.removing_commands))

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        self._site = await read_enrolment_site(self.gateway, conn)
        self.session_timeout = (await UserSite.read(self.gateway)).session_timeout

    async def safety_base(self, conn: AsyncConnection) -> int:
        """The plugin's instances on the site."""
        enrol = self.schema.enrol
        query = select(func.count()).select_from(enrol).where(enrol.c.enrol == self.plugin)
        return int((await conn.execute(query)).scalar_one())

    async def finish(self, dry_run: bool) -> list[str]:
        if dry_run or self._site is None:  # nothing written (or the run stopped before it began)
            return []
        disabled = [] if self.plugin in self.site.enabled_plugins else [self.plugin]
        notes = await sync_after_run(self.bridge, **{f"{self.plugin}_courses": self.synced_courses}, disabled=disabled)
        return notes + await purge_after_run(self.bridge, self.effects)

    # -- planning ---------------------------------------------------------------------------------

    async def plan_rows(
        self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool
    ) -> tuple[pl.DataFrame, dict[int, list[Instance]]]:
        """The rows' outcomes, and the instances of their courses as the rows leave them (what write() writes)."""
        raise NotImplementedError

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        outcomes, by_course = await self.plan_rows(conn, rows, dry_run)
        if not dry_run:
            await self.write(conn, by_course)
        return outcomes

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        """The batch planned over its courses' instances (and group names), read here: ("binding", course id) for
        each course read, written for each course whose instances the write changes (creates, enables, disables,
        deletes, regroups; its groups with makegroup). Sortorders are read in the write (next_sortorders)."""
        outcomes, by_course = await self.plan_rows(conn, rows, False)
        reads: set[Hashable] = {("binding", course) for course in by_course}
        writes: set[Hashable] = {
            ("binding", course)
            for course, instances in by_course.items()
            if any(_changes(instance) for instance in instances)
        }

        async def write(wconn: AsyncConnection) -> None:
            await self.write(wconn, by_course)

        return BatchPlan(outcomes, write, frozenset(reads), frozenset(writes))

    # -- reading the batch's instances --------------------------------------------------------------

    async def instances(self, conn: AsyncConnection, course_ids: Sequence[int]) -> dict[int, list[Instance]]:
        """course id -> the plugin's instances there, with the users enrolled through each."""
        found = await course_instances(self.gateway, conn, self.plugin, course_ids)
        ue = self.schema.user_enrolments
        counts: dict[int, int] = {}
        ids = [int(row["id"]) for row in found]
        if ids:
            query = select(ue.c.enrolid, func.count()).where(ue.c.enrolid.in_(ids)).group_by(ue.c.enrolid)
            counts = {int(i): int(n) for i, n in await conn.execute(query)}
        by_course: dict[int, list[Instance]] = {int(c): [] for c in course_ids}
        for row in found:
            by_course.setdefault(int(row["courseid"]), []).append(Instance.stored(row, counts.get(int(row["id"]), 0)))
        return by_course

    # -- writing ----------------------------------------------------------------------------------

    async def write(self, conn: AsyncConnection, by_course: dict[int, list[Instance]]) -> None:
        """Create, enable or disable, and delete what the rows planned; groups for new group names first."""
        now = int(time.time())
        events = course_events.collecting(self.event_log)
        every = [i for instances in by_course.values() for i in instances]
        groups = await self.create_groups(conn, [i for i in every if i.group_name and not i.removed], now, events)
        for instance in every:
            if instance.group_name and not instance.removed:
                instance.customint2 = groups[(instance.courseid, instance.group_name)]
        new = [i for i in every if i.id is None and not i.removed]
        sortorders = await next_sortorders(self.gateway, conn, [i.courseid for i in new])
        for instance in new:
            instance.id = await add_instance(
                self.gateway,
                conn,
                self.plugin,
                instance.courseid,
                sortorders[instance.courseid],
                now,
                **self.instance_fields(instance),
            )
            sortorders[instance.courseid] += 1
            self.synced_courses.add(instance.courseid)
        if events is not None and new:
            made = [(int(i.id), self.plugin, i.courseid) for i in new]  # type: ignore[arg-type]
            events += course_events.instances_created(await instances_logged(self.gateway, conn, made))
        stored = [i for i in every if i.id is not None and i.stored_status is not None and not i.removed]
        changed = [(int(i.id), i.courseid, i.status) for i in stored if i.status != i.stored_status]  # type: ignore[arg-type]
        await set_status(self.gateway, conn, changed, now, self.session_timeout, events=events)
        regrouped_instances = [i for i in stored if i.customint2 != i.stored_group]
        regrouped = [{"id": i.id, "customint2": i.customint2} for i in regrouped_instances]
        await self.gateway.update_many(conn, self.schema.enrol, "id", regrouped)
        if events is not None and regrouped_instances:  # update_instance()
            triples = [(int(i.id), self.plugin, i.courseid) for i in regrouped_instances]  # type: ignore[arg-type]
            events += course_events.instances_updated(await instances_logged(self.gateway, conn, triples))
        self.synced_courses |= {c for _, c, _ in changed} | {
            i.courseid for i in stored if i.customint2 != i.stored_group
        }
        gone = [(int(i.id), self.plugin, i.courseid) for i in every if i.removed and i.stored_status is not None]  # type: ignore[arg-type]
        await delete_instances(self.gateway, conn, gone, now, self.session_timeout, self.effects, events=events)
        await self.event_log.record(conn, events or [], now)

    def instance_fields(self, instance: Instance) -> dict[str, Any]:
        """The plugin's own columns of a new instance."""
        return {"customint1": instance.customint1, "customint2": instance.customint2 or 0}

    async def create_groups(
        self, conn: AsyncConnection, instances: list[Instance], now: int, events: list[Event] | None = None
    ) -> dict[tuple[int, str], int]:
        """(course id, group name) -> id of the group created for it, as groups_create_group() writes it."""
        wanted = pl.DataFrame(
            [(i.courseid, i.group_name) for i in instances],
            schema={"courseid": pl.Int64, "name": pl.String},
            orient="row",
        ).unique()
        if wanted.is_empty():
            return {}
        created = await create_groups(self.gateway, conn, wanted, now, events=events)
        self.effects.group_courses |= set(created["courseid"].to_list())
        return {(int(c), str(n)): int(g) for c, n, g in created.iter_rows()}

    async def group_names(self, conn: AsyncConnection, course_ids: Sequence[int]) -> dict[int, set[str]]:
        """course id -> the keys of its groups' names (as record_exists('groups', [name, courseid]) compares them on
        the site: text_match.py)."""
        groups = self.schema.groups
        found = await self.gateway.fetch_in(conn, groups, "courseid", sorted(set(course_ids)), ["courseid", "name"])
        names: dict[int, set[str]] = {int(c): set() for c in course_ids}
        key = TextMatch(self.gateway.kind).stored_text
        for course, name in found.iter_rows():
            names.setdefault(int(course), set()).add(key(str(name)))
        return names


def _changes(instance: Instance) -> bool:
    """Whether write() writes anything for this instance (or a group for it)."""
    if instance.removed:
        return instance.stored_status is not None
    return (
        instance.id is None
        or instance.status != instance.stored_status
        or instance.customint2 != instance.stored_group
        or instance.group_name is not None
    )


def free_group_name(base: str, taken: set[str], key: Callable[[str], str] = str.lower) -> str:
    """enrol_cohort_create_new_group()'s name: '<base>', else '<base> (2)', '(3)' ... the first free in the course
    (`key`: a name as the site compares it, group_names()). The name's key is kept in `taken`."""
    name, increment = base, 1
    while key(name) in taken:
        increment += 1
        name = f"{base} ({increment})"
    taken.add(key(name))
    return name


__all__ = [
    "DISABLED",
    "ENABLED",
    "Instance",
    "InstanceBindings",
    "Outcome",
    "free_group_name",
]
