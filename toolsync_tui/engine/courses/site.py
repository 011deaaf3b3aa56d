"""What a site's settings put into a new course (moodle-db-semantics §3): the course defaults (`moodlecourse`), the
installed course formats and themes, and the enrolment methods `create_course()` adds by default.

Read once per run.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.site_settings import site_timezone
from toolsync_tui.engine.moodle.sortorder import max_courses_in_category

# Formats of a 4.5 install, with the options they store per course (name -> default, None: from moodlecourse).
FORMAT_OPTIONS: Final[dict[str, dict[str, str | None]]] = {
    "topics": {"hiddensections": None, "coursedisplay": None},
    "weeks": {"hiddensections": None, "coursedisplay": None, "automaticenddate": "1"},
    "social": {"numdiscussions": "10"},
    "singleactivity": {"activitytype": None},
}
# generate_password(20) for sites that require an enrolment key.
PASSWORD_CHARS: Final = string.ascii_letters + string.digits
PASSWORD_LENGTH: Final = 20
SECTIONED_FORMATS: Final = frozenset({"topics", "weeks"})  # the others keep section 0 only
# The defaults of a fresh site, for a setting the site lacks.
COURSE_DEFAULTS: Final = {
    "format": "topics",
    "newsitems": "5",
    "showgrades": "1",
    "showreports": "0",
    "maxbytes": "0",
    "groupmode": "0",
    "groupmodeforce": "0",
    "visible": "1",
    "lang": "",
    "enablecompletion": "1",
    "showactivitydates": "1",
    "showcompletionconditions": "1",
    "hiddensections": "1",
    "coursedisplay": "0",
    "numsections": "4",
    "courseduration": "31536000",
    "courseenddateenabled": "1",
}
# add_default_instance() of each core plugin: instance column -> the plugin setting it comes from.
DEFAULT_INSTANCES: Final[dict[str, dict[str, str]]] = {
    "manual": {
        "status": "status",
        "roleid": "roleid",
        "enrolperiod": "enrolperiod",
        "expirynotify": "expirynotify",
        "expirythreshold": "expirythreshold",
        "customint1": "sendcoursewelcomemessage",
    },
    "guest": {"status": "status"},
    "self": {
        "status": "status",
        "roleid": "roleid",
        "enrolperiod": "enrolperiod",
        "expirynotify": "expirynotify",
        "expirythreshold": "expirythreshold",
        "customint1": "groupkey",
        "customint2": "longtimenosee",
        "customint3": "maxenrolled",
        "customint4": "sendcoursewelcomemessage",
        "customint6": "newenrols",
    },
}


@dataclass(frozen=True)
class CourseSite:
    defaults: dict[str, str]  # moodlecourse settings
    formats: frozenset[str]  # installed and enabled
    themes: frozenset[str]
    instance_fields: dict[str, dict[str, Any]]  # enabled core plugin -> the fields of add_default_instance()
    default_plugins: tuple[str, ...]  # the plugins create_course() adds an instance of, in enabled order
    format_settings: dict[str, dict[str, str]]  # format -> its own plugin settings (singleactivity's activitytype)
    completion: bool  # $CFG->enablecompletion
    timezone: str
    default_category: int
    session_timeout: int
    max_in_category: int
    unknown_default_plugins: tuple[str, ...]  # enabled plugins with defaultenrol whose instance is not written here

    def default(self, name: str) -> str:
        return self.defaults.get(name, COURSE_DEFAULTS.get(name, ""))

    def format_options(self, format_name: str, coursedisplay: int | None = None) -> dict[str, str]:
        """The options update_course_format_options() stores for a new course of this format."""
        options = {}
        for name, fixed in FORMAT_OPTIONS.get(format_name, {}).items():
            if fixed is not None:
                options[name] = fixed
            elif name == "activitytype":
                options[name] = self.format_settings.get(format_name, {}).get(name, "forum")
            else:
                options[name] = self.default(name)
        if coursedisplay is not None and "coursedisplay" in options:
            options["coursedisplay"] = str(coursedisplay)
        return options


async def read_course_site(gateway: MoodleGateway, conn: AsyncConnection) -> CourseSite:
    plugins = gateway.schema.config_plugins
    settings: dict[str, dict[str, str]] = {}
    for plugin, name, value in await conn.execute(select(plugins.c.plugin, plugins.c.name, plugins.c.value)):
        settings.setdefault(str(plugin), {})[str(name)] = "" if value is None else str(value)
    config = await gateway.config_values(
        ["enablecompletion", "defaultrequestcategory", "sessiontimeout", "enrol_plugins_enabled"]
    )

    def installed(kind: str) -> frozenset[str]:
        prefix = f"{kind}_"
        return frozenset(
            plugin[len(prefix) :]
            for plugin, values in settings.items()
            if plugin.startswith(prefix) and "version" in values and values.get("disabled", "0") != "1"
        )

    enabled = [p.strip() for p in config.get("enrol_plugins_enabled", "").split(",") if p.strip()]
    with_default = [p for p in enabled if settings.get(f"enrol_{p}", {}).get("defaultenrol") == "1"]
    category = config.get("defaultrequestcategory", "")
    timeout = config.get("sessiontimeout", "")
    return CourseSite(
        defaults=settings.get("moodlecourse", {}),
        formats=installed("format") or frozenset(FORMAT_OPTIONS),
        themes=installed("theme"),
        instance_fields={
            plugin: _instance_fields(plugin, settings.get(f"enrol_{plugin}", {}))
            for plugin in enabled
            if plugin in DEFAULT_INSTANCES
        },
        default_plugins=tuple(p for p in with_default if p in DEFAULT_INSTANCES),
        format_settings={f: settings.get(f"format_{f}", {}) for f in FORMAT_OPTIONS},
        completion=config.get("enablecompletion", "1") == "1",
        timezone=await site_timezone(gateway),
        default_category=int(category) if category.isdigit() else 0,
        session_timeout=int(timeout) if timeout.isdigit() else 28800,
        max_in_category=await max_courses_in_category(gateway),
        unknown_default_plugins=tuple(p for p in with_default if p not in DEFAULT_INSTANCES),
    )


def _instance_fields(plugin: str, settings: dict[str, str]) -> dict[str, Any]:
    def number(name: str) -> int:
        value = settings.get(name, "")
        return int(value) if value.lstrip("-").isdigit() else 0

    fields: dict[str, Any] = {column: number(name) for column, name in DEFAULT_INSTANCES[plugin].items()}
    if "expirynotify" in fields:
        # The form's "2" means: notify the enroller and the enrolled users.
        fields["notifyall"] = 1 if fields["expirynotify"] == 2 else 0
        fields["expirynotify"] = min(fields["expirynotify"], 1) if plugin == "self" else fields["expirynotify"]
    if plugin == "self":
        fields["customint5"] = 0
    if plugin == "guest":
        fields["password"] = ""  # enrol_guest's add_instance() writes '' rather than NULL
    if plugin in ("guest", "self") and settings.get("requirepassword") == "1":
        fields["password"] = "".join(secrets.choice(PASSWORD_CHARS) for _ in range(PASSWORD_LENGTH))
    return fields
