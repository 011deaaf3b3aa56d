"""The group members file end to end on SQLite and MariaDB: memberships, report, tryback, safety, purge."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from tests.support.case_rules import cased
from tests.support.course_factories import TestCourse, add_enrolment_courses, add_group, add_users
from tests.support.factories import unique
from tests.support.operation_files import identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.protected_groups import (
    MEMBER_SCHEMA,
    ProtectedMemberships,
    StateProblem,
    for_site,
    state_path,
)
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult, SafetyStop

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(site: Site) -> Site:
    """conftest's site with the identifiers at their defaults (id), whatever the sandbox's configuration names."""
    identifiers_by_id(site[0], "groupmembers", "course_identifier", "group_identifier", "user_identifier")
    return site


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "groupmembers", content, **options)


def lines_of(result: RunResult) -> list[list[str]]:
    assert result.table_path is not None
    text = result.table_path.read_text().splitlines()
    return [line.split(",") for line in text[1:]]


async def members(gateway: MoodleGateway, groups: list[int]) -> set[tuple[int, int, str]]:
    gm = gateway.schema.groups_members
    async with gateway.reading() as conn:
        rows = await conn.execute(select(gm.c.groupid, gm.c.userid, gm.c.component).where(gm.c.groupid.in_(groups)))
        return {(int(g), int(u), str(c)) for g, u, c in rows}


async def protected(config: Config, gateway: MoodleGateway, groups: list[int]) -> set[tuple[int, int]]:
    """(groupid, userid) of the memberships of `groups` that toolsync's state protects (its entry's memberid is the
    stored row's id)."""
    state = await for_site(config.data_dir, gateway)
    gm = gateway.schema.groups_members
    async with gateway.reading() as conn:
        rows = await conn.execute(select(gm.c.groupid, gm.c.userid, gm.c.id).where(gm.c.groupid.in_(groups)))
        stored = pl.DataFrame([tuple(r) for r in rows], schema=MEMBER_SCHEMA, orient="row")
    return {(int(g), int(u)) for g, u, _ in state.protected(stored).iter_rows()}


async def enrol(gateway: MoodleGateway, course: TestCourse, users: list[int]) -> None:
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.user_enrolments,
            [{"enrolid": course.instance(), "userid": u, "status": 0, "timestart": 0, "timeend": 0} for u in users],
        )


async def setup(gateway: MoodleGateway) -> tuple[TestCourse, list[int], list[int]]:
    [course] = await add_enrolment_courses(gateway)
    groups = [await add_group(gateway, course.id, unique("G ")) for _ in range(3)]
    users = await add_users(gateway, 3)
    await enrol(gateway, course, users[:2])  # the third is not enrolled
    return course, groups, users


async def test_add_shift_del_and_rerun(site: Site) -> None:
    config, gateway = site
    course, (a, b, c), (ann, bob, cid) = await setup(gateway)
    content = (
        "groupid;userid;courseid;cmd\n"
        f"{a};{ann};{course.id};add\n"
        f"{b};{ann};{course.id};\n"
        f"{a};{bob};{course.id};add\n"
        f"{c};{bob};{course.id};shift\n"
        f"{a};{cid};{course.id};add\n"
        f"999999;{ann};{course.id};add\n"
        f"{a};999999;{course.id};add\n"
        f"{a};{ann};999999;add\n"
        f"{a};{ann};{course.id};move\n"
    )

    result = await run(config, gateway, content)

    # Moodle's groups_add_member() writes component '' (tool_sync is no plugin of the site): protection is toolsync's
    # own record, in the data directory.
    assert await members(gateway, [a, b, c]) == {(a, ann, ""), (b, ann, ""), (c, bob, "")}
    assert await protected(config, gateway, [a, b, c]) == {(a, ann), (b, ann), (c, bob)}
    assert result.counts == {"created": 3, "updated": 1, "failed": 5}
    report = report_of(result)
    assert "removed from 1 other group" in report
    assert "is not enrolled in the course" in report
    assert "group '999999' not found" in report
    assert "user '999999' not found" in report
    assert "course '999999' not found" in report
    assert "cmd 'move': expected add, shift or del" in report
    assert result.tryback_path is not None
    assert len(result.tryback_path.read_text().splitlines()) == 6  # header + the five failed rows

    again = await run(config, gateway, f"groupid;userid;courseid\n{a};{ann};{course.id}\n{b};{ann};{course.id}\n")
    assert again.counts == {"unchanged": 2}

    removed = await run(config, gateway, f"groupid;userid;courseid;cmd\n{b};{ann};{course.id};del\n")
    assert removed.counts == {"deleted": 1}
    assert await members(gateway, [a, b, c]) == {(a, ann, ""), (c, bob, "")}
    assert await protected(config, gateway, [a, b, c]) == {(a, ann), (c, bob)}


async def test_dry_run_writes_nothing(site: Site) -> None:
    config, gateway = site
    course, (a, _, _), (ann, _, _) = await setup(gateway)
    result = await run(config, gateway, f"groupid;userid;courseid\n{a};{ann};{course.id}\n", dry_run=True)
    assert result.counts == {"created": 1}
    assert "would be added" in report_of(result)
    assert await members(gateway, [a]) == set()


