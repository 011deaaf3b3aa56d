"""Reading command files: quoting, encodings, separators, comments, header checks, ragged rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from toolsync_tui.config import FileSettings
from toolsync_tui.engine.rows import LINE, PROBLEM, RAW
from toolsync_tui.engine.run.command_file import ColumnSpec, CommandFile, FileProblem

USERS = ColumnSpec(
    required=("username", "firstname", "lastname"),
    optional=("email", "idnumber"),
    patterns=((r"course\d+", "courseN"),),
)
CHECK = ColumnSpec(required=("identifier",), headerless=("identifier", "description"))


def write(tmp_path: Path, content: str | bytes, name: str = "file.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def read(path: Path, spec: ColumnSpec = USERS, **settings: object) -> tuple[CommandFile, pl.DataFrame]:
    source = CommandFile.open(path, spec, FileSettings(**settings))  # type: ignore[arg-type]
    batches = list(source.batches(1000))
    frame = pl.concat(batches) if batches else pl.DataFrame()
    return source, frame


def test_unquoted_file_parses_like_a_plain_split(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname\njdoe;John;Doe\n o'neil ; Pat ;O\"Brien\n")
    _, rows = read(path)
    assert rows.select("username", "firstname", "lastname").rows() == [
        ("jdoe", "John", "Doe"),
        ("o'neil", "Pat", 'O"Brien'),
    ]
    assert rows[LINE].to_list() == [2, 3]


def test_quoted_fields_hold_separators_quotes_and_newlines(tmp_path: Path) -> None:
    path = write(tmp_path, 'username;firstname;lastname\n"a;b";"say ""hi""";"two\nlines"\nnext;N;X\n')
    _, rows = read(path)
    assert rows.select("username", "firstname", "lastname").rows() == [
        ("a;b", 'say "hi"', "two\nlines"),
        ("next", "N", "X"),
    ]
    assert rows[LINE].to_list() == [2, 4]  # the second record starts on physical line 4
    assert rows[RAW][0] == '"a;b";"say ""hi""";"two\nlines"\n'


def test_comments_and_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# exported nightly\nusername;firstname;lastname\n\n// a comment\njdoe;J;D\n   \n#jsmith;J;S\nasmith;A;S\n",
    )
    _, rows = read(path)
    assert rows["username"].to_list() == ["jdoe", "asmith"]
    assert rows[LINE].to_list() == [5, 8]


def test_a_hash_inside_a_quoted_multiline_value_is_data(tmp_path: Path) -> None:
    path = write(tmp_path, 'username;firstname;lastname\nu1;"first\n# not a comment";L\n')
    _, rows = read(path)
    assert rows["firstname"].to_list() == ["first\n# not a comment"]


def test_crlf_and_utf8_bom(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfusername;firstname;lastname\r\njdoe;J\xc3\xa9r\xc3\xb4me;D\r\n")
    source, rows = read(path)
    assert source.columns == ["username", "firstname", "lastname"]
    assert source.format.bom is True
    assert rows["firstname"].to_list() == ["Jérôme"]


@pytest.mark.parametrize(("encoding", "expected"), [("windows-1252", "windows-1252"), ("iso-8859-1", "iso-8859-1")])
def test_legacy_encodings_are_detected_and_converted_once(tmp_path: Path, encoding: str, expected: str) -> None:
    # 0x80 (euro sign) exists in Windows-1252 only; 0x81 is undefined there, so only Latin-1 decodes it.
    text_byte = b"\x80" if encoding == "windows-1252" else b"\x81"
    path = write(tmp_path, b"username;firstname;lastname\nj;J\xe9r\xf4me" + text_byte + b";D\n")
    source, rows = read(path)
    assert source.format.encoding == expected
    assert rows["firstname"][0].startswith("Jérôme")


def test_explicit_utf8_rejects_legacy_bytes_naming_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path, b"username;firstname;lastname\nok;A;B\nj;J\xe9r;D\n")
    with pytest.raises(FileProblem) as error:
        read(path, encoding="utf-8")
    assert "file.csv line 3, byte 4: 0xE9 is not valid UTF-8" in str(error.value)


