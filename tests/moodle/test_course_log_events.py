"""The courses file leaves in Moodle's standard log the rows create_course(), update_course() and
core_course_category::create() leave (issue 19).

The expected rows are those a Moodle 4.5 site wrote through its own API from the command line: create_course() logs
course_created, course_section_created per section (sectionnum an integer), enrol_instance_created per default method
in sortorder; update_course() course_updated with the changed fields in the course table's order; a section renamed
course_section_updated; a method enabled enrol_instance_updated.
"""

from __future__ import annotations

import json

import pytest

from tests.support.factories import unique
from tests.support.log_rows import log_mark, log_since, row, set_log_store
from tests.support.operation_files import inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, run_operation

Site = tuple[Config, MoodleGateway]


@pytest.fixture
async def site(dump_site: Site) -> Site:
    await set_log_store(dump_site[1], enabled=True, jsonformat=True)
    return dump_site


async def run_courses(config: Config, gateway: MoodleGateway, content: str, **options: bool) -> RunResult:
    inbox_file(config, "uploadcourses.csv", content)
    return await run_operation(config, gateway, "courses", **options)


async def context(gateway: MoodleGateway, level: int, instance: int) -> tuple[int, int, int]:
    [found] = await rows_of(gateway, gateway.schema.context, contextlevel=level, instanceid=instance)
    return int(found["id"]), level, instance


def course_row(
    event: str, table: str, objectid: int, crud: str, level: int, where: tuple[int, int, int], other: object
) -> dict[str, object]:
    return row(
        event,
        table,
        objectid,
        crud,
        level,
        where,
        courseid=where[2],
        other=json.dumps(other, separators=(",", ":")).replace("/", "\\/"),
    )


async def test_a_new_course_in_new_categories_then_its_update_are_logged_as_moodle_logs_them(site: Site) -> None:
    config, gateway = site
    top, sub, short = unique("LogTop"), unique("LogSub"), unique("LOG/C")
    mark = await log_mark(gateway)

    result = await run_courses(config, gateway, f"shortname;fullname;category\n{short};Logged é;{top}/{sub}\n")

    assert result.counts == {"created": 1}, report_of(result)
    [top_row] = await rows_of(gateway, gateway.schema.course_categories, name=top)
    [sub_row] = await rows_of(gateway, gateway.schema.course_categories, name=sub)
    [course] = await rows_of(gateway, gateway.schema.course, shortname=short)
    where = await context(gateway, 50, course["id"])
    sections = await rows_of(gateway, gateway.schema.course_sections, course=course["id"])
    instances = sorted(
        await rows_of(gateway, gateway.schema.enrol, courseid=course["id"]), key=lambda i: i["sortorder"]
    )
    assert [s["section"] for s in sections] == [0, 1, 2, 3, 4]  # the site's numsections
    assert [i["enrol"] for i in instances] == ["manual", "guest", "self"]
    expected = [
        row(
            "core\\event\\course_category_created",
            "course_categories",
            c["id"],
            "c",
            0,
            await context(gateway, 40, c["id"]),
        )
        for c in (top_row, sub_row)
    ]
    expected.append(
        course_row(
            "core\\event\\course_created",
            "course",
            course["id"],
            "c",
            1,
            where,
            {"shortname": short, "fullname": "Logged é"},
        )
    )
    expected += [
        course_row(
            "core\\event\\course_section_created",
            "course_sections",
            s["id"],
            "c",
            1,
            where,
            {"sectionnum": s["section"]},
        )
        for s in sorted(sections, key=lambda s: s["section"])
    ]
    expected += [
        course_row("core\\event\\enrol_instance_created", "enrol", i["id"], "c", 0, where, {"enrol": i["enrol"]})
        for i in instances
    ]
    logged = await log_since(gateway, mark)
    assert logged == expected
    assert '"fullname":"Logged \\u00e9"' in logged[2]["other"]  # json_encode()'s escapes, as Moodle wrote them

    config.set("operations.courses.forceupdate", True)
    mark = await log_mark(gateway)

    result = await run_courses(
        config, gateway, f"shortname;fullname;visible;topic1;guest\n{short};Renamed;0;Week one;1\n"
    )

    assert result.counts == {"updated": 1}, report_of(result)
    section_1 = next(s for s in sections if s["section"] == 1)
    guest = instances[1]
    assert await log_since(gateway, mark) == [
        course_row(
            "core\\event\\course_updated",
            "course",
            course["id"],
            "u",
            1,
            where,
            {"shortname": short, "fullname": "Renamed", "updatedfields": {"fullname": "Renamed", "visible": 0}},
        ),
        course_row(
            "core\\event\\course_section_updated", "course_sections", section_1["id"], "u", 1, where, {"sectionnum": 1}
        ),
        course_row("core\\event\\enrol_instance_updated", "enrol", guest["id"], "u", 0, where, {"enrol": "guest"}),
    ]

    # Nothing to change, or a dry run: nothing logged.
    mark = await log_mark(gateway)
    await run_courses(config, gateway, f"shortname;fullname;visible\n{short};Renamed;0\n")
    await run_courses(config, gateway, f"shortname;fullname\n{unique('LOGDRY')};Dry\n", dry_run=True)
    assert await log_since(gateway, mark) == []


async def test_no_course_rows_are_logged_when_the_standard_log_store_is_disabled(site: Site) -> None:
    config, gateway = site
    await set_log_store(gateway, enabled=False)
    mark = await log_mark(gateway)
    try:
        result = await run_courses(config, gateway, f"shortname;fullname\n{unique('LOGOFF')};Off\n")
    finally:
        await set_log_store(gateway, enabled=True)
    assert result.counts == {"created": 1}, report_of(result)
    assert await log_since(gateway, mark) == []
