"""A cron expression in plain words ("nightly 02:00", "every 6 hours") and its next runs, for the schedules screen,
its editor and the command line alike: no Textual here."""

from __future__ import annotations

from datetime import datetime

from toolsync_tui.engine.unattended.schedules import ScheduleProblem, check_expression, next_runs

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].lower(): index for index, name in enumerate(DAYS)}
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0"}
_ALIASES |= {"@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def normalized(expression: str) -> str:
    """One space between fields: what is saved, and what presets are recognised by."""
    return " ".join(expression.split())


def expression_problem(expression: str) -> str | None:
    """What is wrong with a typed expression, in the administrator's words; None when cron can read it."""
    try:
        check_expression(normalized(expression))
    except ScheduleProblem as problem:
        return str(problem)
    return None


def reading(expression: str) -> str:
    """The common shapes in plain words ("nightly 02:00", "every 6 hours"); "" for the others."""
    fields = _ALIASES.get(expression.strip(), expression).split()
    if len(fields) != 5 or fields[3] != "*":  # five fields, every month
        return ""
    minute, hour, day, _, weekday = fields
    if (hour, day, weekday) == ("*", "*", "*"):
        return _minutes(minute)
    if not minute.isdigit():
        return ""
    if (day, weekday) == ("*", "*"):
        return _hours(hour, int(minute))
    if not hour.isdigit():
        return ""
    at = f"{int(hour):02d}:{int(minute):02d}"
    if day == "*":
        return _weekdays(weekday, at)
    return f"monthly, day {int(day)} at {at}" if weekday == "*" and day.isdigit() else ""


def _step(field: str) -> int | None:
    """N of "*/N", else None."""
    return int(field[2:]) if field.startswith("*/") and field[2:].isdigit() else None


def _minutes(minute: str) -> str:
    step = _step(minute)
    if minute == "*" or step == 1:
        return "every minute"
    if step is not None:
        return f"every {step} minutes"
    if minute.isdigit():
        return "hourly" if int(minute) == 0 else f"hourly at :{int(minute):02d}"
    return ""


def _hours(hour: str, minute: int) -> str:
    step = _step(hour)
    if step is not None:
        every = "every hour" if step == 1 else f"every {step} hours"
        return every if minute == 0 else f"{every} at :{minute:02d}"
    if hour.isdigit():
        # Imports run at night, when nobody works on the site: say so for those hours.
        word = "nightly" if int(hour) < 6 or int(hour) >= 22 else "daily"
        return f"{word} {int(hour):02d}:{minute:02d}"
    return ""


def _weekdays(weekday: str, at: str) -> str:
    if weekday in ("1-5", "mon-fri"):
        return f"weekdays {at}"
    day = int(weekday) % 7 if weekday.isdigit() and int(weekday) <= 7 else _DAY_NAMES.get(weekday.lower())
    return f"weekly, {DAYS[day]} {at}" if day is not None else ""


def moment(when: datetime) -> str:
    return f"{when:%a %d %b %H:%M}"


def upcoming(expression: str, now: datetime, count: int) -> list[datetime]:
    """The next slots, or [] for an expression no date matches (croniter accepts "31 February" but finds none)."""
    try:
        return next_runs(expression, now, count)
    except ValueError:
        return []


def described(expression: str, now: datetime | None, count: int) -> str:
    """A valid expression in words with its next `count` runs ("Weekdays 06:30. Next runs (Europe/Paris): Tue 06 Jan
    06:30, ..."); `now` is in the schedules' zone, None when cron.timezone is not a zone."""
    plain = reading(expression)
    said = f"{plain[:1].upper()}{plain[1:]}. " if plain else ""
    if now is None:
        return f"{said}Next runs unknown: cron.timezone is not a time zone."
    runs = upcoming(expression, now, count)
    if not runs:
        return f"{said}No date matches this expression: it would never run."
    return f"{said}Next runs ({now.tzinfo}): " + ", ".join(moment(run) for run in runs)
