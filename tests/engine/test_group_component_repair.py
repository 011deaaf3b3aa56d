"""`toolsync groups repair-components`: memberships that tool_sync or an earlier toolsync tagged with a component that
is no plugin of the site (the course's Group members page fails on them) get Moodle's component '' and itemid 0, and
those tagged 'tool_sync' toolsync's own protection instead."""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.support.course_factories import TestCourse, add_enrolment_courses, add_group, add_users
from tests.support.factories import unique
from tests.support.operation_files import identifiers_by_id, run_file
from tests.support.tables import rows_of
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.protected_groups import MEMBER_SCHEMA, for_site, state_path
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.lock import RunLock

Site = tuple[Config, MoodleGateway]
REPAIR = ("groups", "repair-components")


async def toolsync(config: Config, *argv: str) -> int:
    """`toolsync --config <the site's config> ...`, in a thread: main() runs its own event loop."""
    config.save()
    return await asyncio.to_thread(main, ["--config", str(config.path), *argv])


@dataclass
class Planted:
    course: TestCourse
    lab: int  # ann 'tool_sync', bob 'local_gone' (a plugin the site does not have), itemid 5
    club: int  # ann 'tool_sync', cid 'enrol_cohort' (installed), dan ''
    lab_name: str
    club_name: str
    users: list[int]  # ann, bob, cid, dan


async def plant(gateway: MoodleGateway) -> Planted:
    [course] = await add_enrolment_courses(gateway)
    lab_name, club_name = unique("Lab "), unique("Club ")
    lab, club = await add_group(gateway, course.id, lab_name), await add_group(gateway, course.id, club_name)
    users = await add_users(gateway, 4)
    ann, bob, cid, dan = users
    schema = gateway.schema
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            schema.user_enrolments,
            [{"enrolid": course.instance(), "userid": u, "status": 0, "timestart": 0, "timeend": 0} for u in users],
        )
        await gateway.insert_many(
            conn,
            schema.groups_members,
            [
                {"groupid": lab, "userid": ann, "timeadded": 1, "component": "tool_sync", "itemid": 0},
                {"groupid": lab, "userid": bob, "timeadded": 1, "component": "local_gone", "itemid": 5},
                {"groupid": club, "userid": ann, "timeadded": 1, "component": "tool_sync", "itemid": 0},
                {"groupid": club, "userid": cid, "timeadded": 1, "component": "enrol_cohort", "itemid": 3},
                {"groupid": club, "userid": dan, "timeadded": 1, "component": "", "itemid": 0},
            ],
        )
    return Planted(course, lab, club, lab_name, club_name, users)


async def members(gateway: MoodleGateway, groups: list[int]) -> list[tuple[int, int, str, int]]:
    found = await rows_of(gateway, gateway.schema.groups_members, groupid=groups)
    return sorted((m["groupid"], m["userid"], m["component"], m["itemid"]) for m in found)


async def protected(config: Config, gateway: MoodleGateway, groups: list[int]) -> list[tuple[int, int, str]]:
    """(groupid, userid, source) of the memberships of `groups` that toolsync's state protects."""
    found = await rows_of(gateway, gateway.schema.groups_members, groupid=groups)
    stored = pl.DataFrame([(m["groupid"], m["userid"], m["id"]) for m in found], schema=MEMBER_SCHEMA, orient="row")
    state = await for_site(config.data_dir, gateway)
    held = state.protected(stored).join(state.entries(), on=["groupid", "userid", "memberid"])
    return sorted(held.select("groupid", "userid", "source").iter_rows())