async def test_safety_threshold_holds_mass_removals(site: Site) -> None:
    config, gateway = site
    course, (a, _, _), _ = await setup(gateway)
    more = await add_users(gateway, 12)
    await enrol(gateway, course, more)
    content = "groupid;userid;courseid\n" + "".join(f"{a};{u};{course.id}\n" for u in more)
    await run(config, gateway, content)
    removal = "groupid;userid;courseid;cmd\n" + "".join(f"{a};{u};{course.id};del\n" for u in more)
    with pytest.raises(SafetyStop):
        await run(config, gateway, removal)
    assert len(await members(gateway, [a])) == 12
    forced = await run(config, gateway, removal, force=True)
    assert forced.counts == {"deleted": 12}


@pytest.mark.parametrize("mode", ["groups", "groups_and_groupings"])
async def test_purge_empty_only_touches_the_files_courses(site: Site, mode: str) -> None:
    config, gateway = site
    config.set("operations.groupmembers.purge_empty", mode)
    course, (a, b, c), (ann, _, _) = await setup(gateway)
    [other] = await add_enrolment_courses(gateway)
    elsewhere = await add_group(gateway, other.id, unique("G "))

    result = await run(config, gateway, f"groupid;userid;courseid\n{a};{ann};{course.id}\n", force=True)

    groups = gateway.schema.groups
    async with gateway.reading() as conn:
        left = {int(i) for (i,) in await conn.execute(select(groups.c.id).where(groups.c.id.in_([a, b, c, elsewhere])))}
    assert left == {a, elsewhere}
    assert any("purge_empty: deleted 2 empty groups" in note for note in result.notes)


async def test_rows_of_one_user_follow_the_file_order(site: Site) -> None:
    """A user's del, add and shift rows in one batch are applied in file order; a user with add rows only is
    planned in bulk, the same membership named twice added once."""
    config, gateway = site
    course, (a, b, c), (ann, bob, cid) = await setup(gateway)
    [dan] = await add_users(gateway, 1)
    await enrol(gateway, course, [dan])
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.groups_members,
            [
                {"groupid": a, "userid": ann, "timeadded": 1, "component": "tool_sync", "itemid": 0},
                {"groupid": c, "userid": bob, "timeadded": 1, "component": "enrol_cohort", "itemid": 7},
            ],
        )
    rows = [(a, ann, "del"), (a, ann, "add"), (b, ann, ""), (b, ann, "add"), (a, bob, "shift"), (b, bob, "add")]
    rows += [(a, cid, "add"), (c, bob, "del"), (c, dan, "add"), (c, dan, "add")]
    content = "groupid;userid;courseid;cmd\n" + "".join(f"{g};{u};{course.id};{cmd}\n" for g, u, cmd in rows)

    result = await run(config, gateway, content, force=True)

    assert [(line[0], line[2], line[3]) for line in lines_of(result)] == [
        ("2", "deleted", "remove"),
        ("3", "created", "add"),
        ("4", "created", "add"),
        ("5", "unchanged", "none"),
        ("6", "created", "add"),
        ("6", "skipped", "none"),  # kept in c: enrol_cohort's
        ("7", "created", "add"),
        ("8", "failed", "check"),
        ("9", "failed", "check"),
        ("10", "created", "add"),
        ("11", "unchanged", "none"),
    ]
    assert await members(gateway, [a, b, c]) == {
        (a, ann, "tool_sync"),  # an earlier run's row: line 2 removes it, line 3 adds it again, so it stays as it is
        (b, ann, ""),
        (a, bob, ""),
        (b, bob, ""),
        (c, bob, "enrol_cohort"),
        (c, dan, ""),
    }
    assert await protected(config, gateway, [a, b, c]) == {(b, ann), (a, bob), (b, bob), (c, dan)}
    report = report_of(result)
    assert "is not enrolled in the course" in report
    assert "is managed by enrol_cohort" in report


@pytest.mark.parametrize("identifier", ["name", "idnumber"])
async def test_groups_by_name_or_idnumber_within_the_rows_course(site: Site, identifier: str) -> None:
    config, gateway = site
    config.set("operations.groupmembers.group_identifier", identifier)
    config.set("operations.groupmembers.course_identifier", "shortname")
    course, (a, _, _), (ann, bob, _) = await setup(gateway)
    [other] = await add_enrolment_courses(gateway)
    same = await add_group(gateway, other.id, "Same name")
    groups = gateway.schema.groups
    async with gateway.transaction() as conn:
        await conn.execute(update(groups).where(groups.c.id == a).values(name="Same name", idnumber="SAME"))
        await conn.execute(update(groups).where(groups.c.id == same).values(idnumber="SAME"))
    value = cased(gateway, "same NAME", "Same name") if identifier == "name" else cased(gateway, "same", "SAME")
    content = (
        "groupid;userid;courseid\n"
        f"{value};{ann};{course.shortname}\n"
        f"{value};{bob};{course.shortname}\n"
        f"{value};{ann};{course.shortname}\n"
        f"nope;{ann};{course.shortname}\n"
        f"{value};{ann};\n"
    )

    result = await run(config, gateway, content)

    assert result.counts == {"created": 2, "unchanged": 1, "failed": 2}
    assert await members(gateway, [a, same]) == {(a, ann, ""), (a, bob, "")}
    report = report_of(result)
    assert f"group 'nope' not found in course '{course.shortname}' (group_identifier {identifier})" in report
    assert f"empty courseid: groups named by {identifier} are looked up in the row's course" in report


