"""The shared bulk group functions: the rows they leave, on SQLite, MariaDB (project schema) and the real dump."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from sqlalchemy import update

from tests.support.case_rules import cased
from tests.support.course_factories import add_enrolment_courses, add_group, add_users, created_group
from tests.support.factories import unique
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle import groups as gm
from toolsync_tui.engine.moodle.gateway import MoodleGateway

Site = tuple[Config, MoodleGateway]
NOW = 1_790_000_000


async def enrol(gateway: MoodleGateway, instance: int, users: list[int], status: int = 0) -> None:
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.user_enrolments,
            [{"enrolid": instance, "userid": u, "status": status, "timestart": 0, "timeend": 0} for u in users],
        )


def frame(**columns: list[Any]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema={name: pl.String if name == "name" else pl.Int64 for name in columns})


async def check_find_create_and_members(gateway: MoodleGateway) -> None:
    first, second = await add_enrolment_courses(gateway, 2)
    name = unique("Lab ")
    older = await add_group(gateway, first.id, name)
    await add_group(gateway, first.id, name.upper())  # a later group of the same name: the lowest id wins
    new_name = unique("New ")
    lowered, upper = cased(gateway, name.lower(), name), cased(gateway, new_name.upper(), new_name)

    async with gateway.transaction() as conn:
        found = await gm.find_groups(
            gateway,
            conn,
            frame(courseid=[first.id, first.id, second.id, first.id], name=[lowered, lowered, name, new_name]),
        )
        created = await gm.create_groups(
            gateway,
            conn,
            frame(courseid=[first.id, first.id, second.id], name=[f" {new_name} ", upper, new_name]),
            NOW,
        )

    assert found.to_dicts() == [
        {"courseid": first.id, "name": lowered, "groupid": older},
        {"courseid": second.id, "name": name, "groupid": None},
        {"courseid": first.id, "name": new_name, "groupid": None},
    ]
    assert created["courseid"].to_list() == [first.id, second.id]
    rows = await rows_of(gateway, gateway.schema.groups, id=created["groupid"].to_list())
    assert [{k: v for k, v in r.items() if k != "id"} for r in rows] == [
        created_group(course, new_name, NOW) for course in (first.id, second.id)
    ]

    ann, bob, cid = await add_users(gateway, 3)
    await enrol(gateway, first.instance(), [ann])
    await enrol(gateway, first.instance("self"), [bob], status=1)  # suspended, in a disabled instance: still enrolled
    await enrol(gateway, second.instance(), [cid])
    group = int(created["groupid"][0])
    async with gateway.transaction() as conn:
        enrolled = await gm.enrolled(
            gateway, conn, frame(courseid=[first.id, first.id, first.id, second.id], userid=[ann, bob, cid, ann])
        )
        # groups_add_member() throws on a component that is no installed plugin (tool_sync is none), before writing.
        for component, itemid in ((gm.LEGACY_COMPONENT, 0), ("", 7)):
            with pytest.raises(ValueError, match="groups_add_member"):
                await gm.add_members(
                    gateway, conn, frame(groupid=[group], userid=[ann]), now=NOW, component=component, itemid=itemid
                )
        added = await gm.add_members(
            gateway, conn, frame(groupid=[group, group, older], userid=[ann, ann, bob]), now=NOW
        )
        again = await gm.add_members(gateway, conn, frame(groupid=[group], userid=[ann]), now=NOW + 5)
        current = await gm.memberships(
            gateway, conn, frame(courseid=[first.id, first.id, second.id], userid=[ann, bob, ann])
        )

    assert enrolled.to_dicts() == [{"courseid": first.id, "userid": ann}, {"courseid": first.id, "userid": bob}]
    assert added.to_dicts() == [
        {"groupid": group, "userid": ann, "added": True},
        {"groupid": older, "userid": bob, "added": True},
    ]
    assert again["added"].to_list() == [False]
    members = await rows_of(gateway, gateway.schema.groups_members, groupid=[group, older])
    assert [(m["groupid"], m["userid"], m["timeadded"], m["component"], m["itemid"]) for m in members] == [
        (group, ann, NOW, "", 0),
        (older, bob, NOW, "", 0),
    ]
    touched = await rows_of(gateway, gateway.schema.groups, id=[group, older])
    assert [g["timemodified"] for g in touched] == [NOW, NOW]  # the idempotent re-add touched nothing
    assert current.to_dicts() == [
        {
            "courseid": first.id,
            "userid": ann,
            "groupid": group,
            "groupname": new_name,
            "component": "",
            "itemid": 0,
        },
        {
            "courseid": first.id,
            "userid": bob,
            "groupid": older,
            "groupname": name,
            "component": "",
            "itemid": 0,
        },
    ]

    async with gateway.transaction() as conn:
        removed = await gm.remove_members(
            gateway, conn, frame(groupid=[group, group, older], userid=[ann, bob, ann]), now=NOW + 10
        )
    assert removed == 1
    assert [m["userid"] for m in await rows_of(gateway, gateway.schema.groups_members, groupid=[group, older])] == [bob]
    stamps = {g["id"]: g["timemodified"] for g in await rows_of(gateway, gateway.schema.groups, id=[older, group])}
    assert stamps == {older: NOW, group: NOW + 10}


async def test_find_create_enrolled_add_and_remove(site: Site) -> None:
    await check_find_create_and_members(site[1])


async def test_an_unenrolled_or_deleted_user_is_not_enrolled(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    ann, bob = await add_users(gateway, 2)
    await enrol(gateway, course.instance(), [ann, bob])
    async with gateway.transaction() as conn:
        user = gateway.schema.user
        await conn.execute(update(user).where(user.c.id == bob).values(deleted=1))
        found = await gm.enrolled(gateway, conn, frame(courseid=[course.id, course.id], userid=[ann, bob]))
        nobody = await gm.enrolled(gateway, conn, frame(courseid=[], userid=[]))
    assert found["userid"].to_list() == [ann]
    assert nobody.is_empty()


async def test_delete_groups_and_groupings_remove_what_moodle_removes(site: Site) -> None:
    _, gateway = site
    [course] = await add_enrolment_courses(gateway)
    [ann] = await add_users(gateway, 1)
    schema = gateway.schema
    doomed, kept = await add_group(gateway, course.id, unique("G ")), await add_group(gateway, course.id, unique("G "))
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn, schema.groupings, [{"courseid": course.id, "name": unique("Gr "), "timecreated": 1}]
        )
        [grouping] = (await gateway.fetch_in(conn, schema.groupings, "courseid", [course.id], ["id"]))["id"].to_list()
        await gateway.insert_many(
            conn,
            schema.groupings_groups,
            [{"groupingid": grouping, "groupid": g, "timeadded": 1} for g in (doomed, kept)],
        )
        await gateway.insert_many(
            conn, schema.groups_members, [{"groupid": g, "userid": ann, "timeadded": 1} for g in (doomed, kept)]
        )
        await gateway.insert_many(
            conn,
            schema.event,
            [
                {"name": "Meeting", "description": "", "courseid": course.id, "groupid": g, "eventtype": "group"}
                for g in (doomed, kept)
            ],
        )
        await conn.execute(
            update(schema.course).where(schema.course.c.id == course.id).values(defaultgroupingid=grouping)
        )
        await gm.delete_groups(gateway, conn, [doomed])

    assert [g["id"] for g in await rows_of(gateway, schema.groups, courseid=course.id)] == [kept]
    assert [m["groupid"] for m in await rows_of(gateway, schema.groups_members, userid=ann)] == [kept]
    assert [r["groupid"] for r in await rows_of(gateway, schema.groupings_groups, groupingid=grouping)] == [kept]
    assert [e["groupid"] for e in await rows_of(gateway, schema.event, courseid=course.id)] == [kept]

    async with gateway.transaction() as conn:
        await gm.delete_groupings(gateway, conn, [grouping])
    assert await rows_of(gateway, schema.groupings, courseid=course.id) == []
    assert await rows_of(gateway, schema.groupings_groups, groupingid=grouping) == []
    [stored] = await rows_of(gateway, schema.course, id=course.id)
    assert stored["defaultgroupingid"] == 0
    assert [g["id"] for g in await rows_of(gateway, schema.groups, courseid=course.id)] == [kept]


async def check_delete_groupings_releases_activities(gateway: MoodleGateway) -> None:
    """course_modules.groupingid of the grouping's activities reset to 0 (groups_delete_grouping()), the cacherev of
    their course bumped (§1.3); another grouping's activity and another course left alone."""
    schema = gateway.schema
    course, other = await add_enrolment_courses(gateway, 2)
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            schema.groupings,
            [{"courseid": c, "name": unique("Gr "), "timecreated": 1} for c in (course.id, course.id, other.id)],
        )
        found = await gateway.fetch_in(conn, schema.groupings, "courseid", [course.id, other.id], ["id", "courseid"])
        doomed, kept, elsewhere = found.sort("id")["id"].to_list()
        await gateway.insert_many(
            conn,
            schema.course_modules,
            [{"course": course.id, "module": 1, "instance": i, "groupingid": g} for i, g in enumerate((doomed, kept))]
            + [{"course": other.id, "module": 1, "instance": 9, "groupingid": elsewhere}],
        )
        course_table = schema.course
        await conn.execute(update(course_table).where(course_table.c.id == course.id).values(cacherev=NOW + 10))
        await conn.execute(update(course_table).where(course_table.c.id == other.id).values(cacherev=NOW + 10))
        await gm.delete_groupings(gateway, conn, [doomed], now=NOW)

    modules = await rows_of(gateway, schema.course_modules, course=[course.id, other.id])
    assert [(m["course"], m["groupingid"]) for m in modules] == [
        (course.id, 0),
        (course.id, kept),
        (other.id, elsewhere),
    ]
    revs = {c["id"]: c["cacherev"] for c in await rows_of(gateway, schema.course, id=[course.id, other.id])}
    assert revs == {course.id: NOW + 11, other.id: NOW + 10}  # within the hour after now: + 1

    async with gateway.transaction() as conn:
        await gm.delete_groupings(gateway, conn, [elsewhere], now=NOW + 7200)  # below now: now
    [stored] = await rows_of(gateway, schema.course, id=other.id)
    assert stored["cacherev"] == NOW + 7200


