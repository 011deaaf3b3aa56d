"""Compare what two Moodle databases hold, table by table, with ids translated to natural keys.

Used by the differential test (database A written by toolsync, database B by Moodle's own APIs through replay.php,
both from the same fresh site) and by the fault-injection tests (tests/faults: A killed and run again, B run once).
`changed_tables` finds the tables either side wrote (CHECKSUM TABLE against each side's baseline; on PostgreSQL an md5
of each table's rows); `compare` reads those tables on both sides (MariaDB through pymysql, PostgreSQL through
pg_sync: each URL says which), translates every id column to what it names (user id -> username, course id ->
shortname, context id -> level and instance, ...) and lists every difference: a row only on one side, or a column
whose values differ. Adding a table is one line in TABLES.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pymysql
from sqlalchemy.engine import make_url

from tests.support.pg_sync import PgConnection, is_postgresql

PREFIX = "mdl_"
NOW = "<now>"
DAY = 86400


# -- connections and checksums ----------------------------------------------------------------------------------


Connection: TypeAlias = "pymysql.connections.Connection[Any] | PgConnection"


def connect(url: str) -> Connection:
    """A blocking connection to the URL's database, autocommit: pymysql's for MariaDB, its look-alike for PostgreSQL
    (cursor(), execute with %s placeholders, fetchall, fetchone)."""
    if is_postgresql(url):
        return PgConnection(url)
    parsed = make_url(url)
    socket = parsed.query.get("unix_socket")
    return pymysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        unix_socket=socket if isinstance(socket, str) else None,
        charset="utf8mb4",
        autocommit=True,
    )


def checksums(url: str) -> dict[str, int]:
    """Table (without prefix) -> CHECKSUM TABLE value, for every table of the database."""
    if is_postgresql(url):
        return _pg_checksums(url)
    with connect(url) as db, db.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        tables = [str(name) for (name,) in cursor.fetchall() if str(name).startswith(PREFIX)]
        result = {}
        for chunk in range(0, len(tables), 100):
            names = ", ".join(f"`{t}`" for t in tables[chunk : chunk + 100])
            cursor.execute(f"CHECKSUM TABLE {names}")
            for name, value in cursor.fetchall():
                result[str(name).split(".", 1)[1][len(PREFIX) :]] = int(value or 0)
        return result


def _pg_checksums(url: str) -> dict[str, int]:
    """PostgreSQL has no CHECKSUM TABLE: an md5 of each table's rows as text, in a fixed order, in one statement."""
    with PgConnection(url) as db:
        tables = [
            str(row["tablename"])
            for row in db.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1",
                [PREFIX.replace("_", "\\_") + "%"],
            )
        ]
        parts = [
            f"SELECT '{t}' AS name, md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) AS sum "
            f'FROM "{t}" r'
            for t in tables
        ]
        rows = db.fetch(" UNION ALL ".join(parts)) if parts else []
    return {str(row["name"])[len(PREFIX) :]: int(str(row["sum"]), 16) for row in rows}


