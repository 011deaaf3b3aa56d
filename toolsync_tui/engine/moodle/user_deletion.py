"""Deleting users directly in the database, leaving the rows Moodle 4.5's `delete_user()` leaves (moodle-db-semantics
§5.2, checked against lib/moodlelib.php and the code it calls).

`delete_users` soft-deletes a batch in a handful of statements per table:

* mdl_user: deleted=1, the username scrubbed to `<cleaned e-mail>.<now>` (suffix incremented while taken), the e-mail
  replaced by md5(original username), idnumber '', picture 0, timemodified now. The user context row is kept: the
  hourly context_cleanup_task removes it, as it does after `delete_user()`.
* Grades: every grade_grades row goes to grade_grades_history (action 3, source 'userdelete') unless
  $CFG->disablegradehistory, then is deleted (`grade_user_delete()`).
* Interests (`core_tag_tag::remove_all_item_tags('core', 'user')`), when the site uses tags and the user tag area is
  enabled (else Moodle keeps them, for tag_cron_task): the tag_instance rows, and each non-standard tag left without
  instances with its tag_correlation rows. Instances whose tag row is missing (Moodle leaves them to tag_cron_task)
  go too, without an event; a deleted tag's description files stay (only Moodle's file storage deletes files).
* Enrolments: user_enrolments; in each course where the last enrolment goes through an enabled plugin's
  `unenrol_user()`, the mod_forum observer's cleanup of forum_digests, forum_subscriptions, forum_track_prefs and
  forum_read for the course's forums; group memberships (`groups.timemodified` of the groups `groups_remove_member()`
  would have touched); role_assignments in all contexts, and those of other users in the deleted users' contexts.
* Competencies (`core_competency\\api::hook_user_deleted`): user competencies and their evidence, course and plan
  competencies, user evidence and its links, learning plans and their competencies.
* The brute-force list: cohort_members, user_preferences, user_info_data, user_password_history, user_lastaccess,
  external_tokens, external_services_users, user_private_key, my_pages (private), oauth2_refresh_token, subscription
  events and event_subscriptions; and the observers' and callbacks' tables: tool_monitor_subscriptions,
  auth_oauth2_linked_login, auth_lti_linked_login, tool_cohortroles.
* The automatic tool_dataprivacy deletion request, sessions ended, dirty-user flags.

Left to Moodle (not written here):

* Content of the user context (`context::delete_content()`): files with their filedir content, blocks and their
  contexts, block_positions, filter_active/filter_config, comments, ratings, repository instances, grading areas,
  role_names, role_capabilities. context_cleanup_task runs that same `delete_content()` when it removes the deleted
  user's context, within the hour; only Moodle's file storage can move file content to the trash correctly.
* Grade feedback files (component 'grade' in module contexts), completion updates after grade deletion, search index,
  group conversations, quiz timecheckstate, the auth plugin's `user_delete()`, third-party plugins' callbacks,
  hooks and observers, MUC purges: the Moodle bridge's business.
* A site that approves deletion requests automatically (the request would need its ad hoc task): refused with
  DirectDeletionUnsupported. The request's comment is the English string, whatever the site's language.

With an EventLog, the standard-log rows delete_user() writes (deletion_events.py) are recorded with the batch.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl
from sqlalchemy import ColumnElement, Table, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import deletion_events, recording
from toolsync_tui.engine.moodle.contexts import ContextLevel, instance_contexts
from toolsync_tui.engine.moodle.event_log import Event, EventLog
from toolsync_tui.engine.moodle.gateway import MoodleGateway, chunks
from toolsync_tui.engine.moodle.site_settings import protected_accounts
from toolsync_tui.engine.moodle.staleness import end_sessions, mark_users_dirty
from toolsync_tui.engine.moodle.text_match import TextMatch

# delete_user(): 100 characters at most, made of up to 89 of the cleaned e-mail, '.', and a 10-digit timestamp.
PREFIX_LENGTH: Final = 89
SUFFIX_WIDTH: Final = 10
PHP_TRIM: Final = " \t\n\r\0\x0b"  # the characters PHP's trim() strips
FALLBACK_EMAIL: Final = "{}.{}@unknownemail.invalid"  # username, id: for users without an e-mail
# Extra suffixes probed per prefix and round, so that a few taken names cost no extra round trip.
PROBE_SLACK: Final = 8

GRADE_HISTORY_DELETE: Final = 3
GRADE_SOURCE: Final = "userdelete"

# tool_dataprivacy\api and data_request constants.
REQUEST_TYPE_DELETE: Final = 2
REQUEST_AWAITING_APPROVAL: Final = 2
REQUEST_CREATION_AUTO: Final = 1
FORMAT_PLAIN: Final = 2
# Statuses that neither count as ongoing nor as completed: a user with only such delete requests gets a new one.
REQUEST_CLOSED_UNDONE: Final = (6, 7, 8, 9)  # cancelled, rejected, download ready, expired
# get_string('datarequestcreatedupondelete', 'tool_dataprivacy') of the English language pack.
REQUEST_COMMENT: Final = "Automatically created upon user deletion."

USER_COLUMNS: Final = ("id", "username", "email")
INT: Final = pl.Int64
TEXT: Final = pl.String

# Tables delete_user() and its callbacks empty by userid alone.
_BY_USERID: Final = (
    "cohort_members",
    "groups_members",
    "user_enrolments",
    "user_preferences",
    "user_info_data",
    "user_password_history",
    "user_lastaccess",
    "external_tokens",
    "external_services_users",
    "user_private_key",
    "oauth2_refresh_token",
    "event_subscriptions",
    "tool_monitor_subscriptions",  # tool_monitor's user_deleted observer
    "auth_oauth2_linked_login",  # auth_oauth2_pre_user_delete and its user_deleted observer
    "auth_lti_linked_login",  # auth_lti_pre_user_delete
    "tool_cohortroles",  # tool_cohortroles' user_deleted observer
)


class DirectDeletionUnsupported(Exception):
    """The site is set up so that only Moodle's own code deletes users correctly: use the Moodle bridge."""


