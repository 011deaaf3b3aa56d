"""Moodle's standard log rows (mdl_logstore_standard_log) for the changes a run writes directly.

Moodle's APIs trigger an event per change, and the standard log store writes one row per event at the end of the
request (admin/tool/log/store/standard, tool_log's buffered_writer). toolsync writes the same rows, in bulk and in the
caller's transaction, as a CLI script run by the acting user would:

- `EventKind`: the fixed part of an event class (eventname, component, action, target from its class name; crud,
  edulevel, objecttable from its init()). The catalog is engine/moodle/events.py.
- `Event`: one occurrence, one log row: objectid, its context (id, level, instance), courseid (the course of a course
  or module context, else 0, as base::create() sets it), relateduserid (base::create() sets the user of a user context
  when the event names none: give it) and `other` (None, or a mapping encoded as PHP encodes an array; {} is '[]').
- `EventLog`: one per run. `await EventLog.load(gateway, conn, options)` reads the site's log settings and resolves the
  acting user once (options: anything with `acting_user: str` and `trigger: bool`, such as config's EventSettings;
  an unknown acting user raises ActingUserUnknown before any write). Then `await log.record(conn, events, now)` in
  the write's transaction: nothing in a dry run (never call it there), nothing when the site's standard log store is
  not enabled (config_plugins tool_log `enabled_stores`). With `trigger`, record() writes nothing and keeps the events
  for the bridge to trigger after commit: `take_pending()` returns and forgets them (call it after each batch, also
  after a rollback, so a rolled-back batch's events are dropped). `EventLog.disabled()` logs nothing (an operation
  run outside the pipeline). Every Operation has one as `self.event_log`: the run loads it once before prepare()
  (engine/run/pipeline.py); families call `await self.event_log.record(conn, events, now)` where they write, and may
  skip building events (and the reads they need) when `log.active` is false. `log.actor_id`: the acting user's id.
  A family that plans a batch while the one before is written may write the rows' statements then:
  `written = await log.written(conn, events, now)`, and `record(conn, events, now, written)` in the write. A write
  whose events come a part at a time, each after a statement that gives their ids, may gather them in
  `log.ahead(conn, now)` instead of collecting(): each part's statements are written while the write's next statement
  is at the server, not all after its last one; record() sends them.

The row: userid the acting user, anonymous 0, origin 'cli', ip NULL, realuserid NULL, timecreated `now`; `other`
json_encode()d (flags none: '/' escaped, non-ASCII as \\uXXXX, 'null' for no other) when logstore_standard's
`jsonformat` is on, else serialize()d ('N;'). `logguests` never applies: the store logs every CLI event.
`buffersize` only delays Moodle's inserts within a request.

# API READY
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, Self

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.column_rows import ColumnRows
from toolsync_tui.engine.moodle.gateway import MoodleGateway, WrittenInsert
from toolsync_tui.engine.moodle.tasks import retrieved

STANDARD_STORE = "logstore_standard"
ORIGIN = "cli"

# \core\event\base::LEVEL_*
LEVEL_OTHER = 0
LEVEL_TEACHING = 1
LEVEL_PARTICIPATING = 2


class ActingUserUnknown(Exception):
    """The configured acting user is not an account of the site: the run cannot log who made its changes."""


class EventOptions(Protocol):
    """What the run's settings say about events (config.EventSettings has these)."""

    @property
    def acting_user(self) -> str: ...

    @property
    def trigger(self) -> bool: ...


@dataclass(frozen=True)
class EventKind:
    """The fixed part of an event class, as its log rows show it."""

    eventname: str  # \core\event\user_created
    component: str
    action: str
    target: str
    crud: str  # c, r, u, d
    edulevel: int  # LEVEL_*
    objecttable: str | None

    @classmethod
    def of(cls, eventname: str, crud: str, edulevel: int, objecttable: str | None) -> EventKind:
        """From the class name as Moodle derives them: \\component\\event\\target_action (base::__construct)."""
        component, _, name = eventname.strip("\\").split("\\")
        target, _, action = name.rpartition("_")
        return cls(eventname, component, action, target, crud, edulevel, objecttable)