def sequences_behind(url: str, tables: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
    """PostgreSQL: the tables (all, or those given, without prefix) whose id sequence would hand out an id already
    taken, as table -> (the sequence's next value, the largest id). Rows inserted with explicit ids leave the sequence
    where it was unless it is moved (setval); Moodle's next insert into such a table then fails on the primary key."""
    with PgConnection(url) as db:
        # Moodle's BIGSERIAL sequences are <table>_id_seq (pg_sequences lists them fast; pg_depend, slowly).
        named = db.fetch(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() AND sequencename LIKE $1",
            [PREFIX.replace("_", "\\_") + "%\\_id\\_seq"],
        )
        owned = [str(r["sequencename"])[: -len("_id_seq")] for r in named]
        wanted = None if tables is None else {PREFIX + t for t in tables}
        parts = [
            f"SELECT '{t}' AS name, (SELECT last_value + is_called::int FROM \"{t}_id_seq\") AS next,"
            f' (SELECT max(id) FROM "{t}") AS top'
            for t in owned
            if wanted is None or t in wanted
        ]
        rows = db.fetch(" UNION ALL ".join(parts)) if parts else []
    return {
        str(r["name"])[len(PREFIX) :]: (int(r["next"]), int(r["top"]))
        for r in rows
        if r["top"] is not None and int(r["next"]) <= int(r["top"])
    }


def changed_tables(before: Mapping[str, int], after: Mapping[str, int]) -> set[str]:
    return {name for name, value in after.items() if before.get(name) != value}


# -- natural keys -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """How to compare one table: its natural key (column names, after translation), what its id columns name, the
    columns not compared, and a normaliser for values that carry a side's own randomness."""

    key: tuple[str, ...]
    refs: Mapping[str, str] = field(default_factory=dict)  # column -> kind (see Names)
    ignore: frozenset[str] = frozenset()
    normalise: Callable[[dict[str, Any], Names], dict[str, Any]] | None = None
    # The kind of the row's own id, when other rows name it in a column of the same kind (e.g. other.id of a log).
    kind: str | None = None


def _password(row: dict[str, Any], names: Names | None = None) -> dict[str, Any]:
    """A password hash compared by its algorithm (the salt and the rounds are the side's own); literal passwords
    ('', *NOPASS*, 'to be generated') as they are."""
    value = str(row.get("password") or "")
    if value.startswith("$"):
        row["password"] = "$" + value.split("$")[1] + "$ hash"
    return row


def _deleted_user(row: dict[str, Any], names: Names) -> dict[str, Any]:
    """delete_user() writes username = '<email>.<time>' and email = md5(that): the time is each side's own."""
    row = _password(row)
    if row.get("deleted") == 1:
        row["username"] = re.sub(r"\.\d+$", ".<time>", str(row["username"]))
        row["email"] = "<md5 of username>"
    return row


def _log(row: dict[str, Any], names: Names) -> dict[str, Any]:
    """The `other` of a log row decoded (JSON, as logstore_standard writes it with jsonformat on), its ids
    translated by their keys' names (OTHER_KEYS), and objectid by the row's objecttable."""
    other = row.get("other")
    if isinstance(other, str):
        with contextlib.suppress(ValueError):  # a store writing PHP's serialize() format: compared as text
            other = json.loads(other)
    row["other"] = names.other(other, str(row["eventname"]))
    row["objectid"] = names.name(LOG_OBJECTS.get(str(row.get("objecttable")), "raw"), row["objectid"], row)
    return row


def _backup_file(row: dict[str, Any], names: Names) -> dict[str, Any]:
    """A backup archive (.mbz, e.g. the recycle bin's copy of a deleted course) holds its side's times and ids: its
    content is not compared, its presence is."""
    if str(row.get("filename", "")).endswith(".mbz"):
        row["contenthash"] = row["filesize"] = "<backup>"
    return row


def _notification(row: dict[str, Any], names: Names) -> dict[str, Any]:
    """Ids in the notification's links (user/view.php?id=<user>&course=<course>)."""
    for column in ("contexturl", "fullmessage", "fullmessagehtml", "smallmessage", "customdata"):
        if isinstance(row.get(column), str):
            text = re.sub(
                r"([?&](?:amp;)?)id=(\d+)", lambda m: f"{m[1]}id={names.name('user', int(m[2]))}", row[column]
            )
            row[column] = re.sub(
                r"([?&](?:amp;)?)course=(\d+)", lambda m: f"{m[1]}course={names.name('course', int(m[2]))}", text
            )
    return row


# Table -> its declaration. The kinds named in refs are defined in Names.KINDS below.
TABLES: dict[str, Table] = {
    # user.picture is the id of the picture's f1 file (process_new_icon()): compared as the file it names.
    "user": Table(("username",), {"mnethostid": "mnet_host", "picture": "file"}, normalise=_deleted_user, kind="user"),
    "user_preferences": Table(("userid", "name"), {"userid": "user"}),
    "user_info_data": Table(("userid", "fieldid"), {"userid": "user", "fieldid": "user_info_field"}),
    "user_enrolments": Table(("enrolid", "userid"), {"enrolid": "enrol", "userid": "user", "modifierid": "user"}),
    "user_lastaccess": Table(("userid", "courseid"), {"userid": "user", "courseid": "course"}),
    "user_password_history": Table(("userid", "hash"), {"userid": "user"}),
    "course": Table(("shortname",), {"category": "category"}, kind="course"),
    "course_categories": Table(("path",), {"parent": "category", "path": "category_path"}, kind="category"),
    "course_sections": Table(("course", "section"), {"course": "course", "sequence": "cm_list"}, kind="section"),
    "course_modules": Table(
        ("course", "module", "instance"),
        {"course": "course", "module": "module", "section": "section", "instance": "cm_instance"},
        kind="course_module",
    ),
    "course_format_options": Table(
        ("courseid", "format", "sectionid", "name"), {"courseid": "course", "sectionid": "section"}
    ),
    "forum": Table(("course", "type", "name"), {"course": "course"}, kind="forum"),
    "context": Table(("contextlevel", "instanceid"), {"instanceid": "context_instance", "path": "context_path"}),
    "enrol": Table(
        ("courseid", "enrol", "customint1", "roleid"),
        {"courseid": "course", "roleid": "role", "customint1": "enrol_customint1", "customint2": "group"},
        kind="enrol",
    ),
    "role_assignments": Table(
        ("roleid", "contextid", "userid", "component", "itemid"),
        {"roleid": "role", "contextid": "context", "userid": "user", "modifierid": "user", "itemid": "enrol"},
        kind="role_assignment",
    ),
    "groups": Table(("courseid", "name"), {"courseid": "course"}, kind="group"),
    "groups_members": Table(("groupid", "userid"), {"groupid": "group", "userid": "user", "itemid": "enrol"}),
    "groupings": Table(("courseid", "name"), {"courseid": "course"}, kind="grouping"),
    "groupings_groups": Table(("groupingid", "groupid"), {"groupingid": "grouping", "groupid": "group"}),
    "cohort": Table(("name",), {"contextid": "context"}, kind="cohort"),
    "cohort_members": Table(("cohortid", "userid"), {"cohortid": "cohort", "userid": "user"}),
    "block_instances": Table(
        ("parentcontextid", "blockname", "pagetypepattern", "subpagepattern", "defaultregion"),
        {"parentcontextid": "context"},
        kind="block_instance",
    ),
    "grade_items": Table(
        ("courseid", "itemtype", "itemmodule", "iteminstance", "itemnumber"),
        {"courseid": "course", "categoryid": "grade_category", "iteminstance": "grade_iteminstance"},
    ),
    "grade_categories": Table(("courseid", "depth", "fullname"), {"courseid": "course", "parent": "grade_category"}),
    "grade_items_history": Table(
        ("courseid", "itemtype", "action"),
        {"courseid": "course", "categoryid": "grade_category", "loggeduser": "user"},
        ignore=frozenset({"oldid", "iteminstance"}),
    ),
    "grade_categories_history": Table(
        ("courseid", "depth", "action"),
        {"courseid": "course", "loggeduser": "user"},
        ignore=frozenset({"oldid", "path", "parent"}),
    ),
    "event": Table(("eventtype", "courseid", "userid", "name"), {"courseid": "course", "userid": "user"}),
    "logstore_standard_log": Table(
        ("eventname", "objecttable", "objectid", "contextid", "relateduserid"),
        {
            "objectid": "log_object",
            "contextid": "context",
            "contextinstanceid": "context_instance",
            "userid": "user",
            "relateduserid": "user",
            "realuserid": "user",
            "courseid": "course",
        },
        ignore=frozenset({"ip"}),
        normalise=_log,
    ),
    "cache_flags": Table(("flagtype", "name"), {"name": "cache_flag_name"}, ignore=frozenset({"value"})),
    "notifications": Table(
        ("useridto", "subject"),
        {"useridfrom": "user", "useridto": "user"},
        normalise=_notification,
        kind="notification",
    ),
    "message_popup_notifications": Table(("notificationid",), {"notificationid": "notification"}),
    "tool_dataprivacy_request": Table(
        ("userid", "type"), {"userid": "user", "requestedby": "user", "usermodified": "user", "dpo": "user"}
    ),
    "message_user_actions": Table(("userid", "action"), {"userid": "user"}),
    "task_adhoc": Table(("classname", "customdata"), {"userid": "user"}, ignore=frozenset({"nextruntime"})),
    "favourite": Table(("component", "itemtype", "itemid", "userid"), {"userid": "user", "contextid": "context"}),
    "files": Table(
        ("contextid", "component", "filearea", "itemid", "filepath", "filename"),
        {"contextid": "context", "userid": "user"},
        ignore=frozenset({"pathnamehash"}),
        normalise=_backup_file,
    ),
    # A backup's id is random, and its checksum covers it.
    "backup_controllers": Table(
        ("operation", "type", "itemid"),
        {"itemid": "course", "userid": "user"},
        ignore=frozenset({"backupid", "checksum"}),
    ),
    "tool_recyclebin_category": Table(("categoryid", "shortname"), {"categoryid": "category"}),
    "config": Table(("name",)),
    "config_plugins": Table(("plugin", "name")),
    "config_log": Table(("plugin", "name", "value"), {"userid": "user"}),
}
# Columns never compared: every table's own id, and values that are each side's own by nature.
ALWAYS_IGNORED = frozenset({"id"})

# The log's objecttable -> the kind of its objectid.
LOG_OBJECTS: dict[str, str] = {
    "user": "user",
    "course": "course",
    "course_categories": "category",
    "course_sections": "section",
    "course_modules": "course_module",
    "role": "role",
    "role_assignments": "role_assignment",
    "enrol": "enrol",
    "user_enrolments": "user_enrolment",
    "groups": "group",
    "groupings": "grouping",
    "cohort": "cohort",
    "forum": "forum",
    "grade_items": "grade_item",
    "notifications": "notification",
    "tool_dataprivacy_request": "raw",
}
# Keys of a log row's `other` (at any depth) -> the kind of their value; "id" and "itemid" depend on the event.
OTHER_KEYS: dict[str, str] = {
    "userid": "user",
    "relateduserid": "user",
    "modifierid": "user",
    "courseid": "course",
    "enrolid": "enrol",
    "roleid": "role",
    "groupid": "group",
    "groupingid": "grouping",
    "cohortid": "cohort",
    "contextid": "context",
    "categoryid": "category",
    "instanceid": "raw",
}
OTHER_ID: dict[str, str] = {
    "\\core\\event\\role_assigned": "role_assignment",
    "\\core\\event\\role_unassigned": "role_assignment",
}
GONE = "<gone>"


def _rows(db: Connection, table: str) -> list[dict[str, Any]]:
    if isinstance(db, PgConnection):
        return db.fetch(f'SELECT * FROM "{PREFIX}{table}" ORDER BY id')
    with db.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute(f"SELECT * FROM `{PREFIX}{table}` ORDER BY id")
        return [dict(row) for row in cursor.fetchall()]


class Names:
    """One side's ids -> what they name, for every kind of id the declared tables hold."""

    def __init__(self, db: Connection, now: tuple[int, int]) -> None:
        self.now = now
        read = {
            t: {int(r["id"]): r for r in _rows(db, t)}
            for t in (
                "user",
                "course",
                "course_categories",
                "context",
                "role",
                "modules",
                "course_modules",
                "course_sections",
                "forum",
                "enrol",
                "user_enrolments",
                "role_assignments",
                "groups",
                "groupings",
                "cohort",
                "user_info_field",
                "grade_categories",
                "grade_items",
                "notifications",
                "block_instances",
                "files",
            )
        }
        self.rows = read
        self.kinds: dict[str, Callable[[int, Mapping[str, Any] | None], Any]] = {
            "user": lambda i, _: self._user(i),
            "course": lambda i, _: self._of("course", i, lambda r: r["shortname"]),
            "category": lambda i, _: self._category(i),
            "category_path": lambda p, _: self._path(p, "category"),
            "context": lambda i, _: self._context(i),
            "context_path": lambda p, _: self._path(p, "context"),
            "context_instance": lambda i, row: self._instance(int((row or {}).get("contextlevel") or 0), i),
            "role": lambda i, _: self._of("role", i, lambda r: r["shortname"]),
            "module": lambda i, _: self._of("modules", i, lambda r: r["name"]),
            "section": lambda i, _: self._of(
                "course_sections", i, lambda r: f"{self.name('course', r['course'])}#{r['section']}"
            ),
            "course_module": lambda i, _: self._course_module(i),
            "cm_list": lambda s, _: [self._course_module(int(x)) for x in str(s or "").split(",") if x],
            "cm_instance": lambda i, row: self._module_instance(int((row or {}).get("module") or 0), i),
            "forum": lambda i, _: self._of(
                "forum", i, lambda r: f"{self.name('course', r['course'])}/{r['type']}/{r['name']}"
            ),
            "enrol": lambda i, _: self._enrol(i),
            "enrol_customint1": lambda v, row: self._customint1(v, row),
            "user_enrolment": lambda i, _: self._of(
                "user_enrolments", i, lambda r: f"{self.name('enrol', r['enrolid'])}/{self.name('user', r['userid'])}"
            ),
            "role_assignment": lambda i, _: self._of(
                "role_assignments",
                i,
                lambda r: (
                    f"{self.name('role', r['roleid'])}@{self.name('context', r['contextid'])}"
                    f"/{self.name('user', r['userid'])}/{r['component']}"
                ),
            ),
            "group": lambda i, _: self._of("groups", i, lambda r: f"{self.name('course', r['courseid'])}/{r['name']}"),
            "grouping": lambda i, _: self._of(
                "groupings", i, lambda r: f"{self.name('course', r['courseid'])}/{r['name']}"
            ),
            "cohort": lambda i, _: self._of("cohort", i, lambda r: r["name"]),
            "user_info_field": lambda i, _: self._of("user_info_field", i, lambda r: r["shortname"]),
            "grade_category": lambda i, _: self._of(
                "grade_categories", i, lambda r: f"{self.name('course', r['courseid'])}/{r['depth']}/{r['fullname']}"
            ),
            "grade_item": lambda i, _: self._of(
                "grade_items", i, lambda r: f"{self.name('course', r['courseid'])}/{r['itemtype']}/{r['itemmodule']}"
            ),
            "grade_iteminstance": lambda i, row: self._grade_instance(i, row),
            "notification": lambda i, _: self._of(
                "notifications", i, lambda r: f"{self.name('user', r['useridto'])}/{r['subject']}"
            ),
            "cache_flag_name": lambda v, row: self._flag(v, row),
            "file": lambda i, _: self._of(
                "files",
                i,
                lambda r: (
                    f"{self._context(int(r['contextid']))}/{r['component']}/{r['filearea']}/{r['itemid']}"
                    f"{r['filepath']}{r['filename']}"
                ),
            ),
            "mnet_host": lambda i, _: i,
            "raw": lambda v, _: v,
        }

    def name(self, kind: str, value: Any, row: Mapping[str, Any] | None = None) -> Any:
        if value is None:
            return None
        if kind in ("category_path", "context_path", "cm_list", "cache_flag_name", "raw"):
            return self.kinds[kind](value, row)
        try:
            number = int(value)
        except (TypeError, ValueError):
            return value
        if number == 0 and kind not in ("category",):
            return 0
        return self.kinds[kind](number, row)

    def _of(self, table: str, i: int, label: Callable[[dict[str, Any]], Any]) -> Any:
        row = self.rows[table].get(i)
        return f"{GONE} {table}" if row is None else label(row)

    def _user(self, i: int) -> Any:
        def label(r: dict[str, Any]) -> str:
            return f"deleted:{r['firstname']} {r['lastname']}" if r["deleted"] else str(r["username"])

        return self._of("user", i, label)

    def _category(self, i: int) -> str:
        if i == 0:
            return ""
        row = self.rows["course_categories"].get(i)
        if row is None:
            return f"{GONE} category"
        return "/".join(self._category_name(int(c)) for c in str(row["path"]).strip("/").split("/"))

    def _category_name(self, i: int) -> str:
        row = self.rows["course_categories"].get(i)
        return str(row["name"]) if row else GONE

    def _path(self, path: Any, kind: str) -> str:
        parts = [p for p in str(path or "").split("/") if p]
        if kind == "category":
            return "/" + "/".join(self._category_name(int(p)) for p in parts)
        return "/" + "/".join(str(self._context(int(p))) for p in parts)

    def _context(self, i: int) -> str:
        row = self.rows["context"].get(i)
        if row is None:
            return f"{GONE} context"
        return f"{row['contextlevel']}:{self._instance(int(row['contextlevel']), int(row['instanceid']))}"

    def _instance(self, level: int, i: int) -> Any:
        """The instance of a context of that level: system, user, category, course, module, block."""
        if level == 10:
            return "system"
        if level == 30:
            return self._user(i)
        if level == 40:
            return self._category(i)
        if level == 50:
            return self.name("course", i)
        if level == 70:
            return self._course_module(i)
        if level == 80:
            return self._block(i)
        return i

    def _block(self, i: int) -> Any:
        return self._of("block_instances", i, lambda r: f"{r['blockname']}@{self._context(int(r['parentcontextid']))}")

    def _course_module(self, i: int) -> Any:
        def label(r: dict[str, Any]) -> str:
            module = self.name("module", r["module"])
            return (
                f"{self.name('course', r['course'])}/{module}/{self._module_instance(int(r['module']), r['instance'])}"
            )

        return self._of("course_modules", i, label)

    def _module_instance(self, module: int, i: Any) -> Any:
        name = self.name("module", module)
        return self.name("forum", i) if name == "forum" else i

    def _enrol(self, i: int) -> Any:
        def label(r: dict[str, Any]) -> str:
            role = self.name("role", r["roleid"]) if r["enrol"] == "cohort" else ""
            target = self._customint1(r["customint1"], r)
            return f"{self.name('course', r['courseid'])}/{r['enrol']}/{target}/{role}".rstrip("/")

        return self._of("enrol", i, label)

    def _customint1(self, value: Any, row: Mapping[str, Any] | None) -> Any:
        enrol = (row or {}).get("enrol")
        if enrol == "cohort":
            return self.name("cohort", value)
        if enrol == "meta":
            return self.name("course", value)
        return value

    def _grade_instance(self, i: int, row: Mapping[str, Any] | None) -> Any:
        row = row or {}
        if row.get("itemtype") == "course":
            return self.name("grade_category", i)
        if row.get("itemtype") == "mod" and row.get("itemmodule") == "forum":
            return self.name("forum", i)
        return i

    def _flag(self, value: Any, row: Mapping[str, Any] | None) -> Any:
        flagtype = str((row or {}).get("flagtype"))
        if flagtype in ("userpreferenceschanged", "accesslib/dirtyusers"):
            return self.name("user", value)
        if flagtype == "accesslib/dirtycontexts":
            return self._path(value, "context")
        return value

    def time(self, value: Any) -> Any:
        """A time of the run ("now" on either side, or a day after it: expiries) as NOW; any other value as it is.
        Explicit times (enrolment starts, course dates) are far from the run and compared as they are."""
        if isinstance(value, str) and value.isdigit() and len(value) == 10:
            value = int(value)
        if isinstance(value, int) and self.now[0] <= value <= self.now[1] + DAY:
            return NOW
        return value

    def other(self, value: Any, event: str, key: str = "") -> Any:
        """A log row's `other`, its ids translated by key name."""
        if isinstance(value, dict):
            return {k: self.other(v, event, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.other(v, event, key) for v in value]
        if key == "id" and event in OTHER_ID:
            return self.name(OTHER_ID[event], value)
        if key == "id":
            return "<id>"  # the id of the row the event is about: objectid names it already
        if key == "backupid":
            return "<random>"  # a backup's id is random (course deletion's recycle bin backup, on both sides)
        if key == "itemid" and str(value).isdigit() and int(value):
            return self.name("enrol", int(value))
        if key in OTHER_KEYS:
            return self.name(OTHER_KEYS[key], value)
        return self.time(value)


# -- the comparison ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One difference: a column's values (a_value from toolsync's database A, b_value from Moodle's B), or a whole
    row on one side only (column is None; the row's values in a_value or b_value)."""

    table: str
    key: str
    column: str | None
    a_value: Any
    b_value: Any

    @property
    def only(self) -> str:
        if self.column is not None:
            return ""
        return "A" if self.b_value is None else "B"


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return hashlib.sha1(value).hexdigest()[:12]
    if value.__class__.__name__ == "Decimal":
        return str(value)
    return value


def translated(db: Connection, table: str, names: Names) -> dict[str, list[dict[str, Any]]]:
    """A table's rows grouped by their natural key (several rows where the key repeats, in id order), ids
    translated."""
    spec = TABLES[table]
    result: dict[str, list[dict[str, Any]]] = {}
    for raw in _rows(db, table):
        row = {column: _value(value) for column, value in raw.items()}
        if spec.normalise is not None:
            row = spec.normalise(row, names)
        for column, kind in spec.refs.items():
            if column in row and not (table == "logstore_standard_log" and column == "objectid"):
                row[column] = names.name(kind, row[column], raw)
        for column, value in row.items():
            if column not in spec.refs:
                row[column] = names.time(value)
        key = json.dumps([row.get(c) for c in spec.key], default=str, ensure_ascii=False)
        result.setdefault(key, []).append({c: v for c, v in row.items() if c not in ALWAYS_IGNORED | spec.ignore})
    return result


def _canonical(row: Mapping[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)


def _pairs(
    rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]
) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """The rows of one natural key on both sides, paired: equal rows first (whatever their order), then the rest in
    id order; a row left over has None for partner."""
    left_b = list(rows_b)
    unmatched_a = []
    for row in rows_a:
        twin = next((i for i, other in enumerate(left_b) if _canonical(other) == _canonical(row)), None)
        if twin is None:
            unmatched_a.append(row)
        else:
            left_b.pop(twin)
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    for index in range(max(len(unmatched_a), len(left_b))):
        pairs.append(
            (
                unmatched_a[index] if index < len(unmatched_a) else None,
                left_b[index] if index < len(left_b) else None,
            )
        )
    return pairs


def compare(url_a: str, url_b: str, tables: Iterable[str], now: tuple[int, int]) -> tuple[list[Difference], list[str]]:
    """Every difference in the given tables, and the tables that have no declaration in TABLES."""
    undeclared = sorted(t for t in tables if t not in TABLES)
    differences: list[Difference] = []
    with connect(url_a) as db_a, connect(url_b) as db_b:
        names_a, names_b = Names(db_a, now), Names(db_b, now)
        for table in sorted(t for t in tables if t in TABLES):
            rows_a, rows_b = translated(db_a, table, names_a), translated(db_b, table, names_b)
            for key in sorted(rows_a.keys() | rows_b.keys()):
                for a, b in _pairs(rows_a.get(key, []), rows_b.get(key, [])):
                    if a is None or b is None:
                        differences.append(Difference(table, key, None, a, b))
                        continue
                    for column in sorted(a.keys() | b.keys()):
                        if a.get(column) != b.get(column):
                            differences.append(Difference(table, key, column, a.get(column), b.get(column)))
    return differences, undeclared


def _short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def render(differences: Iterable[Difference], width: int = 70) -> str:
    """A readable table: table, natural key, column, toolsync (A) value, Moodle (B) value; rows on one side only
    with their values."""
    lines = []
    for d in differences:
        if d.column is None:
            values = d.a_value if d.b_value is None else d.b_value
            shown = {k: v for k, v in (values or {}).items() if v not in (None, "", 0)}
            lines.append(f"{d.table} {d.key}: only in {'A (toolsync)' if d.only == 'A' else 'B (Moodle)'}")
            lines.append(f"    {_short(shown, 400)}")
        else:
            a, b = _short(d.a_value, width), _short(d.b_value, width)
            lines.append(f"{d.table} {d.key} .{d.column}: toolsync {a} | moodle {b}")
    return "\n".join(lines)
