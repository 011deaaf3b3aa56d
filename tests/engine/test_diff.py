"""Diff against the previous file (issue 22, item 3), on MariaDB with the real dump: only the rows changed since the
operation's last applied file are resolved and written, the others are reported unchanged."""

from __future__ import annotations

import stat
import threading
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import update

from tests.support.course_factories import add_enrolment_courses, add_users
from tests.support.factories import unique
from tests.support.operation_files import dry_and_real, identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.diff import KEY_NAME, digests_path, folder
from toolsync_tui.engine.run.interrupt import Interruption, Stop
from toolsync_tui.engine.run.log import RunLog, RunRecord
from toolsync_tui.engine.run.pipeline import Progress, RunResult

Site = tuple[Config, MoodleGateway]
ROWS = 30
SINCE = "unchanged since the last applied file (userimport.csv, "
HEADER = ("username", "firstname", "lastname", "email", "password", "city")


@pytest.fixture
def site(dump_site: Site) -> Site:
    config, _ = dump_site
    config.set("operations.users.diff", True)
    config.set("run.batch_size", 10)  # several batches, regrouped around their changed rows
    return dump_site


def people(count: int = ROWS) -> list[dict[str, str]]:
    prefix = unique("df")
    return [
        {
            "username": f"{prefix}{n:03d}",
            "firstname": f"F{n}",
            "lastname": f"L{n}",
            "email": f"{prefix}{n:03d}@example.org",
            "password": f"Pw-{prefix}-{n};x\"y'{n}!",
            "city": "Lyon",
        }
        for n in range(count)
    ]


def users_file(rows: list[dict[str, str]], columns: tuple[str, ...] = HEADER) -> str:
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if ";" in value or '"' in value else value

    return "\n".join([";".join(columns), *(";".join(cell(r[c]) for c in columns) for r in rows)]) + "\n"


async def run(site: Site, content: str, **options: Any) -> RunResult:
    config, gateway = site
    return await run_file(config, gateway, "users", content, **options)


async def user_times(gateway: MoodleGateway, names: list[str]) -> dict[str, int]:
    found = await rows_of(gateway, gateway.schema.user, username=names)
    return {r["username"]: r["timemodified"] for r in found}


async def age_users(gateway: MoodleGateway, names: list[str]) -> None:
    """timemodified = 1: a row the run writes gets the time of now."""
    user = gateway.schema.user
    async with gateway.transaction() as conn:
        await conn.execute(update(user).where(user.c.username.in_(names)).values(timemodified=1))


def digests_bytes(config: Config, operation: str = "users") -> bytes:
    return digests_path(config.data_dir, operation).read_bytes()


async def test_only_the_changed_rows_are_written_the_others_are_reported_unchanged(site: Site) -> None:
    _, gateway = site
    rows = people()
    first = await run(site, users_file(rows))
    assert first.counts == {"created": ROWS}, report_of(first)
    assert "diff: the first run with diff: every row is resolved" in first.notes
    names = [r["username"] for r in rows]
    await age_users(gateway, names)
    changed = [3, 14, 27]
    for n in changed:
        rows[n]["city"] = "Grenoble"
    content = users_file(rows)

    dry = await run(site, content, dry_run=True)
    real = await run(site, content)

    assert real.counts == {"updated": 3, "unchanged": ROWS - 3}, report_of(real)
    assert dry.counts == real.counts
    assert dry_and_real(dry) == dry_and_real(real)  # line by line, the same outcomes and actions
    times = await user_times(gateway, names)
    assert {name for name, time in times.items() if time > 1} == {names[n] for n in changed}
    text = report_of(real)
    assert text.count(SINCE) == ROWS - 3
    assert f"line {changed[0] + 2}: updated (update)" in text
    found = await rows_of(gateway, gateway.schema.user, username=[names[n] for n in changed])
    assert {r["city"] for r in found} == {"Grenoble"}

    again = await run(site, content)  # the file as applied: nothing to resolve
    assert again.counts == {"unchanged": ROWS}, report_of(again)
    assert report_of(again).count(SINCE) == ROWS


