"""The users file end to end on SQLite and MariaDB: the rows Moodle would hold afterwards, the report, the tryback."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.accounts import add_user, user_by_id
from tests.support.course_factories import add_enrolment_courses
from tests.support.factories import unique
from tests.support.operation_files import header, inbox_file, report_of
from tests.support.user_factories import add_fields
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.passwords import NOPASS, TO_BE_GENERATED, PasswordHasher, hash_password
from toolsync_tui.engine.run.pipeline import RunResult, SafetyStop, run_operation

Site = tuple[Config, MoodleGateway]


async def run(
    config: Config, gateway: MoodleGateway, content: str, *, name: str = "users", **options: Any
) -> RunResult:
    files = {"users": "userimport.csv", "deleteusers": "userdelete.csv", "suspendusers": "usersuspend.csv"}
    inbox_file(config, files[name], content)
    return await run_operation(config, gateway, name, **options)


async def user_rows(gateway: MoodleGateway, usernames: list[str]) -> dict[str, dict[str, Any]]:
    user = gateway.schema.user
    async with gateway.reading() as conn:
        rows = await conn.execute(select(user).where(user.c.username.in_(usernames)))
        return {row.username: dict(row._mapping) for row in rows}


async def test_create_writes_the_user_row_context_and_profile_data_as_moodle_does(site: Site) -> None:
    config, gateway = site
    fields = await add_fields(gateway, {"menu": {"datatype": "menu", "param1": "red\ngreen"}})
    menu = fields["menu"].column
    jane, john = unique("jane"), unique("john")
    content = header("username", "firstname", "lastname", "email", "idnumber", "city", "country", "lang", menu)
    content += f"{jane.upper()};Jane;Doe;{jane}@example.edu;ID-{jane};Lyon;fr;EN_utf8;green\n"
    content += f"{john};John;Roe;{john}@example.edu;ID-{john};;;;\n"

    result = await run(config, gateway, content)

    assert result.counts == {"created": 2}, report_of(result)
    users = await user_rows(gateway, [jane, john])
    row = users[jane]  # the username lower-cased, as Moodle requires
    assert (row["mnethostid"], row["confirmed"], row["auth"], row["deleted"], row["suspended"]) == (
        1,
        1,
        "manual",
        0,
        0,
    )
    assert (row["firstname"], row["lastname"], row["email"], row["idnumber"]) == (
        "Jane",
        "Doe",
        f"{jane}@example.edu",
        f"ID-{jane}",
    )
    assert (row["city"], row["country"], row["lang"], row["calendartype"], row["timezone"]) == (
        "Lyon",
        "FR",
        "en",
        "gregorian",
        "99",
    )
    assert (row["mailformat"], row["maildisplay"], row["autosubscribe"], row["descriptionformat"]) == (1, 2, 1, 1)
    assert row["password"] == ""  # no password column, create_passwords off: nobody can log in until one is set
    assert row["timecreated"] == row["timemodified"] > 0
    assert users[john]["country"] == ""  # the site's country is unset (0), as Moodle stores it
    context = gateway.schema.context
    async with gateway.reading() as conn:
        ctx = (
            await conn.execute(
                select(context).where((context.c.contextlevel == 30) & (context.c.instanceid == row["id"]))
            )
        ).one()
        data = gateway.schema.user_info_data
        stored = (await conn.execute(select(data.c.data, data.c.dataformat).where(data.c.userid == row["id"]))).all()
    assert (ctx.path, ctx.depth) == (f"/1/{ctx.id}", 2)
    assert [tuple(r) for r in stored] == [("green", 0)]
    assert f"created (create) User account added: id {row['id']}, '{jane}'" in report_of(result)

    again = await run(config, gateway, content)

    assert again.counts == {"unchanged": 2}, report_of(again)
    assert (await user_rows(gateway, [jane]))[jane]["timemodified"] == row["timemodified"]


async def test_update_changes_only_the_columns_present_and_reports_them(site: Site) -> None:
    config, gateway = site
    name = unique("upd")
    user_id = await add_user(
        gateway, username=name, idnumber=f"I{name}", city="Paris", department="Physics", timemodified=5
    )
    content = header("username", "firstname", "lastname", "idnumber", "city", "institution")
    content += f"{name};F;L;I{name};Lyon;\n"

    result = await run(config, gateway, content)

    assert result.counts == {"updated": 1}, report_of(result)
    assert f"User account changed: '{name}' (id {user_id}): city" in report_of(result)
    row = await user_by_id(gateway, user_id)
    assert (row["city"], row["department"], row["institution"]) == ("Lyon", "Physics", "")  # absent and empty: kept
    assert row["timemodified"] > 5


async def test_suspend_ends_sessions_and_reactivate_lifts_it(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    name = unique("susp")
    user_id = await add_user(gateway, username=name, idnumber=f"I{name}")
    sessions = gateway.schema.sessions
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn, sessions, [{"sid": unique("sid"), "userid": user_id, "timecreated": 1, "timemodified": 1, "state": 0}]
        )
    content = header("username", "firstname", "lastname", "idnumber", "suspended")

    suspended = await run(config, gateway, content + f"{name};F;L;I{name};1\n")
    row = await user_by_id(gateway, user_id)
    async with gateway.reading() as conn:
        left = (await conn.execute(select(sessions).where(sessions.c.userid == user_id))).all()
    reactivated = await run(config, gateway, content + f"{name};F;L;I{name};0\n")

    assert suspended.counts == {"updated": 1}
    assert "updated (suspend)" in report_of(suspended)
    assert row["suspended"] == 1
    assert left == []
    assert reactivated.counts == {"updated": 1}
    assert "updated (reactivate)" in report_of(reactivated)
    assert (await user_by_id(gateway, user_id))["suspended"] == 0


async def test_deleted_one_deletes_zero_does_not_and_a_deleted_account_named_again_is_revived(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    gone, kept, back = unique("gone"), unique("kept"), unique("back")
    gone_id = await add_user(gateway, username=gone, idnumber=f"I{gone}", email=f"{gone}@example.edu")
    kept_id = await add_user(gateway, username=kept, idnumber=f"I{kept}")
    back_id = await add_user(gateway, username=back, idnumber=f"I{back}", deleted=1)
    content = header("username", "firstname", "lastname", "idnumber", "deleted")
    content += f"{gone};F;L;I{gone};1\n{kept};F;L;I{kept};0\n{back};F;L;I{back};\n{unique('nobody')};F;L;;1\n"

    result = await run(config, gateway, content)

    assert result.counts == {"deleted": 1, "unchanged": 1, "updated": 1, "skipped": 1}, report_of(result)
    deleted = await user_by_id(gateway, gone_id)
    assert deleted["deleted"] == 1
    assert deleted["username"].startswith(f"{gone}@example.edu.")
    assert (await user_by_id(gateway, kept_id))["deleted"] == 0
    assert (await user_by_id(gateway, back_id))["deleted"] == 0
    assert f"User was revived: '{back}' (id {back_id})" in report_of(result)


async def test_rename_through_oldusername_only_when_allowed(site: Site) -> None:
    config, gateway = site
    old, new = unique("old"), unique("new")
    user_id = await add_user(gateway, username=old, idnumber=f"I{old}")
    content = header("username", "firstname", "lastname", "idnumber", "oldusername") + f"{new};F;L;I{old};{old}\n"

    refused = await run(config, gateway, content)
    config.set("operations.users.allow_rename", True)
    renamed = await run(config, gateway, content)
    again = await run(config, gateway, content)

    assert refused.counts == {"failed": 1}
    assert "renaming users is not allowed" in report_of(refused)
    assert renamed.counts == {"updated": 1}, report_of(renamed)
    assert "updated (rename)" in report_of(renamed)
    assert (await user_by_id(gateway, user_id))["username"] == new
    assert again.counts == {"unchanged": 1}, report_of(again)


async def test_a_username_change_without_oldusername_is_refused(site: Site) -> None:
    config, gateway = site
    name = unique("who")
    await add_user(gateway, username=name, idnumber=f"I{name}")
    result = await run(
        config, gateway, header("username", "firstname", "lastname", "idnumber") + f"other{name};F;L;I{name}\n"
    )
    assert result.counts == {"failed": 1}
    assert f"idnumber 'I{name}' is the account '{name}', not 'other{name}'" in report_of(result)


async def test_emails_are_protected_by_default_and_only_real_duplicates_collide(site: Site) -> None:
    config, gateway = site
    name, other = unique("mail"), unique("mail")
    user_id = await add_user(gateway, username=name, idnumber=f"I{name}", email=f"{name}@old.example")
    await add_user(gateway, username=other, idnumber=f"I{other}", email=f"{other}@example.edu")
    content = header("username", "firstname", "lastname", "idnumber", "email")

    protected = await run(config, gateway, content + f"{name};F;L;I{name};{name}@new.example\n")
    config.set("operations.users.protect_emails", False)
    changed = await run(config, gateway, content + f"{name};F;L;I{name};{name}@new.example\n")
    taken = await run(config, gateway, content + f"{name};F;L;I{name};{other.upper()}@example.edu\n")
    fresh = unique("fresh")
    duplicate_new = await run(config, gateway, content + f"{fresh};F;L;I{fresh};{other}@example.edu\n")

    assert protected.counts == {"unchanged": 1}
    assert changed.counts == {"updated": 1}
    assert (await user_by_id(gateway, user_id))["email"] == f"{name}@new.example"
    assert taken.counts == {"failed": 1}
    assert "is already the e-mail of another account" in report_of(taken)
    assert duplicate_new.counts == {"failed": 1}


async def test_passwords_are_hashed_for_moodle_and_never_reported(site: Site, php: str) -> None:
    config, gateway = site
    config.set("operations.users.create_passwords", True)
    hashed, nopass, generated = unique("pw"), unique("pw"), unique("pw")
    secret = "Correct-Horse-9!"
    content = header("username", "firstname", "lastname", "password")
    content += f"{hashed};F;L;{secret}\n{nopass};F;L;{NOPASS}\n{generated};F;L;\n"

    result = await run(config, gateway, content)
    again = await run(config, gateway, content)

    assert result.counts == {"created": 3}
    users = await user_rows(gateway, [hashed, nopass, generated])
    stored = users[hashed]["password"]
    assert stored.startswith("$6$rounds=5000$")
    assert len(stored) == 118
    verified = subprocess.run(  # noqa: ASYNC221 (a short check, the test's only task)
        [php, "-r", "echo password_verify($argv[1], $argv[2]) ? 'yes' : 'no';", secret, stored],
        capture_output=True,
        text=True,
        check=True,
    )
    assert verified.stdout == "yes"
    assert users[nopass]["password"] == NOPASS
    assert users[generated]["password"] == TO_BE_GENERATED
    preferences = gateway.schema.user_preferences
    async with gateway.reading() as conn:
        prefs = (
            await conn.execute(
                select(preferences.c.name, preferences.c.value).where(preferences.c.userid == users[generated]["id"])
            )
        ).all()
    assert sorted(tuple(p) for p in prefs) == [("auth_forcepasswordchange", "1"), ("create_password", "1")]
    assert again.counts == {"unchanged": 3}, report_of(again)  # the same password keeps its hash
    assert (await user_rows(gateway, [hashed]))[hashed]["password"] == stored
    for path in (result.report_path, result.table_path, again.report_path):
        assert path is not None
        assert secret not in path.read_text()


async def test_bad_rows_fail_one_by_one_and_the_tryback_holds_exactly_them(site: Site) -> None:
    config, gateway = site
    fields = await add_fields(gateway, {"menu": {"datatype": "menu", "param1": "red\ngreen"}})
    menu = fields["menu"].column
    good1, good2, dup = unique("ok"), unique("ok"), unique("dup")
    lines = [
        header("username", "firstname", "lastname", "email", "auth", "city", menu).rstrip("\n"),
        f"{good1};A;B;{good1}@example.edu;manual;Lyon;red",
        f"{unique('bad')};A;B;not-an-email;manual;;",
        f"{unique('bad')};A;B;x@example.edu;kerberos;;",
        f"{dup};A;B;;;;",
        f"{dup};A;B;;;;",
        f"{unique('bad')};A;B;;;{'x' * 121};",
        f"{unique('bad')};A;B;;;;blue",
        f"{unique('bad')};A;B;;;;red;extra",
        f"{good2};A;B;;;;green",
    ]
    result = await run(config, gateway, "\n".join(lines) + "\n")

    assert result.counts == {"created": 3, "failed": 6}, report_of(result)
    report = report_of(result)
    assert "line 3: failed (check) email 'not-an-email' is not a valid e-mail address" in report
    assert "line 4: failed (check) auth 'kerberos' is not an enabled authentication plugin" in report
    assert f"line 6: failed (check) username '{dup}' already appears on line 5" in report
    assert "line 7: failed (read) column 'city': 121 characters, at most 120 (user.city)" in report
    assert f"line 8: failed (check) {menu} 'blue': expected one of the menu options 'red', 'green'" in report
    assert "line 9: failed (read)" in report
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines() == [
        lines[0],
        lines[2],
        lines[3],
        lines[5],
        lines[6],
        lines[7],
        lines[8],
    ]
    assert set(await user_rows(gateway, [good1, good2, dup])) == {good1, good2, dup}


async def test_dry_run_reports_and_writes_nothing(site: Site) -> None:
    config, gateway = site
    name, existing = unique("dry"), unique("dry")
    existing_id = await add_user(gateway, username=existing, idnumber=f"I{existing}", city="Paris")
    content = header("username", "firstname", "lastname", "idnumber", "city", "deleted")
    content += f"{name};F;L;I{name};Lyon;\n{existing};F;L;I{existing};Lyon;1\n"

    result = await run(config, gateway, content, dry_run=True)

    assert result.counts == {"created": 1, "deleted": 1}, report_of(result)
    assert "User account would be added" in report_of(result)
    assert await user_rows(gateway, [name]) == {}
    assert (await user_by_id(gateway, existing_id))["deleted"] == 0


async def test_a_dry_run_with_passwords_hashes_only_what_it_checks_and_predicts_the_run(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new hash decides nothing (it differs from anything stored): a dry run makes none, and checks the passwords
    of existing accounts against their stored hashes, as the run does."""
    config, gateway = site
    new, same, changed = unique("dry"), unique("dry"), unique("dry")
    content = header("username", "firstname", "lastname", "password")
    content += "".join(f"{name};F;L;Pass-{name}!\n" for name in (same, changed))
    await run(config, gateway, content)
    content = header("username", "firstname", "lastname", "password")
    content += f"{new};F;L;Pass-{new}!\n{same};F;L;Pass-{same}!\n{changed};F;L;Other-{changed}!\n"
    handed: list[str] = []
    submit = PasswordHasher.submit

    def counted(hasher: PasswordHasher, passwords: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        handed.extend(passwords)
        return submit(hasher, passwords, *args, **kwargs)

    monkeypatch.setattr(PasswordHasher, "submit", counted)
    predicted = await run(config, gateway, content, dry_run=True)
    assert sorted(handed) == sorted([f"Pass-{same}!", f"Other-{changed}!"])
    assert (await user_rows(gateway, [new])) == {}
    handed.clear()
    done = await run(config, gateway, content)
    assert sorted(handed) == sorted([f"Pass-{new}!", f"Pass-{same}!", f"Other-{changed}!"])

    assert predicted.counts == done.counts == {"created": 1, "unchanged": 1, "updated": 1}, report_of(predicted)
    stored = await user_rows(gateway, [new, changed])
    assert stored[new]["password"].startswith("$6$rounds=5000$")
    assert (
        hash_password(f"Other-{changed}!", 5000, salt=stored[changed]["password"].split("$")[3])
        == (stored[changed]["password"])
    )


@pytest.mark.parametrize("operation", ["users", "deleteusers", "suspendusers"])
async def test_the_safety_threshold_stops_mass_deletions_and_suspensions(site: Site, operation: str) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 2)
    config.set("run.safety_threshold", 0.0001)
    names = [unique("mass") for _ in range(3)]
    for name in names:
        await add_user(gateway, username=name, idnumber=f"I{name}")
    if operation == "users":
        column = "deleted"
        content = header("username", "firstname", "lastname", "idnumber", column) + "".join(
            f"{n};F;L;I{n};1\n" for n in names
        )
    else:
        content = header("username", "idnumber") + "".join(f"{n};I{n}\n" for n in names)

    with pytest.raises(SafetyStop):
        await run(config, gateway, content, name=operation)

    assert all(row["deleted"] == 0 and row["suspended"] == 0 for row in (await user_rows(gateway, names)).values())
    forced = await run(config, gateway, content, name=operation, force=True)
    assert forced.counts in ({"deleted": 3}, {"updated": 3}), report_of(forced)


