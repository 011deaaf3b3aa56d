"""A headless run imports what its operation needs and nothing more (issue 23): `toolsync run` from cron pays for no
interface, no other family and no picture library; the registry imports an operation only when it is used.

Each run is the real command line in a fresh interpreter (on a sandbox copy), which prints the modules it ended with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import database_config
from toolsync_tui.config import Config
from toolsync_tui.engine.registry import OPERATIONS

FAMILIES = ("users", "courses", "enrolments", "groups", "cohorts", "bindings", "pictures")
SAMPLES = Path(__file__).resolve().parents[2] / "toolsync_tui" / "samples"

# The command line's main() in a fresh interpreter; its last line: the exit code and every module it loaded.
PROBE = (
    "import json, sys\n"
    "from toolsync_tui.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
)


def headless(config: Config, *arguments: str) -> tuple[int, set[str]]:
    """`toolsync --config CFG ARGUMENTS...` run in a fresh interpreter: its exit code and the modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--config", str(config.path), *arguments],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    return found["code"], set(found["modules"])


def loaded(modules: set[str], name: str) -> bool:
    return any(module == name or module.startswith(name + ".") for module in modules)


def families(modules: set[str]) -> set[str]:
    return {family for family in FAMILIES if loaded(modules, f"toolsync_tui.engine.{family}")}


def users_file(path: Path, passwords: bool = False) -> Path:
    header = "username;firstname;lastname;email" + (";password" if passwords else "")
    row = "h23lean;Ada;Lean;h23lean@example.org" + (";Lean-pass-23!" if passwords else "")
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    return path


def test_a_users_run_imports_its_family_only(sandbox: Config, tmp_path: Path) -> None:
    code, modules = headless(sandbox, "run", "users", str(users_file(tmp_path / "users.csv")))
    assert code == 0
    assert not loaded(modules, "textual")
    assert not loaded(modules, "PIL")  # Pillow: the pictures' only
    assert families(modules) == {"users"}
    # No password column: no hashing pool, no libxcrypt (moodle/passwords.py imports them on use).
    assert not loaded(modules, "crypt_r")
    assert not loaded(modules, "multiprocessing")


def test_a_users_run_with_passwords_loads_the_hashing_pool(sandbox: Config, tmp_path: Path) -> None:
    code, modules = headless(sandbox, "run", "users", str(users_file(tmp_path / "users.csv", passwords=True)))
    assert code == 0
    assert loaded(modules, "multiprocessing")  # the pool; libxcrypt is the workers' (its forkserver preloads it)
    assert not loaded(modules, "PIL")
    assert families(modules) == {"users"}


def test_a_run_on_mariadb_loads_no_sqlite_dialect(mariadb_project_db: str, tmp_path: Path) -> None:
    """SQLAlchemy's SQLite dialect is the sandbox's: a run on a MariaDB site does not load it (~7 ms)."""
    config = database_config(tmp_path, mariadb_project_db)
    config.save()
    code, modules = headless(config, "run", "users", str(users_file(tmp_path / "users.csv")))
    assert code == 0
    assert loaded(modules, "sqlalchemy.dialects.mysql")
    assert not loaded(modules, "sqlalchemy.dialects.sqlite")


def test_a_pictures_run_imports_pillow(sandbox: Config, tmp_path: Path) -> None:
    archive = shutil.copy(SAMPLES / "userpictures_sample.zip", tmp_path / "userpictures_sample.zip")
    code, modules = headless(sandbox, "run", "pictures", str(archive))
    assert code in (0, 1)  # ran: the sample's pictures whose users the sandbox lacks fail
    assert loaded(modules, "PIL")
    assert families(modules) == {"pictures"}
    assert not loaded(modules, "textual")


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_each_registered_name_is_its_class_name(name: str) -> None:
    assert OPERATIONS[name].implementation.name == name
    assert OPERATIONS[name].title == OPERATIONS[name].implementation.title


def test_the_registry_imports_no_operation() -> None:
    probe = (
        "import sys\n"
        "from toolsync_tui.engine.registry import OPERATIONS\n"
        "names = list(OPERATIONS)\n"
        "print(sorted({m.split('.')[2] for m in sys.modules if m.startswith('toolsync_tui.engine.') "
        f"and m.split('.')[2] in {FAMILIES!r}}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
