"""The TOML configuration: defaults, clear errors naming the key, secrets, saving without loss."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from toolsync_tui.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "toolsync.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_example_documents_every_key_with_its_default(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    assert config.warnings == []
    defaults = load_config(write(tmp_path, "")).settings
    assert config.settings.model_dump() == defaults.model_dump()

    def keys(tree: dict[str, object], prefix: str = "") -> set[str]:
        found: set[str] = set()
        for key, value in tree.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return found

    assert keys(config.raw) == keys(defaults.model_dump())


def test_defaults_from_an_empty_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.settings.database.prefix == "mdl_"
    assert config.settings.files.separator == ";"
    assert config.operation("check").file == "courses.csv"
    assert config.data_dir == (tmp_path / "data").resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[database]\nport = 'many'", "database.port: Input should be a valid integer"),
        ("[files]\nseparator = '|'", "files.separator: Input should be ';', ',', '\\t' or 'auto'"),
        (
            "[operations.check]\nidentifier = 'name'",
            "operations.check.identifier: Input should be 'id', 'idnumber' or 'shortname' (got 'name')",
        ),
        ("[database\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key_and_what_is_expected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert message in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, "[database]\npassword = 'in-file'\n"))
    assert config.database_password == "in-file"
    monkeypatch.setenv("TOOLSYNC_DB_PASSWORD", "from-env")
    assert config.database_password == "from-env"


def test_a_password_in_a_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[database]\npassword = 'secret'\n", mode=0o644))
    assert any("readable by others" in w for w in config.warnings)
    assert load_config(write(tmp_path, "[database]\npassword = 'secret'\n", mode=0o600)).warnings == []


def test_saving_keeps_unknown_keys_and_applies_the_edit(tmp_path: Path) -> None:
    path = write(tmp_path, "future_section = { knob = 3 }\n[files]\nseparator = ','\nlegacy_switch = true\n")
    config = load_config(path)
    assert any("files.legacy_switch" in w for w in config.warnings)
    config.set("operations.check.identifier", "idnumber")
    config.save()
    saved = tomllib.loads(path.read_text())
    assert saved["future_section"] == {"knob": 3}
    assert saved["files"] == {"separator": ",", "legacy_switch": True}
    assert saved["operations"]["check"]["identifier"] == "idnumber"
    assert load_config(path).operation("check").identifier == "idnumber"  # type: ignore[attr-defined]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_an_invalid_edit_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match=r"run\.batch_size"):
        config.set("run.batch_size", 0)
    assert config.settings.run.batch_size == 5000
    assert config.raw == {}
