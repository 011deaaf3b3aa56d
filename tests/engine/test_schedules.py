"""When a schedule is due: first sight, slots as they come, missed slots run once, daylight-saving changes as cron
handles them, the state kept between calls, and bad expressions or zones refused in words."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from toolsync_tui.engine.unattended.schedules import ScheduleProblem, ScheduleState, next_runs, schedule_zone

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def calls(state: ScheduleState, expression: str, start: datetime, end: datetime, every: int = 5) -> list[datetime]:
    """The slots run by a cron calling every `every` minutes from start to end (in real time), each one handled."""
    ran = []
    moment = start
    while moment <= end:
        slot = state.due("users", expression, moment)
        if slot is not None:
            ran.append(slot)
            state.handled("users", expression, slot)
        moment = (moment.astimezone(ZoneInfo("UTC")) + timedelta(minutes=every)).astimezone(start.tzinfo)
    return ran


def test_a_new_schedule_waits_for_its_next_slot(tmp_path: Path) -> None:
    state = ScheduleState(tmp_path / "state.json")
    assert state.due("users", "0 2 * * *", at("2026-11-24 15:00")) is None  # last night's slot is not "missed"
    assert state.due("users", "0 2 * * *", at("2026-11-25 01:55")) is None
    assert state.due("users", "0 2 * * *", at("2026-11-25 02:00")) == at("2026-11-25 02:00")


def test_a_slot_of_the_minute_the_schedule_is_first_seen_counts(tmp_path: Path) -> None:
    state = ScheduleState(tmp_path / "state.json")
    assert state.due("users", "0 2 * * *", at("2026-11-25 02:00:30")) == at("2026-11-25 02:00")


def test_each_slot_runs_once_at_the_first_call_after_it(tmp_path: Path) -> None:
    state = ScheduleState(tmp_path / "state.json")
    ran = calls(state, "*/15 * * * *", at("2026-11-25 09:58"), at("2026-11-25 11:04"))
    assert ran == [at(f"2026-11-25 {t}") for t in ("10:00", "10:15", "10:30", "10:45", "11:00")]


def test_missed_slots_run_once_not_once_each(tmp_path: Path) -> None:
    state = ScheduleState(tmp_path / "state.json")
    assert state.due("users", "0 * * * *", at("2026-11-25 08:30")) is None
    state.handled("users", "0 * * * *", at("2026-11-25 08:00"))
    # The server was down from 08:30 to 13:10: five hourly slots missed, one run.
    slot = state.due("users", "0 * * * *", at("2026-11-25 13:10"))
    assert slot == at("2026-11-25 13:00")
    assert slot is not None
    state.handled("users", "0 * * * *", slot)
    assert state.due("users", "0 * * * *", at("2026-11-25 13:15")) is None


def test_the_state_outlives_the_call_and_a_changed_schedule_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = ScheduleState(path)
    state.due("users", "0 * * * *", at("2026-11-25 07:30"))
    state.handled("users", "0 * * * *", at("2026-11-25 08:00"))
    again = ScheduleState(path)
    assert again.due("users", "0 * * * *", at("2026-11-25 08:20")) is None
    assert again.due("users", "0 * * * *", at("2026-11-25 09:01")) == at("2026-11-25 09:00")
    # A new expression: its past slots are not owed.
    assert again.due("users", "30 * * * *", at("2026-11-25 09:45")) is None
    assert again.due("users", "30 * * * *", at("2026-11-25 10:31")) == at("2026-11-25 10:30")


def test_a_damaged_state_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    state = ScheduleState(path)
    assert state.due("users", "0 * * * *", at("2026-11-25 09:30")) is None
    assert state.due("users", "0 * * * *", at("2026-11-25 10:00")) == at("2026-11-25 10:00")


def test_spring_forward_a_skipped_slot_runs_right_after_the_change(tmp_path: Path) -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    state = ScheduleState(tmp_path / "state.json")
    ran = calls(state, "30 2 * * *", at("2026-03-28 23:00"), at("2026-03-30 03:00"))
    assert [slot.strftime("%m-%d %H:%M %Z") for slot in ran] == ["03-29 03:00 CEST", "03-30 02:30 CEST"]


def test_fall_back_a_fixed_time_slot_runs_once(tmp_path: Path) -> None:
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    state = ScheduleState(tmp_path / "state.json")
    ran = calls(state, "30 2 * * *", at("2026-10-24 23:00"), at("2026-10-26 03:00"))
    assert [slot.strftime("%m-%d %H:%M %Z") for slot in ran] == ["10-25 02:30 CEST", "10-26 02:30 CET"]


def test_fall_back_an_every_half_hour_schedule_runs_in_both_hours(tmp_path: Path) -> None:
    state = ScheduleState(tmp_path / "state.json")
    ran = calls(state, "*/30 * * * *", at("2026-10-25 01:40"), at("2026-10-25 03:05"))
    assert [slot.strftime("%H:%M %Z") for slot in ran] == [
        "02:00 CEST",
        "02:30 CEST",
        "02:00 CET",
        "02:30 CET",
        "03:00 CET",
    ]


def test_presets_and_next_runs(tmp_path: Path) -> None:
    assert next_runs("@daily", at("2026-11-25 10:00"), 2) == [at("2026-11-26 00:00"), at("2026-11-27 00:00")]
    assert next_runs("0 */6 * * *", at("2026-11-25 10:00"), 2) == [at("2026-11-25 12:00"), at("2026-11-25 18:00")]


@pytest.mark.parametrize("expression", ["61 * * * *", "every night", "* * *"])
def test_bad_expressions_are_refused_in_words(tmp_path: Path, expression: str) -> None:
    with pytest.raises(ScheduleProblem, match="is not a cron expression: five fields"):
        ScheduleState(tmp_path / "state.json").due("users", expression, at("2026-11-25 10:00"))


def test_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    assert schedule_zone("Europe/Paris") == PARIS
    with pytest.raises(ScheduleProblem, match=r"cron\.timezone: 'Mars/Olympus' is not a time zone"):
        schedule_zone("Mars/Olympus")
    monkeypatch.setenv("TZ", "America/Chicago")
    assert schedule_zone("") == ZoneInfo("America/Chicago")
