"""The groups file end to end on SQLite and MariaDB: group and grouping rows, report, tryback."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Table, select

from tests.support.case_rules import cased
from tests.support.course_factories import add_enrolment_courses, add_group
from tests.support.factories import unique
from tests.support.operation_files import identifiers_by_id, report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(site: Site) -> Site:
    """conftest's site with the identifiers at their defaults (id), whatever the sandbox's configuration names."""
    identifiers_by_id(site[0], "groups", "course_identifier", "group_identifier", "grouping_identifier")
    return site


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "groups", content, **options)


async def rows_of(gateway: MoodleGateway, table: Table, courseid: int) -> list[dict[str, Any]]:
    async with gateway.reading() as conn:
        rows = await conn.execute(select(table).where(table.c.courseid == courseid).order_by(table.c.id))
        return [dict(r._mapping) for r in rows]


async def test_create_group_grouping_selfgrouping_and_rerun(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    lab, set_ = unique("Lab "), unique("Set ")
    content = (
        "courseid;name;type;idnumber;selfgrouping;grouping;description\n"
        f"{course.id};{set_};grouping;SET1;;;\n"
        f"{course.id};{lab};group;LAB1;1;SET1;Room 4\n"
        f"{course.id};Other;group;;;NOPE;\n"
        f"999999;X;group;;;;\n"
        f"{course.id};Y;team;;;;\n"
        f"{course.id};{lab};group;LAB2;;;\n"
    )

    result = await run(config, gateway, content)

    assert result.counts == {"created": 2, "failed": 4}
    [group] = await rows_of(gateway, gateway.schema.groups, course.id)
    assert (group["name"], group["idnumber"], group["description"], group["participation"]) == (
        lab,
        "LAB1",
        "Room 4",
        1,
    )
    assert group["timecreated"] > 0
    assert group["timemodified"] == group["timecreated"]
    groupings = await rows_of(gateway, gateway.schema.groupings, course.id)
    # The self grouping takes the group's idnumber and description, as tool_sync gives them.
    assert [(g["name"], g["idnumber"], g["description"]) for g in groupings] == [
        (set_, "SET1", None),
        (lab, "LAB1", "Room 4"),
    ]
    assert groupings[0]["timecreated"] > 0
    gg = gateway.schema.groupings_groups
    async with gateway.reading() as conn:
        links = {(int(a), int(b)) for a, b in await conn.execute(select(gg.c.groupingid, gg.c.groupid))}
    assert {(g["id"], group["id"]) for g in groupings} <= links
    report = report_of(result)
    assert "grouping 'NOPE' not found" in report
    assert "course '999999' not found" in report
    assert "type 'team': expected group or grouping" in report
    assert "is already used by another group" in report
    assert result.tryback_path is not None
    assert len(result.tryback_path.read_text().splitlines()) == 5

    again = await run(config, gateway, "\n".join(content.splitlines()[:3]) + "\n")
    assert again.counts == {"unchanged": 2}

    differs = await run(config, gateway, f"courseid;name;idnumber;description\n{course.id};{lab};LAB1;Room 5\n")
    assert differs.counts == {"skipped": 1}
    updated = await run(
        config, gateway, f"courseid;name;updateid;description\n{course.id};{lab} B;{group['id']};Room 5\n"
    )
    assert updated.counts == {"updated": 1}
    [group] = await rows_of(gateway, gateway.schema.groups, course.id)
    assert (group["name"], group["idnumber"], group["description"]) == (f"{lab} B", "LAB1", "Room 5")


async def test_a_selfgrouping_takes_the_groups_idnumber_and_description(site: Site) -> None:
    """tool_sync's selfgrouping creates the grouping from the group as the row leaves it: its name, idnumber,
    description and descriptionformat (a group found is taken as stored, or as the row updates it). A grouping of
    that name is left as it is; an idnumber another grouping of the course holds fails the row, as Moodle's
    groups_create_grouping() refuses it (idnumbertaken)."""
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    new, plain, stored, renamed, clash, kept = (unique(p) for p in ("New ", "Plain ", "Stored ", "Ren ", "Cl ", "K "))
    format_1 = {"descriptionformat": 1, "timecreated": 1, "timemodified": 1}
    format_0 = {**format_1, "descriptionformat": 0}
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.groups,
            [
                {"courseid": course.id, "name": stored, "idnumber": "ST1", "description": "<p>Kept</p>", **format_1},
                {"courseid": course.id, "name": renamed, "idnumber": "RE1", "description": "Old", **format_0},
            ],
        )
        await gateway.insert_many(
            conn,
            gateway.schema.groupings,
            [
                {"courseid": course.id, "name": "Taken", "idnumber": "CL1", "description": None, "timecreated": 1},
                {"courseid": course.id, "name": kept, "idnumber": "", "description": "Mine", "timecreated": 1},
            ],
        )

    added = await run(
        config,
        gateway,
        "courseid;name;idnumber;description;selfgrouping\n"
        f"{course.id};{new};NEW1;Room 1;1\n"
        f"{course.id};{plain};;;1\n"
        f"{course.id};{stored};;Ignored in add-only mode;1\n"
        f"{course.id};{clash};CL1;;1\n"
        f"{course.id};{kept};KP1;Other;1\n",
    )

    report = report_of(added)
    assert added.counts == {"created": 3, "updated": 1, "failed": 1}, report
    assert "line 5: failed (check) selfgrouping: idnumber 'CL1' is already used by another grouping of the course" in (
        report
    )
    config.set("operations.groups.group_identifier", "idnumber")
    updated = await run(
        config,
        gateway,
        f"courseid;name;updateid;idnumber;description;selfgrouping\n{course.id};{renamed};RE1;RE2;New;1\n",
    )
    assert updated.counts == {"updated": 1}, report_of(updated)
    groupings = {g["name"]: g for g in await rows_of(gateway, gateway.schema.groupings, course.id)}
    shown = {n: (g["idnumber"], g["description"], g["descriptionformat"]) for n, g in groupings.items()}
    assert shown == {
        "Taken": ("CL1", None, 0),
        kept: ("", "Mine", 0),  # found by name: left as it is
        new: ("NEW1", "Room 1", 0),
        plain: ("", None, 0),  # the group has no idnumber and no description (NULL, as groups_create_group())
        stored: ("ST1", "<p>Kept</p>", 1),  # the group as stored
        renamed: ("RE2", "New", 0),  # the group as the row updated it
    }
    assert clash not in {g["name"] for g in await rows_of(gateway, gateway.schema.groups, course.id)}
    again = await run(config, gateway, f"courseid;name;selfgrouping\n{course.id};{new};1\n")
    assert again.counts == {"unchanged": 1}, report_of(again)


async def test_dry_run_writes_nothing(site: Site) -> None:
    config, gateway = site
    [course] = await add_enrolment_courses(gateway)
    result = await run(config, gateway, f"courseid;name\n{course.id};{unique('G ')}\n", dry_run=True)
    assert result.counts == {"created": 1}
    assert "would be created" in report_of(result)
    assert await rows_of(gateway, gateway.schema.groups, course.id) == []


async def test_updateid_not_found_creates_in_the_resolved_course(site: Site) -> None:
    config, gateway = site
    config.set("operations.groups.course_identifier", "shortname")
    [course] = await add_enrolment_courses(gateway)
    name = unique("G ")
    result = await run(config, gateway, f"courseid;name;updateid\n{course.shortname};{name};999999\n")
    assert result.counts == {"created": 1}
    [group] = await rows_of(gateway, gateway.schema.groups, course.id)
    assert group["name"] == name


async def test_an_updateid_of_another_course_fails_and_creates_nothing(site: Site) -> None:
    config, gateway = site
    course, other = await add_enrolment_courses(gateway, 2)
    group = await add_group(gateway, other.id, unique("G "))
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn, gateway.schema.groupings, [{"courseid": other.id, "name": unique("Gr "), "timecreated": 1}]
        )
        [grouping] = (await gateway.fetch_in(conn, gateway.schema.groupings, "courseid", [other.id], ["id"]))["id"]
    content = (
        "courseid;name;type;updateid\n"
        f"{course.id};Mine;group;{group}\n"
        f"{course.id};Mine too;grouping;{grouping}\n"
        f"{course.id};Typo;group;12x\n"
    )

    result = await run(config, gateway, content)

    assert result.counts == {"failed": 3}
    report = report_of(result)
    assert f"group {group} belongs to course {other.id}, not to the row's course {course.id}" in report
    assert f"grouping {grouping} belongs to course {other.id}, not to the row's course {course.id}" in report
    assert "updateid '12x': groups are named by id (group_identifier), expected a number" in report
    assert await rows_of(gateway, gateway.schema.groups, course.id) == []
    assert await rows_of(gateway, gateway.schema.groupings, course.id) == []
    [untouched] = await rows_of(gateway, gateway.schema.groups, other.id)
    assert (untouched["id"], untouched["name"].startswith("G ")) == (group, True)


async def test_a_rename_is_seen_by_the_later_rows_of_the_batch(site: Site) -> None:
    config, gateway = site
    config.set("operations.groups.group_identifier", "idnumber")
    [course] = await add_enrolment_courses(gateway)
    old, new = unique("Old "), unique("New ")
    taken = cased(gateway, new.upper(), new)
    await run(config, gateway, f"courseid;name;idnumber\n{course.id};{old};K1\n")
    content = (
        "courseid;name;updateid;idnumber;description\n"
        f"{course.id};{new};K1;;\n"  # renamed
        f"{course.id};{old};;;\n"  # the old name is free again: a new group
        f"{course.id};{taken};;K2;\n"  # the new name is taken (case-insensitively): fails
        f"{course.id};{new};K1;;Desc\n"  # found again by its idnumber
    )

    result = await run(config, gateway, content)

    assert result.counts == {"updated": 2, "created": 1, "failed": 1}
    assert "name '" + taken + "' is already used by another group of the course" in report_of(result)
    stored = await rows_of(gateway, gateway.schema.groups, course.id)
    assert [(g["name"], g["idnumber"], g["description"]) for g in stored] == [(new, "K1", "Desc"), (old, "", None)]


# -- the real Moodle schema ----------------------------------------------------------------------------


async def test_on_the_real_moodle_dump(dump_site: Site) -> None:
    await test_create_group_grouping_selfgrouping_and_rerun(dump_site)
    await test_an_updateid_of_another_course_fails_and_creates_nothing(dump_site)
    await test_a_rename_is_seen_by_the_later_rows_of_the_batch(dump_site)
