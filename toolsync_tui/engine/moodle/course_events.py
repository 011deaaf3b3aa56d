"""The standard-log events of changes in a course: enrolment methods, user enrolments, role assignments, groups and
groupings, built in bulk from the frames the writes already hold (event_log.py writes them).

Each builder takes a frame with `courseid` and `contextid` (the course context) and the columns it names, and
returns one Event per row, as the event Moodle 4.5 triggers for that change logs it: context = the course context
(level 50, instance = the course), courseid = the course, objectid and relateduserid as the event class sets them.
`other` is the array the API builds, with PHP's types, since json_encode() shows them: values Moodle read from the
database are strings ("id":"4"), values the API computed or defaulted are integers ("id":4, "itemid":0). Checked
against the rows Moodle's own APIs wrote on a 4.5 site (tests/moodle/test_{enrolment,group,binding}_log_events.py):

API -> event: objectid, relateduserid, other:

* add_instance() -> enrol_instance_created; update_status(), update_instance() -> enrol_instance_updated;
  delete_instance() -> enrol_instance_deleted (after its unenrolments' events): the instance, -, {"enrol":"<plugin>"}.
* enrol_user() new -> user_enrolment_created; enrol_user() changing it, update_user_enrol() -> user_enrolment_updated:
  the ue id, the user, {"enrol":"<plugin>"}.
* unenrol_user() -> user_enrolment_deleted: the ue id, the user,
  {"userenrolment":{the ue row as read, courseid, enrol, lastenrol},"enrol":"<plugin>"}.
* role_assign() -> role_assigned: the role, the user, {"id":<ra id>,"component":"","itemid":0}.
* role_unassign(), role_unassign_all() -> role_unassigned: the role, the user,
  {"id":"<ra id>","component":"<as stored>","itemid":"<as stored>"}; context = the assignment's.
* groups_create_group() / groups_update_group() / groups_delete_group() -> group_created / _updated / _deleted: the
  group, -, none.
* groups_add_member() -> group_member_added: the group, the user, {"component":"","itemid":0}.
* groups_remove_member() -> group_member_removed: the group, the user, none.
* groups_create_grouping() / _update_ / _delete_ -> grouping_created / _updated / _deleted: the grouping, -, none.
* groups_assign_grouping() -> grouping_group_assigned: the grouping, -, {"groupid":"<group id>"}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import polars as pl

from toolsync_tui.engine.moodle import events as kinds
from toolsync_tui.engine.moodle.contexts import ContextLevel
from toolsync_tui.engine.moodle.event_log import Event, EventKind, EventLog

COURSE = int(ContextLevel.COURSE)
# user_enrolments columns in the order Moodle's record has them: user_enrolment_deleted's snapshot.
UE_COLUMNS = ("id", "status", "enrolid", "userid", "timestart", "timeend", "modifierid", "timecreated", "timemodified")

Others = Sequence[Mapping[str, Any] | None]


def collecting(log: EventLog) -> list[Event] | None:
    """An empty list to gather a batch's events in, or None when the run logs nothing (the site's standard log store
    is off and nothing is triggered): the writes then skip the reads only the events need."""
    return [] if log.active else None


def in_course(
    kind: EventKind, frame: pl.DataFrame, objectid: str, *, user: str | None = None, others: Others | None = None
) -> list[Event]:
    """One event per row of `frame` (courseid, contextid, the `objectid` column, `user` for relateduserid), in the
    course context; `others`: each row's other array. Column by column: a batch has thousands of rows."""
    return [
        Event(kind, object_id, context, COURSE, course, course, user_id, other)
        for object_id, context, course, user_id, other in zip(
            frame[objectid].cast(pl.Int64).to_list(),
            frame["contextid"].cast(pl.Int64).to_list(),
            frame["courseid"].cast(pl.Int64).to_list(),
            frame[user].cast(pl.Int64).to_list() if user is not None else repeat(None),
            others if others is not None else repeat(None),
            strict=False,  # the repeat()s are endless: the frame's rows decide
        )
    ]


def _enrol(frame: pl.DataFrame) -> Others:
    """{"enrol":"<plugin>"} of each row (one dict a plugin, shared)."""
    shared: dict[str, Mapping[str, Any]] = {}
    return [shared.setdefault(plugin, {"enrol": plugin}) for plugin in frame["plugin"].to_list()]


def instances_created(frame: pl.DataFrame) -> list[Event]:
    """frame: enrolid, plugin, courseid, contextid."""
    return in_course(kinds.ENROL_INSTANCE_CREATED, frame, "enrolid", others=_enrol(frame))


def instances_updated(frame: pl.DataFrame) -> list[Event]:
    """frame: enrolid, plugin, courseid, contextid."""
    return in_course(kinds.ENROL_INSTANCE_UPDATED, frame, "enrolid", others=_enrol(frame))


def instances_deleted(frame: pl.DataFrame) -> list[Event]:
    """frame: enrolid, plugin, courseid, contextid."""
    return in_course(kinds.ENROL_INSTANCE_DELETED, frame, "enrolid", others=_enrol(frame))