async def test_delete_and_suspend_files_refuse_admin_and_guest_and_skip_the_unknown(site: Site) -> None:
    config, gateway = site
    config.set("run.safety_min_rows", 100)
    name = unique("list")
    user_id = await add_user(gateway, username=name, idnumber=f"I{name}")
    content = header("username", "idnumber") + f"admin;\nguest;\n{unique('ghost')};\n{name};I{name}\n"

    suspended = await run(config, gateway, content, name="suspendusers")
    deleted = await run(config, gateway, content, name="deleteusers")

    assert suspended.counts == {"failed": 2, "skipped": 1, "updated": 1}, report_of(suspended)
    assert "cannot be suspended" in report_of(suspended)
    assert deleted.counts == {"failed": 2, "skipped": 1, "deleted": 1}, report_of(deleted)
    row = await user_by_id(gateway, user_id)
    assert (row["deleted"], row["suspended"]) == (1, 1)
    admin = (await user_rows(gateway, ["admin"]))["admin"]
    assert (admin["deleted"], admin["suspended"]) == (0, 0)


async def test_an_unknown_profile_field_column_stops_the_run_before_any_row(site: Site) -> None:
    from toolsync_tui.engine.run.pipeline import RunProblem

    config, gateway = site
    with pytest.raises(RunProblem, match="the site has no custom profile field 'nosuchfield'"):
        await run(
            config, gateway, header("username", "firstname", "lastname", "profile_field_nosuchfield") + "a;b;c;d\n"
        )


