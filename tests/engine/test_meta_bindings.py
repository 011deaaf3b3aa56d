"""Metacourse bindings (metacourses.csv) end to end on SQLite and MariaDB, and on the real Moodle dump."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from tests.support.course_factories import STUDENT, TestCourse, add_enrolment_courses, add_users
from tests.support.operation_files import report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(site: Site) -> Site:
    site[0].set("operations.metacourses.identifier", "shortname")
    return site


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "metacourses", content, **options)


async def meta_instances(gateway: MoodleGateway, course: TestCourse) -> list[dict[str, Any]]:
    return await rows_of(gateway, gateway.schema.enrol, courseid=course.id, enrol="meta")


async def enable_meta(gateway: MoodleGateway) -> None:
    """Enable enrol_meta on the site (a fresh site has manual, guest, self and cohort)."""
    config = gateway.schema.config
    async with gateway.transaction() as conn:
        enabled = (await conn.execute(select(config.c.value).where(config.c.name == "enrol_plugins_enabled"))).scalar()
        if "meta" not in str(enabled).split(","):
            value = f"{enabled},meta"
            await conn.execute(update(config).where(config.c.name == "enrol_plugins_enabled").values(value=value))


async def test_add_del_and_rerun(site: Site) -> None:
    config, gateway = site
    await enable_meta(gateway)
    master, meta = await add_enrolment_courses(gateway, 2)
    content = f"master;meta\n{master.shortname};{meta.shortname}\n"

    result = await run(config, gateway, content)

    assert result.counts == {"created": 1}, report_of(result)
    [row] = await meta_instances(gateway, meta)
    assert (row["status"], row["customint1"], row["customint2"], row["sortorder"]) == (0, master.id, 0, 3)
    assert (row["enrolstartdate"], row["enrolenddate"], row["roleid"]) == (0, 0, 0)
    assert "\\enrol_meta\\task\\enrol_meta_sync" in report_of(result)
    assert (await run(config, gateway, content)).counts == {"unchanged": 1}

    # What Moodle's meta sync leaves for a participant of the master course.
    [ann] = await add_users(gateway, 1)
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.user_enrolments,
            [{"enrolid": row["id"], "userid": ann, "status": 0, "timestart": 0, "timeend": 0, "modifierid": 2}],
        )
        await gateway.insert_many(
            conn,
            gateway.schema.role_assignments,
            [{"roleid": STUDENT, "contextid": meta.contextid, "userid": ann, "component": "enrol_meta",
              "itemid": row["id"], "modifierid": 2, "timemodified": 1}],
        )  # fmt: skip
    removed = await run(config, gateway, f"master;meta;cmd\n{master.shortname};{meta.shortname};del\n", force=True)
    assert removed.counts == {"deleted": 1}
    assert "deleted, 1 user(s) unenrolled" in report_of(removed)
    assert await meta_instances(gateway, meta) == []
    assert await rows_of(gateway, gateway.schema.user_enrolments, userid=ann) == []
    assert await rows_of(gateway, gateway.schema.role_assignments, userid=ann) == []
    again = await run(config, gateway, f"master;meta;cmd\n{master.shortname};{meta.shortname};del\n")
    assert again.counts == {"unchanged": 1}


async def test_disabled_link_is_enabled_again(site: Site) -> None:
    config, gateway = site
    master, meta = await add_enrolment_courses(gateway, 2)
    content = f"master;meta\n{master.shortname};{meta.shortname}\n"
    await run(config, gateway, content)
    [row] = await meta_instances(gateway, meta)
    async with gateway.transaction() as conn:
        await gateway.update_many(conn, gateway.schema.enrol, "id", [{"id": row["id"], "status": 1}])
    result = await run(config, gateway, content)
    assert result.counts == {"updated": 1}
    assert [r["status"] for r in await meta_instances(gateway, meta)] == [0]


async def test_bad_rows_fail_into_the_tryback(site: Site) -> None:
    config, gateway = site
    master, meta = await add_enrolment_courses(gateway, 2)
    lines = [
        f"nocourse;{meta.shortname};add",
        f"{master.shortname};{master.shortname};add",
        f"{master.shortname};{meta.shortname};sync",
    ]
    result = await run(config, gateway, "master;meta;cmd\n" + "".join(f"{line}\n" for line in lines))
    assert result.counts == {"failed": 3}
    report = report_of(result)
    assert "master: course 'nocourse' not found (identifier shortname)" in report
    assert "cannot be a meta link of itself" in report
    assert "cmd 'sync': expected add or del" in report
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines()[1:] == lines


async def test_on_the_real_moodle_dump(dump_site: Site) -> None:
    config, gateway = dump_site
    config.set("operations.metacourses.identifier", "shortname")
    master, meta = await add_enrolment_courses(gateway, 2)
    content = f"master;meta\n{master.shortname};{meta.shortname}\n"
    result = await run(config, gateway, content)
    assert result.counts == {"created": 1}
    # enrol_meta is not enabled on a fresh site: the report says the link enrols nobody until it is.
    assert "the plugin is disabled on this site" in report_of(result)
    assert (await run(config, gateway, content)).counts == {"unchanged": 1}
    removed = await run(config, gateway, f"master;meta;cmd\n{master.shortname};{meta.shortname};del\n", force=True)
    assert removed.counts == {"deleted": 1}
