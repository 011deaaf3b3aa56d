"""The data directory is its owner's (issue 20, item 1): folders 0700 and files 0600 (0750 and 0640 with
files.group_readable), whatever an older version left; and no password in any file it holds but the tryback: the
archived command file keeps its format with the password cells emptied (files.archive_passwords keeps them)."""

from __future__ import annotations

import codecs
import os
import stat
from datetime import datetime
from pathlib import Path

from tests.support.factories import add_courses, unique
from tests.support.operation_files import inbox_file
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.privacy import MARKER
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation
from toolsync_tui.engine.sandbox import DATABASE_NAME, MOODLE_DATA, init_sandbox
from toolsync_tui.engine.tools.course_selection import CourseSelection
from toolsync_tui.engine.tools.generators import generate
from toolsync_tui.engine.unattended.schedules import ScheduleState

PRIVATE = (0o700, 0o600)
GROUP_READABLE = (0o750, 0o640)
HEADER = ("username", "firstname", "lastname", "email", "password")


def modes_under(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(folders, files) under `root`, root included, by path relative to it -> permission bits."""
    folders = {".": stat.S_IMODE(root.stat().st_mode)}
    files: dict[str, int] = {}
    for folder, names, file_names in os.walk(root):
        for found, entries in ((folders, names), (files, file_names)):
            for name in entries:
                path = Path(folder, name)
                found[str(path.relative_to(root))] = stat.S_IMODE(os.lstat(path).st_mode)
    return folders, files


def assert_modes(root: Path, expected: tuple[int, int]) -> dict[str, int]:
    """Every folder and file under `root` has the expected mode; the files found."""
    folders, files = modes_under(root)
    assert {path: oct(mode) for path, mode in folders.items() if mode != expected[0]} == {}
    assert {path: oct(mode) for path, mode in files.items() if mode != expected[1]} == {}
    return files


def holding(root: Path, secrets: list[bytes]) -> dict[str, list[bytes]]:
    """The files under `root` holding any of `secrets`, with the ones they hold."""
    found: dict[str, list[bytes]] = {}
    for folder, _, file_names in os.walk(root):
        for name in file_names:
            data = Path(folder, name).read_bytes()
            held = [secret for secret in secrets if secret in data]
            if held:
                found[os.path.relpath(os.path.join(folder, name), root)] = held
    return found


def users_file(rows: list[tuple[str, str, str]], newline: str = "\r\n") -> tuple[str, str]:
    """(the file, the file with its password cells emptied) from (before, password cell, after) rows; a row without
    a password cell ("", "", line) is a comment or a blank line, the same in both."""
    header = ";".join(HEADER) + newline
    full = header + "".join(f"{before}{cell}{after}{newline}" for before, cell, after in rows)
    blanked = header + "".join(f"{before}{after}{newline}" for before, _, after in rows)
    return full, blanked


async def test_a_users_run_leaves_every_file_private_and_no_password_but_in_the_tryback(
    dump_site: tuple[Config, MoodleGateway],
) -> None:
    config, gateway = dump_site
    one, two, three, four = (unique("secret") for _ in range(4))
    full, blanked = users_file(
        [
            ("", "", "# exported by the student information system;do not edit"),
            (f"{one};Ann;One;{one}@example.edu;", "Pw-alpha-1234", ""),
            (f'{two};"Bob; Jr";Two;{two}@example.edu;', '"Pw;beta""5678"', ""),
            ("", "", ""),
            (f"{three};Cy;Three;not-an-email;", "Pw-gamma-9012", ""),  # fails: kept, with its password, for a re-run
            (f"{four};Di;Four;{four}@example.edu;", "  Pw-delta-3456 ", ""),
        ]
    )
    source = codecs.BOM_UTF8 + full.encode()
    secrets = [b"Pw-alpha-1234", b'Pw;beta"5678', b'Pw;beta""5678', b"Pw-gamma-9012", b"Pw-delta-3456"]
    os.chmod(inbox_file(config, "userimport.csv", source), 0o644)  # as a feeder leaves it

    dry = await run_operation(config, gateway, "users", dry_run=True)
    real = await run_operation(config, gateway, "users")

    assert dry.counts == real.counts == {"created": 3, "failed": 1}
    assert real.tryback_path is not None
    assert real.archive_path is not None
    files = assert_modes(config.data_dir, PRIVATE)
    assert {path.split(os.sep)[0] for path in files} >= {"archive", "reports", "tryback", "runs.jsonl"}
    tryback = str(real.tryback_path.relative_to(config.data_dir))
    assert holding(config.data_dir, secrets) == {tryback: [b"Pw-gamma-9012"]}
    assert real.archive_path.read_bytes() == codecs.BOM_UTF8 + blanked.encode()


async def test_group_readable_gives_the_group_read_access_and_turned_off_takes_it_back(sandbox: Config) -> None:
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    try:
        name = unique("group")
        full, _ = users_file([(f"{name};Ann;One;{name}@example.edu;", "Pw-group-4321", ""), ("x;;;;", "", "")])
        sandbox.set("files.group_readable", True)
        inbox_file(sandbox, "userimport.csv", full)
        readable = await run_operation(sandbox, gateway, "users")
        group_modes = modes_under(sandbox.data_dir)

        sandbox.set("files.group_readable", False)
        await run_operation(sandbox, gateway, "users", dry_run=True, source=readable.tryback_path)
    finally:
        await gateway.close()

    assert readable.tryback_path is not None
    assert readable.archive_path is not None
    assert {mode for mode in group_modes[0].values()} == {GROUP_READABLE[0]}
    assert {mode for mode in group_modes[1].values()} == {GROUP_READABLE[1]}
    assert_modes(sandbox.data_dir, PRIVATE)


async def test_archive_passwords_keeps_the_file_as_it_was_yet_private(sandbox: Config) -> None:
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    name = unique("kept")
    full, _ = users_file([(f"{name};Ann;One;{name}@example.edu;", "Pw-kept-1111", "")], newline="\n")
    sandbox.set("files.archive_passwords", True)
    sandbox.set("files.archive", "copy")
    os.chmod(inbox_file(sandbox, "userimport.csv", full), 0o644)
    try:
        result = await run_operation(sandbox, gateway, "users")
    finally:
        await gateway.close()

    assert result.counts == {"created": 1}
    assert result.archive_path is not None
    assert result.archive_path.read_text() == full
    assert stat.S_IMODE(result.archive_path.stat().st_mode) == 0o600
    assert (DataStore(sandbox.data_dir).inbox / "userimport.csv").read_text() == full  # copied: the source stays


async def test_a_broken_file_loses_its_passwords_in_the_archive_rather_than_too_few(sandbox: Config) -> None:
    """A Windows-1252 file separated by commas: a row with a separator too many, a lone CR in a value, a quoted value
    over two lines, a stray quote that swallows two rows, a quote never closed."""
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    sandbox.set("files.separator", "auto")
    sandbox.set("files.encoding", "auto")
    lines = [
        ("username,firstname,lastname,email,password\n", "username,firstname,lastname,email,password\n"),
        ("élan,Émile,Zola,elan@example.edu,Pw-one-é1\n", "élan,Émile,Zola,elan@example.edu,\n"),
        ("extra,Ann,Jr,Ext,ann@example.edu,Pw-two-2\n", "extra,Ann,Jr,Ext,,\n"),
        ("cr,Fi\rrst,L,cr@example.edu,Pw-cr-9\n", "cr,Fi\rrst,L,cr@example.edu,\n"),
        ('multi,"Line\n', 'multi,"Line\n'),
        ('two",L,m@example.edu,Pw-three-3\n', 'two",L,m@example.edu,\n'),
        ('stray,"Bad,L,s@example.edu,Pw-four-4\n', 'stray,"Bad,L,s@example.edu,\n'),
        ("swallowed,F,L,w@example.edu,Pw-five-5\n", "swallowed,F,L,w@example.edu,\n"),
        ('end",F,L,e@example.edu,Pw-six-6\n', 'end",F,L,e@example.edu,\n'),
        ('open,"Never,L,o@example.edu,Pw-seven-7\n', 'open,"Never,L,o@example.edu,\n'),
        ("after,F,L,a@example.edu,Pw-eight-8\n", "after,F,L,a@example.edu,\n"),
    ]
    source = "".join(line for line, _ in lines).encode("windows-1252")
    inbox_file(sandbox, "userimport.csv", source)
    try:
        result = await run_operation(sandbox, gateway, "users")
    finally:
        await gateway.close()

    assert result.archive_path is not None
    assert result.archive_path.read_bytes() == "".join(blanked for _, blanked in lines).encode("windows-1252")
    assert result.tryback_path is not None
    assert b"Pw-two-2" in result.tryback_path.read_bytes()  # failed rows keep their passwords, to be run again


def as_an_older_version_left_it(data: Path, outside: Path) -> None:
    """Folders 0755 and files 0644, and a link to a file outside the data directory; no record of modes given."""
    (data / MARKER).unlink(missing_ok=True)
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    for name in [
        "archive/20250101-080000_userimport.csv",
        "reports/20250101-080000_users_userimport.txt",
        "tryback/userimport_tryback_20250101-080000.csv",
        "state/protected_group_members.sqlite",
        "runs.jsonl",
        "cron_state.json",
        "inbox/userimport.csv",
    ]:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("username;firstname;lastname\n")
    (data / "archive" / "link.csv").symlink_to(outside)
    for folder, _, file_names in os.walk(data):
        os.chmod(folder, 0o755)
        for name in file_names:
            if not Path(folder, name).is_symlink():
                os.chmod(Path(folder, name), 0o644)


async def test_a_file_of_lines_ended_by_a_lone_cr_is_archived_without_its_passwords(sandbox: Config) -> None:
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    name = unique("mac")
    full, blanked = users_file([(f"{name};Ann;One;{name}@example.edu;", "Pw-mac-1984", "")], newline="\r")
    inbox_file(sandbox, "userimport.csv", full)
    try:
        result = await run_operation(sandbox, gateway, "users")
    finally:
        await gateway.close()

    assert result.counts == {"created": 1}
    assert result.archive_path is not None
    assert result.archive_path.read_bytes() == blanked.encode()


async def test_an_older_data_directory_is_narrowed_when_a_run_starts(sandbox: Config, tmp_path: Path) -> None:
    data = sandbox.data_dir
    outside = tmp_path / "outside.txt"
    as_an_older_version_left_it(data, outside)
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    try:
        await run_operation(sandbox, gateway, "users", dry_run=True)
    finally:
        await gateway.close()

    folders, files = modes_under(data)
    del files["archive/link.csv"]  # a link is left alone, and what it points to too
    assert {path: oct(mode) for path, mode in folders.items() if mode != PRIVATE[0]} == {}
    assert {path: oct(mode) for path, mode in files.items() if mode != PRIVATE[1]} == {}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


async def test_after_the_first_walk_only_the_inbox_is_narrowed_again(sandbox: Config) -> None:
    """Toolsync creates its own files private: later starts walk only the inbox, where others drop files."""
    data = sandbox.data_dir
    store = DataStore(data)
    assert store.ensure() == []
    dropped, own = data / "inbox" / "userimport.csv", data / "reports" / "by-hand.txt"
    for path in (dropped, own):
        path.write_text("username;firstname;lastname\n")
        os.chmod(path, 0o644)

    assert store.ensure() == []

    assert stat.S_IMODE(dropped.stat().st_mode) == PRIVATE[1]
    assert stat.S_IMODE(own.stat().st_mode) == 0o644  # not walked: the whole directory was given its modes already
    store.ensure(group_readable=True)  # another setting: the whole directory again
    assert stat.S_IMODE(own.stat().st_mode) == 0o640


async def test_a_new_sandbox_is_private(tmp_path: Path) -> None:
    config = await init_sandbox(tmp_path / "sandbox")
    assert stat.S_IMODE((tmp_path / "sandbox").stat().st_mode) == PRIVATE[0]
    assert stat.S_IMODE((tmp_path / "sandbox" / DATABASE_NAME).stat().st_mode) == PRIVATE[1]
    assert stat.S_IMODE(config.path.stat().st_mode) == PRIVATE[1]
    assert_modes(config.resolve(MOODLE_DATA), PRIVATE)
    files = assert_modes(config.data_dir, PRIVATE)
    assert "inbox/userimport.csv" in files


def test_the_cron_state_is_private_from_its_first_byte(tmp_path: Path) -> None:
    umask = os.umask(0o022)  # the usual one, whatever the test run's
    try:
        ScheduleState(tmp_path / "cron_state.json").handled("users", "0 * * * *", datetime(2026, 1, 1).astimezone())
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "cron_state.json").stat().st_mode) == PRIVATE[1]


async def test_a_password_column_other_files_ignore_is_emptied_in_their_archive_too(sandbox: Config) -> None:
    """An export with more columns than the enrolments file takes (files.ignore_unknown_columns)."""
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    sandbox.set("files.ignore_unknown_columns", True)
    inbox_file(sandbox, "enrols.csv", "cmd;rolename;cid;uid;Initial_Password\nadd;student;BIO101;jdoe;Pw-export-5\n")
    try:
        result = await run_operation(sandbox, gateway, "enrols")
    finally:
        await gateway.close()

    assert result.archive_path is not None
    assert result.archive_path.read_text() == "cmd;rolename;cid;uid;Initial_Password\nadd;student;BIO101;jdoe;\n"


def test_an_archived_file_without_passwords_is_moved_as_it_is_but_private(tmp_path: Path) -> None:
    store = DataStore(tmp_path / "data")
    store.ensure()
    source = store.inbox / "enrols.csv"
    source.write_bytes(b"cmd;rolename;cid;uid\r\nadd;student;BIO101;jdoe\r\n")
    os.chmod(source, 0o644)
    os.utime(source, (1_700_000_000, 1_700_000_000))

    archived = store.archive_file(source, "20260101-080000", "move")

    assert archived is not None
    assert not source.exists()
    assert archived.read_bytes() == b"cmd;rolename;cid;uid\r\nadd;student;BIO101;jdoe\r\n"
    assert stat.S_IMODE(archived.stat().st_mode) == PRIVATE[1]
    assert archived.stat().st_mtime == 1_700_000_000  # retention counts from the file's own time, as before


async def test_a_generated_command_file_is_private(sandbox: Config) -> None:
    gateway = MoodleGateway.for_sqlite(sandbox.resolve(sandbox.settings.database.sqlite_path), "mdl_")
    try:
        await add_courses(gateway, [{"shortname": "PRIVATE101"}])
        selection = CourseSelection(pattern="PRIVATE101")
        result = await generate(sandbox, gateway, "deletecourses", selection, force=True)
    finally:
        await gateway.close()
    assert stat.S_IMODE(result.path.stat().st_mode) == PRIVATE[1]
