"""The users file leaves in Moodle's standard log the rows user_create_user() and user_update_user() leave (issue 19).

The expected rows are those a Moodle 4.5 site wrote through its own API from the command line (traced: user_create_user
with a password logs user_password_updated, then user_created; user_update_user logs user_updated, after
user_password_updated when the password changes; `other` {"forgottenreset":false} or the literal null).
"""

from __future__ import annotations

import time

import pytest

from tests.support.factories import unique
from tests.support.log_rows import log_mark, log_since, row, set_log_store
from tests.support.operation_files import header, report_of, run_file
from tests.support.tables import rows_of
from tests.support.user_factories import add_fields
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem

Site = tuple[Config, MoodleGateway]
PASSWORD = "Aa1!aaaaa"
ADMIN = 2
NAMES = header("username", "firstname", "lastname")
NAMES_PASSWORD = header("username", "firstname", "lastname", "password")


@pytest.fixture
async def site(dump_site: Site) -> Site:
    await set_log_store(dump_site[1], enabled=True, jsonformat=True)
    return dump_site


async def account(gateway: MoodleGateway, username: str) -> tuple[int, tuple[int, int, int]]:
    """The account's id and its user context (id, level, instance)."""
    [user] = await rows_of(gateway, gateway.schema.user, username=username)
    [context] = await rows_of(gateway, gateway.schema.context, contextlevel=30, instanceid=user["id"])
    return int(user["id"]), (int(context["id"]), 30, int(user["id"]))


def created(uid: int, context: tuple[int, int, int], userid: int = ADMIN) -> dict[str, object]:
    return row("core\\event\\user_created", "user", uid, "c", 0, context, relateduserid=uid, userid=userid)


def updated(uid: int, context: tuple[int, int, int]) -> dict[str, object]:
    return row("core\\event\\user_updated", "user", uid, "u", 0, context, relateduserid=uid)


def password(uid: int, context: tuple[int, int, int], other: str = '{"forgottenreset":false}') -> dict[str, object]:
    return row("core\\event\\user_password_updated", None, None, "u", 0, context, relateduserid=uid, other=other)