class Event(NamedTuple):
    """One occurrence of an event: one log row (a tuple: a batch makes thousands, each made in a third of the time a
    frozen dataclass takes)."""

    kind: EventKind
    objectid: int | None
    contextid: int
    contextlevel: int
    contextinstanceid: int
    courseid: int = 0  # the course of the context (a course or module context), 0 outside courses
    relateduserid: int | None = None  # base::create() sets it to the user of a user context when not given
    other: Mapping[str, Any] | None = None


KIND_COLUMNS = ("eventname", "component", "action", "target", "objecttable", "crud", "edulevel")  # EventKind's
# The columns of mdl_logstore_standard_log that EventLog.record() writes, in its order (its rows' keys).
LOG_COLUMNS = (
    "eventname",
    "component",
    "action",
    "target",
    "objecttable",
    "objectid",
    "crud",
    "edulevel",
    "contextid",
    "contextlevel",
    "contextinstanceid",
    "userid",
    "courseid",
    "relateduserid",
    "anonymous",
    "other",
    "timecreated",
    "origin",
    "ip",
    "realuserid",
)


@dataclass
class EventLog:
    """The standard log of one run (see the module docstring)."""

    enabled: bool = False  # the site's standard log store is enabled
    json_format: bool = True
    actor_id: int = 0
    trigger: bool = False
    gateway: MoodleGateway | None = None  # None: disabled()
    _pending: list[Event] = field(default_factory=list)

    @classmethod
    def disabled(cls) -> EventLog:
        return cls()

    @property
    def active(self) -> bool:
        """Whether record() does anything: callers may skip building events (and their reads) otherwise."""
        return self.trigger or (self.enabled and self.gateway is not None)

    @classmethod
    async def load(cls, gateway: MoodleGateway, conn: AsyncConnection, options: EventOptions) -> EventLog:
        plugins = gateway.schema.config_plugins
        rows = await conn.execute(
            select(plugins.c.plugin, plugins.c.name, plugins.c.value).where(
                ((plugins.c.plugin == "tool_log") & (plugins.c.name == "enabled_stores"))
                | ((plugins.c.plugin == STANDARD_STORE) & (plugins.c.name == "jsonformat"))
            )
        )
        values = {(plugin, name): value or "" for plugin, name, value in rows}
        stores = values.get(("tool_log", "enabled_stores"), "").split(",")
        # The store's get_config('jsonformat', false): absent means serialize().
        json_format = values.get((STANDARD_STORE, "jsonformat"), "0") not in ("", "0")
        actor = await acting_user_id(gateway, conn, options.acting_user)
        return cls(
            enabled=STANDARD_STORE in (store.strip() for store in stores),
            json_format=json_format,
            actor_id=actor,
            trigger=options.trigger,
            gateway=gateway,
        )

    async def written(self, conn: AsyncConnection, events: Sequence[Event], now: int) -> WrittenInsert | None:
        """The log rows of `events` as INSERT statements written now, for record() to send in a later transaction: a
        family writes them while it plans a batch (as the batch before is written). None when there is nothing to
        write ahead (no row to log, events kept for the bridge, or a database that takes no written statements)."""
        if not events or self.trigger or not self.enabled or self.gateway is None:
            return None
        table = self.gateway.schema.logstore_standard_log
        return await self.gateway.written_insert(conn, table, self._rows(events, now))

    def ahead(self, conn: AsyncConnection, now: int) -> list[Event] | None:
        """A list to gather a write's events in, as course_events.collecting() gives: on MariaDB with the standard log
        store, one that writes each part's log rows as it is added (EventsAhead), for record(conn, events, now)."""
        if self.trigger or not self.enabled or self.gateway is None or self.gateway.kind != "mariadb":
            return [] if self.active else None
        return EventsAhead(self, conn, now)

    async def record(
        self, conn: AsyncConnection, events: Sequence[Event], now: int, written: WrittenInsert | None = None
    ) -> None:
        """Log `events` in the caller's transaction (or keep them for the bridge, with trigger); `written`: their rows'
        statements, written ahead by written() for these events and `now`."""
        if not events:
            return
        if self.trigger:
            self._pending.extend(events)
            return
        if not self.enabled or self.gateway is None:
            return
        table = self.gateway.schema.logstore_standard_log
        if isinstance(events, EventsAhead):
            for part in await events.parts():
                await self.gateway.insert_written(conn, table, part)
        elif written is not None:
            await self.gateway.insert_written(conn, table, written)
        else:
            await self.gateway.insert_many(conn, table, self._rows(events, now))

    def _rows(self, events: Sequence[Event], now: int) -> ColumnRows:
        """The log rows of `events`, column by column: a batch's events are of a few kinds, by one user, at one time."""
        encode = php_json if self.json_format else php_serialize
        # Each `other` encoded once: most events have none, and a family shares one dict among rows whose `other` is
        # the same (one {"enrol": plugin} a plugin); an object's id stands for it while the events hold it.
        encoded: dict[int, str] = {id(None): encode(None)}
        kinds, objectids, contextids, levels, instances, courses, related, others = zip(*events, strict=True)
        first = kinds[0]
        if all(kind is first for kind in kinds):
            by_kind: dict[str, Any] = {name: getattr(first, name) for name in KIND_COLUMNS}
            kind_varying: dict[str, Sequence[Any]] = {}
        else:  # each kind's values read once
            distinct = {id(kind): kind for kind in kinds}
            fields = {key: [getattr(kind, name) for name in KIND_COLUMNS] for key, kind in distinct.items()}
            by_kind = {}
            kind_varying = dict(zip(KIND_COLUMNS, zip(*(fields[id(kind)] for kind in kinds), strict=True), strict=True))
        varying = {
            **kind_varying,
            "objectid": objectids,
            "contextid": contextids,
            "contextlevel": levels,
            "contextinstanceid": instances,
            "courseid": courses,
            "relateduserid": related,
            "other": [encoded.get(id(other)) or encoded.setdefault(id(other), encode(other)) for other in others],
        }
        shared = {
            **by_kind,
            "userid": self.actor_id,
            "anonymous": 0,
            "timecreated": now,
            "origin": ORIGIN,
            "ip": None,
            "realuserid": None,
        }
        return ColumnRows(LOG_COLUMNS, varying, shared, len(events))

    def take_pending(self) -> list[Event]:
        """With trigger: the events recorded since the last call, for the bridge to trigger; forgotten here."""
        pending, self._pending = self._pending, []
        return pending