@dataclass(frozen=True)
class DeletionSettings:
    """The site settings that change what deleting a user writes."""

    enabled_enrol_plugins: tuple[str, ...]  # in the site's order: enrol_user_delete() calls them so
    user_tags: bool  # core_tag_area::is_enabled('core', 'user') is not false: interests are removed
    extended_username_chars: bool
    grade_history: bool
    automatic_requests: bool
    automatic_approval: bool

    @property
    def problem(self) -> str | None:
        """Why the direct path cannot delete users on this site, or None."""
        if self.automatic_requests and self.automatic_approval:
            # An approved request needs the ad hoc task that processes it (and the DPO check): Moodle's code.
            return (
                "tool_dataprivacy approves deletion requests automatically on this site: deleting users needs "
                "Moodle's own code (configure the Moodle bridge)"
            )
        return None


def _truthy(value: str | None) -> bool:
    """PHP's !empty() on a config string."""
    return value not in (None, "", "0")


async def deletion_settings(gateway: MoodleGateway, conn: AsyncConnection) -> DeletionSettings:
    """Read in the batch's own connection (a second connection would wait on the SQLite write lock)."""
    config, plugins = gateway.schema.config, gateway.schema.config_plugins
    names = ("enrol_plugins_enabled", "extendedusernamechars", "disablegradehistory", "usetags")
    rows = await conn.execute(select(config.c.name, config.c.value).where(config.c.name.in_(names)))
    core: dict[str, str] = {name: value for name, value in rows}
    rows = await conn.execute(
        select(plugins.c.name, plugins.c.value).where(
            plugins.c.plugin == "tool_dataprivacy",
            plugins.c.name.in_(("automaticdeletionrequests", "automaticdatadeletionapproval")),
        )
    )
    privacy: dict[str, str] = {name: value for name, value in rows}
    area = gateway.schema.tag_area
    flags = await conn.execute(select(area.c.enabled).where(area.c.component == "core", area.c.itemtype == "user"))
    user_area = flags.scalar()  # None: no such area, which is_enabled() does not count as disabled
    enabled = (core.get("enrol_plugins_enabled") or "").split(",")
    return DeletionSettings(
        enabled_enrol_plugins=tuple(dict.fromkeys(name.strip() for name in enabled if name.strip())),
        # usetags is always set on a Moodle site (admin default 1); a missing value is taken as that default.
        user_tags=core.get("usetags", "1") not in ("", "0") and user_area != 0,
        extended_username_chars=_truthy(core.get("extendedusernamechars")),
        grade_history=not _truthy(core.get("disablegradehistory")),
        # get_config() gives false for a missing setting: no request, as on a site without the plugin's settings.
        automatic_requests=_truthy(privacy.get("automaticdeletionrequests")),
        automatic_approval=_truthy(privacy.get("automaticdatadeletionapproval")),
    )