async def test_created_and_updated_accounts_are_logged_as_moodle_logs_them(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    with_password, without = unique("logpw"), unique("lognopw")
    content = (
        header("username", "firstname", "lastname", "email", "password")
        + f"{with_password};Ann;One;{with_password}@example.com;{PASSWORD}\n"
        + f"{without};Bob;Two;{without}@example.com;\n"
    )
    mark = await log_mark(gateway)
    before = int(time.time())

    result = await run_file(config, gateway, "users", content)

    assert result.counts == {"created": 2}, report_of(result)
    first, first_context = await account(gateway, with_password)
    second, second_context = await account(gateway, without)
    logged = await log_since(gateway, mark, with_time=True)
    assert all(before <= r.pop("timecreated") <= int(time.time()) for r in logged)
    assert logged == [password(first, first_context), created(first, first_context), created(second, second_context)]

    # Names, suspension and a new password: one user_updated each, the password's own row first.
    mark = await log_mark(gateway)
    changes = (
        header("username", "firstname", "lastname", "suspended", "password")
        + f"{with_password};Anna;Une;0;Bb2@bbbbb\n"
        + f"{without};Bobby;Deux;1;\n"
    )

    result = await run_file(config, gateway, "users", changes)

    assert result.counts == {"updated": 2}, report_of(result)
    assert await log_since(gateway, mark) == [
        password(first, first_context),
        updated(first, first_context),
        updated(second, second_context),
    ]

    # Nothing changed: nothing logged, and a dry run logs nothing either.
    mark = await log_mark(gateway)
    again = await run_file(config, gateway, "users", changes)
    dry = await run_file(
        config, gateway, "users", header("username", "firstname", "lastname") + f"{without};Robert;Deux\n", dry_run=True
    )
    assert again.counts == {"unchanged": 2}
    assert dry.counts == {"updated": 1}
    assert await log_since(gateway, mark) == []


async def test_suspending_and_reactivating_log_user_updated_as_user_update_user_does(site: Site) -> None:
    """The suspend file, as the users file's suspended column, suspends through user_update_user() in Moodle (traced:
    user_updated for each call, `other` null): one row per account it suspends, none for one already suspended or
    named twice; reactivating (suspended 0) logs one too."""
    config, gateway = site
    first, second, third = unique("logsusp"), unique("logsusp"), unique("logsusp")
    await run_file(
        config,
        gateway,
        "users",
        header("username", "firstname", "lastname", "suspended") + f"{first};A;B;0\n{second};A;B;0\n{third};A;B;1\n",
    )
    (uid1, context1), (uid2, context2) = await account(gateway, first), await account(gateway, second)
    suspend = header("username") + f"{first}\n{second}\n{third}\n{first}\n"
    mark = await log_mark(gateway)

    dry = await run_file(config, gateway, "suspendusers", suspend, dry_run=True)
    assert dry.counts == {"updated": 2, "unchanged": 2}, report_of(dry)
    assert await log_since(gateway, mark) == []

    result = await run_file(config, gateway, "suspendusers", suspend)

    assert result.counts == {"updated": 2, "unchanged": 2}, report_of(result)
    assert await log_since(gateway, mark) == [updated(uid1, context1), updated(uid2, context2)]

    mark = await log_mark(gateway)
    again = await run_file(config, gateway, "suspendusers", suspend)
    reactivated = await run_file(
        config, gateway, "users", header("username", "firstname", "lastname", "suspended") + f"{second};A;B;0\n"
    )
    assert again.counts == {"unchanged": 4}, report_of(again)
    assert reactivated.counts == {"updated": 1}, report_of(reactivated)
    assert await log_since(gateway, mark) == [updated(uid2, context2)]


async def test_a_changed_profile_field_alone_logs_one_user_updated(site: Site) -> None:
    """profile_save_data() logs nothing of its own: the account's update is the one row, as uploaduser leaves it."""
    config, gateway = site
    fields = await add_fields(gateway, {"text": {"datatype": "text", "param1": "30", "param2": "100"}})
    column = f"profile_field_{fields['text'].shortname}"
    name = unique("logprofile")
    await run_file(config, gateway, "users", header("username", "firstname", "lastname", column) + f"{name};A;B;one\n")
    uid, context = await account(gateway, name)
    mark = await log_mark(gateway)

    result = await run_file(
        config, gateway, "users", header("username", "firstname", "lastname", column) + f"{name};A;B;two\n"
    )

    assert result.counts == {"updated": 1}, report_of(result)
    assert await log_since(gateway, mark) == [updated(uid, context)]


async def test_nothing_is_logged_when_the_site_has_no_standard_log_store(site: Site) -> None:
    config, gateway = site
    await set_log_store(gateway, enabled=False)
    name = unique("lognolog")
    mark = await log_mark(gateway)
    try:
        result = await run_file(config, gateway, "users", NAMES + f"{name};A;B\n")
    finally:
        await set_log_store(gateway, enabled=True)

    assert result.counts == {"created": 1}, report_of(result)
    assert await log_since(gateway, mark) == []


async def test_the_serialized_format_when_json_is_off(site: Site) -> None:
    """logstore_standard's jsonformat off: `other` as PHP's serialize() writes it ('N;' for none)."""
    config, gateway = site
    await set_log_store(gateway, jsonformat=False)
    name = unique("logser")
    mark = await log_mark(gateway)
    try:
        await run_file(config, gateway, "users", NAMES_PASSWORD + f"{name};A;B;{PASSWORD}\n")
    finally:
        await set_log_store(gateway, jsonformat=True)

    uid, context = await account(gateway, name)
    assert await log_since(gateway, mark) == [
        password(uid, context, other='a:1:{s:14:"forgottenreset";b:0;}'),
        {**created(uid, context), "other": "N;"},
    ]


async def test_the_acting_user_is_a_setting_and_an_unknown_one_stops_the_run(site: Site) -> None:
    config, gateway = site
    actor = unique("logactor")
    await run_file(config, gateway, "users", NAMES + f"{actor};A;B\n")
    actor_id, _ = await account(gateway, actor)
    config.set("events.acting_user", actor)
    name = unique("logacted")
    mark = await log_mark(gateway)

    await run_file(config, gateway, "users", NAMES + f"{name};A;B\n")

    uid, context = await account(gateway, name)
    assert await log_since(gateway, mark) == [created(uid, context, userid=actor_id)]

    config.set("events.acting_user", "nobody-of-this-name")
    mark = await log_mark(gateway)
    with pytest.raises(
        RunProblem, match=r"\[events\] acting_user: the site has no account named 'nobody-of-this-name'"
    ):
        await run_file(config, gateway, "users", NAMES + f"{unique('lognever')};A;B\n")
    assert await log_since(gateway, mark) == []


async def test_the_sandbox_logs_as_the_fresh_site_it_copies(sandbox: Config) -> None:
    """The sandbox's seed enables the standard log store as a fresh Moodle site does: its runs log too."""
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    try:
        name = unique("logsandbox")
        await run_file(sandbox, gateway, "users", NAMES + f"{name};A;B\n")
        uid, context = await account(gateway, name)
        assert await log_since(gateway, 0) == [created(uid, context)]
    finally:
        await gateway.close()
