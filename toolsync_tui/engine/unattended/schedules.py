"""When a scheduled operation is due: cron expressions read with croniter in the schedules' time zone.

`toolsync cron` is called every few minutes. An operation is due when a slot of its schedule has come since the last
slot it handled; however many slots were missed (the server was down), it runs once. Daylight-saving changes follow
what cron itself does: a slot in the hour that is skipped in spring runs right after the change, and a fixed-time
slot in the hour that is repeated in autumn runs once, not twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from toolsync_tui.engine.datadir.privacy import create_file

UTC = ZoneInfo("UTC")
GRACE = timedelta(minutes=1)  # a new schedule's slot of the minute it was first seen still counts


class ScheduleProblem(Exception):
    """A schedule or time zone that cannot be used, in the administrator's words."""


def check_expression(expression: str) -> str:
    """The expression if croniter reads it ("0 2 * * *", "@daily" ...), else ScheduleProblem."""
    from croniter import croniter  # on use: a configuration without schedules (and its run) never needs it

    if not croniter.is_valid(expression):
        raise ScheduleProblem(
            f"'{expression}' is not a cron expression: five fields (minute hour day month weekday, e.g. "
            "'30 2 * * *' for 02:30 every night) or @hourly, @daily, @weekly, @monthly"
        )
    return expression


def schedule_zone(setting: str) -> ZoneInfo:
    """The zone of the schedules: the setting, else the system's (TZ, then /etc/localtime), else UTC."""
    for name in (setting, os.environ.get("TZ", "").lstrip(":"), _system_zone_name()):
        if not name:
            continue
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            if name == setting:
                raise ScheduleProblem(f"cron.timezone: '{setting}' is not a time zone (e.g. 'Europe/Paris')") from None
    return ZoneInfo("UTC")


def _system_zone_name() -> str:
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():  # .../zoneinfo/Europe/Paris
        parts = localtime.resolve().parts
        if "zoneinfo" in parts:
            return "/".join(parts[parts.index("zoneinfo") + 1 :])
    timezone_file = Path("/etc/timezone")  # Debian's plain-text name
    return timezone_file.read_text().strip() if timezone_file.is_file() else ""


def next_runs(expression: str, now: datetime, count: int = 3) -> list[datetime]:
    """The schedule's next slots after `now` (an aware datetime), for the interface."""
    from croniter import croniter

    slots = croniter(check_expression(expression), now)
    return [slots.get_next(datetime) for _ in range(count)]


def latest_slot(expression: str, after: datetime, now: datetime) -> datetime | None:
    """The schedule's latest slot in (after, now] (aware datetimes of the schedule's zone), or None.

    Slots are wall-clock times: croniter walks them on naive local times (where it has no daylight-saving troubles),
    and each becomes an instant as cron does it: a time skipped in spring at the change, a time repeated in autumn
    once for a schedule with fixed hours and twice for one run every hour.
    """
    from croniter import croniter

    zone = now.tzinfo
    assert isinstance(zone, ZoneInfo), "schedules are read in a named time zone"
    every_hour = _hour_field(check_expression(expression)).startswith("*")
    wall_now = _wall(now)
    # A long gap (a server down for weeks) needs only its last slot: the walk covers the last two days.
    wall_start = max(_wall(after), wall_now - WALK) - timedelta(hours=1)
    # Compared in UTC: Python compares two times of one zone by their wall clocks, whatever the fold.
    first, last = after.astimezone(UTC), now.astimezone(UTC)
    latest = None
    slots = croniter(expression, wall_start)
    while (wall := slots.get_next(datetime)) <= wall_now + timedelta(hours=1):
        for instant in _instants(wall, zone, every_hour):
            if first < instant <= last and (latest is None or instant > latest):
                latest = instant
    if latest is None and first < last - WALK:
        wall = croniter(expression, wall_now - WALK).get_prev(datetime)
        latest = max(instant for instant in _instants(wall, zone, every_hour))
        latest = latest if latest > first else None
    return latest.astimezone(zone) if latest is not None else None


WALK = timedelta(days=2)
_PRESETS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0"}
_PRESETS |= {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _hour_field(expression: str) -> str:
    return _PRESETS.get(expression.strip(), expression).split()[1]


def _wall(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _instants(wall: datetime, zone: ZoneInfo, every_hour: bool) -> list[datetime]:
    """When a wall-clock slot happens (in UTC): once; in the autumn hour twice (only the first for fixed hours);
    in the spring gap at the end of the gap."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if _wall(first.astimezone(UTC).astimezone(zone)) != wall:  # does not exist: skipped by the spring change
        instant = second.astimezone(UTC)  # before the change; the change is less than a day later
        while _wall(instant.astimezone(zone)) < wall:
            instant += timedelta(minutes=1)
        return [instant]
    if first.utcoffset() != second.utcoffset():  # happens twice
        return [first.astimezone(UTC), second.astimezone(UTC)] if every_hour else [first.astimezone(UTC)]
    return [first.astimezone(UTC)]


@dataclass(frozen=True)
class Handled:
    expression: str
    slot: datetime  # the latest slot handled (aware)


class ScheduleState:
    """Per operation, the latest slot handled, kept in a JSON file of the data directory between cron calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handled: dict[str, Handled] = {}
        try:
            raw = json.loads(path.read_text())
            self._handled = {
                name: Handled(entry["expression"], datetime.fromisoformat(entry["slot"])) for name, entry in raw.items()
            }
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError):
            # A damaged state file: every schedule starts afresh from now rather than running everything at once.
            self._handled = {}

    def due(self, name: str, expression: str, now: datetime) -> datetime | None:
        """The slot to run now, or None. A schedule seen for the first time (or changed) starts from now: it is
        recorded so, and its first slot to come is due."""
        handled = self._handled.get(name)
        if handled is None or handled.expression != expression:
            handled = Handled(expression, (now.astimezone(UTC) - GRACE).astimezone(now.tzinfo))
            self._record(name, handled)
        return latest_slot(expression, handled.slot.astimezone(now.tzinfo), now)

    def handled(self, name: str, expression: str, slot: datetime) -> None:
        """The operation ran (or had nothing to run) for this slot."""
        self._record(name, Handled(expression, slot))

    def _record(self, name: str, handled: Handled) -> None:
        self._handled[name] = handled
        document = {n: {"expression": h.expression, "slot": h.slot.isoformat()} for n, h in self._handled.items()}
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with os.fdopen(create_file(temporary), "w") as out:  # the data directory's file mode from the start
            out.write(json.dumps(document, indent=1))
        temporary.replace(self.path)
