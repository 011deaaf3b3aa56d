"""`toolsync crontab` on the configuration the interface and its schedules screen use (issue 21, item 14): with
nothing configured, that is the embedded sandbox, once the interface has made it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.schedules import fake_crontab
from toolsync_tui.cli import main
from toolsync_tui.cli.site import load_or_sandbox
from toolsync_tui.engine.unattended import crontab
from toolsync_tui.paths import CONFIG_ENV


@pytest.fixture
def no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no configuration of their own: the embedded sandbox's folder."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    return tmp_path / "share" / "toolsync" / "sandbox"


async def test_crontab_works_on_the_embedded_sandbox_the_interface_shows(
    no_configuration: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = await load_or_sandbox(None)  # what `toolsync` opens, and its schedules screen shows
    assert config.path == no_configuration / "toolsync.toml"
    table = fake_crontab(config, tmp_path / "bin")
    config.save()
    shown = crontab.cron_line(config, 5)  # the line on the schedules screen

    assert main(["crontab", "show"]) == 0
    assert capsys.readouterr().out == "no toolsync line in this user's crontab\n"
    assert main(["crontab", "install"]) == 0
    assert capsys.readouterr().out == f"installed: {shown}\n"
    assert main(["crontab", "show"]) == 0
    assert capsys.readouterr().out == f"{shown}\n"
    assert crontab.show(config) == shown  # what the schedules screen reads as "installed"
    assert main(["crontab", "remove"]) == 0
    assert shown not in table.read_text()


def test_crontab_never_creates_a_sandbox_and_cron_never_falls_back_to_one(
    no_configuration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crontab", "show"]) == 2
    assert "no configuration found: give --config PATH" in capsys.readouterr().err
    assert not no_configuration.exists()
    no_configuration.mkdir(parents=True)
    (no_configuration / "toolsync.toml").write_text("")
    assert main(["cron"]) == 2  # what cron runs always names its configuration
    assert "no configuration found: give --config PATH" in capsys.readouterr().err
