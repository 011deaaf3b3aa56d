"""The `toolsync` command: sandbox init, headless runs, exit codes and one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import toolsync_tui
from tests.conftest import run_blocking
from tests.support.factories import add_courses
from tests.support.operation_files import FlagPurge
from toolsync_tui.cli import main
from toolsync_tui.config import load_config
from toolsync_tui.engine import registry
from toolsync_tui.engine.moodle.gateway import MoodleGateway


def init(tmp_path: Path) -> Path:
    assert main(["sandbox", "init", str(tmp_path / "sb")]) == 0
    return tmp_path / "sb" / "toolsync.toml"


def test_sandbox_init_lays_out_config_database_and_samples(tmp_path: Path) -> None:
    config_path = init(tmp_path)
    sandbox = config_path.parent
    assert (sandbox / "sandbox.sqlite").is_file()
    for folder in ("inbox", "archive", "reports", "tryback"):
        assert (sandbox / "data" / folder).is_dir()
    samples = {p.name for p in (sandbox / "data" / "inbox").iterdir()}
    assert {"courses.csv", "userimport.csv", "enrols.csv", "cohorts.csv", "groups.csv"} <= samples
    assert load_config(config_path).settings.database.driver == "sqlite"
    assert main(["sandbox", "init", str(sandbox)]) == 2  # never overwrites a sandbox


def test_run_check_on_the_sandbox_exits_1_when_courses_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = init(tmp_path)
    assert main(["--config", str(config_path), "run", "check"]) == 1
    out = capsys.readouterr().out
    assert "check: 4 rows were processed" in out
    assert "4 failed" in out
    for label in ("report", "table", "tryback", "archived"):
        assert f"  {label}: " in out


def test_run_check_exits_0_when_every_course_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = init(tmp_path)

    async def add() -> None:
        gateway = MoodleGateway.for_sqlite(config_path.parent / "sandbox.sqlite", "mdl_")
        await add_courses(gateway, [{"shortname": s} for s in ("BIO101", "CHEM201", "HIST110")])
        await gateway.close()

    run_blocking(add())
    (config_path.parent / "data" / "inbox" / "courses.csv").write_text("BIO101\nCHEM201\nHIST110\n")
    assert main(["--config", str(config_path), "run", "check"]) == 0
    assert "3 unchanged" in capsys.readouterr().out


def test_dry_run_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = init(tmp_path)
    assert main(["--config", str(config_path), "run", "check", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "would be processed" in out
    assert "tryback" not in out
    assert "archived" not in out


@pytest.mark.parametrize(
    ("setup", "argv_tail", "message"),
    [
        ("bad_bytes", ["run", "check"], "toolsync: courses.csv line 1, byte 4: 0xC9 is not valid UTF-8"),
        ("bad_config", ["run", "check"], "files.archive: Input should be 'move', 'copy' or 'off' (got 'shred')"),
        ("no_archives", ["run", "pictures"], "pictures: nothing to run, no "),
        ("none", ["run", "check", "missing.csv"], "missing.csv: file not found"),
    ],
)
def test_problems_are_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, argv_tail: list[str], message: str
) -> None:
    config_path = init(tmp_path)
    if setup == "bad_bytes":
        config_path.write_text(config_path.read_text().replace("[files]\n", '[files]\nencoding = "utf-8"\n'))
        (config_path.parent / "data" / "inbox" / "courses.csv").write_bytes(b"CAF\xc9\n")
    if setup == "no_archives":
        (config_path.parent / "data" / "inbox" / "userpictures_sample.zip").unlink()
    if setup == "bad_config":
        config_path.write_text(config_path.read_text().replace("[files]\n", '[files]\narchive = "shred"\n'))
    assert main(["--config", str(config_path), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert list((config_path.parent / "data" / "reports").iterdir()) == []


def test_an_unreachable_database_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\nport = 1\n[files]\ndata_dir = "d"\n')
    (tmp_path / "d" / "inbox").mkdir(parents=True)
    (tmp_path / "d" / "inbox" / "courses.csv").write_text("X\n")
    assert main(["--config", str(path), "run", "check"]) == 2
    assert "cannot use the database at 127.0.0.1:1/moodle" in capsys.readouterr().err


def test_the_safety_threshold_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = init(tmp_path)
    monkeypatch.setitem(registry.OPERATIONS, "flagpurge", registry.OperationInfo(FlagPurge))
    monkeypatch.setattr("toolsync_tui.cli.OPERATIONS", registry.OPERATIONS)

    async def add_flags() -> None:
        gateway = MoodleGateway.for_sqlite(config_path.parent / "sandbox.sqlite", "mdl_")
        async with gateway.transaction() as conn:
            await gateway.insert_many(
                conn,
                gateway.schema.cache_flags,
                [{"flagtype": "", "name": f"f{i}", "value": "1", "expiry": 0} for i in range(20)],
            )
        await gateway.close()

    run_blocking(add_flags())
    purge = tmp_path / "purge.csv"
    purge.write_text("".join(f"f{i}\n" for i in range(15)))
    argv = ["--config", str(config_path), "run", "flagpurge", str(purge)]
    with pytest.raises(SystemExit):  # argparse only offers the registered operations
        main([*argv[:2], "run", "nosuchop"])
    assert main(argv) == 3
    assert "more than the safety threshold of 10%" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


def test_without_configuration_the_embedded_sandbox_is_created_and_used(tmp_path: Path) -> None:
    toolsync = shutil.which("toolsync") or str(Path(sys.executable).parent / "toolsync")
    env = {
        "PATH": str(Path(sys.executable).parent),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "share"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    done = subprocess.run([toolsync, "run", "check"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    assert "check: 4 rows were processed" in done.stdout
    assert (tmp_path / "share" / "toolsync" / "sandbox" / "sandbox.sqlite").is_file()
    assert "check: line 4/4" not in done.stdout  # progress goes to stderr, never into the summary


# -- issue 21 item 9 and issue 20's leftover: the command line on a terminal -----------------------------------------


def test_options_may_come_anywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run check --dry-run FILE`: argparse gave the optional FILE only the words before the first option."""
    config_path = init(tmp_path)
    courses = config_path.parent / "data" / "inbox" / "courses.csv"
    for argv in (
        ["--config", str(config_path), "run", "check", "--dry-run", str(courses)],
        ["run", "--dry-run", "check", str(courses), "--config", str(config_path)],
        ["run", "check", "--config", str(config_path), str(courses), "--dry-run"],
    ):
        assert main(argv) == 1, argv
        assert "check: 4 rows would be processed" in capsys.readouterr().out