# -- the scrubbed username ----------------------------------------------------------------------------------------


def deleted_username_prefixes(users: pl.DataFrame, *, extended_chars: bool = False) -> pl.Series:
    """Per row of `users` (id, username, email): the part of the deleted username before '.<timestamp>'.

    `clean_param(email or "<username>.<id>@unknownemail.invalid", PARAM_USERNAME)` cut to 89 characters; cleaning
    trims, lowercases and, unless $CFG->extendedusernamechars, keeps only [-._@a-z0-9].
    """
    email = pl.col("email").cast(pl.String)
    fallback = pl.format(FALLBACK_EMAIL, pl.col("username").cast(pl.String), pl.col("id"))
    source = pl.when(email.is_null() | email.is_in(["", "0"])).then(fallback).otherwise(email)  # PHP's empty()
    cleaned = source.str.strip_chars(PHP_TRIM).str.to_lowercase()
    if not extended_chars:
        cleaned = cleaned.str.replace_all(r"[^-.@_a-z0-9]", "")
    return users.select(cleaned.str.slice(0, PREFIX_LENGTH).alias("prefix")).to_series()


def with_suffix(prefix: str, suffix: int) -> str:
    """sprintf('%s.%10d', prefix, suffix)."""
    return f"{prefix}.{suffix:{SUFFIX_WIDTH}d}"


def deleted_username(
    username: str, email: str | None, user_id: int, suffix: int, *, extended_chars: bool = False
) -> str:
    """The username delete_user() gives one user when `<prefix>.<suffix>` is free."""
    one = pl.DataFrame(
        {"id": [user_id], "username": [username], "email": [email]},
        schema={"id": pl.Int64, "username": pl.String, "email": pl.String},
    )
    return with_suffix(deleted_username_prefixes(one, extended_chars=extended_chars)[0], suffix)


async def assign_deleted_usernames(
    gateway: MoodleGateway, conn: AsyncConnection, users: pl.DataFrame, now: int, *, extended_chars: bool = False
) -> dict[int, str]:
    """User id -> deleted username for a batch, in batch order, as delete_user() gives them one after the other.

    Each takes `<prefix>.<now>`, or the next suffix while the name is held by any account (delete_user() checks every
    mnet host, not only the user's) or was given earlier in the batch. One SELECT per round: a window of suffixes per
    prefix is probed at once, so same-e-mail users and taken names rarely need a second round. Names compare as
    record_exists() does on the site's database (text_match.py: case-insensitively on MariaDB, exactly on
    PostgreSQL). A current username of a batch user counts as taken even when that user comes earlier (Moodle would
    have renamed it already): that keeps the single UPDATE free of transient duplicates and only matters for a live
    username shaped like `<e-mail>.<timestamp>`.
    """
    user = gateway.schema.user
    match = TextMatch(gateway.kind)
    pending = list(
        zip(users["id"].to_list(), deleted_username_prefixes(users, extended_chars=extended_chars), strict=True)
    )
    start: dict[str, int] = {}
    given: set[str] = set()
    names: dict[int, str] = {}
    while pending:
        windows = {
            prefix: range(start.get(prefix, now), start.get(prefix, now) + count + PROBE_SLACK)
            for prefix, count in Counter(prefix for _, prefix in pending).items()
        }
        probes = [with_suffix(prefix, s) for prefix, suffixes in windows.items() for s in suffixes]
        found = await gateway.fetch_in(conn, user, "username", probes, ["username"], casefold=match.casefold)
        taken = {match.stored_text(str(name)) for name in found["username"]} | given
        free = {
            prefix: deque(s for s in suffixes if match.given_text(with_suffix(prefix, s)) not in taken)
            for prefix, suffixes in windows.items()
        }
        waiting = []
        for user_id, prefix in pending:
            if free[prefix]:
                name = with_suffix(prefix, free[prefix].popleft())
                names[int(user_id)] = name
                given.add(match.given_text(name))
            else:
                waiting.append((user_id, prefix))
        start.update({prefix: suffixes.stop for prefix, suffixes in windows.items()})
        pending = waiting
    return names


