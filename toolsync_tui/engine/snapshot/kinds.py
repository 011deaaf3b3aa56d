"""Per operation: which ledger kind its snapshot manages, how a record of it is named in the operation's file (the
identifier settings), and the command row that gives a record the snapshot action.

A record is read with the file's own key columns (labelled as the file names them, as text): `uid` and `cid` for an
enrolment, `groupid`, `userid` (and `courseid`) for a group membership ... The same query, filtered by ids, gives the
records the ledger holds (snapshot); filtered by the file's scope keys, the records a file names (`ledger adopt`).

Enrolments: a file with an `enrol` column manages enrolments (user_enrolments; unenrol: `del`, suspend: `disable`);
one without manages role assignments (role_assignments of component '', remove_role or unenrol: `del` with the
role). An enrolment's name is (uid, cid) whatever its role, a role assignment's (uid, cid, rolename).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Select, String, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.run.operation import SetupProblem
from toolsync_tui.engine.snapshot.matching import KeyMatch, key_match, user_key

COURSE_LEVEL = 50  # CONTEXT_COURSE
COHORT_KEYS = {"id": "cid", "idnumber": "cidnumber", "name": "cname"}  # cohort_identifier -> the file's key column


@dataclass(frozen=True)
class Spec:
    """How an operation's file names the records of one ledger kind.

    `query`: the records, with `id`, `userid`, `live` (0 when the record cannot be acted on: its user deleted, an
    enrolment already suspended for suspend) and the text `cells` the command row takes from the record, labelled as
    the file's columns. `keys`: the cells naming a record; `scope`: those naming its scope (the course, group or
    cohort): only records of a scope the file names are its business. `matches`: how each key compares (matching.py),
    as the operation's lookup of it. `where_id`: the record id column; `scope_column`: the first scope key's column,
    for adopt. `command`: the row's other cells."""

    kind: str
    keys: tuple[str, ...]
    scope: tuple[str, ...]
    query: Select[*tuple[Any, ...]]
    where_id: ColumnElement[Any]
    scope_column: ColumnElement[Any]
    command: dict[str, str] = field(default_factory=dict)
    action: str = ""  # the action in words, for notes
    matches: dict[str, KeyMatch] = field(default_factory=dict)

    @property
    def cells(self) -> list[str]:
        names = self.query.selected_columns.keys()
        return [name for name in names if name not in ("id", "userid", "live")]

    async def by_ids(self, conn: AsyncConnection, ids: list[int]) -> pl.DataFrame:
        """The records of these ids that exist."""
        found: list[Any] = []
        for part in chunks(sorted(ids)):
            found.extend(await conn.execute(self.query.where(self.where_id.in_(part))))
        return self._frame(found)

    async def in_scope(self, conn: AsyncConnection, gateway: MoodleGateway, values: list[str]) -> pl.DataFrame:
        """Every record of the scopes the file names (`values`: its first scope column's cells), found as the
        operation's lookup finds them (the caller keeps those whose keys match: Spec.matches)."""
        column = self.scope_column
        match = self.matches[self.scope[0]].text
        wanted: list[Any] = [v for v in values if v]
        if match is None:
            wanted = [int(v) for v in wanted if v.isdigit()]
        else:
            wanted = match.values(wanted)
            if match.casefold and gateway.kind != "mariadb":  # MariaDB's collation folds by itself
                column, wanted = func.lower(column), [v.lower() for v in wanted]
        found: list[Any] = []
        for part in chunks(wanted):
            found.extend(await conn.execute(self.query.where(column.in_(part))))
        return self._frame(found)

    def _frame(self, found: list[Any]) -> pl.DataFrame:
        ints: dict[Any, pl.DataType] = {"id": pl.Int64(), "userid": pl.Int64(), "live": pl.Int64()}
        texts: dict[Any, pl.DataType] = {name: pl.String() for name in self.cells}
        if not found:
            return pl.DataFrame(schema={**ints, **texts})
        names = list(self.query.selected_columns.keys())
        frame = pl.DataFrame(dict(zip(names, map(list, zip(*found, strict=True)), strict=True)), strict=False)
        return frame.cast({**ints, **texts}).with_columns(pl.col(name).fill_null("") for name in texts)


def _text(column: ColumnElement[Any], name: str) -> ColumnElement[Any]:
    return cast(column, String).label(name)