async def test_a_failed_row_and_a_row_with_a_failed_part_are_tried_again_next_time(site: Site) -> None:
    rows = people(12)
    columns = (*HEADER, "course1")
    for row in rows:
        row["course1"] = ""
    rows[4]["course1"] = unique("NOSUCHCOURSE")  # the row goes through, its enrolment fails
    rows[7]["email"] = "not an address"  # the row fails
    first = await run(site, users_file(rows, columns))
    assert first.counts.get("failed") == 1, report_of(first)
    assert first.failed_details == 1

    again = await run(site, users_file(rows, columns))

    text = report_of(again)
    assert text.count(SINCE) == 12 - 2, text
    assert SINCE not in next(line for line in text.splitlines() if line.startswith("line 6:"))
    assert SINCE not in next(line for line in text.splitlines() if line.startswith("line 9:"))
    assert again.counts.get("failed") == 1  # tried again, failing again
    assert again.failed_details == 1

    rows[7]["email"] = f"{rows[7]['username']}@example.org"  # mended: created now
    mended = await run(site, users_file(rows, columns))
    assert mended.counts.get("created") == 1, report_of(mended)


async def test_a_reordered_header_is_the_same_file(site: Site) -> None:
    rows = people(8)
    await run(site, users_file(rows))
    reordered = tuple(reversed(HEADER))

    result = await run(site, users_file(rows, reordered))

    assert result.counts == {"unchanged": 8}, report_of(result)
    assert report_of(result).count(SINCE) == 8


async def test_a_changed_setting_or_another_column_set_resets_the_digests(site: Site) -> None:
    config, _ = site
    rows = people(8)
    await run(site, users_file(rows))
    config.set("operations.users.protect_emails", not config.settings.operations.users.protect_emails)

    result = await run(site, users_file(rows))

    assert any("settings" in note and "every row is resolved" in note for note in result.notes), result.notes
    assert SINCE not in report_of(result)
    assert result.counts == {"unchanged": 8}  # resolved: the accounts are as the file says
    renewed = await run(site, users_file(rows))
    assert report_of(renewed).count(SINCE) == 8

    fewer = await run(site, users_file(rows, HEADER[:-1]))  # without city: each row is another record
    assert SINCE not in report_of(fewer)


async def test_full_resolves_every_row_and_renews_the_digests(site: Site) -> None:
    config, _ = site
    rows = people(6)
    await run(site, users_file(rows))
    before = digests_bytes(config)

    full = await run(site, users_file(rows), full=True)

    assert SINCE not in report_of(full)
    assert any("--full" in note for note in full.notes)
    assert digests_bytes(config) != before  # saved anew, by this run
    assert (await run(site, users_file(rows))).counts == {"unchanged": 6}


async def cancelled_run(site: Site, content: str, cancel: threading.Event) -> RunResult:
    config, gateway = site

    def stop(progress: Progress) -> None:
        if isinstance(cancel, Interruption):
            cancel.interrupt(Stop("SIGTERM", 143))
        cancel.set()

    return await run_file(config, gateway, "users", content, cancel=cancel, on_progress=stop)


@pytest.mark.parametrize("how", ["cancelled", "interrupted"])
async def test_a_run_that_stops_mid_way_leaves_the_digests_as_they_were(site: Site, how: str) -> None:
    config, _ = site
    rows = people(80)
    await run(site, users_file(rows))
    before = digests_bytes(config)
    # A changed row in every batch: 40 rows to write, 4 batches (with overlapped writes the batch after the one
    # whose progress cancels is already being written, so the cancel takes effect a batch later).
    for n in range(0, 80, 2):
        rows[n]["city"] = "Nice"
    event = Interruption() if how == "interrupted" else threading.Event()

    stopped = await cancelled_run(site, users_file(rows), event)

    assert stopped.cancelled or stopped.interrupted
    assert stopped.counts.get("updated", 0) > 0  # the first batch went through
    assert digests_bytes(config) == before
    # Those digests no longer describe what the rows of the first batch wrote: the next run resolves every row.
    after = await run(site, users_file(rows))
    assert any("did not save its digests" in note for note in after.notes), after.notes
    assert SINCE not in report_of(after)
    assert after.counts.get("updated", 0) == 40 - stopped.counts["updated"], report_of(after)


