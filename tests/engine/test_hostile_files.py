"""Hostile command files at reading time (issue 20, items 2, 12, 13 and 14): a header-less file must not leak its
first row (a password) into any message, a file cut inside a UTF-8 character is one clear line, a lone CR or a broken
quote never cuts or swallows values, and control characters are refused in values and never shown raw."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from tests.support.course_factories import add_enrolment_courses
from tests.support.factories import unique
from tests.support.operation_files import dry_and_real, identifiers_by_id, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.cli import main
from toolsync_tui.config import Config, FileSettings
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.rows import LINE, PROBLEM, RAW
from toolsync_tui.engine.run.command_file import ColumnSpec, CommandFile, FileProblem
from toolsync_tui.engine.users.columns import USERS_FILE

Site = tuple[Config, MoodleGateway]
SECRET = "Tr0ub4dor&3"
USERS = ColumnSpec(required=("username", "firstname", "lastname"), optional=("email", "password"), short_rows=True)


def write(tmp_path: Path, content: str | bytes, name: str = "file.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(path: Path, spec: ColumnSpec = USERS, **settings: object) -> tuple[CommandFile, pl.DataFrame]:
    source = CommandFile.open(path, spec, FileSettings(**settings))  # type: ignore[arg-type]
    batches = list(source.batches(10_000))
    return source, pl.concat(batches) if batches else pl.DataFrame()


def problems(rows: pl.DataFrame) -> dict[int, str | None]:
    return dict(zip(rows[LINE].to_list(), rows[PROBLEM].to_list(), strict=True))


def header_problem(path: Path, spec: ColumnSpec = USERS_FILE, **settings: object) -> str:
    with pytest.raises(FileProblem) as error:
        read(path, spec, **settings)
    return str(error.value)


# -- item 2: no header message quotes a value that could be a password --------------------------------------------


@pytest.mark.parametrize("ignore_unknown", [True, False])
@pytest.mark.parametrize(
    "first_row",
    [
        f"jdoe;John;Doe;{SECRET};j@x.org",
        f"{SECRET};jdoe;John;Doe",  # the password first: the first "unknown column"
        f"jdoe;{SECRET};{SECRET};Doe",  # a password twice: a "column appears twice"
        f"jdoe;;{SECRET};Doe",  # an empty cell before it
    ],
)
def test_a_header_less_users_file_names_positions_never_its_first_rows_values(
    tmp_path: Path, first_row: str, ignore_unknown: bool
) -> None:
    path = write(tmp_path, f"{first_row}\nasmith;Ann;Smith;pw2;a@x.org\n")
    message = header_problem(path, ignore_unknown_columns=ignore_unknown)
    assert SECRET not in message
    assert "jdoe" not in message
    cells = len(first_row.split(";"))
    assert message == (
        f"file.csv line 1: required columns 'username', 'firstname', 'lastname' missing; the header's {cells} cells "
        "name no known column — is the header line missing?"
    )


def test_a_header_with_known_columns_still_names_its_unknown_and_missing_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;shoesize\n")
    assert header_problem(path) == (
        "file.csv line 1, column 3: unknown column 'shoesize'; allowed columns are " + USERS_FILE.allowed_names()
    )
    message = header_problem(path, ignore_unknown_columns=True)
    assert message == (
        "file.csv line 1: required column 'lastname' missing; the header names username, firstname "
        "(1 unknown column ignored: column 3)"
    )


def test_a_header_less_list_without_required_columns_says_so_by_count(tmp_path: Path) -> None:
    lists = ColumnSpec(optional=("username", "idnumber", "email"))
    message = header_problem(write(tmp_path, f"jdoe;{SECRET}\n"), lists, ignore_unknown_columns=True)
    assert message == (
        "file.csv line 1: the header's 2 cells name no known column — is the header line missing? (allowed columns "
        "are username, idnumber, email)"
    )


def test_the_command_line_and_the_run_log_show_no_password_of_a_header_less_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "init", str(tmp_path / "sb")]) == 0
    config_path = tmp_path / "sb" / "toolsync.toml"
    text = config_path.read_text().replace("[files]\n", "[files]\nignore_unknown_columns = true\n")
    config_path.write_text(text)
    inbox = tmp_path / "sb" / "data" / "inbox"
    (inbox / "userimport.csv").write_text(f"jdoe;John;Doe;{SECRET};j@x.org\n")
    assert main(["--config", str(config_path), "run", "users"]) == 2
    captured = capsys.readouterr()
    assert "is the header line missing?" in captured.err
    assert SECRET not in captured.err + captured.out
    log = (tmp_path / "sb" / "data" / "runs.jsonl").read_text()
    assert json.loads(log.splitlines()[-1])["exit_code"] == 2
    assert SECRET not in log


# -- item 12: a file cut inside a UTF-8 character --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (b"\xc3", "0xC3: 1 of its 2 bytes"),
        (b"\xe2\x82", "0xE2 0x82: 2 of its 3 bytes"),
        (b"\xf0\x9f\x98", "0xF0 0x9F 0x98: 3 of its 4 bytes"),
    ],
)
def test_a_file_cut_inside_a_utf8_character_is_one_clear_line(tmp_path: Path, tail: bytes, expected: str) -> None:
    path = write(tmp_path, b"username;firstname;lastname\nj;J\xc3\xa9r;D\nk;K;L" + tail)
    message = header_problem(path, USERS, encoding="utf-8")
    assert message == (
        f"file.csv line 3, byte 6: the file ends inside a UTF-8 character ({expected}); was it cut short? If the "
        'file is in a legacy encoding set files.encoding to "windows-1252" or "iso-8859-1" (or "auto")'
    )


def test_the_command_line_exits_2_with_one_line_for_a_cut_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "init", str(tmp_path / "sb")]) == 0
    config_path = tmp_path / "sb" / "toolsync.toml"
    config_path.write_text(config_path.read_text().replace("[files]\n", '[files]\nencoding = "utf-8"\n'))
    (tmp_path / "sb" / "data" / "inbox" / "courses.csv").write_bytes(b"BIO101\nCHEM\xc3")
    assert main(["--config", str(config_path), "run", "check"]) == 2
    err = capsys.readouterr().err
    assert "courses.csv line 2, byte 5: the file ends inside a UTF-8 character" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# -- item 13: a lone CR, a broken quote -----------------------------------------------------------------------------


def test_a_lone_cr_in_an_unquoted_value_fails_its_row_whole(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname\r\nj1;Jo\rhn;Doe\r\nj2;Ann;Lee\r\n")
    source, rows = read(path)
    assert problems(rows) == {
        2: "column 'firstname' holds a carriage return (CR) inside an unquoted value; a line break in a value must "
        "be quoted",
        3: None,
    }
    assert rows.filter(pl.col(PROBLEM).is_null()).select("username", "firstname", "lastname").rows() == [
        ("j2", "Ann", "Lee")
    ]
    assert source.physical_lines == 3


def test_a_quoted_cr_is_kept_and_crlf_and_cr_only_files_keep_working(tmp_path: Path) -> None:
    quoted = write(tmp_path, 'username;firstname;lastname\nj1;"Jo\rhn";Doe\n', "quoted.csv")
    assert read(quoted)[1].select("firstname", PROBLEM).rows() == [("Jo\rhn", None)]
    mac = write(tmp_path, "username;firstname;lastname\rj1;John;Doe\rj2;Ann;Lee\r", "mac.csv")
    source, rows = read(mac)
    assert rows.select(LINE, "username", "lastname", PROBLEM).rows() == [(2, "j1", "Doe", None), (3, "j2", "Lee", None)]
    assert source.physical_lines == 3


def test_an_unclosed_quote_fails_its_own_line_and_reading_resumes_at_the_next(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'username;firstname;lastname\nu1;Ann;"Smith\nu2;Bob;Lee\nu3;"Cy";Dee\nu4;"multi\nline";Ok\nu5;"Eve;End\n',
    )
    _, rows = read(path)
    never_closed = "a quote opened in column 'lastname' is never closed"
    assert problems(rows) == {
        2: f"{never_closed}; the lines after it are read as rows of their own",
        3: None,
        4: None,
        5: None,  # a quoted value over two lines, closed: one row
        7: "a quote opened in column 'firstname' is never closed",  # the file's last line
    }
    assert rows.filter(pl.col(PROBLEM).is_null())["username"].to_list() == ["u2", "u3", "u4"]
    assert rows[RAW].to_list()[0] == 'u1;Ann;"Smith\n'  # the tryback holds the line alone


def test_a_quote_closed_with_text_after_it_names_the_column(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, 'username;firstname;lastname\n"bad"x;A;B\nok;C;D\n'))
    assert problems(rows) == {
        2: "malformed quoting in column 'username': the closing quote is followed by other text, not by a separator "
        'or the end of the line (double a quote inside a quoted value: "")',
        3: None,
    }


def test_an_early_unclosed_quote_in_200000_lines_fails_one_row_and_every_line_is_accounted_for(
    tmp_path: Path,
) -> None:
    lines = ["username;firstname;lastname"]
    lines += [f"u{i};F{i};L{i}" for i in range(2, 200_001)]
    lines[11] = 'u12;F12;"Broken'  # line 12
    lines[150_000] = 'u150001;"Quoted; yes";L'  # the next quote of the file, far below
    path = write(tmp_path, "\n".join(lines) + "\n")
    started = time.monotonic()
    source, rows = read(path)
    assert time.monotonic() - started < 30
    assert rows.height == 199_999
    failed = rows.filter(pl.col(PROBLEM).is_not_null())
    assert failed.select(LINE, PROBLEM).rows() == [
        (12, "a quote opened in column 'lastname' is never closed; the lines after it are read as rows of their own")
    ]
    assert rows.filter(pl.col(LINE) == 150_001)["firstname"].to_list() == ["Quoted; yes"]
    # Every physical line is the header or one row's own: none is swallowed, none read twice.
    covered = sorted(
        line + offset for line, raw in zip(rows[LINE], rows[RAW], strict=True) for offset in range(raw.count("\n"))
    )
    assert [1, *covered] == list(range(1, source.physical_lines + 1))


def test_a_header_with_a_quote_never_closed_is_one_clear_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'username;firstname;"lastname\nu1;A;B\n')
    assert header_problem(path, USERS) == (
        "file.csv line 1: the header cannot be read: a quote opened in column 3 is never closed"
    )


# -- item 14: control characters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [("Jo\x00hn", "\\x00"), ("\x1b[31mRed", "\\x1b"), ("Cs\x9bi", "\\x9b"), ("Del\x7f", "\\x7f"), ("a\x07b", "\\x07")],
)
def test_control_characters_in_a_value_fail_the_row_naming_line_and_column_escaped(
    tmp_path: Path, value: str, shown: str
) -> None:
    path = write(tmp_path, f"username;firstname;lastname\nj1;{value};Doe\nj2;Tab\there;Lee\n")
    _, rows = read(path)
    at = value.index(shown.encode().decode("unicode_escape")) + 1
    assert problems(rows) == {
        2: f"column 'firstname' holds the control character {shown} (character {at}); control characters are "
        "refused in values, except TAB and line breaks inside quoted values",
        3: None,
    }
    assert "\x1b" not in str(rows[PROBLEM][0])


def test_a_control_character_in_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = write(tmp_path, f"username;firstname;lastname;password\nj1;J;D;{SECRET}\x1b\n")
    _, rows = read(path)
    assert problems(rows) == {
        2: "column 'password' holds a control character; control characters are refused in values, except TAB and "
        "line breaks inside quoted values"
    }


def test_a_control_character_in_a_header_is_shown_escaped(tmp_path: Path) -> None:
    message = header_problem(write(tmp_path, "username;firstname;lastname;profile_field_\x1b[2J\n"))
    assert message == ("file.csv line 1, column 4: the column name 'profile_field_\\x1b[2J' holds a control character")


# -- end to end: a dry run predicts the real run, and nothing hostile reaches the database or the report -----------


HOSTILE_USERS = (
    "username;firstname;lastname;email;password\r\n"
    "hostile1;Jo\rhn;Cut;h1@x.org;Pw-123456\r\n"  # a lone CR
    'hostile2;Ann;"Open;h2@x.org;Pw-123456\r\n'  # a quote never closed
    "hostile3;Bob;Good;h3@x.org;Pw-123456\r\n"
    "hostile4;Nul\x00l;Byte;h4@x.org;Pw-123456\r\n"
    'hostile5;"\x1b]0;pwned\x07";Esc;h5@x.org;Pw-123456\r\n'  # a terminal title
    "hostile6;Cy;Good;h6@x.org;Pw-123456\r\n"
    'hostile7;Dee;Fine;"bad\nmail@x.org";Pw-123456\r\n'  # a quoted line break the e-mail check refuses
)


async def test_hostile_users_file_dry_run_predicts_the_run_and_only_whole_rows_are_written(dump_site: Site) -> None:
    config, gateway = dump_site
    dry = await run_file(config, gateway, "users", HOSTILE_USERS, dry_run=True)
    real = await run_file(config, gateway, "users", HOSTILE_USERS)
    assert dry_and_real(dry) == dry_and_real(real)
    outcomes = {line: outcome for line, part, outcome, _ in dry_and_real(real) if part == ""}
    assert outcomes == {2: "failed", 3: "failed", 4: "created", 5: "failed", 6: "failed", 7: "created", 8: "failed"}
    user = gateway.schema.user
    async with gateway.reading() as conn:
        found = await conn.execute(select(user.c.username, user.c.firstname).where(user.c.username.like("hostile%")))
        assert sorted(tuple(row) for row in found) == [("hostile3", "Bob"), ("hostile6", "Cy")]
    for result in (dry, real):
        text = report_of(result)
        assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)
        body = text.split("\n\n")[1].splitlines()
        assert all(line.startswith("line ") for line in body), body  # a quoted line break cannot fake a line
        assert "Pw-123456" not in text


async def test_hostile_groups_file_dry_run_predicts_the_run_and_only_whole_rows_are_written(dump_site: Site) -> None:
    config, gateway = dump_site
    identifiers_by_id(config, "groups", "course_identifier")
    [course] = await add_enrolment_courses(gateway)
    red, blue, green, pink = (unique(colour) for colour in ("Red", "Blue", "Green", "Pink"))
    content = (
        "courseid;name;description\n"
        f"{course.id};{red};plain\n"
        f"{course.id};Ev\x00il;x\n"  # a NUL
        f'{course.id};"{blue};open\n'  # a quote never closed
        f'{course.id};{green};"two\nlines"\n'  # a quoted value over two lines: one row
        f"{course.id};Lone\rCR;x\n"  # a lone CR
        f"{course.id};\x9b2J{pink};x\n"  # a C1 control (CSI)
        f"{course.id};{pink};last\n"
    )
    dry = await run_file(config, gateway, "groups", content, dry_run=True)
    real = await run_file(config, gateway, "groups", content)
    assert dry_and_real(dry) == dry_and_real(real)
    outcomes = {line: outcome for line, part, outcome, _ in dry_and_real(real) if part == ""}
    assert outcomes == {2: "created", 3: "failed", 4: "failed", 5: "created", 7: "failed", 8: "failed", 9: "created"}
    groups = {g["name"]: g["description"] for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)}
    assert groups == {red: "plain", green: "two\nlines", pink: "last"}


def test_a_file_name_with_control_characters_is_shown_escaped(tmp_path: Path) -> None:
    message = header_problem(write(tmp_path, "username;firstname\n", "evil\x1b[2J.csv"))
    assert message.startswith("evil\\x1b[2J.csv line 1: required column 'lastname' missing")
    assert "\x1b" not in message
