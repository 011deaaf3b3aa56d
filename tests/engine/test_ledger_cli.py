"""`toolsync ledger adopt OPERATION FILE` and `toolsync ledger show` on the real Moodle dump: a site fed before
toolsync kept a ledger adopts its records, and snapshot mode then manages them (and nothing else)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing

import pytest
from sqlalchemy import select

from tests.support.accounts import add_user, user_by_id
from tests.support.case_rules import cased
from tests.support.course_factories import add_cohort, add_enrolment_courses, add_group
from tests.support.factories import unique
from tests.support.operation_files import header, inbox_file, report_of, run_file
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.ledger import ADOPTED, ledger_for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.snapshot.adopt import adopt

Site = tuple[Config, MoodleGateway]
USERS = header("username", "firstname", "lastname")


async def toolsync(config: Config, *argv: str) -> int:
    """The command line, as a cron job would call it (its own event loop, in a thread)."""
    config.save()
    return await asyncio.to_thread(main, ["--config", str(config.path), *argv])


async def test_adopted_accounts_are_managed_by_a_snapshot_and_the_others_are_not(
    dump_site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    config, gateway = dump_site
    kept, gone, never = (unique("adopt") for _ in range(3))
    ids = {name: await add_user(gateway, username=name) for name in (kept, gone, never)}  # fed before the ledger
    inbox_file(config, "before.csv", USERS + f"{kept};F;L\n{gone};F;L\n{unique('nobody')};F;L\n")

    assert await toolsync(config, "ledger", "adopt", "users", "before.csv", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "users: 2 users would be adopted, 0 already owned, 1 not found" in out, out
    assert "not found: line 4" in out
    ledger = await ledger_for_site(config.data_dir, gateway)
    assert ledger.owned("user") == set()  # a dry run changes nothing

    assert await toolsync(config, "ledger", "adopt", "users", "before.csv") == 0
    assert "users: 2 users adopted, 0 already owned, 1 not found" in capsys.readouterr().out
    assert ledger.owned("user") == {ids[kept], ids[gone]}
    assert await toolsync(config, "ledger", "adopt", "users", "before.csv") == 0
    assert "0 users adopted, 2 already owned" in capsys.readouterr().out
    assert await toolsync(config, "ledger", "show") == 0
    assert "  user: 2" in capsys.readouterr().out

    config.set("operations.users.mode", "snapshot")
    config.set("run.guard_min_share", 0)  # the file shrinks on purpose
    result = await run_file(config, gateway, "users", USERS + f"{kept};F;L\n")

    assert result.counts == {"unchanged": 1, "updated": 1}, report_of(result)
    assert [(await user_by_id(gateway, ids[n]))["suspended"] for n in (kept, gone, never)] == [0, 1, 0]


async def test_adopting_enrolments_and_role_assignments_then_a_snapshot_unenrols_an_adopted_one(
    dump_site: Site,
) -> None:
    config, gateway = dump_site
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    a, b = unique("adopte"), unique("adopte")
    users = [await add_user(gateway, username=name) for name in (a, b)]
    rows = "".join(f"student;{course.shortname};{n};manual\n" for n in (a, b))
    assert (await run_file(config, gateway, "enrols", header("rolename", "cid", "uid", "enrol") + rows)).counts == {
        "created": 2
    }
    ledger = await ledger_for_site(config.data_dir, gateway)
    for kind in ("enrolment", "role_assignment"):
        ledger.forget(kind, ledger.owned(kind))  # as a site fed before toolsync kept a ledger
    inbox_file(config, "enrolled.csv", header("rolename", "cid", "uid", "enrol") + rows)
    inbox_file(config, "roles.csv", header("rolename", "cid", "uid") + rows.replace(";manual", ""))

    assert await toolsync(config, "ledger", "adopt", "enrols", "enrolled.csv") == 0
    assert await toolsync(config, "ledger", "adopt", "enrols", "roles.csv") == 0
    ue, ra = gateway.schema.user_enrolments, gateway.schema.role_assignments
    async with gateway.reading() as conn:
        enrolled = set((await conn.execute(select(ue.c.id).where(ue.c.userid.in_(users)))).scalars())
        assigned = set((await conn.execute(select(ra.c.id).where(ra.c.userid.in_(users)))).scalars())
    assert ledger.owned("enrolment") == enrolled
    assert ledger.owned("role_assignment") == assigned
    with closing(sqlite3.connect(ledger.path)) as db:
        assert {run for (run,) in db.execute("SELECT DISTINCT run FROM owned")} == {ADOPTED}

    config.set("operations.enrols.mode", "snapshot")
    config.set("run.guard_min_share", 0)
    result = await run_file(
        config, gateway, "enrols", header("rolename", "cid", "uid", "enrol") + rows.splitlines()[0] + "\n"
    )
    assert result.counts == {"unchanged": 1, "deleted": 1}, report_of(result)


async def test_adopting_group_and_cohort_memberships_named_by_name_and_idnumber(dump_site: Site) -> None:
    config, gateway = dump_site
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    group_name, cohort_key = unique("Group "), unique("CO")
    group = await add_group(gateway, course.id, group_name)
    cohort = await add_cohort(gateway, cohort_key, idnumber=cohort_key)
    names = [unique("adoptm") for _ in range(2)]
    users = [await add_user(gateway, username=n) for n in names]
    gm, cm = gateway.schema.groups_members, gateway.schema.cohort_members
    async with gateway.transaction() as conn:  # memberships made before toolsync kept a ledger
        await gateway.insert_many(conn, gm, [{"groupid": group, "userid": u, "timeadded": 1} for u in users])
        await gateway.insert_many(conn, cm, [{"cohortid": cohort, "userid": u, "timeadded": 1} for u in users])
    config.set("operations.groupmembers.group_identifier", "name")
    config.set("operations.groupmembers.course_identifier", "shortname")
    config.set("operations.groupmembers.user_identifier", "username")
    config.set("operations.cohorts.user_identifier", "username")
    # Keys in another letter case name the same records where Moodle's lookups ignore case (PostgreSQL gets the
    # stored spelling: test_snapshot_case_rules); the third row names nobody.
    members = header("groupid", "userid", "courseid") + "".join(
        f"{cased(gateway, group_name.upper(), group_name)};{n};{course.shortname}\n" for n in [*names, "nobody"]
    )
    cohorts = header("cidnumber", "userid") + "".join(
        f"{cased(gateway, cohort_key.lower(), cohort_key)};{n}\n" for n in names
    )

    one = await adopt(config, gateway, "groupmembers", inbox_file(config, "gm.csv", members))
    two = await adopt(config, gateway, "cohorts", inbox_file(config, "co.csv", cohorts))

    assert (one.kind, one.adopted, one.owned, one.not_found) == ("group_member", 2, 0, [4])
    assert (two.kind, two.adopted, two.owned, two.not_found) == ("cohort_member", 2, 0, [])
    ledger = await ledger_for_site(config.data_dir, gateway)
    async with gateway.reading() as conn:
        assert ledger.owned("group_member") == set(
            (await conn.execute(select(gm.c.id).where(gm.c.groupid == group))).scalars()
        )
        assert ledger.owned("cohort_member") == set(
            (await conn.execute(select(cm.c.id).where(cm.c.cohortid == cohort))).scalars()
        )
