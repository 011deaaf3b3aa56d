"""What Moodle's APIs do beyond the rows, done once a batch has committed: the welcome messages of the enrolments it
made or changed (`[events] welcome_messages`) and, with `[events] trigger`, Moodle's events for its changes, both
through the bridge, one PHP call each per batch. What became of them goes to the report's notes; a failure of the
bridge is reported there (the batch's rows stay written), never raised.

The pipeline calls `settle(committed)` right after a batch's commit or rollback, before any other write can start
(the operation's welcome queue and pending events then hold that batch's alone), and `flush()` when it may call PHP.
A dry run counts the messages it would send with `count_dry(conn)`, in the batch's own transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.config import EventSettings
from toolsync_tui.engine.connect import BridgeLink
from toolsync_tui.engine.moodle.bridge.client import BridgeError, Welcome, welcomes
from toolsync_tui.engine.moodle.event_log import Event
from toolsync_tui.engine.moodle.event_trigger import TriggerTally, trigger_batch
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.welcome_messages import WelcomeBatch, WelcomeOptions, sendable
from toolsync_tui.engine.run.operation import Operation, SetupProblem

REASONS_KEPT = 3  # distinct failure reasons quoted in a note
UNCONFIGURED = "no Moodle bridge is configured ([bridge] moodle_dir)"
WELCOME_OFF = "[events] welcome_messages = false"


@dataclass
class _Settled:
    """A committed batch's work still to do."""

    welcome: WelcomeBatch
    events: list[Event]


@dataclass
class WelcomeTally:
    """The run's welcome messages."""

    sent: int = 0
    no_sender: int = 0  # the course had no contact to send it from: Moodle sends nothing either
    unsent: int = 0  # would have been sent, but not by this run (setting off, no bridge, bridge failure)
    would: int = 0  # a dry run's
    reasons: Counter[str] = field(default_factory=Counter)  # why messages were not sent (failures, no bridge ...)

    def not_sent(self, count: int, reason: str) -> None:
        if count:
            self.unsent += count
            self.reasons[reason] += count


class AfterCommit:
    def __init__(self, settings: EventSettings, link: BridgeLink, operation: Operation, gateway: MoodleGateway) -> None:
        self.settings = settings
        self.link = link
        self.operation = operation
        self.gateway = gateway
        self.waiting: list[_Settled] = []
        self.welcomes = WelcomeTally()
        self.events = TriggerTally()
        self.dry_contacts: set[int] = set()  # courses a dry run's earlier batches would have given a contact
        self.options = WelcomeOptions()  # the instances' welcome options, read once a run

    def check(self) -> None:
        """`[events] trigger` needs a working bridge: without one, the run stops before any write (SetupProblem)."""
        if not self.settings.trigger or self.operation.read_only:
            return
        if self.link.problem is not None:
            raise SetupProblem(
                f"[events] trigger = true needs the Moodle bridge, which does not work: {self.link.problem}; "
                "nothing was written"
            )
        if self.link.bridge is None:
            raise SetupProblem(
                "[events] trigger = true has the Moodle bridge trigger Moodle's events after each batch, and "
                f"{UNCONFIGURED}: set it, or set [events] trigger = false (toolsync then writes the log rows itself); "
                "nothing was written"
            )

    def settle(self, committed: bool) -> None:
        """A batch has committed (its work waits for flush()) or rolled back (its work is dropped)."""
        welcome = self.operation.welcome.take()
        events = self.operation.event_log.take_pending()
        if committed and (welcome.enrolments or events):
            self.waiting.append(_Settled(welcome, events))

    async def count_dry(self, conn: AsyncConnection) -> None:
        """A dry-run batch, in its transaction: the messages its enrolments would have."""
        welcome = self.operation.welcome.take()
        self.welcomes.would += await sendable(self.gateway, conn, welcome, self.options, self.dry_contacts)

    async def flush(self) -> None:
        """Send and trigger what the committed batches left, in their order."""
        waiting, self.waiting = self.waiting, []
        for settled in waiting:
            if settled.events and self.link.bridge is not None:
                await trigger_batch(self.link.bridge, self.operation.event_log.actor_id, settled.events, self.events)
            if settled.welcome.enrolments:
                await self._welcome(settled.welcome)

    async def _welcome(self, batch: WelcomeBatch) -> None:
        bridge = self.link.bridge
        if not self.settings.welcome_messages or bridge is None:
            try:
                async with self.gateway.reading() as conn:
                    count = await sendable(self.gateway, conn, batch, self.options)
            except SQLAlchemyError:  # only the count is lost: the report then counts the enrolments
                count = len(batch.enrolments)
            why = self.link.problem or UNCONFIGURED if self.settings.welcome_messages else WELCOME_OFF
            self.welcomes.not_sent(count, why)
            return
        try:
            results = await bridge.welcome_messages(batch.enrolments, batch.roles)
        except BridgeError as exc:
            results = _answered(exc, len(batch.enrolments))
        for result in results:
            if result.sent:
                self.welcomes.sent += 1
            elif result.why == "no sender":
                self.welcomes.no_sender += 1
            elif result.why != "off":
                self.welcomes.not_sent(1, str(result.why))

    def notes(self, dry_run: bool) -> list[str]:
        """The report's lines on welcome messages and events (none when there was nothing to say)."""
        notes = [welcome_note(self.welcomes, dry_run, self.settings.welcome_messages, self.link)]
        notes.append(trigger_note(self.events))
        return [note for note in notes if note]


def _answered(exc: BridgeError, count: int) -> list[Welcome]:
    """The messages of a call that failed: those answered before the failure as they went, the others failed."""
    answered = welcomes(exc.items, count)
    failure = f"the bridge failed: {exc}"
    return [Welcome(False, failure) if w.why == "the bridge gave no outcome for this message" else w for w in answered]


def _reasons(reasons: Counter[str]) -> str:
    return "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(REASONS_KEPT))


def welcome_note(tally: WelcomeTally, dry_run: bool, enabled: bool, link: BridgeLink) -> str | None:
    """How many course welcome messages were (or would have been) sent, and why others were not."""
    if dry_run:
        if not tally.would:
            return None
        if not enabled or link.bridge is None:
            why = link.problem or UNCONFIGURED if enabled else WELCOME_OFF
            return f"welcome messages: none would be sent ({why}); Moodle's enrol_user() would send {tally.would}"
        return f"welcome messages: {tally.would} would be sent through the bridge, as Moodle's enrol_user() sends them"
    parts = []
    if tally.sent:
        parts.append(f"{tally.sent} sent through the bridge, as Moodle's enrol_user() sends them")
    if tally.no_sender:
        parts.append(f"{tally.no_sender} not sent: the course had no contact to send them from (Moodle sends none)")
    if tally.unsent:
        parts.append(f"{tally.unsent} not sent, that Moodle's enrol_user() would have sent: {_reasons(tally.reasons)}")
    return "welcome messages: " + "; ".join(parts) if parts else None


def trigger_note(tally: TriggerTally) -> str | None:
    """How many of Moodle's events the bridge triggered, and why others were not."""
    if not (tally.triggered or tally.failed):
        return None
    text = f"Moodle's events: {tally.triggered} triggered through the bridge (observers ran; Moodle logged them)"
    if tally.failed:
        text += f"; {tally.failed} not triggered (their changes are written, not logged): {_reasons(tally.reasons)}"
    return text