class EventsAhead(list[Event]):
    """A write's events (EventLog.ahead()), each part added with += or extend() written as INSERT statements by a task
    of its own: the task runs while the write waits for its next statement, so that the log rows cost the write
    nothing but their sending."""

    def __init__(self, log: EventLog, conn: AsyncConnection, now: int) -> None:
        super().__init__()
        self._log, self._conn, self._now = log, conn, now
        self._parts: list[asyncio.Future[WrittenInsert | None]] = []
        self._taken = 0

    def __iadd__(self, events: Iterable[Event]) -> Self:  # type: ignore[override,misc]
        self.extend(events)
        return self

    def extend(self, events: Iterable[Event]) -> None:
        super().extend(events)
        self._take()

    def _take(self) -> None:
        part = self[self._taken :]
        if part:
            self._taken = len(self)
            # retrieved(): a write that fails before record() leaves it unawaited
            self._parts.append(retrieved(asyncio.ensure_future(self._log.written(self._conn, part, self._now))))

    async def parts(self) -> list[WrittenInsert]:
        """The statements of every part, in the order the events came."""
        self._take()
        written = [await part for part in self._parts]
        return [part for part in written if part is not None]


async def acting_user_id(gateway: MoodleGateway, conn: AsyncConnection, username: str) -> int:
    """The id of the account named `username` on this site; empty: the main administrator, as get_admin() finds it
    (the first id of $CFG->siteadmins whose account is not deleted), 0 when there is none."""
    config, user = gateway.schema.config, gateway.schema.user
    rows = await conn.execute(
        select(config.c.name, config.c.value).where(config.c.name.in_(("siteadmins", "mnet_localhost_id")))
    )
    values: dict[str, str] = {name: value or "" for name, value in rows}
    if not username.strip():
        ids = [int(part) for part in values.get("siteadmins", "").split(",") if part.strip().isdigit()]
        if not ids:
            return 0
        found = await conn.execute(select(user.c.id).where(user.c.id.in_(ids) & (user.c.deleted == 0)))
        alive = {int(row[0]) for row in found}
        return next((admin for admin in ids if admin in alive), 0)
    mnethost = values.get("mnet_localhost_id", "1")
    query = select(user.c.id, user.c.username).where(
        (user.c.username == username.strip())
        & (user.c.deleted == 0)
        & (user.c.mnethostid == (int(mnethost) if mnethost.isdigit() else 1))
    )
    for user_id, name in await conn.execute(query):
        if name == username.strip():  # exactly, as Moodle compares usernames (MariaDB's collation ignores case)
            return int(user_id)
    raise ActingUserUnknown(
        f"[events] acting_user: the site has no account named '{username.strip()}' (deleted accounts do not count); "
        "set an existing username, or leave it empty for the site's main administrator"
    )