async def test_a_run_cancelled_before_it_wrote_anything_keeps_the_digests_in_use(site: Site) -> None:
    rows = people(10)
    await run(site, users_file(rows))
    cancel = threading.Event()
    cancel.set()
    rows[0]["city"] = "Nice"

    stopped = await run(site, users_file(rows), cancel=cancel)

    assert stopped.cancelled
    assert not stopped.counts.get("updated")
    after = await run(site, users_file(rows))
    assert after.counts == {"updated": 1, "unchanged": 9}, report_of(after)
    assert report_of(after).count(SINCE) == 9


async def test_the_digests_hold_no_password_and_only_their_owner_reads_them(site: Site) -> None:
    config, _ = site
    rows = people(10)
    await run(site, users_file(rows))

    stored = digests_bytes(config)
    for row in rows:
        for value in (row["password"], row["username"]):
            assert value.encode() not in stored
    assert len(stored.split(b"\n", 1)[1]) == 10 * 16  # the digests only
    for path in (digests_path(config.data_dir, "users"), folder(config.data_dir) / KEY_NAME):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(folder(config.data_dir).stat().st_mode) == 0o700
    rows[5]["password"] = "Another-1!"  # a new password is a change
    changed = await run(site, users_file(rows))
    assert changed.counts.get("unchanged") == 9, report_of(changed)


async def test_the_safety_pre_pass_does_not_count_unchanged_rows(site: Site) -> None:
    """A Moodle-side change of a record whose row did not change is not repaired by a diff run: users suspended by
    the file and reactivated by hand stay active, and the pre-pass has nothing to count (--full would suspend)."""
    config, gateway = site
    config.set("run.safety_threshold", 0.0001)
    config.set("run.safety_min_rows", 1)
    rows = people(12)
    columns = (*HEADER, "suspended")
    for row in rows:
        row["suspended"] = "1"
    first = await run(site, users_file(rows, columns), force=True)
    assert first.counts == {"created": 12}, report_of(first)
    user = gateway.schema.user
    names = [r["username"] for r in rows]
    async with gateway.transaction() as conn:
        await conn.execute(update(user).where(user.c.username.in_(names)).values(suspended=0))

    result = await run(site, users_file(rows, columns))  # no SafetyStop: nothing would be suspended

    assert result.counts == {"unchanged": 12}, report_of(result)
    assert {r["suspended"] for r in await rows_of(gateway, user, username=names)} == {0}


async def test_enrolments_are_diffed_on_their_own(site: Site) -> None:
    config, gateway = site
    identifiers_by_id(config, "enrols", "course_identifier", "user_identifier")
    config.set("operations.enrols.diff", True)
    [course] = await add_enrolment_courses(gateway)
    users = await add_users(gateway, 12)
    lines = [f"student;{course.id};{u};add;manual" for u in users]

    def enrols(body: list[str]) -> str:
        return "\n".join(["rolename;cid;uid;cmd;enrol", *body]) + "\n"

    first = await run_file(config, gateway, "enrols", enrols(lines))
    assert first.counts == {"created": 12}, report_of(first)
    lines[5] = f"editingteacher;{course.id};{users[5]};add;manual"
    dry = await run_file(config, gateway, "enrols", enrols(lines), dry_run=True)
    second = await run_file(config, gateway, "enrols", enrols(lines))

    assert second.counts == {"updated": 1, "unchanged": 11}, report_of(second)
    assert report_of(second).count("unchanged since the last applied file (enrols.csv, ") == 11
    assert dry_and_real(dry) == dry_and_real(second)
    assert digests_path(config.data_dir, "enrols").is_file()
    assert (await run(site, users_file(people(3)))).counts == {"created": 3}  # users: its own first run