def enrolments_created(frame: pl.DataFrame) -> list[Event]:
    """frame: ue_id, userid, plugin, courseid, contextid."""
    return in_course(kinds.USER_ENROLMENT_CREATED, frame, "ue_id", user="userid", others=_enrol(frame))


def enrolments_updated(frame: pl.DataFrame) -> list[Event]:
    """frame: ue_id, userid, plugin, courseid, contextid."""
    return in_course(kinds.USER_ENROLMENT_UPDATED, frame, "ue_id", user="userid", others=_enrol(frame))


def enrolments_deleted(frame: pl.DataFrame) -> list[Event]:
    """frame: the deleted user_enrolments rows as read (UE_COLUMNS), plugin, courseid, contextid and lastenrol
    (Boolean: it was the user's last enrolment in the course)."""
    others = []
    for row in frame.iter_rows(named=True):
        # (array)$ue: the record's columns as strings (the database's), then what unenrol_user() adds.
        snapshot: dict[str, Any] = {name: _text(row[name]) for name in UE_COLUMNS}
        snapshot.update(courseid=str(row["courseid"]), enrol=row["plugin"], lastenrol=bool(row["lastenrol"]))
        others.append({"userenrolment": snapshot, "enrol": row["plugin"]})
    return in_course(kinds.USER_ENROLMENT_DELETED, frame, "id", user="userid", others=others)


def roles_assigned(frame: pl.DataFrame) -> list[Event]:
    """role_assign() with component '' and itemid 0 (the only ones toolsync makes). frame: ra_id, roleid, userid,
    courseid, contextid (the course context)."""
    others = [{"id": ra, "component": "", "itemid": 0} for ra in frame["ra_id"].cast(pl.Int64).to_list()]
    return in_course(kinds.ROLE_ASSIGNED, frame, "roleid", user="userid", others=others)


def roles_unassigned(frame: pl.DataFrame) -> list[Event]:
    """frame: ra_id, roleid, userid, component, itemid, courseid and the assignment's context: contextid,
    contextlevel, instanceid (the course context, or one below it)."""
    return [
        Event(
            kinds.ROLE_UNASSIGNED,
            int(row["roleid"]),
            int(row["contextid"]),
            int(row["contextlevel"]),
            int(row["instanceid"]),
            int(row["courseid"]),
            int(row["userid"]),
            # The assignment as role_unassign_all() read it: strings.
            {"id": str(row["ra_id"]), "component": row["component"] or "", "itemid": str(row["itemid"])},
        )
        for row in frame.iter_rows(named=True)
    ]


def groups_created(frame: pl.DataFrame) -> list[Event]:
    """frame: groupid, courseid, contextid."""
    return in_course(kinds.GROUP_CREATED, frame, "groupid")


def groups_updated(frame: pl.DataFrame) -> list[Event]:
    """frame: groupid, courseid, contextid."""
    return in_course(kinds.GROUP_UPDATED, frame, "groupid")


def groups_deleted(frame: pl.DataFrame) -> list[Event]:
    """frame: groupid, courseid, contextid."""
    return in_course(kinds.GROUP_DELETED, frame, "groupid")


def members_added(frame: pl.DataFrame, component: str = "", itemid: int = 0) -> list[Event]:
    """groups_add_member($group, $user, $component, $itemid) as toolsync calls it (the arguments as given: itemid an
    integer). frame: groupid, userid, courseid, contextid."""
    other = {"component": component, "itemid": itemid}
    return in_course(kinds.GROUP_MEMBER_ADDED, frame, "groupid", user="userid", others=[other] * frame.height)


def members_removed(frame: pl.DataFrame) -> list[Event]:
    """frame: groupid, userid, courseid, contextid."""
    return in_course(kinds.GROUP_MEMBER_REMOVED, frame, "groupid", user="userid")


def groupings_created(frame: pl.DataFrame) -> list[Event]:
    """frame: groupingid, courseid, contextid."""
    return in_course(kinds.GROUPING_CREATED, frame, "groupingid")


def groupings_updated(frame: pl.DataFrame) -> list[Event]:
    """frame: groupingid, courseid, contextid."""
    return in_course(kinds.GROUPING_UPDATED, frame, "groupingid")


def groupings_deleted(frame: pl.DataFrame) -> list[Event]:
    """frame: groupingid, courseid, contextid."""
    return in_course(kinds.GROUPING_DELETED, frame, "groupingid")


def groupings_assigned(frame: pl.DataFrame) -> list[Event]:
    """frame: groupingid, groupid, courseid, contextid. The group id is a string: the callers pass ids read back from
    the database (groups_create_group() returns the record's)."""
    others = [{"groupid": str(group)} for group in frame["groupid"].to_list()]
    return in_course(kinds.GROUPING_GROUP_ASSIGNED, frame, "groupingid", others=others)


def _text(value: Any) -> str | None:
    """A database value as PHP's driver returns it: text, NULL as null."""
    return None if value is None else str(value)
