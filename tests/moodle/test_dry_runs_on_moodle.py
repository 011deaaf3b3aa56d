"""A dry run predicts the real run, on a real Moodle 4.5 site with its bridge: the differential scenario's steps run
in turn, and the ones that matter run dry first, then for real, on the same file. The outcomes per row and part must
agree, and the welcome messages the dry run counts must be those the bridge has Moodle send."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server
from tests.differential import sides
from tests.support.moodle_site import provision_site
from tests.support.operation_files import dry_and_real, run_file, welcomes_counted
from toolsync_tui.engine.moodle.gateway import MoodleGateway

# The steps run dry first (manifest order, 1-based): 03_courses.csv updates courses with teacherN columns;
# 05_enrols.csv names carol and gina in HIST101 twice (their second rows apply after the first ones).
CHECKED = {4: "03_courses.csv", 7: "05_enrols.csv"}


async def test_the_scenario_dry_runs_predict_the_real_runs(db_server: Server, tmp_path: Path) -> None:
    db_server.restart_if_dead()
    site = provision_site(db_server, "dry_runs")
    sides.prepare(site)
    config = sides.toolsync_config(site, tmp_path)
    gateway = MoodleGateway.for_url(site.url, site.prefix)
    try:
        for number, step in enumerate(sides.steps()[: max(CHECKED)], 1):
            with sides.step_settings(config, step):
                content = (sides.SCENARIO / step.file).read_text()
                dry = await run_file(config, gateway, step.operation, content, dry_run=True)
                real = await run_file(config, gateway, step.operation, content)
            if number not in CHECKED:
                continue
            assert step.file == CHECKED[number]
            assert dry_and_real(dry) == dry_and_real(real), f"{step.file}: {dry_and_real(dry)} != {dry_and_real(real)}"
            assert welcomes_counted(dry) == welcomes_counted(real) > 0, (step.file, dry.notes, real.notes)
    finally:
        await gateway.close()