# -- statements ---------------------------------------------------------------------------------------------------


async def _delete_where(
    conn: AsyncConnection, table: Table, key: str, values: Sequence[Any], where: ColumnElement[bool]
) -> None:
    """gateway.delete_in with an extra condition: one DELETE per chunk of keys."""
    for part in chunks(list(values)):
        await recording.deleting(conn, table, table.c[key].in_(part) & where)
        await conn.execute(delete(table).where(table.c[key].in_(part), where))


async def _delete_pairs(
    conn: AsyncConnection, table: Table, columns: tuple[str, str], pairs: Sequence[tuple[int, int]]
) -> None:
    """Rows whose (first, second) column values are one of `pairs`: one DELETE per chunk of pairs."""
    first, second = (table.c[name] for name in columns)
    for part in chunks(list(pairs), size=500):
        await recording.deleting(conn, table, tuple_(first, second).in_(list(part)))
        await conn.execute(delete(table).where(tuple_(first, second).in_(list(part))))


async def _fetch(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    table: Table,
    key: str,
    values: Sequence[Any] | pl.Series,
    columns: Mapping[str, pl.DataType | type[pl.DataType]],
) -> pl.DataFrame:
    """fetch_in with the column types fixed, so that an empty answer still joins."""
    keys = values.to_list() if isinstance(values, pl.Series) else list(values)
    return (await gateway.fetch_in(conn, table, key, keys, list(columns))).cast(pl.Schema(columns))


async def _select_ids(
    gateway: MoodleGateway, conn: AsyncConnection, table: Table, key: str, values: Sequence[int]
) -> list[int]:
    return [int(i) for i in (await gateway.fetch_in(conn, table, key, values, ["id"]))["id"]]


# -- the parts of delete_user() -----------------------------------------------------------------------------------


async def _delete_grades(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int], now: int, actor_id: int, history: bool
) -> list[dict[str, Any]]:
    """grade_user_delete(): grade_object::delete('userdelete') per grade, its row copied to the history first.
    Returns the grades deleted, in delete_user()'s order."""
    grades, log = gateway.schema.grade_grades, gateway.schema.grade_grades_history
    rows: list[dict[str, Any]] = []
    for part in chunks(list(ids)):
        rows += [dict(row) for row in (await conn.execute(select(grades).where(grades.c.userid.in_(part)))).mappings()]
    if not rows:
        return rows
    order = {user_id: n for n, user_id in enumerate(ids)}
    rows.sort(key=lambda row: (order[row["userid"]], row["id"]))  # user after user, as the batch is deleted
    if history:
        # The history row carries the grade's own columns; timecreated is dropped, timemodified is the deletion time.
        copied = [c.name for c in log.columns if c.name in grades.c and c.name not in ("id", "timemodified")]
        await gateway.insert_many(
            conn,
            log,
            [
                {name: row[name] for name in copied}
                | {
                    "action": GRADE_HISTORY_DELETE,
                    "oldid": row["id"],
                    "source": GRADE_SOURCE,
                    "timemodified": now,
                    "loggeduser": actor_id,
                }
                for row in rows
            ],
        )
    await gateway.delete_in(conn, grades, "id", [row["id"] for row in rows])
    return rows


