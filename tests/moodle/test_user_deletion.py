"""Deleting users directly in the database: the rows delete_user() writes, and only those (moodle-db-semantics §5.2)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from tests.support.factories import unique
from tests.support.user_factories import (
    AUTHENTICATED,
    add_courses,
    add_member,
    add_row,
    add_user,
    diff,
    set_plugin_config,
    snapshot,
)
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.site_settings import protected_accounts
from toolsync_tui.engine.moodle.staleness import DIRTY_USERS
from toolsync_tui.engine.moodle.user_deletion import (
    REQUEST_COMMENT,
    DirectDeletionUnsupported,
    assign_deleted_usernames,
    delete_users,
    deleted_username,
    deleted_username_prefixes,
    with_suffix,
)

Site = tuple[Config, MoodleGateway]
NOW = 1795531293  # the trace's clock
ADMIN = 2
TIMEOUT = 28800


def batch(*users: tuple[int, str, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"id": i, "username": u, "email": e, "mnethostid": 1} for i, u, e in users],
        schema={"id": pl.Int64, "username": pl.String, "email": pl.String, "mnethostid": pl.Int64},
    )


async def user_row(gateway: MoodleGateway, user_id: int) -> dict[str, Any]:
    user = gateway.schema.user
    async with gateway.reading() as conn:
        return dict((await conn.execute(select(user).where(user.c.id == user_id))).mappings().one())


async def delete(gateway: MoodleGateway, users: pl.DataFrame, now: int = NOW) -> None:
    async with gateway.transaction() as conn:
        await delete_users(gateway, conn, users, now=now, actor_id=ADMIN, session_timeout=TIMEOUT)


# -- the scrubbed username ----------------------------------------------------------------------------------------


def test_deleted_username_is_the_cleaned_email_and_the_time() -> None:
    # The trace's example (§5.2): bwhite, id 5.
    assert deleted_username("bwhite", "bwhite@example.org", 5, NOW) == "bwhite@example.org.1795531293"
    assert hashlib.md5(b"bwhite").hexdigest() == "f9befef25e84bb8a3d24e91dad1d886a"
    assert deleted_username("x", " Jane.O'Neil+Tag@Example.ORG ", 5, NOW) == f"jane.oneiltag@example.org.{NOW}"
    # No e-mail (PHP's empty(): '' and '0' too): the username and id at unknownemail.invalid, cleaned.
    for email in (None, "", "0"):
        assert deleted_username("J Doe", email, 42, NOW) == f"jdoe.42@unknownemail.invalid.{NOW}"
    long = "a" * 95 + "@example.org"
    name = deleted_username("x", long, 1, NOW)
    assert name == "a" * 89 + f".{NOW}"
    assert len(name) == 100
    # With $CFG->extendedusernamechars only trimming and lower case remain.
    assert deleted_username("x", " Jöhn Doe@X.org", 1, NOW, extended_chars=True) == f"jöhn doe@x.org.{NOW}"
    assert with_suffix("a", 5) == "a.         5"  # sprintf('%10d')


# delete_user()'s own lines (lib/moodlelib.php), with clean_param(PARAM_USERNAME) inlined (lib/classes/param.php).
_PHP_DELETED_USERNAMES = r"""
$out = [];
foreach (json_decode(file_get_contents('php://stdin'), true, 512, JSON_THROW_ON_ERROR) as [$user, $extended]) {
    $delemail = !empty($user['email']) ? $user['email']
        : $user['username'] . '.' . $user['id'] . '@unknownemail.invalid';
    $param = trim((string)$delemail);
    $param = mb_strtolower($param, 'UTF-8');
    if (!$extended) {
        $param = str_replace(" ", "", $param);
        $param = preg_replace('/[^-\.@_a-z0-9]/', '', $param);
    }
    $out[] = sprintf("%s.%10d", mb_substr($param, 0, 100 - 1 - 10, 'UTF-8'), 1795531293);
}
echo json_encode($out, JSON_THROW_ON_ERROR);
"""


def test_deleted_usernames_agree_with_delete_user_in_php(php: str) -> None:
    emails = [
        "bwhite@example.org",
        "  Mixed.Case+Plus@Example.COM\t",
        "ünïcödé.Ñame@exämple.org",
        # Greek capitals, but no word-final capital sigma: PHP 8.3's mb_strtolower() makes that the final form (as
        # here), 8.1 and 8.2 the plain small sigma.
        "\u0130stanbul.\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3x@example.org",
        "with space@example.org",
        "x" * 120 + "@example.org",
        "ü" * 120,
        "0",
        "",
        None,
        "a'b\"c<d>e(f)g@h!i#j$k%l&m*n.org",
    ]
    cases: list[tuple[dict[str, Any], int]] = [
        ({"id": n, "username": f"User {n}", "email": e}, ext) for n, e in enumerate(emails) for ext in (0, 1)
    ]
    done = subprocess.run(
        [php, "-r", _PHP_DELETED_USERNAMES], input=json.dumps(cases), capture_output=True, text=True, check=True
    )
    moodle = json.loads(done.stdout)
    ours = [deleted_username(u["username"], u["email"], u["id"], NOW, extended_chars=bool(ext)) for u, ext in cases]
    assert [(c, m, o) for c, m, o in zip(cases, moodle, ours, strict=True) if m != o] == []


def test_prefixes_are_computed_for_a_whole_batch() -> None:
    users = batch((1, "a", "A@x.org"), (2, "b", None), (3, "c", "c d@x.org"))
    assert deleted_username_prefixes(users).to_list() == ["a@x.org", "b.2@unknownemail.invalid", "cd@x.org"]


# -- who may not be deleted ---------------------------------------------------------------------------------------


async def test_protected_accounts_on_the_real_dump_are_the_admin_and_the_guest(dump_gateway: MoodleGateway) -> None:
    async with dump_gateway.reading() as conn:
        assert await protected_accounts(dump_gateway, conn) == {
            1: "it is the guest account",
            2: "it is a site administrator",
        }


async def test_an_account_named_guest_on_another_host_is_refused_as_delete_user_does(site: Site) -> None:
    _, gateway = site
    async with gateway.transaction() as conn:
        other_guest = await add_user(gateway, conn, username="guest", mnethostid=3)
        reasons = await protected_accounts(gateway, conn)
    assert reasons[other_guest] == "it is named 'guest', the guest account's name"
    assert reasons[1] == "it is the guest account"
    assert reasons[2] == "it is a site administrator"


# -- the whole deletion, row by row ---------------------------------------------------------------------------------


async def check_full_deletion(gateway: MoodleGateway) -> None:
    """Delete one user among others and compare every row of every declared table before and after."""
    async with gateway.transaction() as conn:
        await set_plugin_config(gateway, conn, "tool_dataprivacy", "automaticdeletionrequests", "1")
        courses = await add_courses(gateway, conn)
        name = unique("jane")
        victim = await add_member(
            gateway,
            conn,
            courses,
            now=NOW,
            username=name,
            email=f"Jane.O'Neil+{name}@Example.ORG",
            idnumber=unique("ID-"),
            picture=7,
        )
        other = await add_member(gateway, conn, courses, now=NOW)
        # Another user's role in the victim's own context (a parent, say), and a group only the other is in.
        foreign_role = await add_row(
            gateway,
            conn,
            "role_assignments",
            roleid=AUTHENTICATED,
            contextid=victim.context_id,
            userid=other.user_id,
            component="",
            itemid=0,
        )
        await add_row(
            gateway,
            conn,
            "groups_members",
            groupid=courses.group_a_others,
            userid=other.user_id,
            component="",
            itemid=0,
        )
    before = await snapshot(gateway)
    original = before["user"][victim.user_id]

    await delete(gateway, batch((victim.user_id, original["username"], original["email"])))

    after = await snapshot(gateway)
    changes = diff(before, after)
    expected_removed = {table: set(ids) - set(victim.kept.get(table, [])) for table, ids in victim.rows.items()}
    expected_removed["role_assignments"] |= {foreign_role}
    assert changes.removed == {table: ids for table, ids in expected_removed.items() if ids}
    assert set(changes.removed) == {
        *("role_assignments", "user_enrolments", "cohort_members", "groups_members", "sessions", "grade_grades"),
        *("user_preferences", "user_info_data", "user_lastaccess", "user_password_history", "user_private_key"),
        *("external_tokens", "external_services_users", "oauth2_refresh_token", "event", "event_subscriptions"),
        *("tool_monitor_subscriptions", "auth_oauth2_linked_login", "auth_lti_linked_login", "tool_cohortroles"),
        *("my_pages", "tag_instance", "forum_digests", "forum_subscriptions", "forum_track_prefs", "forum_read"),
        *("competency_usercomp", "competency_evidence", "competency_usercompcourse", "competency_usercompplan"),
        *("competency_userevidence", "competency_userevidencecomp", "competency_plan", "competency_plancomp"),
    }
    assert changes.changed == {
        "user": {
            victim.user_id: {
                "deleted": (0, 1),
                "username": (original["username"], f"jane.oneil{name}@example.org.{NOW}"),
                "email": (original["email"], hashlib.md5(original["username"].encode()).hexdigest()),
                "idnumber": (original["idnumber"], ""),
                "picture": (7, 0),
                "timemodified": (1, NOW),
            }
        },
        # The groups groups_remove_member() empties of the user: in course A (left without enrolment) and the group
        # the cohort instance added; not the group in course B, whose enrolment no enabled plugin removes.
        "groups": {
            courses.group_a: {"timemodified": (5, NOW)},
            courses.group_a_cohort: {"timemodified": (5, NOW)},
        },
    }
    assert set(changes.added) == {"grade_grades_history", "tool_dataprivacy_request", "cache_flags"}
    [grade_id] = victim.rows["grade_grades"]
    grade = before["grade_grades"][grade_id]
    [history] = changes.added["grade_grades_history"]
    kept_columns = set(history) - {"id", "action", "oldid", "source", "timemodified", "loggeduser"}
    assert {c: history[c] for c in kept_columns} == {c: grade[c] for c in kept_columns}
    assert (history["action"], history["oldid"], history["source"]) == (3, grade_id, "userdelete")
    assert (history["timemodified"], history["loggeduser"]) == (NOW, ADMIN)
    [request] = changes.added["tool_dataprivacy_request"]
    assert {k: v for k, v in request.items() if k != "id"} == {
        "type": 2,
        "comments": REQUEST_COMMENT,
        "commentsformat": 2,
        "userid": victim.user_id,
        "requestedby": ADMIN,
        "status": 2,
        "dpo": 0,
        "dpocomment": "",
        "dpocommentformat": 2,
        "systemapproved": 0,
        "usermodified": ADMIN,
        "timecreated": NOW,
        "timemodified": NOW,
        "creationmethod": 1,
    }
    # Dirty flags: the deleted user, and the other user who lost a role in the deleted user's context.
    assert sorted(
        (f["flagtype"], f["name"], f["value"], f["expiry"], f["timemodified"]) for f in changes.added["cache_flags"]
    ) == sorted((DIRTY_USERS, str(u), "1", NOW + TIMEOUT, NOW) for u in (victim.user_id, other.user_id))
    # The user context row stays (context_cleanup_task removes it), and nothing of the other user's changed.
    assert victim.context_id in after["context"]
    assert all(row_id in after[table] for table, ids in other.rows.items() for row_id in ids)


async def test_delete_on_the_real_dump(dump_gateway: MoodleGateway) -> None:
    await check_full_deletion(dump_gateway)


async def test_delete_on_the_sandbox_and_the_project_schema(site: Site) -> None:
    await check_full_deletion(site[1])


# -- usernames taken ------------------------------------------------------------------------------------------------


async def test_a_taken_username_moves_the_suffix_on_as_delete_user_does(site: Site) -> None:
    _, gateway = site
    email = f"{unique('same')}@Example.org"
    prefix = email.lower()
    lonely_email = f"{unique('other')}@example.org"
    async with gateway.transaction() as conn:
        # Taken: the first name by a live account here, the next by an account of another mnet host (delete_user()
        # checks every host).
        await add_user(gateway, conn, username=with_suffix(prefix, NOW))
        await add_user(gateway, conn, username=with_suffix(prefix, NOW + 1), mnethostid=3)
        first, second, third = [await add_user(gateway, conn, email=email) for _ in range(3)]
        lonely = await add_user(gateway, conn, email=lonely_email)
    # Batch order decides, not ids: the last created goes first.
    order = [third, first, lonely, second]
    await delete(
        gateway,
        batch(
            *[(i, (await user_row(gateway, i))["username"], email) for i in order[:2]],
            (lonely, "lonely", lonely_email),
            (second, "second", email),
        ),
    )
    names = {i: (await user_row(gateway, i))["username"] for i in order}
    assert names == {
        third: with_suffix(prefix, NOW + 2),
        first: with_suffix(prefix, NOW + 3),
        lonely: with_suffix(lonely_email, NOW),
        second: with_suffix(prefix, NOW + 4),
    }


async def test_more_taken_names_than_one_probe_holds(site: Site) -> None:
    _, gateway = site
    prefix = f"{unique('busy')}@example.org"
    async with gateway.transaction() as conn:
        for suffix in range(NOW, NOW + 12):
            await add_user(gateway, conn, username=with_suffix(prefix, suffix))
        user_id = await add_user(gateway, conn, email=prefix)
        users = batch((user_id, "whoever", prefix))
        assert await assign_deleted_usernames(gateway, conn, users, NOW) == {user_id: with_suffix(prefix, NOW + 12)}


async def test_a_batch_of_more_than_a_chunk_sharing_one_email(site: Site) -> None:
    _, gateway = site
    email = f"{unique('crowd')}@example.org"
    count = 1005
    async with gateway.transaction() as conn:
        names = [unique("crowd") for _ in range(count)]
        user = gateway.schema.user
        await gateway.insert_many(
            conn,
            user,
            [{"username": n, "email": email, "mnethostid": 1, "firstname": "F", "lastname": "L"} for n in names],
        )
        found = await gateway.fetch_in(conn, user, "username", names, ["id", "username"])
        await gateway.insert_many(
            conn, gateway.schema.user_preferences, [{"userid": i, "name": "x", "value": "1"} for i in found["id"]]
        )
    users = found.with_columns(pl.lit(email).alias("email")).sort("id")
    await delete(gateway, users)
    async with gateway.reading() as conn:
        rows = await gateway.fetch_in(conn, user, "id", users["id"].to_list(), ["id", "username", "deleted"])
        left = await gateway.fetch_in(conn, gateway.schema.user_preferences, "userid", users["id"].to_list(), ["id"])
    assert rows["deleted"].to_list() == [1] * count
    by_id = dict(rows.select("id", "username").iter_rows())
    assert [by_id[i] for i in users["id"]] == [with_suffix(email, NOW + n) for n in range(count)]
    assert left.is_empty()


# -- settings -------------------------------------------------------------------------------------------------------


async def test_existing_deletion_requests_and_the_settings(site: Site) -> None:
    _, gateway = site
    requests = gateway.schema.tool_dataprivacy_request
    async with gateway.transaction() as conn:
        await set_plugin_config(gateway, conn, "tool_dataprivacy", "automaticdeletionrequests", "1")
        users = {status: await add_user(gateway, conn) for status in (0, 2, 5, 7, 10, None)}
        for status, user_id in users.items():
            if status is not None:
                await add_row(gateway, conn, "tool_dataprivacy_request", type=2, userid=user_id, status=status)
        export_only = await add_user(gateway, conn)
        await add_row(gateway, conn, "tool_dataprivacy_request", type=1, userid=export_only, status=2)
    ids = [*users.values(), export_only]
    await delete(gateway, batch(*[(i, (await user_row(gateway, i))["username"], "") for i in ids]))
    async with gateway.reading() as conn:
        rows = await gateway.fetch_in(conn, requests, "userid", ids, ["userid"], where=requests.c.type == 2)
    counts = dict(rows.group_by("userid").len().iter_rows())
    # Ongoing (pending, awaiting approval) or done (complete, deleted): no new request. Rejected, none, or only an
    # export request: a new one.
    assert {status: counts.get(user_id, 0) for status, user_id in users.items()} == {
        0: 1,
        2: 1,
        5: 1,
        7: 2,
        10: 1,
        None: 1,
    }
    assert counts[export_only] == 1

    async with gateway.transaction() as conn:
        await set_plugin_config(gateway, conn, "tool_dataprivacy", "automaticdeletionrequests", "0")
        quiet = await add_user(gateway, conn)
    await delete(gateway, batch((quiet, (await user_row(gateway, quiet))["username"], "")))
    async with gateway.reading() as conn:
        assert (await gateway.fetch_in(conn, requests, "userid", [quiet], ["id"])).is_empty()


async def test_automatic_approval_is_refused_before_anything_is_written(site: Site) -> None:
    _, gateway = site
    async with gateway.transaction() as conn:
        await set_plugin_config(gateway, conn, "tool_dataprivacy", "automaticdeletionrequests", "1")
        await set_plugin_config(gateway, conn, "tool_dataprivacy", "automaticdatadeletionapproval", "1")
        user_id = await add_user(gateway, conn)
    before = await snapshot(gateway)
    try:
        async with gateway.transaction() as conn:
            with pytest.raises(DirectDeletionUnsupported, match="Moodle bridge"):
                await delete_users(
                    gateway, conn, batch((user_id, "x", "")), now=NOW, actor_id=ADMIN, session_timeout=TIMEOUT
                )
        after = await snapshot(gateway)
        assert diff(before, after) == diff(before, before)
    finally:
        async with gateway.transaction() as conn:  # the MariaDB database is shared by the module's tests
            await set_plugin_config(gateway, conn, "tool_dataprivacy", "automaticdatadeletionapproval", "0")


async def test_without_grade_history_grades_are_only_deleted(site: Site) -> None:
    _, gateway = site
    config = gateway.schema.config
    async with gateway.transaction() as conn:
        await conn.execute(config.update().where(config.c.name == "disablegradehistory").values(value="1"))
        user_id = await add_user(gateway, conn)
        await add_row(gateway, conn, "grade_grades", itemid=5, userid=user_id, finalgrade=3)
    try:
        before = await snapshot(gateway)
        await delete(gateway, batch((user_id, (await user_row(gateway, user_id))["username"], "")))
        changes = diff(before, await snapshot(gateway))
        assert len(changes.removed["grade_grades"]) == 1
        assert "grade_grades_history" not in changes.added
    finally:
        async with gateway.transaction() as conn:
            await conn.execute(config.update().where(config.c.name == "disablegradehistory").values(value="0"))


async def test_the_admin_or_the_guest_in_a_batch_stop_it_before_any_write(site: Site) -> None:
    _, gateway = site
    async with gateway.transaction() as conn:
        user_id = await add_user(gateway, conn)
    before = await snapshot(gateway)
    for protected in (1, 2):
        with pytest.raises(ValueError, match=rf"may not be deleted: \[{protected}\]"):
            await delete(gateway, batch((user_id, "x", ""), (protected, "p", "")))
    assert diff(before, await snapshot(gateway)) == diff(before, before)


async def test_an_empty_batch_writes_nothing(site: Site) -> None:
    _, gateway = site
    before = await snapshot(gateway)
    await delete(gateway, batch())
    assert diff(before, await snapshot(gateway)) == diff(before, before)
