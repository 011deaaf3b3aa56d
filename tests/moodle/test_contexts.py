"""Contexts read from the database, never assumed: the system context and the contexts of instances of a level."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.contexts import Context, ContextLevel, instance_contexts, system_context
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway
from toolsync_tui.engine.moodle.icons import user_contexts

Site = tuple[Config, MoodleGateway]


async def test_the_real_dump_has_the_system_context_moodle_installs(dump_gateway: MoodleGateway) -> None:
    async with dump_gateway.reading() as conn:
        assert await system_context(dump_gateway, conn) == Context(1, "/1")


async def test_instance_contexts_by_level_for_some_instances_or_all(site: Site) -> None:
    _, gateway = site
    async with gateway.reading() as conn:
        # The front page course and the first category and users of a new site; no course 999999 exists.
        assert await instance_contexts(gateway, conn, ContextLevel.COURSE, [1, 999999, 1]) == {1: Context(2, "/1/2")}
        assert await instance_contexts(gateway, conn, ContextLevel.COURSECAT, []) == {}
        every_user = await instance_contexts(gateway, conn, ContextLevel.USER)
    assert {1: Context(4, "/1/4"), 2: Context(5, "/1/5")}.items() <= every_user.items()


async def test_a_system_context_elsewhere_is_the_one_new_contexts_hang_under(site: Site) -> None:
    _, gateway = site
    context = gateway.schema.context
    async with gateway.transaction() as conn:
        moved = update(context).where(context.c.contextlevel == int(ContextLevel.SYSTEM))
        await conn.execute(moved.values(id=990001, path="/990001"))
        system = await system_context(gateway, conn)
        made = await user_contexts(gateway, conn, system, [990002])
        created = await instance_contexts(gateway, conn, ContextLevel.USER, [990002])
        await conn.rollback()
    assert system == Context(990001, "/990001")
    assert created == {990002: Context(made[990002], f"/990001/{made[990002]}")}


async def test_a_database_without_a_system_context_is_no_moodle_site(site: Site) -> None:
    _, gateway = site
    context = gateway.schema.context
    async with gateway.transaction() as conn:
        await conn.execute(context.delete().where(context.c.contextlevel == int(ContextLevel.SYSTEM)))
        with pytest.raises(DatabaseError, match="no system context row"):
            await system_context(gateway, conn)
        await conn.rollback()
