"""After a run: the Moodle caches that direct writes leave stale, purged through the bridge (contract §4).

The database-level signals (dirty users, ended sessions) are written with each batch; what remains is in Moodle's
cache stores (moodle-db-semantics §6.6, §7, §11): the enrolment event's session caches, course contacts, and the
group caches that never expire. Only Moodle's own PHP can reach them, so without a bridge the report says so.
"""

from __future__ import annotations

from .bridge import BridgeError, MoodleBridge
from .enrolment import EnrolmentEffects


async def purge_after_run(bridge: MoodleBridge | None, effects: EnrolmentEffects) -> list[str]:
    """Purge what `effects` made stale; the report's note on it (none when nothing went stale)."""
    enrolments = bool(effects.dirty_users or effects.contact_courses)
    if not (enrolments or effects.group_courses or effects.group_users):
        return []
    what = "enrolment and group caches" if enrolments else "group caches"
    if bridge is None:
        return [
            f"{what} were not purged: no Moodle bridge is configured ([bridge] moodle_dir). Logged-in users see "
            "enrolment changes at once (dirty flags); course listings, groups and memberships may lag until Moodle's "
            "caches are purged (php admin/cli/purge_caches.php)."
        ]
    try:
        await bridge.purge(
            events=["changesincategoryenrolment"] if enrolments else [],
            groupdata_courses=sorted(effects.group_courses),
            user_group_groupings_users=sorted(effects.group_users),
            coursecontacts_courses=sorted(effects.contact_courses),
        )
    except BridgeError as exc:
        return [f"{what} were not purged: {exc}"]
    return [f"Moodle's {what} were purged through the bridge"]