async def test_memberships_are_moodles_own_rows_and_protection_is_toolsyncs_state(site: Site) -> None:
    """add and shift write component '' and itemid 0, as groups_add_member() does, never 'tool_sync'; what the file
    made is recorded in the data directory (mode 0600), with the row's id, after the batch committed; a dry run
    records nothing; a membership removed and made again by hand in Moodle is no longer protected."""
    config, gateway = site
    course, (a, b, c), (ann, bob, _) = await setup(gateway)
    dry = await run(config, gateway, f"groupid;userid;courseid\n{a};{ann};{course.id}\n", dry_run=True)
    assert dry.counts == {"created": 1}
    assert (await for_site(config.data_dir, gateway)).entries().filter(pl.col("groupid") == a).is_empty()

    content = (
        f"groupid;userid;courseid;cmd\n{a};{ann};{course.id};add\n{b};{bob};{course.id};\n{c};{bob};{course.id};shift\n"
    )
    result = await run(config, gateway, content, force=True)

    assert result.counts == {"created": 2, "updated": 1}
    stored = await rows_of(gateway, gateway.schema.groups_members, groupid=[a, b, c])
    assert sorted((m["groupid"], m["userid"], m["component"], m["itemid"]) for m in stored) == [
        (a, ann, "", 0),
        (c, bob, "", 0),
    ]
    path = state_path(config.data_dir)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    entries = (await for_site(config.data_dir, gateway)).entries()
    ids = {(m["groupid"], m["userid"]): m["id"] for m in stored}
    mine = entries.filter(pl.col("groupid").is_in([a, b, c]))
    assert sorted(mine.select("groupid", "userid", "memberid", "source").iter_rows()) == [
        (a, ann, ids[(a, ann)], "groupmembers"),
        (c, bob, ids[(c, bob)], "groupmembers"),
    ]

    # Removed by hand in Moodle and made again there: another row, no longer toolsync's.
    gm = gateway.schema.groups_members
    async with gateway.transaction() as conn:
        await conn.execute(delete(gm).where(gm.c.id == ids[(a, ann)]))
        await gateway.insert_many(conn, gm, [{"groupid": a, "userid": ann, "timeadded": 5}])
    assert await protected(config, gateway, [a, b, c]) == {(c, bob)}


async def test_a_rolled_back_batch_records_no_protection(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    config, gateway = site
    course, (a, _, _), (ann, _, _) = await setup(gateway)

    async def refused(*args: Any, **kwargs: Any) -> None:
        raise IntegrityError("UPDATE groups", {}, Exception("refused"))

    monkeypatch.setattr("toolsync_tui.engine.moodle.groups.touch_groups", refused)
    result = await run(config, gateway, f"groupid;userid;courseid\n{a};{ann};{course.id}\n")

    assert result.counts == {"failed": 1}
    assert await members(gateway, [a]) == set()
    assert (await for_site(config.data_dir, gateway)).entries().filter(pl.col("groupid") == a).is_empty()


async def test_an_unreadable_state_stops_the_run_and_an_unwritable_one_is_a_note(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, gateway = site
    course, (a, b, _), (ann, _, _) = await setup(gateway)
    path = state_path(config.data_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(RunProblem, match=r"protected group memberships file .* cannot be used"):
        await run(config, gateway, f"groupid;userid;courseid\n{a};{ann};{course.id}\n")
    assert await members(gateway, [a]) == set()
    path.unlink()

    def refused(self: ProtectedMemberships, now: int | None = None) -> int:
        self.begin()
        raise StateProblem(f"the protected group memberships file {path} cannot be used: disk full")

    monkeypatch.setattr(ProtectedMemberships, "commit", refused)
    result = await run(config, gateway, f"groupid;userid;courseid\n{b};{ann};{course.id}\n")
    assert result.counts == {"created": 1}
    assert await members(gateway, [b]) == {(b, ann, "")}
    assert any("disk full: memberships this run added are not recorded as protected" in n for n in result.notes)


# -- the real Moodle schema ----------------------------------------------------------------------------


async def test_on_the_real_moodle_dump(dump_site: Site) -> None:
    await test_add_shift_del_and_rerun(dump_site)
    await test_rows_of_one_user_follow_the_file_order(dump_site)
    await test_purge_empty_only_touches_the_files_courses(dump_site, "groups_and_groupings")
    await test_memberships_are_moodles_own_rows_and_protection_is_toolsyncs_state(dump_site)
