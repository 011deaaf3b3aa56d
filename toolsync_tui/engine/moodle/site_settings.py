"""The site settings runs read once: the timezone dates are read in; who the local mnet host and the admins are, the
accounts toolsync never deletes or suspends, and the defaults Moodle gives a new account (moodle-db-semantics §4.1)."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.staleness import DEFAULT_SESSION_TIMEOUT

SETTINGS = (
    "mnet_localhost_id",
    "siteadmins",
    "allowaccountssameemail",
    "defaultcity",
    "country",
    "lang",
    "calendartype",
    "sessiontimeout",
    "extendedusernamechars",
    "auth",
    "defaultpreference_maildisplay",
    "defaultpreference_mailformat",
    "defaultpreference_maildigest",
    "defaultpreference_autosubscribe",
    "defaultpreference_trackforums",
)


def _ids(value: str | None) -> frozenset[int]:
    """The ids of a comma-separated setting ($CFG->siteadmins)."""
    return frozenset(int(part) for part in (value or "").split(",") if part.strip().isdigit())


def _int(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.strip().lstrip("-").isdigit() else default


@dataclass(frozen=True)
class UserSite:
    config: Mapping[str, str]  # the raw values of SETTINGS
    mnethostid: int
    admins: frozenset[int]
    allow_same_email: bool
    session_timeout: int

    @classmethod
    async def read(cls, gateway: MoodleGateway) -> UserSite:
        config = await gateway.config_values(SETTINGS)
        return cls(
            config=config,
            mnethostid=_int(config.get("mnet_localhost_id"), 1),
            admins=_ids(config.get("siteadmins")),
            allow_same_email=config.get("allowaccountssameemail") not in (None, "", "0"),
            session_timeout=_int(config.get("sessiontimeout"), DEFAULT_SESSION_TIMEOUT),
        )

    @property
    def actor_id(self) -> int:
        """Who the writes are made by (modifierid, usermodified): the first site administrator, as a CLI run."""
        return min(self.admins) if self.admins else 0

    async def active_accounts(self, gateway: MoodleGateway, conn: AsyncConnection) -> int:
        """Accounts of this site not deleted: what deletions and suspensions draw from (the safety threshold's base)."""
        user = gateway.schema.user
        query = select(func.count()).where((user.c.deleted == 0) & (user.c.mnethostid == self.mnethostid))
        return int((await conn.execute(query)).scalar_one())

    def new_user_defaults(self, now: int) -> dict[str, Any]:
        """Columns of a new mdl_user row before the file's values, as user_create_user() and its callers fill them."""
        country = self.config.get("country") or ""
        return {
            "auth": "manual",
            "confirmed": 1,
            "policyagreed": 0,
            "deleted": 0,
            "suspended": 0,
            "mnethostid": self.mnethostid,
            "password": "",
            "idnumber": "",
            "email": "",
            "phone1": "",
            "phone2": "",
            "institution": "",
            "department": "",
            "address": "",
            "city": self.config.get("defaultcity") or "",
            "country": "" if country == "0" else country,
            "lang": self.config.get("lang") or "en",
            "calendartype": self.config.get("calendartype") or "gregorian",
            "theme": "",
            "timezone": "99",
            "firstaccess": 0,
            "lastaccess": 0,
            "lastlogin": 0,
            "currentlogin": 0,
            "lastip": "",
            "secret": "",
            "picture": 0,
            "description": None,
            "descriptionformat": 1,
            "mailformat": _int(self.config.get("defaultpreference_mailformat"), 1),
            "maildigest": _int(self.config.get("defaultpreference_maildigest"), 0),
            "maildisplay": _int(self.config.get("defaultpreference_maildisplay"), 2),
            "autosubscribe": _int(self.config.get("defaultpreference_autosubscribe"), 1),
            "trackforums": _int(self.config.get("defaultpreference_trackforums"), 0),
            "timecreated": now,
            "timemodified": now,
            "trustbitmask": 0,
        }


async def protected_accounts(gateway: MoodleGateway, conn: AsyncConnection) -> dict[int, str]:
    """User id -> why toolsync never deletes or suspends the account: the site administrators ($CFG->siteadmins) and
    the guest account ($CFG->siteguest, and any account named 'guest', which delete_user() refuses too).

    delete_user() itself only protects administrators with manual authentication; the admin pages and the upload tool
    refuse every administrator, and so does this. Read in the caller's connection (a second one would wait on
    SQLite's write lock during a batch).
    """
    config, user = gateway.schema.config, gateway.schema.user
    rows = await conn.execute(
        select(config.c.name, config.c.value).where(config.c.name.in_(("siteadmins", "siteguest")))
    )
    values: dict[str, str] = {name: value for name, value in rows}
    reasons: dict[int, str] = {}
    named = await conn.execute(select(user.c.id, user.c.username).where(user.c.username == "guest"))
    for user_id, username in named:
        if username == "guest":  # PHP compares exactly; MariaDB's collation would also match 'GUEST'
            reasons[int(user_id)] = "it is named 'guest', the guest account's name"
    for guest in _ids(values.get("siteguest")):
        reasons[guest] = "it is the guest account"
    for admin in _ids(values.get("siteadmins")):
        reasons[admin] = "it is a site administrator"
    return reasons


async def site_timezone(gateway: MoodleGateway) -> str:
    """The timezone dates are read in: forcetimezone, else the site's timezone, else PHP's default (UTC).

    Moodle reads them in the timezone of the user running the upload, an admin usually left on the site default.
    """
    values = await gateway.config_values(["forcetimezone", "timezone"])
    for name in ("forcetimezone", "timezone"):
        zone = values.get(name, "").strip()
        if zone not in ("", "99"):
            try:
                zoneinfo.ZoneInfo(zone)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                continue
            return zone
    return "UTC"