async def test_cohort_and_course_columns_give_one_outcome_line_each(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    name, cohort = unique("member"), unique("Cohort ")
    columns = ("username", "firstname", "lastname", "cohort", "course1", "role1", "group1", "course2", "role2")
    content = header(*columns) + f"{name};F;L;{cohort};{course.shortname};editingteacher;Lab A;NOPE;student\n"

    result = await run(config, gateway, content)
    again = await run(config, gateway, content)

    report = report_of(result)
    assert result.counts == {"created": 1}, report
    assert result.failed_details == 1
    assert result.exit_code == 1  # a failed part makes the run not fully successful
    assert "line 2, cohort: created (cohort)" in report
    assert "line 2, course1: created (enrol)" in report
    assert "line 2, course2: failed (enrol) course 'NOPE' not found" in report
    assert result.tryback_path is not None  # the row goes to the tryback: re-running it redoes only what failed
    assert result.tryback_path.read_text().splitlines()[1].startswith(name)
    user_id = (await user_rows(gateway, [name]))[name]["id"]
    schema = gateway.schema
    async with gateway.reading() as conn:
        enrolled = (
            await conn.execute(
                select(schema.user_enrolments.c.enrolid).where(schema.user_enrolments.c.userid == user_id)
            )
        ).all()
        roles = (
            await conn.execute(
                select(schema.role_assignments.c.contextid, schema.role_assignments.c.roleid).where(
                    schema.role_assignments.c.userid == user_id
                )
            )
        ).all()
        members = (
            await conn.execute(
                select(schema.groups.c.name)
                .join(schema.groups_members, schema.groups_members.c.groupid == schema.groups.c.id)
                .where(schema.groups_members.c.userid == user_id)
            )
        ).all()
        cohorts = (
            await conn.execute(
                select(schema.cohort.c.name)
                .join(schema.cohort_members, schema.cohort_members.c.cohortid == schema.cohort.c.id)
                .where(schema.cohort_members.c.userid == user_id)
            )
        ).all()
        dirty = (
            await conn.execute(
                select(schema.cache_flags.c.name).where(
                    (schema.cache_flags.c.flagtype == "accesslib/dirtyusers")
                    & (schema.cache_flags.c.name == str(user_id))
                )
            )
        ).all()
    assert [tuple(e) for e in enrolled] == [(course.instance("manual"),)]
    assert [tuple(r) for r in roles] == [(course.contextid, 3)]  # editingteacher
    assert [tuple(m) for m in members] == [("Lab A",)]
    assert [tuple(c) for c in cohorts] == [(cohort,)]
    assert len(dirty) == 1
    assert "caches were not purged: no Moodle bridge is configured" in report
    assert again.counts == {"unchanged": 1}
    assert "line 2, course1: unchanged (enrol)" in report_of(again)


async def test_every_standard_column_is_written_on_create_and_changed_on_update(site: Site) -> None:
    config, gateway = site
    config.set("operations.users.protect_emails", False)
    name = unique("full")
    values = {
        "idnumber": f"I{name}",
        "email": f"{name}@example.edu",
        "auth": "email",
        "institution": "University",
        "department": "Biology",
        "city": "Lyon",
        "country": "FR",
        "lang": "en",
        "timezone": "Europe/Paris",
        "phone1": "+33 1 23",
        "phone2": "0612",
        "address": "1 rue de la Paix",
        "description": "A student; with a semicolon",
        "mailformat": "0",
        "maildisplay": "1",
        "maildigest": "2",
        "autosubscribe": "0",
        "trackforums": "1",
        "emailstop": "1",
        "firstnamephonetic": "Jayn",
        "lastnamephonetic": "Dough",
        "middlename": "Q",
        "alternatename": "JD",
    }
    columns = ("username", "firstname", "lastname", *values)
    cells = [name, "Jane", "Doe", *(f'"{v}"' if ";" in v else v for v in values.values())]
    await run(config, gateway, header(*columns) + ";".join(cells) + "\n")
    created = (await user_rows(gateway, [name]))[name]
    changed = {**values, "department": "Chemistry", "maildigest": "0", "email": f"{name}@new.example.edu"}
    cells = [name, "Jane", "Doe", *(f'"{v}"' if ";" in v else v for v in changed.values())]
    updated = await run(config, gateway, header(*columns) + ";".join(cells) + "\n")

    assert {key: str(created[key]) for key in values} == values
    assert updated.counts == {"updated": 1}
    assert "(id {}): email, department, maildigest".format(created["id"]) in report_of(updated)
    row = (await user_rows(gateway, [name]))[name]
    assert {key: str(row[key]) for key in values} == changed
