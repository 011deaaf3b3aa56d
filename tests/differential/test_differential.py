"""The differential test (issue 19): the scenario of command files in scenario/ (every operation, the columns of the
reference, the situations that matter: updates of every user column, renames, suspensions, passwords, category paths,
re-runs, enrolment add/del/shift/enable/disable with roles, protected group memberships, groups and groupings,
cohorts and their members, cohort and meta bindings, course reset and deletion, user deletion, a social course, user
pictures from zip archives, JPEG and PNG, created and replaced) applied once by toolsync's real pipeline on site A
(with its bridge to site A) and once by replay.php through Moodle's own APIs on site B, both made from the same fresh
dump. Every table either side wrote is then compared row by row, ids translated
to natural keys, log rows included (tests/support/table_compare.py); allowed.py lists the differences accepted, with
their reasons. It runs on both databases Moodle sites use: both sites on MariaDB, then both on PostgreSQL (each made
from that database's dump in ../shared/moodle/).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import SERVER_FIXTURES, Server
from tests.differential import allowed, sides
from tests.support import table_compare as compare
from tests.support.moodle_site import provision_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway


@pytest.mark.parametrize("database", ["mariadb", "postgresql"])
async def test_toolsync_writes_what_moodle_writes(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    started = time.monotonic()
    server: Server = request.getfixturevalue(SERVER_FIXTURES[database])  # the session's server of that kind
    server.restart_if_dead()
    site_a, site_b = provision_site(server, "differential_a"), provision_site(server, "differential_b")
    sides.prepare(site_a)
    sides.prepare(site_b)
    before_a, before_b = compare.checksums(site_a.url), compare.checksums(site_b.url)
    run_start = int(time.time())

    gateway = MoodleGateway.for_url(site_a.url, site_a.prefix)
    try:
        toolsync_lines = await sides.run_toolsync(sides.toolsync_config(site_a, tmp_path), gateway)
    finally:
        await gateway.close()
    toolsync_seconds = time.monotonic() - started
    replay_lines = sides.replay(site_b)
    now = (run_start, int(time.time()))

    written = compare.changed_tables(before_a, compare.checksums(site_a.url)) | compare.changed_tables(
        before_b, compare.checksums(site_b.url)
    )
    differences, undeclared = compare.compare(site_a.url, site_b.url, written, now)
    passwords_a, passwords_b = await sides.verified_passwords(site_a), await sides.verified_passwords(site_b)
    differences += [
        compare.Difference("user", f'["{name}"]', "password (password_verify)", passwords_a[name], passwords_b[name])
        for name in sides.PASSWORDS
        if not (passwords_a[name] and passwords_b[name])
    ]
    if database == "postgresql":  # ids toolsync chose itself must have moved the sequences past them (setval)
        differences += [
            compare.Difference(table, "[id sequence]", "next id", f"{next_id} (max id {top})", "past the max id")
            for table, (next_id, top) in sorted(compare.sequences_behind(site_a.url, written).items())
        ]
    left = allowed.unexpected(differences)
    timing = (
        f"{len(written)} tables compared; {time.monotonic() - started:.0f} s in all, toolsync's side "
        f"{toolsync_seconds:.0f} s (with the site set-up)"
    )
    print(timing)
    if undeclared:
        pytest.fail(f"tables written but not declared in compare.TABLES (one line each): {undeclared}")
    assert not left, (
        f"{len(left)} differences between toolsync (A) and Moodle's APIs (B) ({timing}):\n"
        + compare.render(left)
        + "\n\ntoolsync's runs:\n"
        + "\n".join(toolsync_lines)
        + "\nreplay:\n"
        + replay_lines
    )