async def test_delete_groupings_releases_the_activities_restricted_to_them(site: Site) -> None:
    await check_delete_groupings_releases_activities(site[1])


async def check_foreign_components_found_and_cleared(gateway: MoodleGateway) -> None:
    """foreign_memberships(): the rows whose component is no installed plugin ('tool_sync', a removed plugin's), not
    '', a core subsystem's or an installed plugin's (enrol_cohort); clear_components() gives them '' and itemid 0."""
    [course] = await add_enrolment_courses(gateway)
    group, other = await add_group(gateway, course.id, unique("G ")), await add_group(gateway, course.id, unique("G "))
    users = await add_users(gateway, 5)
    planted = [("tool_sync", 0), ("local_gone", 9), ("enrol_cohort", 3), ("", 0), ("core_group", 0)]
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.groups_members,
            [
                {"groupid": group if n < 3 else other, "userid": u, "timeadded": 1, "component": c, "itemid": i}
                for n, (u, (c, i)) in enumerate(zip(users, planted, strict=True))
            ],
        )
        installed = await gm.installed_components(gateway, conn)
        found = await gm.foreign_memberships(gateway, conn)
    assert "enrol_cohort" in installed
    assert gm.LEGACY_COMPONENT not in installed
    mine = found.filter(pl.col("groupid").is_in([group, other]))
    assert mine.select("groupid", "userid", "component", "itemid", "courseid", "shortname").rows() == [
        (group, users[0], "tool_sync", 0, course.id, course.shortname),
        (group, users[1], "local_gone", 9, course.id, course.shortname),
    ]
    async with gateway.transaction() as conn:
        # A row changed meanwhile (no longer one of the components) is left alone.
        changed = await gm.clear_components(gateway, conn, [*mine["id"].to_list(), 10**9], [gm.LEGACY_COMPONENT])
    assert changed == 1
    stored = await rows_of(gateway, gateway.schema.groups_members, groupid=[group, other])
    assert sorted((m["userid"], m["component"], m["itemid"]) for m in stored) == sorted(
        [
            (users[0], "", 0),
            (users[1], "local_gone", 9),
            *((u, c, i) for u, (c, i) in zip(users[2:], planted[2:], strict=True)),
        ]
    )
    async with gateway.transaction() as conn:
        await gm.clear_components(gateway, conn, mine["id"].to_list(), ["local_gone"])
        assert (await gm.foreign_memberships(gateway, conn)).filter(pl.col("groupid") == group).is_empty()


async def test_foreign_components_found_and_cleared(site: Site) -> None:
    await check_foreign_components_found_and_cleared(site[1])


async def test_on_the_real_moodle_schema(dump_gateway: MoodleGateway) -> None:
    await check_find_create_and_members(dump_gateway)
    await check_delete_groupings_releases_activities(dump_gateway)
    await check_foreign_components_found_and_cleared(dump_gateway)