async def _delete_tags(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int], enabled: bool
) -> tuple[list[dict[str, Any]], list[int]]:
    """remove_all_item_tags('core', 'user', id) per user (see the module docstring). Returns the instances removed
    whose tag exists, in delete_user()'s order (by user, ordering, id), and the tags deleted."""
    if not enabled:
        return [], []
    s = gateway.schema
    instance, tag = s.tag_instance, s.tag
    found: list[dict[str, Any]] = []
    for part in chunks(list(ids)):
        query = (
            select(
                instance.c.id,
                instance.c.tagid,
                instance.c.itemid,
                instance.c.contextid,
                instance.c.ordering,
                tag.c.name,
                tag.c.rawname,
                tag.c.isstandard,
                tag.c.userid.label("tag_userid"),
            )
            .select_from(instance.outerjoin(tag, tag.c.id == instance.c.tagid))
            .where(instance.c.itemid.in_(part), instance.c.component == "core", instance.c.itemtype == "user")
        )
        found += [dict(row) for row in (await conn.execute(query)).mappings()]
    await gateway.delete_in(conn, instance, "id", sorted(row["id"] for row in found))
    order = {user_id: n for n, user_id in enumerate(ids)}
    removed = sorted(
        (row for row in found if row["name"] is not None),
        key=lambda row: (order[row["itemid"]], row["ordering"], row["id"]),
    )
    candidates = sorted({int(row["tagid"]) for row in removed if not row["isstandard"]})
    still_used = {int(t) for t in (await gateway.fetch_in(conn, instance, "tagid", candidates, ["tagid"]))["tagid"]}
    unused = [t for t in candidates if t not in still_used]
    await gateway.delete_in(conn, s.tag_correlation, "tagid", unused)
    await gateway.delete_in(conn, tag, "id", unused)
    return removed, unused


async def _unenrol_cascade(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int], enabled: Sequence[str], now: int
) -> None:
    """What enrol_user_delete()'s unenrol_user() calls leave behind beyond the brute-force deletes that follow.

    Each enabled plugin unenrols the user from its instances. The last of a user's enrolments in a course (when all of
    them belong to enabled plugins) runs the "last enrolment" cleanup, whose lasting effects are the mod_forum
    observer's deletes and groups_remove_member()'s groups.timemodified; roles, groups, grades and lastaccess are
    removed for every course anyway.
    """
    schema = gateway.schema
    ue = await _fetch(gateway, conn, schema.user_enrolments, "userid", ids, {"userid": INT, "enrolid": INT})
    instances = await _fetch(
        gateway, conn, schema.enrol, "id", ue["enrolid"].unique(), {"id": INT, "enrol": TEXT, "courseid": INT}
    )
    # An enrolment whose instance is gone is reached by no plugin and ignored by the last-enrolment check.
    enrolled = ue.join(instances, left_on="enrolid", right_on="id").with_columns(
        pl.col("enrol").is_in([p for p in enabled if p not in deletion_events.SKIPPED_PLUGINS]).alias("reached")
    )
    last = (
        enrolled.group_by("userid", "courseid")
        .agg(pl.col("reached").all())
        .filter(pl.col("reached"))
        .select("userid", "courseid")
    )
    # Memberships unenrol_user() removes through groups_remove_member(): those its instance added, and all of the
    # user's memberships in a course left without enrolment.
    member_columns = {"userid": INT, "groupid": INT, "component": TEXT, "itemid": INT}
    members = await _fetch(gateway, conn, schema.groups_members, "userid", ids, member_columns)
    groups = await _fetch(gateway, conn, schema.groups, "id", members["groupid"].unique(), {"id": INT, "courseid": INT})
    members = members.join(groups, left_on="groupid", right_on="id")
    by_instance = enrolled.filter("reached").select(
        "userid", pl.format("enrol_{}", pl.col("enrol")).alias("component"), pl.col("enrolid").alias("itemid")
    )
    touched = pl.concat(
        [
            members.join(by_instance, on=["userid", "component", "itemid"], how="semi")["groupid"],
            members.join(last, on=["userid", "courseid"], how="semi")["groupid"],
        ]
    ).unique()
    groups_table = schema.groups
    for part in chunks(touched.sort().to_list()):
        async with recording.updating(conn, groups_table, groups_table.c.id.in_(part), ["timemodified"]):
            await conn.execute(update(groups_table).where(groups_table.c.id.in_(part)).values(timemodified=now))
    # mod_forum_observer::user_enrolment_deleted (lastenrol): the user's forum rows for that course's forums.
    forums = await _fetch(gateway, conn, schema.forum, "course", last["courseid"].unique(), {"id": INT, "course": INT})
    pairs = [
        (int(u), int(f))
        for u, f in last.join(forums, left_on="courseid", right_on="course")
        .select("userid", "id")
        .unique()
        .sort("userid", "id")
        .iter_rows()
    ]
    if pairs:
        await _delete_pairs(conn, schema.forum_digests, ("userid", "forum"), pairs)
        await _delete_pairs(conn, schema.forum_subscriptions, ("userid", "forum"), pairs)
        await _delete_pairs(conn, schema.forum_track_prefs, ("userid", "forumid"), pairs)
        await _delete_pairs(conn, schema.forum_read, ("userid", "forumid"), pairs)


