"""The bridge's start-up check overlaps the run's start (issue 23): PHP starts as the run reads the site, and the run
prepares and plans its first batch meanwhile; the bridge is needed only before the first write. A configured bridge
that does not work still stops the run there, nothing written, overlapped or not, in a dry run as in a real one.

The fake PHP's `info` waits (up to a minute, or as told) until the run's progress page says a batch is being written
(real runs): it can only see that when the run went on without it, which proves that the check overlapped the first
batch's planning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.bridge_fakes import fake_php
from tests.support.factories import unique
from tests.support.operation_files import inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.bridge.client import PROTOCOL
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.log import PROGRESS_NAME
from toolsync_tui.engine.run.overlap import OFF_SWITCH
from toolsync_tui.engine.run.pipeline import RunProblem, run_operation

Site = tuple[Config, MoodleGateway]

# `info` answers once the run's progress page shows a batch in hand (or after %(patience)s s), naming %(dbname)r; it
# writes whether it saw that to <php>.saw. Every other command (cache purges ...) succeeds.
SLOW_MOODLE = """
request = json.load(sys.stdin)
if request["command"] == "info":
    progress, saw = %(progress)r, False
    for _ in range(int(%(patience)s * 10)):
        try:
            saw = json.loads(open(progress).read()).get("writing") is not None
        except (OSError, ValueError):
            saw = False
        if saw:
            break
        time.sleep(0.1)
    open(sys.argv[0] + ".saw", "w").write(json.dumps(saw))
    print(json.dumps({"ok": True, "protocol": %(protocol)d, "dbname": %(dbname)r, "dbprefix": "mdl_", "modules": []}))
    sys.exit(0)
print(json.dumps({"ok": True, "done": True}))
"""


def slow_moodle(config: Config, tmp_path: Path, dbname: str | None = None, patience: float = 60) -> Path:
    """The configuration's bridge: a fake site whose PHP answers `info` only once the run has a batch in hand."""
    site = tmp_path / "slow-moodle"
    site.mkdir()
    (site / "config.php").write_text("<?php // never read: php is a fake\n")
    body = SLOW_MOODLE % {
        "progress": str(config.data_dir / PROGRESS_NAME),
        "protocol": PROTOCOL,
        "dbname": dbname or config.settings.database.name,
        "patience": patience,
    }
    php = fake_php(tmp_path, body, name="slow-moodle-php")
    config.set("bridge.moodle_dir", str(site))
    config.set("bridge.php", php)
    return Path(php + ".saw")


def users_file(config: Config, names: list[str]) -> Path:
    rows = "".join(f"{name};F;L;{name}@example.org\n" for name in names)
    return inbox_file(config, "userimport.csv", "username;firstname;lastname;email\n" + rows)


@pytest.fixture(params=["overlapped", "in turn"])
def writes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of writing batches: overlapped with the next one's planning (MariaDB's default), and in turn."""
    if request.param == "in turn":
        monkeypatch.setenv(OFF_SWITCH, "0")
    return str(request.param)


async def test_the_first_batch_is_planned_while_the_bridge_starts(dump_site: Site, tmp_path: Path, writes: str) -> None:
    config, gateway = dump_site
    saw = slow_moodle(config, tmp_path)
    names = [unique("brov") for _ in range(2)]

    result = await run_operation(config, gateway, "users", users_file(config, names))

    assert result.counts == {"created": 2}, report_of(result)
    assert json.loads(saw.read_text()) is True  # PHP answered after the run had a batch in hand
    for name in names:
        assert len(await rows_of(gateway, gateway.schema.user, username=name)) == 1


@pytest.mark.parametrize("dry_run", [False, True], ids=["real run", "dry run"])
async def test_a_bridge_that_fails_its_check_late_stops_the_run_unwritten(
    dump_site: Site, tmp_path: Path, writes: str, dry_run: bool
) -> None:
    config, gateway = dump_site
    # Serves another database: it does not work for us. A dry run has no progress page to watch (nothing is written).
    saw = slow_moodle(config, tmp_path, dbname="another_site", patience=3 if dry_run else 60)
    names = [unique("brno") for _ in range(2)]

    with pytest.raises(RunProblem, match="another_site"):
        await run_operation(config, gateway, "users", users_file(config, names), dry_run=dry_run)

    # The first batch had been planned (a real run's progress page shows it): it stopped before its write.
    assert json.loads(saw.read_text()) is not dry_run
    for name in names:
        assert await rows_of(gateway, gateway.schema.user, username=name) == []


async def test_an_operation_that_plans_with_the_bridge_gets_it_before_prepare(dump_site: Site, tmp_path: Path) -> None:
    """A users file with a deleted column chooses how to delete (the bridge's delete_user() or SQL) in prepare(): its
    run waits for the check there, as before, and never has a batch in hand before PHP answers."""
    config, gateway = dump_site
    saw = slow_moodle(config, tmp_path, dbname="another_site", patience=3)
    name = unique("brdel")
    file = inbox_file(
        config, "userimport.csv", f"username;firstname;lastname;email;deleted\n{name};F;L;{name}@x.org;0\n"
    )

    with pytest.raises(RunProblem, match="another_site"):
        await run_operation(config, gateway, "users", file)

    assert json.loads(saw.read_text()) is False  # waited for a batch that never came: the check came first
    assert await rows_of(gateway, gateway.schema.user, username=name) == []
