"""The TOML configuration: defaults, clear errors naming the key, secrets, saving without loss."""

from __future__ import annotations

import difflib
import json
import os
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from toolsync_tui.config import ConfigError, OperationSettings, OperationsSettings, Settings, load_config, section_help
from toolsync_tui.engine.registry import OPERATIONS

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
REWRITE = "python -m tests.engine.test_config"  # from the project's folder: writes config.example.toml anew
COMMENT_WIDTH = 112


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "toolsync.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


# -- config.example.toml, written out from the models: their docstrings and descriptions are the one source ------


def comment(text: str, indent: str = "") -> list[str]:
    # Paths and options (/run/mysqld, --force) are never split at their hyphens.
    return textwrap.wrap(
        text,
        COMMENT_WIDTH,
        initial_indent=f"# {indent}",
        subsequent_indent="# " + " " * len(indent),
        break_on_hyphens=False,
        break_long_words=False,
    )


def toml_value(value: object) -> str:
    """A value on one line, as an administrator would write it (a tab as \\t, a list inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's string escapes are a subset of TOML's
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)


def options(annotation: object) -> str:
    """A choice's values, bare when they are plain words (`move | copy | off`), else as TOML writes them."""
    if get_origin(annotation) is not Literal:
        return ""
    values = get_args(annotation)
    bare = all(isinstance(value, int) or re.fullmatch(r"[\w.-]+", value) for value in values)
    return " | ".join(str(value) if bare else toml_value(value) for value in values)


def keys_with_help(section: BaseModel, described_above: dict[str, str | None]) -> list[str]:
    lines = []
    for key, info in type(section).model_fields.items():
        if info.description and info.description != described_above.get(key):
            lines += comment(info.description)
        line = f"{key} = {toml_value(getattr(section, key))}"
        choices = options(info.annotation)
        lines.append(f"{line}  # {choices}" if choices else line)
    return lines


def operation_tables(operations: OperationsSettings) -> list[str]:
    """The keys every operation has are described once, above the tables; a table describes its own."""
    common = {key: info.description for key, info in OperationSettings.model_fields.items()}
    width = max(map(len, common)) + 2
    lines = ["# One table per operation, each with these keys:"]
    for key, description in common.items():
        lines += comment(description or "", indent="  " + key.ljust(width))
    lines += comment(section_help(OperationsSettings))
    for name in type(operations).model_fields:
        lines += ["", f"[operations.{name}]  # {OPERATIONS[name].title}"]
        lines += keys_with_help(getattr(operations, name), common)
    return lines


def render_example() -> str:
    defaults = Settings()
    lines = ["# toolsync configuration. Every key is shown with its default value.", *comment(section_help(Settings))]
    for name in Settings.model_fields:
        section = getattr(defaults, name)
        lines.append("")
        if isinstance(section, OperationsSettings):
            lines += operation_tables(section)
        else:
            lines += [*comment(section_help(type(section))), f"[{name}]", *keys_with_help(section, {})]
    return "\n".join(lines) + "\n"


def test_the_example_is_written_from_the_models() -> None:
    expected, found = render_example(), EXAMPLE.read_text()
    diff = "".join(difflib.unified_diff(found.splitlines(True), expected.splitlines(True), "committed", "models"))
    assert found == expected, f"config.example.toml disagrees with toolsync_tui/config.py: run `{REWRITE}`\n{diff}"


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


def test_a_bad_database_password_is_named_never_quoted(tmp_path: Path) -> None:
    """A numeric password is a TOML integer, not a string: the error names the key, never the value."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, "[database]\npassword = 98765432\n", mode=0o600))
    assert "database.password" in str(refused.value)
    assert "98765432" not in str(refused.value)


def test_saving_writes_the_password_into_a_file_only_its_owner_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is private before the first byte is written, also when a left-over temporary file was not."""
    import tomli_w

    path = write(tmp_path, "[database]\npassword = 'secret'\n", mode=0o600)
    path.with_suffix(".toml.tmp").write_text("left over")
    path.with_suffix(".toml.tmp").chmod(0o644)
    modes: list[int] = []
    dump = tomli_w.dump

    def watched(data: object, out: Any, **kwargs: Any) -> None:
        modes.append(os.fstat(out.fileno()).st_mode & 0o777)
        dump(data, out, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tomli_w, "dump", watched)
    load_config(path).save()

    assert modes == [0o600]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


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


if __name__ == "__main__":
    EXAMPLE.write_text(render_example())