async def _unassign_roles(gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int]) -> list[int]:
    """role_unassign_all() for the users, and the role assignments held in their user contexts (deleted by
    delete_content() at once in delete_user(); done here rather than left to the cleanup task because they grant
    capabilities). Returns the other users who lost a role, whose sessions must reload their capabilities."""
    assignments = gateway.schema.role_assignments
    contexts = [context.id for context in (await instance_contexts(gateway, conn, ContextLevel.USER, ids)).values()]
    holders = await gateway.fetch_in(conn, assignments, "contextid", contexts, ["userid"])
    await gateway.delete_in(conn, assignments, "userid", ids)
    await gateway.delete_in(conn, assignments, "contextid", contexts)
    return sorted({int(u) for u in holders["userid"]} - set(ids))


async def _delete_competencies(gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int]) -> None:
    """core_competency\\api::hook_user_deleted(); the user evidence files are user-context content."""
    s = gateway.schema
    competencies = await _select_ids(gateway, conn, s.competency_usercomp, "userid", ids)
    await gateway.delete_in(conn, s.competency_evidence, "usercompetencyid", competencies)
    for table in (s.competency_usercomp, s.competency_usercompcourse, s.competency_usercompplan):
        await gateway.delete_in(conn, table, "userid", ids)
    evidence = await _select_ids(gateway, conn, s.competency_userevidence, "userid", ids)
    await gateway.delete_in(conn, s.competency_userevidencecomp, "userevidenceid", evidence)
    await gateway.delete_in(conn, s.competency_userevidence, "id", evidence)
    plans = await _select_ids(gateway, conn, s.competency_plan, "userid", ids)
    await gateway.delete_in(conn, s.competency_plancomp, "planid", plans)
    await gateway.delete_in(conn, s.competency_plan, "id", plans)


async def _request_data_deletion(
    gateway: MoodleGateway, conn: AsyncConnection, ids: Sequence[int], now: int, actor_id: int
) -> None:
    """tool_dataprivacy's user_deleted observer: a delete request awaiting approval, unless the user already has one
    in progress or completed (`has_ongoing_request`, `get_data_requests_count` with statuses complete and deleted)."""
    requests = gateway.schema.tool_dataprivacy_request
    existing = await gateway.fetch_in(
        conn, requests, "userid", ids, ["userid", "status"], where=requests.c.type == REQUEST_TYPE_DELETE
    )
    covered = {int(u) for u, status in existing.iter_rows() if int(status) not in REQUEST_CLOSED_UNDONE}
    await gateway.insert_many(
        conn,
        requests,
        [
            {
                "type": REQUEST_TYPE_DELETE,
                "comments": REQUEST_COMMENT,
                "commentsformat": FORMAT_PLAIN,
                "userid": user_id,
                "requestedby": actor_id,
                "status": REQUEST_AWAITING_APPROVAL,
                "dpo": 0,
                "dpocomment": "",
                "dpocommentformat": FORMAT_PLAIN,
                "systemapproved": 0,
                "usermodified": actor_id,
                "timecreated": now,
                "timemodified": now,
                "creationmethod": REQUEST_CREATION_AUTO,
            }
            for user_id in ids
            if user_id not in covered
        ],
    )


# -- the batch ----------------------------------------------------------------------------------------------------