@pytest.mark.parametrize("separator", [",", "\t"])
def test_other_separators_by_setting_or_detection(tmp_path: Path, separator: str) -> None:
    path = write(
        tmp_path,
        separator.join(["username", "firstname", "lastname"]) + "\n" + separator.join(["jdoe", "J", "D"]) + "\n",
    )
    for setting in (separator, "auto"):
        source, rows = read(path, separator=setting)
        assert source.format.separator == separator
        assert rows["lastname"].to_list() == ["D"]


def test_header_separated_otherwise_than_configured_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "username,firstname,lastname\njdoe,J,D\n")
    with pytest.raises(FileProblem, match=r"line 1: the header is separated by ',', but files.separator is ';'"):
        read(path)


def test_unknown_column_names_it_and_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname;shoesize\n")
    with pytest.raises(FileProblem) as error:
        read(path)
    assert str(error.value) == (
        "file.csv line 1, column 4: unknown column 'shoesize'; allowed columns are "
        "username, firstname, lastname, email, idnumber, courseN"
    )


def test_unknown_columns_may_be_tolerated_and_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "username;shoesize;firstname;lastname;course2\njdoe;44;J;D;BIO\n")
    source, rows = read(path, ignore_unknown_columns=True)
    assert source.ignored_columns == ["shoesize"]
    assert rows.select("username", "firstname", "lastname", "course2").rows() == [("jdoe", "J", "D", "BIO")]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("username;firstname", "line 1: required column 'lastname' missing"),
        ("username;firstname;lastname;username", "line 1, column 4: column 'username' appears twice"),
        ("username;firstname;lastname;", "line 1, column 4: empty column name"),
    ],
)
def test_header_problems(tmp_path: Path, header: str, message: str) -> None:
    with pytest.raises(FileProblem, match=message):
        read(write(tmp_path, header + "\n"))


def test_empty_file_needs_a_header(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match="the file is empty; a header line is expected"):
        read(write(tmp_path, "\n# nothing\n"))


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, "username;firstname;lastname\n"))
    assert rows.is_empty()


def test_ragged_rows_are_row_problems_not_file_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname\nshort;row\ngood;G;H\nlong;a;b;c\n")
    _, rows = read(path)
    problems = dict(zip(rows[LINE].to_list(), rows[PROBLEM].to_list(), strict=True))
    assert problems == {
        2: "2 values found, 3 expected",
        3: None,
        4: "4 values found, 3 expected (a separator inside a value must be quoted)",
    }


def test_malformed_quoting_fails_the_row_and_reading_goes_on(tmp_path: Path) -> None:
    path = write(tmp_path, 'username;firstname;lastname\n"bad"x;A;B\nok;C;D\n"open;E;F\nrest;G;H\n')
    _, rows = read(path)
    assert rows[LINE].to_list() == [2, 3, 4, 5]
    assert rows[PROBLEM][0].startswith("malformed quoting in column 'username'")
    assert rows[PROBLEM][1] is None
    # The quote never closes: its line fails alone, and the next line is read as a row (issue 20, item 13).
    assert rows[PROBLEM][2] == (
        "a quote opened in column 'username' is never closed; the lines after it are read as rows of their own"
    )
    assert rows[PROBLEM][3] is None


def test_headerless_file_with_optional_second_field(tmp_path: Path) -> None:
    source, rows = read(write(tmp_path, "BIO101;Biology\nCHEM\n\nX;y;z\n"), CHECK)
    assert not source.has_header
    assert rows.select(LINE, "identifier", "description", PROBLEM).rows() == [
        (1, "BIO101", "Biology", None),
        (2, "CHEM", "", None),
        (4, "X", "y", None),
    ]


def test_empty_headerless_file_has_no_rows(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, ""), CHECK)
    assert rows.is_empty()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match="file not found"):
        read(tmp_path / "nope.csv")


