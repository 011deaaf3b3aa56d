"""The standard log rows of the users file's account writes, as user_create_user() and user_update_user() log them.

Traced on a Moodle 4.5 site (tests/moodle/test_user_log_events.py): a new account logs user_created; given a password
its auth plugin stores (manual, email, none, webservice: update_internal_user_password()), user_password_updated
first, with other {"forgottenreset": false}. A changed account (names, suspension, rename, profile fields, a revival)
logs user_updated, after user_password_updated when its password changed. Both in the user's context, related to the
user. Preferences, sessions ended and a picture (admin/tool/uploaduser/picture.php) log nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from toolsync_tui.engine.moodle.contexts import Context, ContextLevel
from toolsync_tui.engine.moodle.event_log import Event, EventKind
from toolsync_tui.engine.moodle.events import USER_CREATED, USER_PASSWORD_UPDATED, USER_UPDATED

# The auth plugins whose user_update_password() stores the password through update_internal_user_password().
INTERNAL_PASSWORD_AUTHS = frozenset({"manual", "email", "none", "webservice"})


def user_event(kind: EventKind, user_id: int, context_id: int) -> Event:
    other = {"forgottenreset": False} if kind is USER_PASSWORD_UPDATED else None
    objectid = None if kind is USER_PASSWORD_UPDATED else user_id
    return Event(kind, objectid, context_id, int(ContextLevel.USER), user_id, 0, user_id, other)


def account_events(changes: Iterable[tuple[int, int, bool, bool]], contexts: Mapping[int, Context]) -> list[Event]:
    """(line, user id, created, password set) per account written, in any order -> its events in line order;
    `contexts`: user id -> its user context."""
    events: list[Event] = []
    for _, user_id, created, password in sorted(changes):
        context = contexts.get(user_id)
        if context is None:
            continue  # no user context (a damaged account): Moodle's event could not be made either
        context_id = context.id
        if password:
            events.append(user_event(USER_PASSWORD_UPDATED, user_id, context_id))
        events.append(user_event(USER_CREATED if created else USER_UPDATED, user_id, context_id))
    return events