def _live(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return case((condition, 1), else_=0).label("live")


def spec_for(
    config: Config, gateway: MoodleGateway, operation: str, columns: list[str], *, acting: bool = True
) -> Spec | None:
    """The snapshot spec of `operation` for a file with these columns; None for an operation without one (users are
    apart: users.py). `acting`: for a snapshot, which raises SetupProblem for an action the file cannot express."""
    schema = gateway.schema
    user = schema.user
    ops = config.settings.operations
    query: Select[*tuple[Any, ...]]
    if operation == "enrols":
        options = ops.enrols
        course = schema.course
        ukey, ckey = user.c[options.user_identifier], course.c[options.course_identifier]
        # As the enrolments lookups (enrolments/resolve.py): users by user_rule, courses and roles exactly.
        matches = {
            "uid": user_key(gateway.kind, options.user_identifier),
            "cid": key_match(gateway.kind, options.course_identifier),
            "rolename": key_match(gateway.kind, "shortname"),
        }
        if "enrol" in columns:
            if acting and options.snapshot_action == "remove_role":
                raise SetupProblem(
                    "enrols.snapshot_action is remove_role, but the file has an enrol column (it manages enrolments): "
                    "remove_role is for a file of role assignments (no enrol column); use unenrol or suspend"
                )
            ue, enrol = schema.user_enrolments, schema.enrol
            suspend = options.snapshot_action == "suspend"
            live = (user.c.deleted == 0) & (ue.c.status == 0) if suspend else user.c.deleted == 0
            query = (
                select(
                    ue.c.id,
                    ue.c.userid,
                    _live(live),
                    _text(ukey, "uid"),
                    _text(ckey, "cid"),
                    _text(enrol.c.enrol, "enrol"),
                )
                .join(enrol, enrol.c.id == ue.c.enrolid)
                .join(user, user.c.id == ue.c.userid)
                .join(course, course.c.id == enrol.c.courseid)
            )
            command = {"cmd": "disable" if suspend else "del", "rolename": ""}
            return Spec(
                "enrolment",
                ("uid", "cid"),
                ("cid",),
                query,
                ue.c.id,
                ckey,
                command,
                "suspend" if suspend else "unenrol",
                matches,
            )
        if acting and options.snapshot_action == "suspend":
            raise SetupProblem(
                "enrols.snapshot_action is suspend, but the file has no enrol column (it manages role assignments, "
                "which cannot be suspended): add an enrol column, or use remove_role"
            )
        ra, context, role = schema.role_assignments, schema.context, schema.role
        query = (
            select(
                ra.c.id,
                ra.c.userid,
                _live(user.c.deleted == 0),
                _text(ukey, "uid"),
                _text(ckey, "cid"),
                _text(role.c.shortname, "rolename"),
            )
            .join(context, and_(context.c.id == ra.c.contextid, context.c.contextlevel == COURSE_LEVEL))
            .join(course, course.c.id == context.c.instanceid)
            .join(user, user.c.id == ra.c.userid)
            .join(role, role.c.id == ra.c.roleid)
            .where(ra.c.component == "")
        )
        keys = ("uid", "cid", "rolename")
        command = {"cmd": "del"}
        return Spec("role_assignment", keys, ("cid",), query, ra.c.id, ckey, command, "role removal", matches)
    if operation == "groupmembers":
        gm_options = ops.groupmembers
        groups, members, course = schema.groups, schema.groups_members, schema.course
        ukey, gkey = user.c[gm_options.user_identifier], groups.c[gm_options.group_identifier]
        ckey = course.c[gm_options.course_identifier]
        query = (
            select(
                members.c.id,
                members.c.userid,
                _live(user.c.deleted == 0),
                _text(ukey, "userid_key"),
                _text(gkey, "groupid"),
                _text(ckey, "courseid"),
            )
            .join(groups, groups.c.id == members.c.groupid)
            .join(course, course.c.id == groups.c.courseid)
            .join(user, user.c.id == members.c.userid)
            .where(members.c.component == "")
        )
        # A group named by id is one group; by name or idnumber, a group of the row's course.
        scope = ("groupid",) if gm_options.group_identifier == "id" else ("groupid", "courseid")
        # As groups/members.py: users by user_rule, groups (by name or idnumber within the course) and courses exactly.
        matches = {
            "userid_key": user_key(gateway.kind, gm_options.user_identifier),
            "groupid": key_match(gateway.kind, gm_options.group_identifier),
            "courseid": key_match(gateway.kind, gm_options.course_identifier),
        }
        gm_keys = ("userid_key", *scope)
        return Spec("group_member", gm_keys, scope, query, members.c.id, gkey, {"cmd": "del"}, "removal", matches)
    if operation == "cohorts":
        co_options = ops.cohorts
        cohort, members = schema.cohort, schema.cohort_members
        ukey, key = user.c[co_options.user_identifier], COHORT_KEYS[co_options.cohort_identifier]
        cokey = cohort.c[co_options.cohort_identifier]
        query = (
            select(
                members.c.id, members.c.userid, _live(user.c.deleted == 0), _text(ukey, "userid_key"), _text(cokey, key)
            )
            .join(cohort, cohort.c.id == members.c.cohortid)
            .join(user, user.c.id == members.c.userid)
            .where(cohort.c.component == "")
        )
        # As cohorts/operation.py: users by user_rule, cohorts exactly.
        matches = {
            "userid_key": user_key(gateway.kind, co_options.user_identifier),
            key: key_match(gateway.kind, co_options.cohort_identifier),
        }
        co_keys = ("userid_key", key)
        return Spec("cohort_member", co_keys, (key,), query, members.c.id, cokey, {"cmd": "del"}, "removal", matches)
    return None
