"""What a headless run can begin before its own imports: hashing its users file's passwords.

`toolsync run users [FILE]` spends its first second importing (polars, SQLAlchemy, the engine) on one core, while
the other cores idle; password hashing, which holds a 1,000-row run's wall time, has to wait for it. So, before
those imports, this reads the file's password column with the standard library alone and starts the hashing
workers on it (engine/moodle/password_pool.py). The run's hasher takes those hashes when its rows turn out to need
them: fresh hashes, one per row, for accounts with no stored hash to check.

Everything here is a guess that costs nothing when wrong: any doubt (an option it does not know, a file it cannot
read as the run would, a setting it cannot find) and it does nothing, leaving the run to read, decide and report
on its own. A hash whose row the run reads differently is never used; work nobody takes is dropped when the run
first hashes. Its workers run at a lower priority than the run itself (password_worker.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import tomllib
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Final

from toolsync_tui.paths import find_config

# The defaults of the configuration's settings read here (config.py), which a test holds equal.
PASSWORD_ROUNDS: Final = 5000
PASSWORD_PEPPER_ENV: Final = "TOOLSYNC_PASSWORD_PEPPER"
BATCH_SIZE: Final = 5000
DATA_DIR: Final = "data"
USERS_FILE: Final = "userimport.csv"
SEPARATOR: Final = ";"
COMMENT_PREFIXES: Final = ("#", "//")
NOPASS: Final = "*NOPASS*"


def begin(argv: Sequence[str]) -> None:
    """Start hashing the passwords of the run `argv` asks for, if it is `run users FILE` with a password column."""
    try:
        found = _passwords_to_hash(argv)
        if found is not None:
            from toolsync_tui.engine.moodle.password_pool import hash_ahead

            hash_ahead(*found)
    except Exception:  # a guess that failed: the run does it all itself, and reports what is wrong
        return


def end() -> None:
    """Stop the head start's workers if no run took them (a run refused before it hashed)."""
    from toolsync_tui.engine.moodle.password_pool import discard_ahead

    discard_ahead()


def _passwords_to_hash(argv: Sequence[str]) -> tuple[int, str, list[str]] | None:
    """(rounds, pepper, passwords) for the head start, or None."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--config", type=Path)
    for flag in ("--dry-run", "--force", "--full"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("words", nargs="*")
    try:
        args, unknown = parser.parse_known_intermixed_args(list(argv))
    except (argparse.ArgumentError, SystemExit):
        return None
    if unknown or args.dry_run or len(args.words) not in (2, 3) or args.words[:2] != ["run", "users"]:
        return None  # a dry run hashes no new password
    config_path = find_config(args.config)
    if config_path is None:
        return None  # the sandbox
    with config_path.open("rb") as handle:
        config = tomllib.load(handle)
    files, users, run = (_table(config, name) for name in ("files", "operations", "run"))
    users = _table(users, "users")
    path = _users_file(args.words[2] if len(args.words) == 3 else None, config_path, files, users)
    if path is None or not path.is_file():
        return None
    rounds = users.get("password_rounds", PASSWORD_ROUNDS)
    pepper = os.environ.get(users.get("password_pepper_env", PASSWORD_PEPPER_ENV), "")
    if files.get("encoding", "auto") not in ("auto", "utf-8") or not isinstance(rounds, int):
        return None
    passwords = _password_column(
        path,
        files.get("separator", SEPARATOR),
        tuple(files.get("comment_prefixes", COMMENT_PREFIXES)),
        run.get("batch_size", BATCH_SIZE),
    )
    return (rounds, pepper, passwords) if passwords else None


def _users_file(given: str | None, config_path: Path, files: dict[str, Any], users: dict[str, Any]) -> Path | None:
    """The file the run reads (cli/run.py's command_file, or the preselected file): a path to a file, else a bare
    name in the inbox; none given, the `file` setting, relative to the inbox."""
    if given is not None and Path(given).is_file():
        return Path(given)
    if given is not None and "/" in given:
        return None
    data_dir = Path(files.get("data_dir", DATA_DIR)).expanduser()
    inbox = (data_dir if data_dir.is_absolute() else config_path.parent / data_dir) / "inbox"
    name = Path(given if given is not None else users.get("file", USERS_FILE)).expanduser()
    return name if name.is_absolute() else inbox / name


def _table(document: dict[str, Any], name: str) -> dict[str, Any]:
    table = document.get(name, {})
    return table if isinstance(table, dict) else {}


def _password_column(path: Path, separator: str, comments: tuple[str, ...], rows: int) -> list[str]:
    """The first `rows` non-empty passwords of a UTF-8 users file, as its reader would see them (stripped)."""
    with path.open(encoding="utf-8-sig", newline="") as text:  # not UTF-8: UnicodeDecodeError, no head start
        lines = (line for line in text if line.strip() and not line.startswith(comments))
        header = next(lines, "")
        if separator == "auto":
            separator = max((";", ",", "\t"), key=header.count)
        names = [name.strip() for name in next(csv.reader([header], delimiter=separator))]
        if "password" not in names:
            return []
        column = names.index("password")
        found = []
        for record in islice(csv.reader(lines, delimiter=separator), rows):
            value = record[column].strip() if column < len(record) else ""
            if value and value != NOPASS:
                found.append(value)
        return found
