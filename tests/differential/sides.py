"""The two sides of the differential test: the scenario run by toolsync on database A, replayed through Moodle's own
APIs (replay.php) on database B.

Both sides are real Moodle 4.5 sites (tests/support/moodle_site.py) made from the same fresh dump; `prepare` gives
them the same set-up (enrol_meta enabled, a custom profile field) before the baseline is taken.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.moodle_site import Site, site_config
from tests.support.operation_files import inbox_file, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, run_operation

SCENARIO = Path(__file__).resolve().with_name("scenario")
REPLAY = Path(__file__).resolve().with_name("replay.php")
PHP_SECONDS = 600


@dataclass(frozen=True)
class Step:
    operation: str
    file: str
    settings: dict[str, Any]


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCENARIO / "manifest.json").read_text())
    return loaded


def steps() -> list[Step]:
    return [Step(s["operation"], s["file"], s.get("settings", {})) for s in manifest()["steps"]]


def _replay(site: Site, *arguments: str) -> str:
    argv = [*shlex.split(site.php), str(REPLAY), f"--config={site.dirroot / 'config.php'}", *arguments]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PHP_SECONDS)
    if done.returncode != 0:  # not an AssertionError: the test expects those from the comparison only
        raise RuntimeError(f"replay.php {' '.join(arguments)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def prepare(site: Site) -> None:
    """The set-up both sides get before the baseline."""
    _replay(site, "--setup-only")


def replay(site: Site) -> str:
    """The whole scenario through Moodle's APIs, in one PHP process (its log rows are flushed at its end)."""
    return _replay(site, f"--scenario={SCENARIO}")


def toolsync_config(site: Site, tmp_path: Path) -> Config:
    """toolsync writing to the site's database, with the bridge to that same site, and the scenario's settings."""
    config = site_config(site, tmp_path, bridge=True)
    for operation, values in manifest()["settings"].items():
        for key, value in values.items():
            config.set(f"operations.{operation}.{key}", value)
    config.set("operations.pictures.moodle_data_dir", str(site.dataroot))
    return config


@contextmanager
def step_settings(config: Config, step: Step) -> Iterator[None]:
    """A step's own settings, for that step only."""
    section = config.settings.operations.model_dump()[step.operation]
    saved = {key: section[key] for key in step.settings}
    for key, value in step.settings.items():
        config.set(f"operations.{step.operation}.{key}", value)
    try:
        yield
    finally:
        for key, value in saved.items():
            config.set(f"operations.{step.operation}.{key}", value)


async def _run_step(config: Config, gateway: MoodleGateway, step: Step) -> RunResult:
    """One step: a command file as the operation's preselected file; a picture archive (an operation of archives
    runs every <file prefix>*.zip of the inbox) dropped in the inbox under its own name, alone."""
    if step.operation == "pictures":
        archive = inbox_file(config, step.file, (SCENARIO / step.file).read_bytes())
        return await run_operation(config, gateway, step.operation, archive)
    return await run_file(config, gateway, step.operation, (SCENARIO / step.file).read_text())


async def run_toolsync(config: Config, gateway: MoodleGateway) -> list[str]:
    """Every step through toolsync's real pipeline; one line per step (its outcome counts)."""
    lines = []
    for number, step in enumerate(steps(), 1):
        with step_settings(config, step):
            result = await _run_step(config, gateway, step)
        lines.append(f"{number:2} {step.operation:15} {step.file:24} {result.counts}")
        if result.report_path is not None:
            report = result.report_path.read_text().splitlines()
            lines += [f"     {line}" for line in report if ": failed" in line or ": skipped" in line]
    return lines


# The accounts' passwords after the scenario (04_users.csv): table_compare sets hashes aside (salts and rounds are each
# side's own), so each side's hash is checked against the password itself, by PHP's password_verify().
PASSWORDS = {
    "alice": "Secret-pass-1",
    "bob": "Secret-pass-2",
    "carol": "New-secret-3",
    "erin2": "Secret-pass-5",
    "gina": "Secret-pass-7",
}


async def verified_passwords(site: Site) -> dict[str, bool]:
    """Username -> whether the stored hash verifies the scenario's password."""
    code = (
        f"$wanted = json_decode({json.dumps(json.dumps(PASSWORDS))}, true); $result = [];\n"
        "foreach ($wanted as $username => $password) {\n"
        "    $hash = (string) $DB->get_field('user', 'password', ['username' => $username]);\n"
        "    $result[$username] = password_verify($password, $hash);\n"
        "}"
    )
    verified: dict[str, bool] = await site.run_php(code)
    return verified
