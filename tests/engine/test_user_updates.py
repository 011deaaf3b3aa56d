"""Updates of existing accounts through the users file (issue 19): every column user_update_user() would write is
compared and written, and a password set through the file leaves the `auth_manual_passwordupdatetime` preference
that Moodle's password update leaves (auth_plugin_manual::user_update_password())."""

from __future__ import annotations

import time

from tests.support.accounts import add_user, user_by_id
from tests.support.factories import unique
from tests.support.operation_files import header, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.users.columns import HANDLED_APART, RETIRED_FIELDS, USER_COLUMNS, USERS_FILE

Site = tuple[Config, MoodleGateway]
UPDATED = "auth_manual_passwordupdatetime"


async def preferences(gateway: MoodleGateway, user_id: int) -> list[tuple[str, str]]:
    rows = await rows_of(gateway, gateway.schema.user_preferences, userid=user_id)
    return sorted((r["name"], r["value"]) for r in rows)


def test_every_column_of_the_users_file_is_compared_and_written_or_handled_apart() -> None:
    """No column of the file falls between the chairs (as firstname and lastname did): each is either written to the
    mdl_user column of its name (on create, and on update where it differs), or handled apart, or retired."""
    columns = {*USERS_FILE.required, *USERS_FILE.optional}
    groups = [set(USER_COLUMNS), set(HANDLED_APART), set(RETIRED_FIELDS)]
    assert set().union(*groups) == columns
    assert sum(len(g) for g in groups) == len(columns)  # each column in one group only
    assert {"firstname", "lastname", "username", "suspended", "auth"} <= set(USER_COLUMNS)


async def test_new_first_and_last_names_are_written_as_user_update_user_does(site: Site) -> None:
    config, gateway = site
    name = unique("names")
    user_id = await add_user(
        gateway, username=name, idnumber=f"I{name}", firstname="Jane", lastname="Doe", timemodified=5
    )
    content = header("username", "firstname", "lastname", "idnumber") + f"{name};Janet;Smith;I{name}\n"

    dry = await run_file(config, gateway, "users", content, dry_run=True)

    assert dry.counts == {"updated": 1}, report_of(dry)
    assert f"updated (update) User account would be changed: '{name}' (id {user_id}): firstname, lastname" in report_of(
        dry
    )
    row = await user_by_id(gateway, user_id)
    assert (row["firstname"], row["lastname"], row["timemodified"]) == ("Jane", "Doe", 5)

    result = await run_file(config, gateway, "users", content)

    assert result.counts == {"updated": 1}, report_of(result)
    assert f"updated (update) User account changed: '{name}' (id {user_id}): firstname, lastname" in report_of(result)
    row = await user_by_id(gateway, user_id)
    assert (row["firstname"], row["lastname"]) == ("Janet", "Smith")
    assert row["timemodified"] > 5

    only_last = await run_file(
        config, gateway, "users", header("username", "firstname", "lastname") + f"{name};Janet;Smyth\n"
    )
    again = await run_file(
        config, gateway, "users", header("username", "firstname", "lastname") + f"{name};Janet;Smyth\n"
    )

    assert f"(id {user_id}): lastname" in report_of(only_last)
    assert (await user_by_id(gateway, user_id))["lastname"] == "Smyth"
    assert again.counts == {"unchanged": 1}, report_of(again)


async def test_every_column_user_update_user_writes_is_changed_in_one_update(site: Site) -> None:
    config, gateway = site
    config.set("operations.users.protect_emails", False)
    config.set("run.safety_min_rows", 100)
    name = unique("every")
    stored = {
        "firstname": "Jane",
        "lastname": "Doe",
        "idnumber": f"I{name}",
        "email": f"{name}@old.example",
        "auth": "manual",
        "institution": "Old U",
        "department": "Biology",
        "city": "Paris",
        "country": "FR",
        "lang": "en",
        "timezone": "99",
        "phone1": "1",
        "phone2": "2",
        "address": "Old street",
        "description": "old",
        "mailformat": 1,
        "maildisplay": 2,
        "maildigest": 0,
        "autosubscribe": 1,
        "trackforums": 0,
        "emailstop": 0,
        "firstnamephonetic": "Jayn",
        "lastnamephonetic": "Dough",
        "middlename": "Q",
        "alternatename": "JD",
        "suspended": 0,
    }
    user_id = await add_user(gateway, username=name, timemodified=5, **stored)
    new = {
        "firstname": "Janet",
        "lastname": "Smith",
        "idnumber": f"J{name}",
        "email": f"{name}@new.example",
        "auth": "nologin",
        "institution": "New U",
        "department": "Chemistry",
        "city": "Lyon",
        "country": "DE",
        "lang": "fr",
        "timezone": "Europe/Paris",
        "phone1": "11",
        "phone2": "22",
        "address": "New street",
        "description": "new",
        "mailformat": "0",
        "maildisplay": "1",
        "maildigest": "2",
        "autosubscribe": "0",
        "trackforums": "1",
        "emailstop": "1",
        "firstnamephonetic": "Jannet",
        "lastnamephonetic": "Smyth",
        "middlename": "R",
        "alternatename": "JS",
        "suspended": "1",
    }
    config.set("operations.users.primary_identity", "username")
    content = header("username", *new) + ";".join([name, *new.values()]) + "\n"

    dry = await run_file(config, gateway, "users", content, dry_run=True)
    result = await run_file(config, gateway, "users", content)

    expected = [c for c in USER_COLUMNS if c in new]
    assert expected == list(new)  # the report names the columns in the order of USER_COLUMNS
    assert dry.counts == {"updated": 1}, report_of(dry)
    assert f"User account would be changed: '{name}' (id {user_id}): {', '.join(expected)}" in report_of(dry)
    assert result.counts == {"updated": 1}, report_of(result)
    assert f"updated (suspend) User account changed: '{name}' (id {user_id}): {', '.join(expected)}" in report_of(
        result
    )
    row = await user_by_id(gateway, user_id)
    assert {key: str(row[key]) for key in new} == new
    assert row["timemodified"] > 5


