"""The accounts toolsync never deletes or suspends, one rule for every file: the site administrators, the guest account
($CFG->siteguest) and any account named 'guest' (delete_user() refuses it too)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from tests.support.operation_files import inbox_file, report_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

Site = tuple[Config, MoodleGateway]
FILES = {"users": "userimport.csv", "deleteusers": "userdelete.csv", "suspendusers": "usersuspend.csv"}


@pytest.fixture
async def siteguest_elsewhere(site: Site) -> AsyncIterator[Site]:
    """The site with $CFG->siteguest naming no account: 'guest' is protected by its name alone."""
    _, gateway = site
    config = gateway.schema.config
    async with gateway.transaction() as conn:
        before = (await conn.execute(select(config.c.value).where(config.c.name == "siteguest"))).scalar_one()
        await conn.execute(update(config).where(config.c.name == "siteguest").values(value="0"))
    yield site
    async with gateway.transaction() as conn:  # MariaDB's database serves the whole module
        await conn.execute(update(config).where(config.c.name == "siteguest").values(value=before))


@pytest.mark.parametrize(
    ("operation", "content", "refusal"),
    [
        (
            "users",
            "username;firstname;lastname;deleted\nguest;G;U;1\n",
            "cannot be deleted or suspended: it is named 'guest'",
        ),
        (
            "users",
            "username;firstname;lastname;suspended\nguest;G;U;1\n",
            "cannot be deleted or suspended: it is named 'guest'",
        ),
        ("deleteusers", "username\nguest\n", "cannot be deleted: it is named 'guest'"),
        ("suspendusers", "username\nguest\n", "cannot be suspended: it is named 'guest'"),
    ],
)
async def test_an_account_named_guest_is_never_deleted_or_suspended(
    siteguest_elsewhere: Site, operation: str, content: str, refusal: str
) -> None:
    config, gateway = siteguest_elsewhere
    config.set("run.safety_min_rows", 100)

    result = await run_operation(config, gateway, operation, inbox_file(config, FILES[operation], content))

    assert result.counts == {"failed": 1}, report_of(result)
    assert refusal in report_of(result)
    user = gateway.schema.user
    async with gateway.reading() as conn:
        guest = (await conn.execute(select(user.c.deleted, user.c.suspended).where(user.c.username == "guest"))).one()
    assert tuple(guest) == (0, 0)


async def test_the_lists_say_which_protected_account_a_row_names(site: Site) -> None:
    config, gateway = site
    content = "username\nadmin\nguest\n"

    result = await run_operation(config, gateway, "deleteusers", inbox_file(config, "userdelete.csv", content))

    report = report_of(result)
    assert "the account 'admin' (id 2) cannot be deleted: it is a site administrator" in report
    assert "the account 'guest' (id 1) cannot be deleted: it is the guest account" in report