def test_a_bare_file_name_is_looked_for_in_the_inbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = init(tmp_path)
    inbox = config_path.parent / "data" / "inbox"
    (inbox / "few.csv").write_text("BIO101\n")
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["--config", str(config_path), "run", "check", "--dry-run", "few.csv"]) == 1
    out = capsys.readouterr().out
    assert "check: 1 row would be processed" in out
    assert "_check_few_dryrun.txt" in out
    # One in the current directory comes first.
    (here / "few.csv").write_text("BIO101\nCHEM201\n")
    assert main(["--config", str(config_path), "run", "check", "--dry-run", "few.csv"]) == 1
    assert "2 rows would be processed" in capsys.readouterr().out
    # Neither: where it looked is said; a name with a folder is not looked for in the inbox.
    assert main(["--config", str(config_path), "run", "check", "nowhere.csv"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"toolsync: nowhere.csv: file not found, neither in the current directory ({here}) nor in the inbox ({inbox})\n"
    )
    assert main(["--config", str(config_path), "run", "check", "./courses.csv"]) == 2
    assert capsys.readouterr().err == f"toolsync: ./courses.csv: file not found ({here / 'courses.csv'})\n"


def test_control_characters_from_file_names_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: a file name holding ESC (here one that would set the terminal's title, then clear the screen) is
    printed escaped in the summary's paths and in the messages, as the reports write it."""
    config_path = init(tmp_path)
    hostile = "x\x1b]0;owned\x07\x1b[2J.csv"
    path = tmp_path / hostile
    path.write_text("BIO101\n")
    assert main(["--config", str(config_path), "run", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err
    assert "\x07" not in captured.out
    assert "_check_x\\x1b]0;owned\\x07\\x1b[2J.txt" in captured.out  # the report's name, escaped
    assert main(["--config", str(config_path), "run", "check", f"gone{hostile}"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "gonex\\x1b]0;owned\\x07\\x1b[2J.csv: file not found" in err
    assert len(err.splitlines()) == 1


def run_on_a_terminal(argv: list[str], columns: int, env: dict[str, str]) -> str:
    """`toolsync` with its standard output and error on a pseudo-terminal `columns` wide: what the terminal got."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    command = [sys.executable, "-m", "toolsync_tui", *argv]
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    received = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the program ended and closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 1
    return received.decode()


def test_paths_are_printed_whole_on_a_terminal(tmp_path: Path) -> None:
    """Issue 21 item 9: while the progress bar showed, Rich reflowed the summary to the terminal's width, with real
    line breaks inside the paths (`report: …/20261206-091735_us⏎ers_latin1_dryrun.txt`)."""
    config_path = init(tmp_path)
    source = str(Path(toolsync_tui.__file__).parents[1])  # this very package, whatever is installed
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TERM": "xterm-256color", "PYTHONPATH": source}
    shown = run_on_a_terminal(["--config", str(config_path), "run", "check", "--dry-run"], 40, env)
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "").split("\n")
    (report,) = (config_path.parent / "data" / "reports").glob("*.txt")
    assert f"  report: {report}" in lines
    assert any(line.startswith("check: 4 rows would be processed in ") for line in lines)