async def delete_users(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    users: pl.DataFrame,
    *,
    now: int,
    actor_id: int,
    session_timeout: int,
    event_log: EventLog | None = None,
) -> None:
    """Delete a batch of users as delete_user() does, in the caller's transaction.

    `users`: columns id, username, email (mnethostid may come along; delete_user() does not use it) of accounts that
    exist, are not deleted yet and may be deleted (see `protected_accounts`). `now` is the deletion time (timemodified,
    the username suffix, history and request times); `actor_id` who deletes (grade history loggeduser, request
    requestedby and usermodified). With `event_log`, the standard-log rows delete_user() writes, user after user in the
    batch's order, are recorded with the batch (deletion_events.py). Raises DirectDeletionUnsupported, before writing,
    on a site where only Moodle's code can do it (`DeletionSettings.problem`).
    """
    missing = [c for c in USER_COLUMNS if c not in users.columns]
    if missing:
        raise ValueError(f"delete_users needs the columns {', '.join(missing)}")
    users = users.select(
        pl.col("id").cast(pl.Int64), pl.col("username").cast(pl.String), pl.col("email").cast(pl.String)
    ).unique("id", keep="first", maintain_order=True)
    if users.is_empty():
        return
    ids: list[int] = users["id"].to_list()
    # The caller filters these out with a row message; a slip here would delete the admin or the guest account.
    protected = await protected_accounts(gateway, conn)
    if refused := [i for i in ids if i in protected]:
        raise ValueError(f"delete_users was given accounts that may not be deleted: {refused}")
    settings = await deletion_settings(gateway, conn)
    if settings.problem:
        raise DirectDeletionUnsupported(settings.problem)
    s = gateway.schema
    log = event_log if event_log is not None and event_log.active else None
    # What the events of enrolments, roles and the account carry, read before anything goes.
    memberships = (
        await deletion_events.membership_events(gateway, conn, ids, settings.enabled_enrol_plugins) if log else {}
    )
    accounts: Mapping[int, Event] = await deletion_events.deleted_events(gateway, conn, ids) if log else {}

    # The order of delete_user(): grades, tags, enrolments, roles, competencies, then the brute-force deletes.
    grades = await _delete_grades(gateway, conn, ids, now, actor_id, settings.grade_history)
    tags, unused_tags = await _delete_tags(gateway, conn, ids, settings.user_tags)
    await _unenrol_cascade(gateway, conn, ids, settings.enabled_enrol_plugins, now)
    lost_roles = await _unassign_roles(gateway, conn, ids)
    await _delete_competencies(gateway, conn, ids)
    await _delete_where(conn, s.event, "userid", ids, s.event.c.subscriptionid.is_not(None))
    for name in _BY_USERID:
        await gateway.delete_in(conn, getattr(s, name), "userid", ids)
    await _delete_where(conn, s.my_pages, "userid", ids, s.my_pages.c.private == 1)
    await end_sessions(gateway, conn, ids)

    names = await assign_deleted_usernames(gateway, conn, users, now, extended_chars=settings.extended_username_chars)
    user = s.user
    for part in chunks(ids):
        async with recording.updating(
            conn, user, user.c.id.in_(part), ["deleted", "idnumber", "picture", "timemodified"]
        ):
            await conn.execute(
                update(user).where(user.c.id.in_(part)).values(deleted=1, idnumber="", picture=0, timemodified=now)
            )
    await gateway.update_many(
        conn,
        user,
        "id",
        [
            # md5 of the original username: lets a restore check a candidate username (§5.3).
            {
                "id": user_id,
                "username": names[user_id],
                "email": hashlib.md5(username.encode(), usedforsecurity=False).hexdigest(),
            }
            for user_id, username in users.select("id", "username").iter_rows()
        ],
    )

    if settings.automatic_requests:
        await _request_data_deletion(gateway, conn, ids, now, actor_id)
    await mark_users_dirty(gateway, conn, [*ids, *lost_roles], now, session_timeout)
    if log:
        grade_events = await deletion_events.grade_events(gateway, conn, grades)
        tag_events = await deletion_events.tag_events(gateway, conn, tags, unused_tags)
        ended = {user: [event] for user, event in accounts.items()}
        await log.record(conn, deletion_events.in_order(ids, grade_events, tag_events, memberships, ended), now)
