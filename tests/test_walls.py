"""The walls between the layers (docs: architecture.md), read from the imports of every module with `ast`.

- the engine imports nothing of the interface (Textual, app, screens, widgets, views) nor of the command line;
- `engine/moodle/` (what Moodle's PHP would write, in SQL) imports nothing of toolsync outside itself: no run,
  family, configuration or row vocabulary;
- no family (users, courses, enrolments, groups, cohorts, bindings, pictures) imports another: what two share lives
  in `parts/` or `moodle/`, and `parts/` imports no family;
- a headless run (`toolsync run`) loads no Textual at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toolsync_tui"
ENGINE = "toolsync_tui.engine"
MOODLE = f"{ENGINE}.moodle"
FAMILIES = ("users", "courses", "enrolments", "groups", "cohorts", "bindings", "pictures")
INTERFACE = ("textual", "toolsync_tui.app", "toolsync_tui.screens", "toolsync_tui.widgets", "toolsync_tui.views")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(module: str, source: str, is_package: bool) -> Iterator[str]:
    """Every module an import statement of `source` names (lazy and TYPE_CHECKING imports too), made absolute;
    `from a import b` names both `a` and `a.b`, since b may be a submodule."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def family_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["toolsync_tui", "engine"] and parts[2] in FAMILIES else None


def crossings(module: str, source: str, is_package: bool = False) -> list[str]:
    """The walls that `module`, whose text is `source`, crosses: one line each."""
    found = []
    for target in sorted(set(imported(module, source, is_package))):
        if within(module, ENGINE) and any(within(target, wall) for wall in (*INTERFACE, "toolsync_tui.cli")):
            found.append(f"{module} imports {target}: the engine never imports the interface or the command line")
        if (
            within(module, f"{ENGINE}.moodle")
            and within(target, "toolsync_tui")
            and not within(target, f"{ENGINE}.moodle")
        ):
            found.append(f"{module} imports {target}: engine/moodle knows tables, never runs, rows or settings")
        mine, theirs = family_of(module), family_of(target)
        if theirs is not None and mine != theirs and (mine is not None or within(module, f"{ENGINE}.parts")):
            found.append(f"{module} imports {target}: one family never imports another (share through parts/)")
    return found


def test_no_module_crosses_a_wall() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += crossings(module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py")
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("toolsync_tui.engine.rows", "from textual.widgets import DataTable"),
        ("toolsync_tui.engine.run.pipeline", "def f():\n    from toolsync_tui.screens.run import RunScreen"),
        ("toolsync_tui.engine.run.pipeline", "from toolsync_tui.views import run_words"),
        ("toolsync_tui.engine.moodle.gateway", "from toolsync_tui.config import Config"),
        ("toolsync_tui.engine.moodle.contexts", "from ..run.command_file import CommandFile"),
        ("toolsync_tui.engine.moodle.groups", "from toolsync_tui.engine.rows import LINE"),
        ("toolsync_tui.engine.cohorts.operation", "from toolsync_tui.engine.groups.common import course_lookup"),
        ("toolsync_tui.engine.users.operation", "from ..courses import values"),
        ("toolsync_tui.engine.parts.course_enrolments", "from toolsync_tui.engine.enrolments.rows import ACTION"),
    ],
)
def test_each_wall_is_seen_when_crossed(module: str, source: str) -> None:
    assert crossings(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("toolsync_tui.engine.moodle.contexts", "from .gateway import MoodleGateway"),
        ("toolsync_tui.engine.users.operation", "from ..moodle.passwords import PasswordHasher"),
        ("toolsync_tui.engine.users.operation", "from toolsync_tui.engine.parts import cohort_memberships"),
        ("toolsync_tui.screens.run", "from toolsync_tui.engine.run.pipeline import run_inputs"),
    ],
)
def test_what_the_walls_allow(module: str, source: str) -> None:
    assert crossings(module, source) == []


def test_a_headless_run_loads_no_textual(tmp_path: Path) -> None:
    """`toolsync run` from cron pays for no interface: the whole run, in a fresh interpreter, imports no Textual."""
    probe = (
        "import sys\n"
        "from toolsync_tui.cli import main\n"
        f"main(['sandbox', 'init', {str(tmp_path / 'sandbox')!r}])\n"
        f"code = main(['--config', {str(tmp_path / 'sandbox' / 'toolsync.toml')!r}, 'run', 'check'])\n"
        "loaded = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print('ran' if code in (0, 1) else f'exit {code}', 'textual', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines()[-1] == "ran textual []"  # ran: every row accounted for (some courses missing)