async def check_repair(config: Config, gateway: MoodleGateway, capsys: pytest.CaptureFixture[str]) -> None:
    p = await plant(gateway)
    ann, bob, cid, dan = p.users
    before = await members(gateway, [p.lab, p.club])
    course = f"course '{p.course.shortname}' (id {p.course.id})"
    lab, club = f"group '{p.lab_name}' (id {p.lab}) of {course}", f"group '{p.club_name}' (id {p.club}) of {course}"

    assert await toolsync(config, *REPAIR, "--dry-run") == 0

    assert capsys.readouterr().out.splitlines() == [
        f"would repair: {lab}: 1 membership of component 'local_gone'",
        f"would repair: {lab}: 1 membership of component 'tool_sync' (then protected by toolsync)",
        f"would repair: {club}: 1 membership of component 'tool_sync' (then protected by toolsync)",
        "groups repair-components (dry run): 3 memberships in 2 groups hold a component that is no installed plugin "
        "(local_gone: 1, tool_sync: 2); nothing was changed",
    ]
    assert await members(gateway, [p.lab, p.club]) == before
    assert not state_path(config.data_dir).exists()

    assert await toolsync(config, *REPAIR) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"repaired: {lab}: 1 membership of component 'local_gone' set to '' (itemid 0)",
        f"repaired: {lab}: 1 membership of component 'tool_sync' set to '' (itemid 0), protected by toolsync",
        f"repaired: {club}: 1 membership of component 'tool_sync' set to '' (itemid 0), protected by toolsync",
        "groups repair-components: 3 memberships in 2 groups set to component '' and itemid 0 "
        f"(local_gone: 1, tool_sync: 2); 2 recorded as protected in {state_path(config.data_dir)}",
    ]
    assert await members(gateway, [p.lab, p.club]) == [
        (p.lab, ann, "", 0),
        (p.lab, bob, "", 0),
        (p.club, ann, "", 0),
        (p.club, cid, "enrol_cohort", 3),  # an installed plugin's: Moodle accepts it
        (p.club, dan, "", 0),
    ]
    assert await protected(config, gateway, [p.lab, p.club]) == [(p.lab, ann, "repair"), (p.club, ann, "repair")]
    assert state_path(config.data_dir).stat().st_mode & 0o777 == 0o600

    assert await toolsync(config, *REPAIR) == 0
    assert capsys.readouterr().out == (
        "groups repair-components: no membership holds a component that is no installed plugin; nothing to repair\n"
    )

    # The enrolments file with protect_groups honours the repaired protection: greplace takes ann out of the lab
    # (toolsync's, repaired), gdel keeps bob in it (a removed plugin's, not toolsync's).
    identifiers_by_id(config, "enrols", "course_identifier", "user_identifier")
    config.set("operations.enrols.protect_groups", True)
    config.set("run.safety_min_rows", 100)
    head = "rolename;cid;uid;enrol;gcmd;g1\n"
    content = (
        head
        + f"student;{p.course.id};{ann};manual;greplace;{p.club_name}\n"
        + f"student;{p.course.id};{bob};manual;gdel;{p.lab_name}\n"
    )
    result = await run_file(config, gateway, "enrols", content)
    assert result.table_path is not None
    with result.table_path.open(newline="") as handle:
        steps = [(r["line"], r["part"], r["outcome"]) for r in csv.DictReader(handle) if r["part"]]
    assert steps == [("2", "g1", "unchanged"), ("2", f"group {p.lab_name}", "deleted"), ("3", "g1", "unchanged")]
    assert await members(gateway, [p.lab]) == [(p.lab, bob, "", 0)]


async def test_repair_components(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    await check_repair(*site, capsys)


async def test_on_the_real_moodle_dump(dump_site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    await check_repair(*dump_site, capsys)


async def test_a_run_in_progress_or_an_unusable_state_changes_nothing(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    config, gateway = site
    p = await plant(gateway)
    before = await members(gateway, [p.lab, p.club])
    with RunLock(config.data_dir, "enrols"):
        assert await toolsync(config, *REPAIR) == 2
    err = capsys.readouterr().err
    assert err.startswith("toolsync: groups repair-components: another run is in progress in ")
    path = state_path(config.data_dir)
    path.mkdir(parents=True)  # not a file: unusable
    assert await toolsync(config, *REPAIR) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"toolsync: groups repair-components: the protected group memberships file {path} ")
    assert "nothing was changed" in err
    assert await members(gateway, [p.lab, p.club]) == before
    Path.rmdir(path)
    assert await toolsync(config, *REPAIR) == 0  # and leaves the next test of this database nothing to repair