def test_batches_stream_in_bounded_slices(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname\n" + "".join(f"u{i};F;L\n" for i in range(2500)))
    source = CommandFile.open(path, USERS, FileSettings())
    sizes = [batch.height for batch in source.batches(1000)]
    assert sizes == [1000, 1000, 500]
    assert source.physical_lines == 2501


TOLERANT = ColumnSpec(required=("username", "firstname", "lastname"), optional=("email", "idnumber"), short_rows=True)


def test_a_file_whose_reader_takes_short_rows_reads_their_missing_trailing_cells_as_empty(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "username;firstname;lastname;email;idnumber\n"
        "short;S;T\n"
        "full;F;L;f@example.com;ID1\n"
        "long;a;b;c;d;e\n"
        "half;H\n"
        "four;F;L;x@example.com\n",
    )
    source, rows = read(path, TOLERANT)
    assert rows.select(LINE, "username", "firstname", "lastname", "email", "idnumber", PROBLEM).rows() == [
        (2, "short", "S", "T", "", "", None),
        (3, "full", "F", "L", "f@example.com", "ID1", None),
        (4, "long", "a", "b", "c", "d", "6 values found, 5 expected (a separator inside a value must be quoted)"),
        (5, "half", "H", "", "", "", None),
        (6, "four", "F", "L", "x@example.com", "", None),
    ]
    assert rows[RAW][0] == "short;S;T\n"  # the tryback holds the row as written
    assert source.short_row_lines == [2, 5, 6]
    assert source.describe() == (
        "utf-8, separator ';'; lines 2, 5 and 6 have fewer values than the header: their missing trailing cells "
        "were read as empty, as files.short_rows allows"
    )
    assert source.count_records() == 5


def test_the_short_rows_note_names_one_line_or_counts_many(tmp_path: Path) -> None:
    one, _ = read(write(tmp_path, "username;firstname;lastname\na;b\nc;d;e\n", "one.csv"), TOLERANT)
    assert one.describe().endswith(
        "; line 2 has fewer values than the header: its missing trailing cells were read as empty, as files.short_rows "
        "allows"
    )
    many, rows = read(
        write(tmp_path, "username;firstname;lastname\n" + "".join(f"u{i};F\n" for i in range(12)), "many.csv"),
        TOLERANT,
    )
    assert rows[PROBLEM].null_count() == 12
    assert many.short_row_lines == list(range(2, 14))
    assert many.describe().endswith(
        "; 12 rows have fewer values than the header (lines 2, 3, 4, 5, 6, ...): their missing trailing cells "
        "were read as empty, as files.short_rows allows"
    )
    full, _ = read(write(tmp_path, "username;firstname;lastname\na;b;c\n", "full.csv"), TOLERANT)
    assert full.short_row_lines == []
    assert full.describe() == "utf-8, separator ';'"


def test_short_rows_fail_when_the_setting_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname;email\nshort;S;T\nok;O;K;o@example.com\n")
    source, rows = read(path, TOLERANT, short_rows="fail")
    assert dict(zip(rows[LINE].to_list(), rows[PROBLEM].to_list(), strict=True)) == {
        2: '3 values found, 4 expected (files.short_rows is "fail")',
        3: None,
    }
    assert source.short_row_lines == []
    assert source.describe() == "utf-8, separator ';'"


def test_a_file_whose_reader_is_strict_fails_short_rows_whatever_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "username;firstname;lastname;email\nshort;S;T\n")
    source, rows = read(path, USERS, short_rows="accept")
    assert rows[PROBLEM].to_list() == ["3 values found, 4 expected"]
    assert source.short_row_lines == []


def test_the_files_that_take_short_rows_are_those_whose_original_reader_does() -> None:
    """tool_sync's users, enrolments and groups readers map the values they find onto the header (missing trailing
    ones absent); its course files count the values (errorbadcount) or abort, and the cohort files abort."""
    from toolsync_tui.engine.registry import OPERATIONS

    tolerant = {name for name, info in OPERATIONS.items() if info.implementation.columns.short_rows}
    assert tolerant == {"users", "enrols", "groups"}
