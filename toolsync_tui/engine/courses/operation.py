"""Course create and update file (uploadcourses.csv; tool_sync-reference §2.1.4, CONTRACT §3-4).

A row names a course by the `identifier` setting (shortname or idnumber). A course that does not exist is created as
`create_course()` creates it (engine/courses/writes.py), in the category of the `category` column: a numeric id, a
`Top/Sub/Leaf` path of names whose missing categories are created (visible per `new_categories_visible`), or an
idnumber (`category_identifier = "idnumber"`); empty, the site's default category. An existing course is updated when
`forceupdate` is on, with the non-empty cells of the row only (the original reset absent columns to defaults), moved
to the row's category unless `protect_category`; with `forceupdate` off it is left alone.

Also: `topicN` names (and `name|summary`) section N, created if missing; `teacherN_account` (user id, username or
e-mail) is enrolled in the course with the role `teacherN_role` (shortname; empty: `teacher`, the original's role);
`self` and `guest` 1/0 enable or disable those enrolment methods; `template` (a template course's shortname, or a .mbz
backup file, absolute or relative to the Moodle directory) fills a new course with the template's content, and an
existing one per `template_mode` (none, add, replace), through the Moodle bridge once the batch is committed.

A new or changed course gets the forum of its format as mod_forum's observers give it (engine/moodle/news_forum.py):
the Announcements forum of a topics or weeks course with newsitems, the social forum of a social one. A new course
filled from a template gets it after the restore, and only if the template brought none. A new course also gets the
default blocks of its format (engine/moodle/course_blocks.py: a social course's social_activities block).

A shortname or idnumber another course has is a row error, as are two rows of a batch claiming one. Rows naming the
same course apply in file order. Category and course order, and course counts, are repaired as fix_course_sortorder()
does after each batch.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import polars as pl
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import BridgeLink
from toolsync_tui.engine.courses.batch_keys import read_keys, write_keys
from toolsync_tui.engine.courses.log_events import CourseLog, course_events
from toolsync_tui.engine.courses.plan import CoursePlanner, Plan, failed, row_outcome
from toolsync_tui.engine.courses.site import SECTIONED_FORMATS, CourseSite, read_course_site
from toolsync_tui.engine.courses.teachers import find_accounts
from toolsync_tui.engine.courses.values import OPTIONAL, PATTERNS, TEACHER, CourseRow, parse_rows
from toolsync_tui.engine.courses.writes import (
    Sections,
    add_default_instances,
    add_format_options,
    automatic_end_courses,
    insert_courses,
    next_cacherev,
    set_coursedisplay,
    set_enrol_statuses,
    stored_courses,
    weeks_end_date,
    write_sections,
)
from toolsync_tui.engine.moodle.bridge.client import BridgeError, TemplateItem
from toolsync_tui.engine.moodle.categories import Category, CategoryIndex, create_paths
from toolsync_tui.engine.moodle.contexts import child_path, course_contexts, move_contexts
from toolsync_tui.engine.moodle.course_blocks import add_default_blocks
from toolsync_tui.engine.moodle.course_events import collecting
from toolsync_tui.engine.moodle.db_errors import describe
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.moodle.news_forum import add_course_forums, course_forum_type
from toolsync_tui.engine.moodle.site_settings import UserSite
from toolsync_tui.engine.moodle.sortorder import CATEGORY_EVENT, COURSE_EVENT, fix_course_sortorder
from toolsync_tui.engine.moodle.staleness import EnrolmentEffects, mark_contexts_dirty, purge_after_run
from toolsync_tui.engine.moodle.text_match import collation_text
from toolsync_tui.engine.parts.course_enrolments import CourseEnrolments
from toolsync_tui.engine.rows import LINE, OUTCOME_SCHEMA, Outcome, OutcomeRow
from toolsync_tui.engine.run.command_file import ColumnSpec, FileProblem
from toolsync_tui.engine.run.operation import BatchPlan, Operation, PreviousWrite, nothing_in_flight
from toolsync_tui.engine.run.value_limits import StoredColumns

DEFAULT_TEACHER_ROLE = "teacher"  # tool_sync assigned this role (non-editing teacher) whatever teacherN_role said


class CoursesOperation(Operation):
    name = "courses"
    title = "Create and update courses"
    columns = ColumnSpec(required=("fullname", "shortname"), optional=OPTIONAL, patterns=PATTERNS)
    # topicN (a section's name|summary) and category (a path of names) are checked as they are split (values.py).
    value_columns: ClassVar[StoredColumns] = {
        name: ("course", name) for name in ("fullname", "shortname", "idnumber", "summary", "lang")
    }
    uses_bridge = True
    overlaps_writes = True

    def __init__(self, config: Config, gateway: MoodleGateway) -> None:
        super().__init__(config, gateway)
        self.options = config.settings.operations.courses
        self.identifier = self.options.identifier
        self._site: CourseSite | None = None
        self._planner: CoursePlanner | None = None
        self.categories = CategoryIndex()
        self.bridge_problem: str | None = None
        self.enrolments: CourseEnrolments | None = None
        self.effects = EnrolmentEffects()
        self.events: set[str] = set()
        self.templates: dict[int, tuple[int, TemplateItem]] = {}  # line -> (course id, what to restore), this batch
        self.template_forums: dict[int, str] = {}  # new course id -> its forum type, once its template is restored
        self.template_column = False
        self.course_log = CourseLog()  # what the round being written did, for Moodle's standard log

    @property
    def site(self) -> CourseSite:
        if self._site is None:
            raise RuntimeError("prepare() must run before apply()")
        return self._site

    @property
    def planner(self) -> CoursePlanner:
        if self._planner is None:
            raise RuntimeError("prepare() must run before apply()")
        return self._planner

    def take_bridge(self, link: BridgeLink) -> None:
        """Courses are written without the bridge too: one that does not work only refuses the template column, and
        its reason goes to the report."""
        self.bridge, self.bridge_problem = link.bridge, link.problem

    async def prepare(self, conn: AsyncConnection, columns: Sequence[str]) -> None:
        if self.identifier == "id":
            raise FileProblem(
                "[operations.courses] identifier = 'id' cannot name courses to create: use shortname or idnumber"
            )
        self._site = await read_course_site(self.gateway, conn)
        self.categories = await CategoryIndex.read(self.gateway, conn)
        self.template_column = "template" in columns
        if self.template_column and self.bridge is None:
            why = self.bridge_problem or "no Moodle bridge is configured ([bridge] moodle_dir)"
            raise FileProblem(
                f"the template column needs the Moodle bridge to restore course content, and {why}; "
                "configure the bridge or remove the column"
            )
        if any(TEACHER.fullmatch(c) for c in columns):
            users = await UserSite.read(self.gateway)
            self.enrolments = CourseEnrolments(
                self.gateway,
                course_identity="id",
                site_timezone=self.site.timezone,
                actor_id=users.actor_id,
                welcome=self.welcome,
            )
            await self.enrolments.prepare(conn)
        self._planner = CoursePlanner(self.gateway, self.options, self.site, self.categories, self.bridge)

    async def apply(self, conn: AsyncConnection, rows: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
        if not dry_run:
            return await self.apply_planned(conn, rows, dry_run)
        now = _now()
        outcomes, rounds = self._rounds(rows)
        self.templates, self.template_forums = {}, {}
        for batch in rounds:
            outcomes += await self._dry_round(conn, batch, now)
        return _frame(outcomes)

    async def plan_batch(
        self, conn: AsyncConnection, rows: pl.DataFrame, previous: PreviousWrite = nothing_in_flight
    ) -> BatchPlan:
        """The batch's first round planned (the rows naming a course again wait for the next round, planned in the
        write once the round before is written); its write creates, updates, then fixes the sortorders."""
        now = _now()
        problems, rounds = self._rounds(rows)
        first = await self.planner.plan(conn, rounds[0], now) if rounds else Plan()
        later = [row for batch in rounds[1:] for row in batch]
        by_path = self.options.category_identifier != "idnumber"
        reads = read_keys(rounds[0] if rounds else [], self.identifier, first, by_path)
        writes = write_keys(first, later, self.identifier, by_path)

        async def write(wconn: AsyncConnection) -> pl.DataFrame:
            return await self._write(wconn, problems, first, rounds[1:], now)

        return BatchPlan(_frame([*problems, *_provisional(first, later)]), write, reads, writes)

    def _rounds(self, rows: pl.DataFrame) -> tuple[list[OutcomeRow], list[list[CourseRow]]]:
        """The rows that fail as read, and the others in rounds: a course named again in the batch waits for the
        next round, so that it sees what the row before did."""
        parsed = parse_rows(rows, self.identifier, self.site)
        problems: list[OutcomeRow] = [failed(r, r.problem) for r in parsed if r.problem]
        rounds: list[list[CourseRow]] = []
        seen: Counter[str] = Counter()
        for row in (r for r in parsed if not r.problem):
            key = collation_text(row.key)  # whatever any site's lookup may deem the same course: a later round
            position = seen[key]
            seen[key] += 1
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(row)
        return problems, rounds

    async def _write(
        self, conn: AsyncConnection, problems: list[OutcomeRow], first: Plan, later: list[list[CourseRow]], now: int
    ) -> pl.DataFrame:
        """A planned batch written: its first round, then each later round planned and written in turn, then the
        sortorders fixed; its outcomes. A write that fails forgets the categories it created (rolled back)."""
        self.templates, self.template_forums = {}, {}
        categories = copy.deepcopy(self.categories) if first.new_paths or later else None
        try:
            outcomes = problems + await self._write_round(conn, first, now)
            for batch in later:
                outcomes += await self._write_round(conn, await self.planner.plan(conn, batch, now), now)
            fix = await fix_course_sortorder(self.gateway, conn, self.site.max_in_category)
        except BaseException:
            if categories is not None:
                self._restore_categories(categories)
            raise
        self.events |= fix.events
        return _frame(outcomes)

    def _restore_categories(self, saved: CategoryIndex) -> None:
        for field in dataclasses.fields(saved):  # in place: the planner holds the same index
            setattr(self.categories, field.name, getattr(saved, field.name))

    # -- one round: plan, then write -----------------------------------------------------------------

    async def _dry_round(self, conn: AsyncConnection, rows: list[CourseRow], now: int) -> list[OutcomeRow]:
        plan = await self.planner.plan(conn, rows, now)
        stored = await stored_courses(self.gateway, conn, [int(c["id"]) for _, c, _, _ in plan.updates])
        return plan.outcomes + self._dry_outcomes(plan, stored) + await self._dry_teachers(conn, plan, now)

    async def _write_round(self, conn: AsyncConnection, plan: Plan, now: int) -> list[OutcomeRow]:
        stored = await stored_courses(self.gateway, conn, [int(c["id"]) for _, c, _, _ in plan.updates])
        self.course_log = CourseLog()
        if plan.new_paths:
            self.course_log.categories = await create_paths(
                self.gateway,
                conn,
                self.categories,
                list(plan.new_paths.values()),
                visible=self.options.new_categories_visible,
                now=now,
            )
            self.events.add(CATEGORY_EVENT)
        created = await self._create(conn, plan, now)
        updated = await self._update(conn, plan, stored, now)
        if self.event_log.active:
            self.course_log.created = [created[row.line] for row, _, _ in plan.creates]
            await self.event_log.record(conn, await course_events(self.gateway, conn, self.course_log), now)
        teachers = await self._teachers(conn, plan, created, now, dry_run=False)
        return [*plan.outcomes, *self._created_outcomes(plan, created), *updated.values(), *teachers]

    async def _create(self, conn: AsyncConnection, plan: Plan, now: int) -> dict[int, int]:
        """The new courses; line -> course id."""
        if not plan.creates:
            return {}
        records = []
        placed: dict[int, Category] = {}
        for _, record, category in plan.creates:
            real = self.planner.placed(category)
            record["category"] = real.id
            placed[real.id] = real
            records.append(record)
        ids, contexts = await insert_courses(self.gateway, conn, records, placed)
        lines = {row.line: ids[record["shortname"]] for row, record, _ in plan.creates}
        log = self.course_log  # what the course events need to read no longer
        log.contexts |= contexts
        log.names |= {ids[r["shortname"]]: (str(r["shortname"]), str(r["fullname"])) for r in records}
        formats = {lines[row.line]: (str(record["format"]), row.coursedisplay) for row, record, _ in plan.creates}
        await add_format_options(self.gateway, conn, self.site, formats)
        sections = {
            lines[row.line]: Sections(self._numsections(str(record["format"])), row.topics)
            for row, record, _ in plan.creates
        }
        highest, _ = await write_sections(self.gateway, conn, sections, now, added=log.sections)
        await self._new_course_forums(
            conn, [(lines[r.line], record, bool(r.template)) for r, record, _ in plan.creates], now
        )
        await add_default_blocks(
            self.gateway, conn, {lines[r.line]: str(rec["format"]) for r, rec, _ in plan.creates}, now
        )
        methods = await add_default_instances(
            self.gateway, conn, self.site, {lines[row.line]: row.enrol_status for row, _, _ in plan.creates}, now
        )
        log.instances |= methods or {}
        weeks = {
            lines[row.line]: int(record["startdate"]) for row, record, _ in plan.creates if record["format"] == "weeks"
        }
        await self._weeks_end_dates(conn, weeks, highest)
        for row, _, _ in plan.creates:
            if row.template:
                self.templates[row.line] = (lines[row.line], TemplateItem(lines[row.line], row.template, "add"))
        self.events |= {COURSE_EVENT, CATEGORY_EVENT}
        return lines

    async def _new_course_forums(
        self, conn: AsyncConnection, courses: list[tuple[int, dict[str, Any], bool]], now: int
    ) -> None:
        """mod_forum's course_created observer: the Announcements (or social) forum of each new course (id, record,
        filled from a template). A template's restore may bring the template's own: those courses wait for it."""
        wanted: dict[int, str] = {}
        for course, record, template in courses:
            if (kind := course_forum_type(str(record["format"]), int(record["newsitems"]))) is not None:
                (self.template_forums if template else wanted)[course] = kind
        await add_course_forums(self.gateway, conn, wanted, now)

    def _numsections(self, format_name: str) -> int:
        value = self.site.default("numsections")
        return int(value) if format_name in SECTIONED_FORMATS and value.isdigit() else 0

    async def _weeks_end_dates(self, conn: AsyncConnection, starts: dict[int, int], highest: dict[int, int]) -> None:
        """format_weeks' observers: a weeks course with automaticenddate ends with its last section's week."""
        if not starts:
            return
        automatic = await automatic_end_courses(self.gateway, conn, list(starts))
        await self.gateway.update_many(
            conn,
            self.schema.course,
            "id",
            [
                {"id": c, "enddate": weeks_end_date(start, highest.get(c, 0), self.site.timezone)}
                for c, start in starts.items()
                if c in automatic
            ],
        )

    async def _update(
        self, conn: AsyncConnection, plan: Plan, stored: dict[int, dict[str, Any]], now: int
    ) -> dict[int, OutcomeRow]:
        """The updates of existing courses; line -> its outcome (updated or unchanged)."""
        outcomes: dict[int, OutcomeRow] = {}
        changes: list[dict[str, Any]] = []
        moves: list[tuple[int, Category]] = []
        sections: dict[int, Sections] = {}
        statuses: dict[int, dict[str, int]] = {}
        displays: dict[int, tuple[str, int]] = {}
        formats: dict[int, tuple[str, int | None]] = {}
        words: dict[int, list[str]] = {}
        for row, course, values, category in plan.updates:
            ident = int(course["id"])
            current = stored[ident]
            change = {k: v for k, v in values.items() if current.get(k) != v and k != "timecreated"}
            if "visible" in change:
                change["visibleold"] = change["visible"]
            target = self.planner.placed(category) if category is not None else None
            if target is not None and target.id != int(current["category"]):
                change["category"] = target.id
                moves.append((ident, target))
            fmt = str(change.get("format", current["format"]))
            if "format" in change:
                formats[ident] = (fmt, row.coursedisplay)
            elif row.coursedisplay is not None:
                displays[ident] = (fmt, row.coursedisplay)
            if row.topics:
                sections[ident] = Sections(0, row.topics)
            if row.enrol_status:
                statuses[ident] = row.enrol_status
            if change:
                self.course_log.course_updated(ident, change, list(self.schema.course.c.keys()))
                change["cacherev"] = next_cacherev(current.get("cacherev"), now)
                changes.append({"id": ident, **change, "timemodified": now})
            words[row.line] = [k for k in change if k not in ("visibleold", "cacherev")]
            if row.template and self.options.template_mode != "none":
                mode: Literal["add", "replace"] = "replace" if self.options.template_mode == "replace" else "add"
                self.templates[row.line] = (ident, TemplateItem(ident, row.template, mode))
                words[row.line].append(f"template content ({mode})")
        await self.gateway.update_many(conn, self.schema.course, "id", changes)
        await self._move(conn, moves, now)
        await add_format_options(self.gateway, conn, self.site, formats)
        shown = await set_coursedisplay(self.gateway, conn, displays, self.course_log)
        highest, renamed = await write_sections(self.gateway, conn, sections, now, self.course_log)
        enrol_words = await set_enrol_statuses(self.gateway, conn, self.site, statuses, now, self.course_log)
        lines = {int(course["id"]): row.line for row, course, _, _ in plan.updates}
        for ident, said in enrol_words.items():
            words[lines[ident]] += said
        touched = renamed | {c for c in displays if shown} | set(formats)
        by_id = {int(c["id"]): c for c in changes}
        await self._bump(conn, touched - set(by_id), stored, now)
        # update_course()'s course_updated observer: a changed course gets the forum of its format if it has none.
        after = {c: stored[c] | change for c, change in by_id.items()}
        kinds = {c: course_forum_type(str(v["format"]), int(v["newsitems"])) for c, v in after.items()}
        await add_course_forums(self.gateway, conn, {c: k for c, k in kinds.items() if k is not None}, now)
        # format_weeks' observers move the end date when the start date or the sections change.
        weeks = {
            ident: int(by_id.get(ident, {}).get("startdate", stored[ident]["startdate"]))
            for ident in {i for i, c in by_id.items() if "startdate" in c or "format" in c} | renamed
            if str(by_id.get(ident, {}).get("format", stored[ident]["format"])) == "weeks"
        }
        last = await self._last_sections(conn, [c for c in weeks if c not in highest])
        await self._weeks_end_dates(conn, weeks, highest | last)
        for row, course, _, _ in plan.updates:
            said = words[row.line] + (["sections"] if int(course["id"]) in renamed else [])
            if said:
                message = f"updated: {', '.join(dict.fromkeys(said))}"
                outcomes[row.line] = row_outcome(row, Outcome.UPDATED, "update", message)
            else:
                outcomes[row.line] = row_outcome(row, Outcome.UNCHANGED, "update", "up to date")
        if changes or touched:
            self.events.add(COURSE_EVENT)
        return outcomes

    async def _bump(self, conn: AsyncConnection, ids: set[int], stored: dict[int, dict[str, Any]], now: int) -> None:
        rows = [{"id": i, "cacherev": next_cacherev(stored[i].get("cacherev"), now)} for i in sorted(ids)]
        await self.gateway.update_many(conn, self.schema.course, "id", rows)

    async def _last_sections(self, conn: AsyncConnection, ids: list[int]) -> dict[int, int]:
        if not ids:
            return {}
        table = self.schema.course_sections
        found = await self.gateway.fetch_in(conn, table, "course", ids, ["course", "section"])
        return {int(c): int(n) for c, n in found.group_by("course").agg(pl.col("section").max()).iter_rows()}

    async def _move(self, conn: AsyncConnection, moves: list[tuple[int, Category]], now: int) -> None:
        """Courses moved to another category: their context subtree follows, and is marked dirty."""
        if not moves:
            return
        found = await course_contexts(self.gateway, conn, [c for c, _ in moves])
        paths = {int(course): (int(ctx), str(path)) for course, ctx, path in found.iter_rows()}
        moved = [(c, target) for c, target in moves if c in paths]
        await move_contexts(
            self.gateway, conn, [(paths[c][1], child_path(target.context_path, paths[c][0])) for c, target in moved]
        )
        await mark_contexts_dirty(self.gateway, conn, [paths[c][0] for c, _ in moved], now, self.site.session_timeout)

    async def _dry_teachers(self, conn: AsyncConnection, plan: Plan, now: int) -> list[OutcomeRow]:
        """A dry run's teacher lines, planned by CourseEnrolments as the real run's: the new courses with teachers
        are written first, in the batch's transaction that the pipeline rolls back, to give the enrolments a course,
        its context and its manual method; what the run remembers of them (categories, templates, forums, cache
        events) is put back, and their teacher lines name them by shortname, as their id is not kept."""
        if self.enrolments is None:
            return []
        created: dict[int, int] = {}
        if any(row.teachers for row, _, _ in plan.creates):
            categories, events = copy.deepcopy(self.categories), set(self.events)
            templates, forums = dict(self.templates), dict(self.template_forums)
            if plan.new_paths:
                new = list(plan.new_paths.values())
                visible = self.options.new_categories_visible
                await create_paths(self.gateway, conn, self.categories, new, visible=visible, now=now)
            created = await self._create(conn, plan, now)
            self._restore_categories(categories)
            self.events, self.templates, self.template_forums = events, templates, forums
        rows = await self._teachers(conn, plan, created, now, dry_run=True)
        names = {str(created[row.line]): row.key for row, _, _ in plan.creates if row.line in created}
        return [
            (line, part, outcome, action, names[key], message.replace(f"course '{key}'", f"course '{names[key]}'"))
            if key in names
            else (line, part, outcome, action, key, message)
            for line, part, outcome, action, key, message in rows
        ]

    async def _teachers(
        self, conn: AsyncConnection, plan: Plan, created: dict[int, int], now: int, *, dry_run: bool
    ) -> list[OutcomeRow]:
        """teacherN_account/teacherN_role: enrolled through the course's manual method, detail outcomes per N."""
        if self.enrolments is None:
            return []
        lines = {row.line: row for row, _, _ in plan.creates} | {row.line: row for row, _, _, _ in plan.updates}
        ids = dict(created) | {row.line: int(course["id"]) for row, course, _, _ in plan.updates}
        wanted = [(row, part, account, role) for line, row in lines.items() for part, account, role in row.teachers]
        if not wanted:
            return []
        users = await find_accounts(self.gateway, conn, [account for _, _, account, _ in wanted])
        requests = pl.DataFrame(
            {
                LINE: [row.line for row, *_ in wanted],
                "part": [part for _, part, _, _ in wanted],
                "userid": [users.get(account) for _, _, account, _ in wanted],
                "course": [str(ids.get(row.line) or "") for row, *_ in wanted],
                "role": [role or DEFAULT_TEACHER_ROLE for *_, role in wanted],
                "enrol": ["manual"] * len(wanted),
            },
            schema={
                LINE: pl.Int64,
                "part": pl.String,
                "userid": pl.Int64,
                "course": pl.String,
                "role": pl.String,
                "enrol": pl.String,
            },
        )
        events = None if dry_run else collecting(self.event_log)
        outcomes, effects = await self.enrolments.apply(conn, requests, now=now, dry_run=dry_run, events=events)
        if events:
            await self.event_log.record(conn, events, now)
        if not dry_run:
            self.effects.update(effects)
        unknown = {(row.line, part): account for row, part, account, _ in wanted if account not in users}
        rows: list[OutcomeRow] = []
        for line, part, outcome, action, key, message in outcomes.iter_rows():
            if (line, part) in unknown:
                message = f"no user has the id, username or e-mail '{unknown[(line, part)]}'"
            rows.append((line, part, outcome, action, key, message))
        return rows

    def _created_outcomes(self, plan: Plan, created: dict[int, int]) -> list[OutcomeRow]:
        rows = []
        for row, _record, category in plan.creates:
            where = self.categories.path_of(self.planner.placed(category).id)
            new = " (new category)" if not category.id else ""
            message = f"created with id {created[row.line]} in {where}{new}"
            rows.append(row_outcome(row, Outcome.CREATED, "create", message))
        return rows

    def _dry_outcomes(self, plan: Plan, stored: dict[int, dict[str, Any]]) -> list[OutcomeRow]:
        rows = []
        for row, _, category in plan.creates:
            where = self.categories.path_of(category.id) if category.id else f"{category.context_path} (new category)"
            rows.append(row_outcome(row, Outcome.CREATED, "create", f"would be created in {where}"))
        for row, course, values, target in plan.updates:
            current = stored[int(course["id"])]
            change = [k for k, v in values.items() if current.get(k) != v and k != "timecreated"]
            if target is not None and target.id != int(current["category"]):
                change.append("category")
            change += ["sections"] if row.topics else []
            change += [f"{p} method" for p in row.enrol_status]
            if change:
                rows.append(row_outcome(row, Outcome.UPDATED, "update", f"would be updated: {', '.join(change)}"))
            else:
                rows.append(row_outcome(row, Outcome.UNCHANGED, "update", "up to date"))
        return rows

    # -- after the batch ------------------------------------------------------------------------------

    async def after_commit(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        """Template content restored through the bridge into the batch's committed courses: one part per row."""
        if not self.templates or self.bridge is None:
            return outcomes
        items = [item for _, item in self.templates.values()]
        try:
            results = await self.bridge.restore_templates(items)
        except BridgeError as exc:
            results = {**{i.course_id: str(exc) for i in items}, **exc.done}
        await self._template_forums()
        rows: list[OutcomeRow] = []
        for line, (course, item) in sorted(self.templates.items()):
            error = results.get(course, "the bridge gave no outcome for this course")
            if error is None:
                rows.append(
                    (
                        line,
                        "template",
                        Outcome.UPDATED.value,
                        "template",
                        item.template,
                        f"content of {item.template} restored ({item.mode})",
                    )
                )
            else:
                rows.append(
                    (
                        line,
                        "template",
                        Outcome.FAILED.value,
                        "template",
                        item.template,
                        f"template not restored: {error}",
                    )
                )
        self.templates = {}
        return pl.concat([outcomes, pl.DataFrame(rows, schema=OUTCOME_SCHEMA, orient="row")]).sort(
            "line", "part", nulls_last=False, maintain_order=True
        )

    async def _template_forums(self) -> None:
        """The forum of the new courses filled from a template, after the restore: written only where the template
        brought none (forum_get_course_forum()), so that a course never has two."""
        if not self.template_forums:
            return
        try:
            async with self.gateway.transaction() as conn:
                await add_course_forums(self.gateway, conn, self.template_forums, _now())
        except SQLAlchemyError as exc:
            why = describe(exc)
            raise DatabaseError(f"the forums of courses filled from a template were not written: {why}") from None
        self.template_forums = {}

    async def finish(self, dry_run: bool) -> list[str]:
        if dry_run or self._site is None:
            return []
        notes = [
            f"enrolment plugin {p} adds a default method to new courses in Moodle; toolsync does not write it"
            for p in self.site.unknown_default_plugins
        ]
        if self.events:
            if self.bridge is None:
                why = self.bridge_problem or "no Moodle bridge is configured ([bridge] moodle_dir)"
                notes.append(
                    f"course and category caches were not purged: {why}. Category listings may lag until Moodle's "
                    "caches are purged (php admin/cli/purge_caches.php)."
                )
            else:
                try:
                    await self.bridge.purge(events=sorted(self.events))
                    notes.append("Moodle's course and category caches were purged through the bridge")
                except BridgeError as exc:
                    notes.append(f"course and category caches were not purged: {exc}")
        return notes + await purge_after_run(self.bridge, self.effects)


def _now() -> int:
    return int(time.time())


def _frame(outcomes: list[OutcomeRow]) -> pl.DataFrame:
    frame = pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row")
    return frame.sort("line", "part", nulls_last=False, maintain_order=True)


def _provisional(plan: Plan, later: list[CourseRow]) -> list[OutcomeRow]:
    """A row outcome for each planned row until the write gives the final ones (its outcomes replace these)."""
    rows = [*plan.outcomes]
    rows += [row_outcome(row, Outcome.CREATED, "create", "to be created") for row, _, _ in plan.creates]
    rows += [row_outcome(row, Outcome.UPDATED, "update", "to be updated") for row, _, _, _ in plan.updates]
    return rows + [row_outcome(row, Outcome.UPDATED, "update", "planned after the row before it") for row in later]
