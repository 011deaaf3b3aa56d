"""The managed crontab line, against a stand-in crontab program that keeps one user's crontab in a file."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.schedules import FAKE_CRONTAB, executable
from toolsync_tui.config import Config, new_config
from toolsync_tui.engine.unattended.crontab import MARKER, CrontabProblem, cron_line, install, remove, show

OTHERS = "MAILTO=admin@example.org\n# nightly backup\n0 2 * * * /usr/local/bin/backup --all\n\n"


def config_with(tmp_path: Path, crontab_command: str) -> Config:
    return new_config(
        tmp_path / "toolsync.toml",
        {"files": {"data_dir": str(tmp_path / "data")}, "cron": {"crontab_command": crontab_command}},
    )


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """The crontab file of the stand-in program (absent: the user has no crontab)."""
    return tmp_path / "fake bin" / "crontab.txt"


@pytest.fixture
def config(tmp_path: Path, table: Path) -> Config:
    program = executable(table.parent / "crontab", FAKE_CRONTAB)
    return config_with(tmp_path, shlex.quote(str(program)))  # a space in the path: the setting is shell-split


def managed_lines(table: Path) -> list[str]:
    return [line for line in table.read_text().splitlines() if "-m toolsync_tui" in line]


def test_the_line_runs_toolsync_cron_with_the_absolute_config(config: Config) -> None:
    words = shlex.split(cron_line(config, every_minutes=10))
    assert words[:5] == ["*/10", "*", "*", "*", "*"]
    assert words[5:7] == ["umask", "077;"]  # what the line's shell creates is the data directory's owner's only
    assert words[7:13] == [sys.executable, "-m", "toolsync_tui", "--config", str(config.path.resolve()), "cron"]


def test_a_relative_config_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = new_config(Path("site") / "toolsync.toml", {})
    words = shlex.split(cron_line(relative))
    assert words[words.index("--config") + 1] == str(tmp_path.resolve() / "site" / "toolsync.toml")


def test_output_goes_to_syslog_or_else_to_a_log_file(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolsync_tui.engine.unattended.crontab.shutil.which", lambda name: f"/usr/bin/{name}")
    assert cron_line(config).endswith("cron 2>&1 | /usr/bin/logger -t toolsync")
    monkeypatch.setattr("toolsync_tui.engine.unattended.crontab.shutil.which", lambda name: None)
    assert cron_line(config).endswith(f"cron >> {config.data_dir / 'cron.log'} 2>&1")
    install(config)
    assert config.data_dir.is_dir()  # the shell opens the log before toolsync runs
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700  # the data directory's mode, not the umask's


@pytest.mark.parametrize(("group_readable", "mode"), [(False, 0o600), (True, 0o640)])
def test_the_log_the_line_appends_to_is_private_from_its_first_byte(
    config: Config, monkeypatch: pytest.MonkeyPatch, group_readable: bool, mode: int
) -> None:
    """The line run by a shell under cron's usual umask (022), without logger: the log it creates is as private as
    the data directory (issue 20), not readable by all."""
    config.set("files.group_readable", group_readable)
    monkeypatch.setattr("toolsync_tui.engine.unattended.crontab.shutil.which", lambda name: None)
    monkeypatch.setattr("toolsync_tui.engine.unattended.crontab.sys.executable", "/bin/echo")  # stands in for cron
    config.data_dir.mkdir()
    command = cron_line(config).split(" ", 5)[5]  # without the schedule, as cron hands it to the shell
    subprocess.run(["/bin/sh", "-c", f"umask 022; {command}"], check=True, env={"PATH": os.defpath})
    log = config.data_dir / "cron.log"
    assert "-m toolsync_tui --config" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == mode


def test_intervals(config: Config) -> None:
    assert cron_line(config, 1).startswith("* * * * * ")
    assert cron_line(config, 60).startswith("0 * * * * ")
    with pytest.raises(CrontabProblem, match="from 1 to 60 minutes"):
        cron_line(config, 0)


def test_percent_signs_are_escaped_for_cron(tmp_path: Path) -> None:
    odd = new_config(tmp_path / "100%" / "toolsync.toml", {})
    assert "100\\%" in cron_line(odd)
    assert "%" not in cron_line(odd).replace("\\%", "")


def test_install_on_an_empty_crontab(config: Config, table: Path) -> None:
    assert show(config) is None
    line = install(config)
    assert table.read_text() == f"{MARKER}\n{line}\n"
    assert show(config) == line


def test_install_keeps_every_other_line(config: Config, table: Path) -> None:
    table.write_text(OTHERS)
    line = install(config)
    assert table.read_text() == f"{OTHERS}{MARKER}\n{line}\n"


def test_installing_again_replaces_the_line_in_place(config: Config, table: Path) -> None:
    table.write_text(OTHERS)
    install(config)
    table.write_text(table.read_text() + "30 3 * * * /usr/local/bin/after\n")
    line = install(config, every_minutes=15)
    assert table.read_text() == f"{OTHERS}{MARKER}\n{line}\n30 3 * * * /usr/local/bin/after\n"
    assert managed_lines(table) == [line]
    assert show(config) == line


def test_remove_keeps_the_other_lines(config: Config, table: Path) -> None:
    table.write_text(OTHERS)
    install(config)
    assert remove(config) is True
    assert table.read_text() == OTHERS
    assert show(config) is None


def test_remove_when_there_is_no_line(config: Config, table: Path) -> None:
    assert remove(config) is False
    assert not table.exists()  # nothing was written
    table.write_text(OTHERS)
    assert remove(config) is False
    assert table.read_text() == OTHERS


def test_an_orphaned_marker_manages_nothing(config: Config, table: Path) -> None:
    table.write_text(f"{MARKER}\n0 2 * * * /usr/local/bin/backup\n")  # the managed line was deleted by hand
    assert show(config) is None
    assert remove(config) is False
    assert table.read_text() == "0 2 * * * /usr/local/bin/backup\n"


def test_a_failing_crontab_command_is_a_problem(tmp_path: Path) -> None:
    refusing = "#!/bin/sh\necho 'crontab: you are not allowed to use cron' >&2\nexit 2\n"
    program = executable(tmp_path / "crontab", refusing)
    broken = config_with(tmp_path, str(program))
    for action in (show, install, remove):
        with pytest.raises(CrontabProblem, match="exit code 2: crontab: you are not allowed to use cron"):
            action(broken)


def test_a_missing_crontab_command_is_a_problem(tmp_path: Path) -> None:
    missing = config_with(tmp_path, str(tmp_path / "nowhere" / "crontab"))
    with pytest.raises(CrontabProblem, match="was not found: install cron"):
        install(missing)


def test_a_failing_write_is_a_problem(tmp_path: Path, table: Path) -> None:
    script = FAKE_CRONTAB.replace('-) cat > "$table" ;;', '-) echo "crontab: disk full" >&2; exit 1 ;;')
    program = executable(table.parent / "crontab", script)
    full = config_with(tmp_path, shlex.quote(str(program)))
    with pytest.raises(CrontabProblem, match="- failed with exit code 1: crontab: disk full"):
        install(full)