async def test_a_password_set_on_a_new_manual_account_sets_its_password_update_time(site: Site) -> None:
    config, gateway = site
    config.set("operations.users.create_passwords", True)
    manual, email, nopass, generated = (unique("pwnew") for _ in range(4))
    content = header("username", "firstname", "lastname", "auth", "password")
    content += f"{manual};F;L;;Secret-1!\n{email};F;L;email;Secret-2!\n{nopass};F;L;;*NOPASS*\n{generated};F;L;;\n"

    before = int(time.time())
    dry = await run_file(config, gateway, "users", content, dry_run=True)
    result = await run_file(config, gateway, "users", content)
    after = int(time.time())

    assert dry.counts == {"created": 4}, report_of(dry)
    assert result.counts == {"created": 4}, report_of(result)
    users = {
        r["username"]: r
        for r in await rows_of(gateway, gateway.schema.user, username=[manual, email, nopass, generated])
    }
    prefs = await preferences(gateway, users[manual]["id"])
    assert [n for n, _ in prefs] == [UPDATED]
    assert before <= int(prefs[0][1]) <= after
    # Only auth manual keeps the time (auth_email's user_update_password() sets no preference); *NOPASS* and a
    # password still to be generated are no password set.
    assert await preferences(gateway, users[email]["id"]) == []
    assert await preferences(gateway, users[nopass]["id"]) == []
    assert [n for n, _ in await preferences(gateway, users[generated]["id"])] == [
        "auth_forcepasswordchange",
        "create_password",
    ]
    flags = await rows_of(
        gateway, gateway.schema.cache_flags, flagtype="userpreferenceschanged", name=str(users[manual]["id"])
    )
    assert [(f["value"], f["timemodified"] >= before) for f in flags] == [("1", True)]

    again = await run_file(config, gateway, "users", content)

    assert again.counts == {"unchanged": 4}, report_of(again)
    assert await preferences(gateway, users[manual]["id"]) == prefs  # the same password: not set again


async def test_a_changed_password_updates_the_password_update_time_in_place(site: Site) -> None:
    config, gateway = site
    had, fresh, other = unique("pwupd"), unique("pwupd"), unique("pwupd")
    had_id = await add_user(gateway, username=had, idnumber=f"I{had}")
    fresh_id = await add_user(gateway, username=fresh, idnumber=f"I{fresh}")
    other_id = await add_user(gateway, username=other, idnumber=f"I{other}", auth="email")
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.user_preferences,
            [{"userid": had_id, "name": UPDATED, "value": "1"}, {"userid": had_id, "name": "other", "value": "x"}],
        )
    content = header("username", "firstname", "lastname", "idnumber", "password")
    content += f"{had};F;L;I{had};New-Secret-1\n{fresh};F;L;I{fresh};New-Secret-2\n{other};F;L;I{other};New-3\n"

    dry = await run_file(config, gateway, "users", content, dry_run=True)

    assert dry.counts == {"updated": 3}, report_of(dry)
    assert await preferences(gateway, had_id) == [(UPDATED, "1"), ("other", "x")]
    assert await preferences(gateway, fresh_id) == []

    before = int(time.time())
    result = await run_file(config, gateway, "users", content)
    after = int(time.time())

    assert result.counts == {"updated": 3}, report_of(result)
    assert f"(id {had_id}): password" in report_of(result)
    for user_id in (had_id, fresh_id):
        rows = await rows_of(gateway, gateway.schema.user_preferences, userid=user_id, name=UPDATED)
        assert len(rows) == 1  # updated in place, never a second row
        assert before <= int(rows[0]["value"]) <= after
    assert (await preferences(gateway, had_id))[1] == ("other", "x")
    assert await preferences(gateway, other_id) == []  # auth email: no password update time
    assert (await user_by_id(gateway, other_id))["password"].startswith("$6$rounds=")

    again = await run_file(config, gateway, "users", content)

    assert again.counts == {"unchanged": 3}, report_of(again)


async def test_new_accounts_with_an_optional_name_given_for_some_rows_only_are_all_created(site: Site) -> None:
    """A name column without a site default (middlename ...) filled on one row and empty on the next: one INSERT of the
    batch takes both, the empty cell leaving the column as an absent one would (NULL)."""
    config, gateway = site
    given, empty = unique("mid"), unique("nomid")
    content = header("username", "firstname", "lastname", "email", "middlename", "alternatename") + (
        f"{given};Ann;Lee;{given}@example.com;Maria;Annie\n{empty};Bob;Ray;{empty}@example.com;;\n"
    )

    result = await run_file(config, gateway, "users", content)

    assert result.counts == {"created": 2}, report_of(result)
    rows = await rows_of(gateway, gateway.schema.user, username=given) + await rows_of(
        gateway, gateway.schema.user, username=empty
    )
    assert [(r["username"], r["middlename"], r["alternatename"]) for r in rows] == [
        (given, "Maria", "Annie"),
        (empty, None, None),
    ]
