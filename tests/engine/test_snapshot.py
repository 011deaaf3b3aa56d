"""Snapshot mode (engine/snapshot/) on the real Moodle dump: what toolsync manages (the ownership ledger) and the file
no longer names gets the operation's snapshot action, as rows after the file's last line that the run reports,
counts toward the safety threshold and dry-runs like any other; what toolsync does not manage is never touched."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.accounts import add_user, user_by_id
from tests.support.course_factories import add_cohort, add_enrolment_courses, add_group, add_users
from tests.support.factories import unique
from tests.support.operation_files import dry_and_real, header, report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.ledger import ledger_for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult, SafetyStop, run_operation

Site = tuple[Config, MoodleGateway]
USERS = header("username", "firstname", "lastname")


def snapshot(config: Config, operation: str, **settings: Any) -> None:
    config.set(f"operations.{operation}.mode", "snapshot")
    config.set("run.guard_min_share", 0)  # these files shrink on purpose (the source guards: test_guards)
    for name, value in settings.items():
        config.set(f"operations.{operation}.{name}", value)


async def user_ids(gateway: MoodleGateway, names: list[str]) -> dict[str, int]:
    user = gateway.schema.user
    async with gateway.reading() as conn:
        rows = await conn.execute(select(user.c.username, user.c.id).where(user.c.username.in_(names)))
        return {name: int(i) for name, i in rows}


async def own(config: Config, gateway: MoodleGateway, kind: str, ids: list[int], operation: str) -> None:
    """Records the ledger holds as if an earlier run had made them (unit-level: the run's own capture aside)."""
    (await ledger_for_site(config.data_dir, gateway)).add(kind, ids, operation, "seeded")


async def owned_users(config: Config, gateway: MoodleGateway, count: int) -> list[str]:
    """Accounts a users run creates (the ledger holds them from that run)."""
    names = [unique("snap") for _ in range(count)]
    result = await run_file(config, gateway, "users", USERS + "".join(f"{n};F;L\n" for n in names))
    assert result.counts == {"created": count}, report_of(result)
    return names


def snapshot_lines(result: RunResult) -> list[str]:
    return [line for line in report_of(result).splitlines() if line.endswith("not in the snapshot file")]


async def test_a_snapshot_suspends_an_owned_user_it_no_longer_names_and_leaves_a_hand_made_account_alone(
    dump_site: Site,
) -> None:
    config, gateway = dump_site
    kept, gone = await owned_users(config, gateway, 2)
    hand_made = await add_user(gateway, username=unique("byhand"))  # not in the file, not toolsync's
    ids = await user_ids(gateway, [kept, gone])
    assert {ids[kept], ids[gone]} <= (await ledger_for_site(config.data_dir, gateway)).owned("user")
    snapshot(config, "users")

    content = USERS + f"{kept};F;L\n"
    result = await run_file(config, gateway, "users", content)

    assert result.counts == {"unchanged": 1, "updated": 1}, report_of(result)
    assert (await user_by_id(gateway, ids[gone]))["suspended"] == 1
    assert (await user_by_id(gateway, ids[kept]))["suspended"] == 0
    assert (await user_by_id(gateway, hand_made))["suspended"] == 0
    # The added row follows the file's last line (line 2): line 3.
    (line,) = snapshot_lines(result)
    assert line.startswith("line 3: updated (suspend)"), line
    assert gone in line
    assert "after the file's last line" in report_of(result)


async def test_the_actions_delete_and_nothing(dump_site: Site) -> None:
    config, gateway = dump_site
    names = [unique("snapd") for _ in range(3)]
    ids = [await add_user(gateway, username=n) for n in names]
    await own(config, gateway, "user", ids, "users")
    snapshot(config, "users", snapshot_action="nothing")
    result = await run_file(config, gateway, "users", USERS + f"{names[0]};F;L\n")
    assert result.counts == {"unchanged": 1}, report_of(result)
    assert [(await user_by_id(gateway, i))["deleted"] for i in ids] == [0, 0, 0]

    config.set("operations.users.snapshot_action", "delete")
    result = await run_file(config, gateway, "users", USERS + f"{names[0]};F;L\n")
    assert result.counts == {"unchanged": 1, "deleted": 2}, report_of(result)
    assert [(await user_by_id(gateway, i))["deleted"] for i in ids] == [0, 1, 1]
    assert len(snapshot_lines(result)) == 2


async def test_snapshot_rows_count_toward_the_safety_threshold_and_a_dry_run_predicts_the_run(dump_site: Site) -> None:
    config, gateway = dump_site
    names = [unique("snaps") for _ in range(6)]
    ids = [await add_user(gateway, username=n) for n in names]
    await own(config, gateway, "user", ids, "users")
    snapshot(config, "users")
    user = gateway.schema.user
    async with gateway.reading() as conn:
        active = (
            await conn.execute(
                select(func.count()).select_from(user).where((user.c.deleted == 0) & (user.c.suspended == 0))
            )
        ).scalar_one()
    config.set("run.safety_min_rows", 1)
    config.set("run.safety_threshold", 4 / active)  # 5 suspensions of the site's active accounts: more than this
    content = USERS + f"{names[0]};F;L\n"
    with pytest.raises(SafetyStop) as stop:
        await run_file(config, gateway, "users", content)
    assert stop.value.destructive == 5
    assert [(await user_by_id(gateway, i))["suspended"] for i in ids] == [0] * 6  # nothing written

    dry = await run_file(config, gateway, "users", content, dry_run=True)
    real = await run_file(config, gateway, "users", content, force=True)
    assert dry_and_real(dry) == dry_and_real(real)
    assert real.counts == {"unchanged": 1, "updated": 5}, report_of(real)
    assert [(await user_by_id(gateway, i))["suspended"] for i in ids] == [0, 1, 1, 1, 1, 1]


async def test_a_row_that_fails_still_protects_its_account_and_an_unreadable_row_stops_every_removal(
    dump_site: Site,
) -> None:
    config, gateway = dump_site
    names = [unique("snapf") for _ in range(3)]
    ids = [await add_user(gateway, username=n) for n in names]
    await own(config, gateway, "user", ids, "users")
    snapshot(config, "users")
    content = header("username", "firstname", "lastname", "country")
    content += f"{names[0]};F;L;\n{names[1]};F;L;NOWHERE\n"  # a typo: the row fails, its account stays
    result = await run_file(config, gateway, "users", content)
    assert result.counts == {"unchanged": 1, "failed": 1, "updated": 1}, report_of(result)
    assert [(await user_by_id(gateway, i))["suspended"] for i in ids] == [0, 0, 1]

    (await ledger_for_site(config.data_dir, gateway)).add(
        "user", [await add_user(gateway, username=unique("s"))], "users", "x"
    )
    broken = USERS + f'{names[0]};F;L\n"{names[1]};F;L\n'  # a quote never closed: line 3 cannot be read
    result = await run_file(config, gateway, "users", broken)
    assert "snapshot mode removed nothing: line 3 could not be read" in report_of(result)
    assert not snapshot_lines(result)


async def test_an_enrolments_snapshot_unenrols_owned_enrolments_of_the_courses_it_names_only(dump_site: Site) -> None:
    config, gateway = dump_site
    snapshot(config, "enrols")
    config.set("operations.enrols.mode", "update")  # until the site has its enrolments
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    named, other = await add_enrolment_courses(gateway, 2, instances=(("manual", 0),))
    a, b, hand, c = [unique("snape") for _ in range(4)]
    ids = [await add_user(gateway, username=n) for n in (a, b, hand, c)]
    rows = "".join(
        f"student;{course.shortname};{user};add;manual\n" for user, course in ((a, named), (b, named), (c, other))
    )
    result = await run_file(config, gateway, "enrols", header("rolename", "cid", "uid", "cmd", "enrol") + rows)
    assert result.counts == {"created": 3}, report_of(result)
    ledger = await ledger_for_site(config.data_dir, gateway)
    assert set((await enrolments(gateway, ids)).values()) == ledger.owned("enrolment")  # the run's capture
    hand_made = header("rolename", "cid", "uid", "cmd", "enrol") + f"student;{named.shortname};{hand};add;manual\n"
    await run_file(config, gateway, "enrols", hand_made)  # enrolled by hand, as far as the ledger knows:
    ledger.forget("enrolment", [(await enrolments(gateway, [ids[2]]))[ids[2], named.id]])
    snapshot(config, "enrols")

    content = header("rolename", "cid", "uid", "enrol") + f"student;{named.shortname};{a};manual\n"
    result = await run_file(config, gateway, "enrols", content)

    assert result.counts == {"unchanged": 1, "deleted": 1}, report_of(result)
    left = await enrolments(gateway, ids)
    assert (ids[0], named.id) in left  # named
    assert (ids[2], named.id) in left  # hand-made
    assert (ids[1], named.id) not in left  # owned, in a course the file names, no longer in it
    assert (ids[3], other.id) in left  # owned, in a course the file does not name
    (line,) = snapshot_lines(result)
    assert "(unenrol)" in line, line


async def enrolments(gateway: MoodleGateway, users: list[int]) -> dict[tuple[int, int], int]:
    """(user id, course id) -> user_enrolments id."""
    ue, enrol = gateway.schema.user_enrolments, gateway.schema.enrol
    async with gateway.reading() as conn:
        rows = await conn.execute(
            select(ue.c.userid, enrol.c.courseid, ue.c.id)
            .join(enrol, enrol.c.id == ue.c.enrolid)
            .where(ue.c.userid.in_(users))
        )
        return {(int(u), int(c)): int(i) for u, c, i in rows}


async def test_group_and_cohort_snapshots_remove_owned_memberships_only(dump_site: Site) -> None:
    config, gateway = dump_site
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    group = await add_group(gateway, course.id, unique("G"))
    cohort_key = unique("C")
    await add_cohort(gateway, cohort_key, idnumber=cohort_key)
    kept, gone, hand = await add_users(gateway, 3)
    for operation in ("groupmembers", "cohorts", "enrols"):
        config.set(f"operations.{operation}.user_identifier", "id")
    config.set("operations.enrols.course_identifier", "id")
    enrolled = header("rolename", "cid", "uid", "enrol") + "".join(
        f"student;{course.id};{u};manual\n" for u in (kept, gone, hand)
    )
    assert (await run_file(config, gateway, "enrols", enrolled)).counts == {"created": 3}
    config.set("operations.groupmembers.group_identifier", "id")
    members = header("groupid", "userid", "courseid") + "".join(f"{group};{u};{course.id}\n" for u in (kept, gone))
    cohort_rows = header("cidnumber", "userid") + "".join(f"{cohort_key};{u}\n" for u in (kept, gone))
    for operation, content in (("groupmembers", members), ("cohorts", cohort_rows)):
        result = await run_file(config, gateway, operation, content)  # the run's capture: the ledger holds them
        assert result.counts == {"created": 2}, report_of(result)
    gm, cm = gateway.schema.groups_members, gateway.schema.cohort_members
    async with gateway.transaction() as conn:  # made by hand: not toolsync's
        cohort_id = (await conn.execute(select(cm.c.cohortid).where(cm.c.userid == kept))).scalar_one()
        await gateway.insert_many(
            conn, gm, [{"groupid": group, "userid": hand, "timeadded": 1, "component": "", "itemid": 0}]
        )
        await gateway.insert_many(conn, cm, [{"cohortid": cohort_id, "userid": hand, "timeadded": 1}])
        gids = dict((await conn.execute(select(gm.c.userid, gm.c.id).where(gm.c.groupid == group))).all())
    snapshot(config, "groupmembers")
    snapshot(config, "cohorts")

    one = await run_file(config, gateway, "groupmembers", header("groupid", "userid") + f"{group};{kept}\n")
    two = await run_file(config, gateway, "cohorts", header("cidnumber", "userid") + f"{cohort_key};{kept}\n")

    assert len(snapshot_lines(one)) == 1, report_of(one)
    assert len(snapshot_lines(two)) == 1, report_of(two)
    async with gateway.reading() as conn:
        in_group = set((await conn.execute(select(gm.c.userid).where(gm.c.groupid == group))).scalars())
        in_cohort = set((await conn.execute(select(cm.c.userid).where(cm.c.userid.in_([kept, gone, hand])))).scalars())
    assert in_group == {kept, hand}
    assert in_cohort == {kept, hand}

    # The ledger forgets what no longer exists when a snapshot reads it; a record its snapshot leaves alone (a plugin's
    # membership, component enrol_meta) still exists, and stays in it.
    async with gateway.transaction() as conn:
        await conn.execute(gm.update().where(gm.c.userid == hand).values(component="enrol_meta"))
    await own(config, gateway, "group_member", [gids[hand], 10**9], "groupmembers")
    again = await run_file(config, gateway, "groupmembers", header("groupid", "userid") + f"{group};{kept}\n")
    assert again.counts == {"unchanged": 1}, report_of(again)
    ledger = await ledger_for_site(config.data_dir, gateway)
    assert ledger.owned("group_member") == {gids[kept], gids[hand]}  # gone's and the never-existing one pruned


async def test_enrolment_actions_suspend_and_remove_role_and_a_file_that_cannot_express_its_action(
    dump_site: Site,
) -> None:
    config, gateway = dump_site
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    a, b = unique("snapa"), unique("snapa")
    ids = [await add_user(gateway, username=n) for n in (a, b)]
    enrolled = header("rolename", "cid", "uid", "enrol") + "".join(
        f"student;{course.shortname};{n};manual\n" for n in (a, b)
    )
    assert (await run_file(config, gateway, "enrols", enrolled)).counts == {"created": 2}
    only_a = header("rolename", "cid", "uid", "enrol") + f"student;{course.shortname};{a};manual\n"

    snapshot(config, "enrols", snapshot_action="suspend")
    result = await run_file(config, gateway, "enrols", only_a)
    assert result.counts == {"unchanged": 1, "updated": 1}, report_of(result)
    ue = gateway.schema.user_enrolments
    async with gateway.reading() as conn:
        status = dict((await conn.execute(select(ue.c.userid, ue.c.status).where(ue.c.userid.in_(ids)))).all())
    assert status == {ids[0]: 0, ids[1]: 1}  # suspended, still enrolled
    again = await run_file(config, gateway, "enrols", only_a)  # already suspended: nothing more to do
    assert again.counts == {"unchanged": 1}, report_of(again)

    # A file of role assignments (no enrol column): remove_role unassigns b's role, the enrolment stays.
    config.set("operations.enrols.snapshot_action", "remove_role")
    with pytest.raises(RunProblem, match="remove_role is for a file of role assignments"):
        await run_file(config, gateway, "enrols", enrolled)  # an enrol column: enrolments, which have no role to drop
    roles_only = header("rolename", "cid", "uid") + f"student;{course.shortname};{a}\n"
    result = await run_file(config, gateway, "enrols", roles_only)
    assert result.counts == {"unchanged": 1, "deleted": 1}, report_of(result)
    ra = gateway.schema.role_assignments
    async with gateway.reading() as conn:
        assigned = set((await conn.execute(select(ra.c.userid).where(ra.c.userid.in_(ids)))).scalars())
        enrolled_now = set((await conn.execute(select(ue.c.userid).where(ue.c.userid.in_(ids)))).scalars())
    assert assigned == {ids[0]}
    assert enrolled_now == set(ids)

    config.set("operations.enrols.snapshot_action", "suspend")
    with pytest.raises(RunProblem, match="role assignments, which cannot be suspended"):
        await run_file(config, gateway, "enrols", roles_only)


async def test_a_snapshot_row_that_fails_goes_to_the_tryback_in_the_files_format(dump_site: Site) -> None:
    config, gateway = dump_site
    named, nameless = unique("snapt"), unique("snapt")
    ids = [await add_user(gateway, username=named), await add_user(gateway, username=nameless, firstname="")]
    await own(config, gateway, "user", ids, "users")
    snapshot(config, "users")
    content = header("username", "firstname", "lastname", "city") + f"{named};F;L;Lyon\n"

    result = await run_file(config, gateway, "users", content)

    assert result.counts == {"updated": 1, "failed": 1}, report_of(result)
    (line,) = snapshot_lines(result)
    assert line.startswith("line 3: failed (check) firstname is empty"), line
    assert result.tryback_path is not None
    assert result.tryback_path.read_text() == f"username;firstname;lastname;city;suspended\n{nameless};;L;;1\n"

    # Run again, the tryback is no snapshot: it holds the failed rows only, so the named account is not suspended.
    again = await run_operation(config, gateway, "users", result.tryback_path)
    assert again.counts == {"failed": 1}, report_of(again)
    assert "snapshot mode does not apply to a tryback" in report_of(again)
    assert (await user_by_id(gateway, ids[0]))["suspended"] == 0


async def test_the_archived_copy_of_a_snapshot_file_is_the_file_as_delivered_with_its_passwords_emptied(
    dump_site: Site,
) -> None:
    config, gateway = dump_site
    kept, gone = unique("snapp"), unique("snapp")
    ids = [await add_user(gateway, username=n) for n in (kept, gone)]
    await own(config, gateway, "user", ids, "users")
    snapshot(config, "users")
    content = header("username", "firstname", "lastname", "password") + f"{kept};F;L;Secret-77-pass!\n"

    result = await run_file(config, gateway, "users", content)

    assert result.counts == {"updated": 2}, report_of(result)
    assert result.archive_path is not None
    assert result.archive_path.read_text() == f"username;firstname;lastname;password\n{kept};F;L;\n"