async def test_a_run_without_diff_that_wrote_makes_the_next_diff_run_resolve_every_row(site: Site) -> None:
    """The digests describe what the database held after the run that saved them: a row changed by a run without diff
    and put back in the file as it was is written again, not taken for unchanged."""
    config, gateway = site
    rows = people(5)
    original = users_file(rows)
    await run(site, original)
    rows[2]["city"] = "Brest"
    config.set("operations.users.diff", False)
    assert (await run(site, users_file(rows))).counts == {"updated": 1, "unchanged": 4}
    config.set("operations.users.diff", True)

    back = await run(site, original)

    assert any("did not save its digests wrote (without diff" in note for note in back.notes), back.notes
    assert back.counts == {"updated": 1, "unchanged": 4}, report_of(back)
    [found] = await rows_of(gateway, gateway.schema.user, username=[rows[2]["username"]])
    assert found["city"] == "Lyon"


def test_the_command_line_full_option(dump_site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = dump_site
    config.set("operations.users.diff", True)
    config.save()
    content = users_file(people(4))
    file = config.data_dir.parent / "nightly.csv"

    def toolsync_run(*options: str) -> int:
        file.write_text(content)  # each run archives it
        return main(["--config", str(config.path), "run", "users", *options, str(file)])

    assert toolsync_run() == 0
    assert toolsync_run() == 0
    assert "4 unchanged" in capsys.readouterr().out
    before = digests_bytes(config)

    assert toolsync_run("--full") == 0

    out = capsys.readouterr().out
    assert "--full: every row is resolved" in out, out
    assert digests_bytes(config) != before


async def test_an_undo_since_the_last_applied_file_makes_the_next_diff_run_resolve_every_row(site: Site) -> None:
    """An undo (logged as operation "undo") reverts what runs wrote: the digests no longer describe the database."""
    config, _ = site
    rows = people(4)
    await run(site, users_file(rows))
    undo = RunRecord("undo", "last", datetime.now().isoformat(timespec="seconds"), counts={"updated": 4}, run="u" * 32)
    RunLog(config.data_dir).add(undo)

    after = await run(site, users_file(rows))

    assert any("an undo ran" in note for note in after.notes), after.notes
    assert SINCE not in report_of(after)
    assert report_of(await run(site, users_file(rows))).count(SINCE) == 4  # saved anew


async def test_a_snapshot_with_diff_resolves_the_changed_rows_and_the_records_the_file_dropped(site: Site) -> None:
    """The nightly case: a whole export in snapshot mode with diff. Its unchanged rows cost nothing, a changed row is
    written, an account toolsync made that the file dropped is suspended; the snapshot's rows are never taken for
    unchanged (they follow from the ledger), and nothing changes on a second night with the same file."""
    config, gateway = site
    config.set("operations.users.mode", "snapshot")
    config.set("run.safety_threshold", 0.0)  # one account of a small site is over any share
    rows = people(12)
    first = await run(site, users_file(rows))
    assert first.counts == {"created": 12}
    changed = [dict(rows[0], city="Paris"), *rows[1:11]]  # the last account left the export

    night = await run(site, users_file(changed))

    assert night.counts == {"updated": 2, "unchanged": 10}  # rows[0] and the suspension of rows[11]
    assert report_of(night).count(SINCE) == 10  # not resolved at all: the diff's, not the users family's
    found = {
        r["username"]: r for r in await rows_of(gateway, gateway.schema.user, username=[r["username"] for r in rows])
    }
    assert (found[rows[0]["username"]]["city"], found[rows[11]["username"]]["suspended"]) == ("Paris", 1)
    assert {r["username"] for r in found.values() if r["suspended"]} == {rows[11]["username"]}
    again = await run(site, users_file(changed))
    assert again.counts == {"unchanged": 11}  # suspended already: no snapshot row
    assert report_of(again).count(SINCE) == 11
