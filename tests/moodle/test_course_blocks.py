"""New courses get the blocks create_course() gives them (blocks_add_default_course_blocks()), as it leaves them on a
real Moodle 4.5 site: a social course its social_activities block and that block's context, the other core formats
nothing, unless the site's `config` names default blocks. test_course_blocks_on_moodle.py compares with
create_course() itself."""

from __future__ import annotations

import time

from sqlalchemy import delete, insert, select

from tests.support.course_blocks import SOCIAL_ACTIVITIES, block, blocks_of
from tests.support.operation_files import Site, report_of, run_file
from tests.support.tables import rows_of


async def test_a_social_course_gets_its_block_and_the_other_formats_none(dump_site: Site) -> None:
    config, gateway = dump_site
    before = int(time.time())
    rows = "".join(f"BL{f}{n};{f};{f}\n" for n in range(12) for f in ("topics", "weeks", "social", "singleactivity"))
    result = await run_file(config, gateway, "courses", f"shortname;fullname;format\n{rows}")
    assert result.counts == {"created": 48}, report_of(result)
    for n in range(12):  # more parent contexts than one UPDATE per parent serves
        assert await blocks_of(gateway, f"BLsocial{n}") == [SOCIAL_ACTIVITIES]
        for f in ("topics", "weeks", "singleactivity"):
            assert await blocks_of(gateway, f"BL{f}{n}") == [], f
    made = await rows_of(gateway, gateway.schema.block_instances, blockname="social_activities")
    assert len(made) == 12
    assert all(before <= b["timecreated"] <= time.time() for b in made)
    # No block_positions row, and no log row: add_block() triggers no event.
    log = gateway.schema.logstore_standard_log
    async with gateway.reading() as conn:
        assert (await conn.execute(select(log.c.id).where(log.c.contextlevel == 80))).first() is None


async def test_a_dry_run_and_an_update_write_no_block(dump_site: Site) -> None:
    """update_course() adds no block, even to a course that becomes social."""
    config, gateway = dump_site
    blocks = len(await rows_of(gateway, gateway.schema.block_instances))
    dry = await run_file(config, gateway, "courses", "shortname;fullname;format\nDRY1;Dry;social\n", dry_run=True)
    assert dry.counts == {"created": 1}, report_of(dry)
    assert len(await rows_of(gateway, gateway.schema.block_instances)) == blocks
    created = await run_file(config, gateway, "courses", "shortname;fullname;format\nLATE1;Late;topics\n")
    assert created.counts == {"created": 1}, report_of(created)
    config.set("operations.courses.forceupdate", True)
    updated = await run_file(config, gateway, "courses", "shortname;fullname;format\nLATE1;Late;social\n")
    assert updated.counts == {"updated": 1}, report_of(updated)
    assert await blocks_of(gateway, "LATE1") == []
    assert len(await rows_of(gateway, gateway.schema.block_instances)) == blocks


async def test_the_sites_default_block_settings_decide(dump_site: Site) -> None:
    """defaultblocks_override first, then defaultblocks_<format>; names that are no installed block are dropped
    (create_course() on a site with these settings wrote the same: test_course_blocks_on_moodle.py)."""
    config, gateway = dump_site
    table, installed = gateway.schema.config, gateway.schema.block
    [calendar] = await rows_of(gateway, installed, name="calendar_month")
    settings = {"defaultblocks_weeks": "html,nonexistent:calendar_month, search_forums,search_forums"}
    async with gateway.transaction() as conn:
        await conn.execute(insert(table), [{"name": k, "value": v} for k, v in settings.items()])
    try:
        result = await run_file(config, gateway, "courses", "shortname;fullname;format\nSET1;W;weeks\nSET2;T;topics\n")
        assert result.counts == {"created": 2}, report_of(result)
        assert await blocks_of(gateway, "SET1") == [
            block("html", "side-pre"),
            block("calendar_month"),
            block("search_forums", weight=1),
        ]
        assert await blocks_of(gateway, "SET2") == []
        async with gateway.transaction() as conn:
            await conn.execute(insert(table).values(name="defaultblocks_override", value=":  "))
        settings["defaultblocks_override"] = ""
        result = await run_file(config, gateway, "courses", "shortname;fullname;format\nSET3;W;weeks\nSET4;S;social\n")
        assert result.counts == {"created": 2}, report_of(result)
        assert [await blocks_of(gateway, s) for s in ("SET3", "SET4")] == [[], []]
        # The site's blocks are the ones Moodle installed: one it lacks is never written.
        async with gateway.transaction() as conn:
            await conn.execute(delete(table).where(table.c.name == "defaultblocks_override"))
            await conn.execute(delete(installed).where(installed.c.id == calendar["id"]))
        result = await run_file(config, gateway, "courses", "shortname;fullname;format\nSET5;W;weeks\n")
        assert result.counts == {"created": 1}, report_of(result)
        assert await blocks_of(gateway, "SET5") == [block("html", "side-pre"), block("search_forums")]
    finally:
        async with gateway.transaction() as conn:
            await conn.execute(delete(table).where(table.c.name.in_(list(settings))))
            await conn.execute(delete(installed).where(installed.c.id == calendar["id"]))
            await conn.execute(insert(installed).values(calendar))


async def test_the_sandbox_and_the_project_schema_know_the_installed_blocks(site: Site) -> None:
    """The sandbox's seed holds the fresh site's `block` rows, so that its social courses get their block too."""
    config, gateway = site
    result = await run_file(config, gateway, "courses", "shortname;fullname;format\nSOCBOX;Social;social\n")
    assert result.counts == {"created": 1}, report_of(result)
    assert await blocks_of(gateway, "SOCBOX") == [SOCIAL_ACTIVITIES]
