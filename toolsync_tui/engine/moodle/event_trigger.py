"""Moodle's events for the changes toolsync wrote directly, triggered by Moodle itself through the bridge.

With `[events] trigger`, the standard log keeps a batch's events instead of writing their rows (event_log.py); once
the batch has committed, the bridge create()s each event with the same objectid, context, courseid, relateduserid
and other, and trigger()s it, acting as the same user: every plugin's observers run, and Moodle's log stores write
the rows themselves. An observer that fails does not stop the others (Moodle's event manager reports it and goes
on); an event Moodle refuses (its validate_data()) is reported with its reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.event_log import Event

_ITEM_PREFIX = re.compile(r"^triggering event \d+ failed: ")  # the bridge's words before Moodle's reason


@dataclass
class TriggerTally:
    """What became of the events handed to the bridge during a run."""

    triggered: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add_failures(self, reasons: Sequence[str]) -> None:
        self.failed += len(reasons)
        self.reasons.update(reasons)


def event_request(event: Event) -> dict[str, Any]:
    """An event as the bridge's trigger_events takes it."""
    return {
        "eventname": event.kind.eventname,
        "objectid": event.objectid,
        "contextid": event.contextid,
        "courseid": event.courseid,
        "relateduserid": event.relateduserid,
        "other": _plain(event.other),
    }


async def trigger_batch(bridge: MoodleBridge, actor: int, events: Sequence[Event], tally: TriggerTally) -> None:
    """Trigger a committed batch's events; what became of them goes to `tally` (a failed call too: no exception)."""
    if not events:
        return
    failure: str | None = None
    try:
        outcomes = await bridge.trigger_events(actor, [event_request(event) for event in events])
    except BridgeError as exc:
        # The events answered before the failure count as they went; the others were not triggered.
        outcomes, failure = exc.done, f"the bridge failed: {exc}"
    tally.triggered += sum(1 for error in outcomes.values() if error is None)
    tally.add_failures(
        [
            f"{events[item - 1].kind.eventname}: {_ITEM_PREFIX.sub('', error)}"
            for item, error in sorted(outcomes.items())
            if error is not None
        ]
    )
    if failure is not None:
        tally.add_failures([failure] * (len(events) - len(outcomes)))


def _plain(value: Any) -> Any:
    """`other` as JSON can carry it: mappings as dicts, sequences as lists."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