# -- PHP's encodings of `other` ------------------------------------------------------------------------------------


def _php_key(key: Any) -> int | str:
    """A PHP array key: an int, or a string that is not a decimal integer (PHP turns "5" into 5)."""
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key
    text = str(key)
    if text == "0" or (text[:1] in "-123456789" and text.lstrip("-").isdigit() and not text.startswith("-0")):
        return int(text)
    return text


def _php_value(value: Any) -> Any:
    """The value as a PHP array would hold it: mappings with keys 0..n-1 in order become lists (json_encode writes
    them as JSON arrays, an empty array included)."""
    if isinstance(value, Mapping):
        items = [(_php_key(key), _php_value(item)) for key, item in value.items()]
        if [key for key, _ in items] == list(range(len(items))):
            return [item for _, item in items]
        return {key: item for key, item in items}
    if isinstance(value, list | tuple):
        return [_php_value(item) for item in value]
    return value


_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode
_PLAIN = frozenset({int, str, bool, type(None)})  # values json_encode writes as JSON does


def php_json(other: Mapping[str, Any] | None) -> str:
    """json_encode($other) with no flags: 'null' for none, '[]' for an empty array, '/' escaped, \\uXXXX, a whole
    float without its '.0' (no JSON_PRESERVE_ZERO_FRACTION)."""
    if type(other) is dict and _plain(other):
        return _ENCODE(other).replace("/", "\\/")
    return _ENCODE(_whole_floats(_php_value(other))).replace("/", "\\/")


def _plain(other: dict[Any, Any]) -> bool:
    """Most events' `other` (3 a new enrolment): not empty, names that cannot be PHP integer keys, values that JSON
    writes as PHP does: json.dumps as it is."""
    keys = all(type(k) is str and k[:1] not in "-0123456789" for k in other)
    return bool(other) and keys and all(type(v) in _PLAIN for v in other.values())


def _whole_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, list):
        return [_whole_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_floats(item) for key, item in value.items()}
    return value


def php_serialize(other: Mapping[str, Any] | None) -> str:
    """serialize($other): 'N;' for none."""
    return _serialize(_php_value(other))


def _serialize(value: Any) -> str:
    if value is None:
        return "N;"
    if isinstance(value, bool):
        return f"b:{int(value)};"
    if isinstance(value, int):
        return f"i:{value};"
    if isinstance(value, float):
        if math.isnan(value):
            return "d:NAN;"
        if math.isinf(value):
            return "d:INF;" if value > 0 else "d:-INF;"
        return f"d:{int(value)};" if value.is_integer() and abs(value) < 1e15 else f"d:{value!r};"
    if isinstance(value, str):
        return f's:{len(value.encode("utf-8"))}:"{value}";'
    items = enumerate(value) if isinstance(value, list) else value.items()
    body = "".join(_serialize(key) + _serialize(item) for key, item in items)
    count = len(value)
    return f"a:{count}:{{{body}}}"
