"""The head start of `toolsync run users` (headstart.py): which runs it guesses the passwords of, as the run reads
them, and on a real MariaDB site that the run stores the hashes made ahead where they fit and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import database_config
from tests.support.hashes_ahead import made_ahead
from toolsync_tui import headstart
from toolsync_tui.cli import main as command_line
from toolsync_tui.config import FileSettings, RunSettings, UsersSettings
from toolsync_tui.engine.moodle import password_pool
from toolsync_tui.engine.moodle.passwords import FAST_ROUNDS, NOPASS, hash_password

HEADER = "username;firstname;lastname;email;password"


@pytest.fixture(autouse=True)
def no_work_left_ahead() -> Iterator[None]:
    yield
    password_pool.discard_ahead()


def write_config(folder: Path, text: str = "") -> Path:
    path = folder / "toolsync.toml"
    path.write_text('[database]\ndriver = "mariadb"\nname = "moodle"\n' + text, encoding="utf-8")
    return path


def users_file(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_its_defaults_are_the_configurations() -> None:
    users, files = UsersSettings(), FileSettings()
    assert users.password_rounds == headstart.PASSWORD_ROUNDS
    assert users.password_pepper_env == headstart.PASSWORD_PEPPER_ENV
    assert users.file == headstart.USERS_FILE
    assert files.data_dir == headstart.DATA_DIR
    assert files.separator == headstart.SEPARATOR
    assert list(headstart.COMMENT_PREFIXES) == files.comment_prefixes
    assert RunSettings().batch_size == headstart.BATCH_SIZE
    assert headstart.NOPASS == NOPASS


def test_it_reads_the_password_column_as_the_run_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, '[operations.users]\npassword_rounds = 10000\npassword_pepper_env = "MY_PEPPER"\n')
    monkeypatch.setenv("MY_PEPPER", "site-pepper")
    rows = ["# a comment", "ada;Ada;L;a@x.org; Spaced-1 ", "", "bob;Bob;M;b@x.org;", f"cy;Cy;N;c@x.org;{NOPASS}"]
    rows += ['dee;Dee;O;d@x.org;"semi;colon""quote"']
    file = users_file(tmp_path / "u.csv", rows)
    found = headstart._passwords_to_hash(["--config", str(config), "run", "users", str(file), "--force"])
    assert found == (10000, "site-pepper", ["Spaced-1", 'semi;colon"quote'])


def test_it_finds_the_file_as_the_command_line_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, '[operations.users]\nfile = "nightly.csv"\n')
    users_file(tmp_path / "data" / "inbox" / "nightly.csv", ["a;A;B;a@x.org;Preselected-1"])
    users_file(tmp_path / "data" / "inbox" / "bare.csv", ["a;A;B;a@x.org;Inbox-1"])
    monkeypatch.chdir(tmp_path)
    given = ["--config", str(config), "run", "users"]
    assert headstart._passwords_to_hash(given) == (FAST_ROUNDS, "", ["Preselected-1"])
    assert headstart._passwords_to_hash([*given, "bare.csv"]) == (FAST_ROUNDS, "", ["Inbox-1"])
    assert headstart._passwords_to_hash([*given, "elsewhere/bare.csv"]) is None


@pytest.mark.parametrize(
    "change",
    [
        "other operation",
        "other command",
        "unknown option",
        "dry run",
        "no password column",
        "legacy encoding",
        "sandbox",
    ],
)
def test_it_does_nothing_where_it_would_guess_wrong(tmp_path: Path, change: str) -> None:
    config = write_config(tmp_path, '[files]\nencoding = "windows-1252"\n' if change == "legacy encoding" else "")
    header = "username;firstname;lastname;email" if change == "no password column" else HEADER
    file = users_file(tmp_path / "u.csv", ["a;A;B;a@x.org;Secret-1"], header=header)
    words = {"other operation": ["run", "enrolments"], "other command": ["held", "list"]}.get(change, ["run", "users"])
    argv = [*words, str(file), *(["--limit", "3"] if change == "unknown option" else [])]
    argv += ["--dry-run"] if change == "dry run" else []
    if change != "sandbox":
        argv = ["--config", str(config), *argv]
    found = headstart._passwords_to_hash(argv)
    assert found is None or found[2] == []
    headstart.begin(argv)
    assert password_pool._ahead is None


def test_it_reads_the_first_batch_only(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[run]\nbatch_size = 3\n")
    file = users_file(tmp_path / "u.csv", [f"u{i};A;B;u{i}@x.org;Secret-{i}" for i in range(10)])
    found = headstart._passwords_to_hash(["--config", str(config), "run", "users", str(file)])
    assert found == (FAST_ROUNDS, "", ["Secret-0", "Secret-1", "Secret-2"])


# --- on a real site -------------------------------------------------------------------------------------------


def stored_passwords(url: str, usernames: list[str]) -> dict[str, str]:
    parsed = make_url(url)
    connection = pymysql.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database=parsed.database
    )
    try:
        with connection.cursor() as cursor:
            marks = ", ".join(["%s"] * len(usernames))
            cursor.execute(f"SELECT username, password FROM mdl_user WHERE username IN ({marks})", usernames)
            return {username: password for username, password in cursor.fetchall()}
    finally:
        connection.close()


def test_a_run_stores_the_hashes_made_ahead_and_a_rerun_keeps_what_is_stored(
    mariadb_project_db: str, tmp_path: Path
) -> None:
    config = database_config(tmp_path, mariadb_project_db)
    config.save()
    names = [f"h23ahead{i}" for i in range(40)]
    rows = [f"{name};Ada;Ahead;{name}@example.org;Pass-{name}!" for name in names]
    file = users_file(tmp_path / "ahead.csv", rows)
    argv = ["--config", str(config.path), "run", "users", str(file)]

    headstart.begin(argv)
    ahead = password_pool._ahead
    assert ahead is not None
    assert command_line(argv) == 0
    assert password_pool._ahead is None  # the run's hasher took it
    stored = stored_passwords(mariadb_project_db, names)
    for name in names:
        salt = stored[name].split("$")[3]
        assert hash_password(f"Pass-{name}!", FAST_ROUNDS, salt=salt) == stored[name]
    assert made_ahead(ahead) == set(stored.values())  # every one made ahead

    # Run again: the accounts keep their hashes (unchanged), whatever the head start made this time.
    users_file(file, rows)  # the run archived it
    headstart.begin(argv)
    again = password_pool._ahead
    assert again is not None
    assert command_line(argv) == 0
    assert stored_passwords(mariadb_project_db, names) == stored
    assert not made_ahead(again) & set(stored.values())
