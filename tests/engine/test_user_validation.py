"""Users file rows checked as Moodle 4.5 would check them: one exact message per rule, no database."""

from __future__ import annotations

import json
import subprocess

import polars as pl
import pytest
from sqlalchemy import String

from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.rows import LINE, PROBLEM, RAW
from toolsync_tui.engine.users.validation import (
    CHOICES,
    COUNTRY_CODES,
    SeenUsernames,
    UserRules,
    enabled_auths,
    validate_user_rows,
)

RULES = UserRules.from_site({"auth": "email,ldap", "extendedusernamechars": "0"})
GOOD = {"username": "jdoe", "firstname": "Jane", "lastname": "Doe"}
SECRET = "Zq7-SECRET-MARK"  # a password fragment that must never reach a message


def frame(rows: list[dict[str, str]], first_line: int = 2) -> pl.DataFrame:
    """A batch as CommandFile.batches() makes it: line, raw text, parse problem, one String column per file column."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    data: dict[str, pl.Series] = {
        LINE: pl.Series(LINE, range(first_line, first_line + len(rows)), dtype=pl.Int64),
        RAW: pl.Series(RAW, [";".join(row.values()) + "\n" for row in rows], dtype=pl.String),
        PROBLEM: pl.Series(PROBLEM, [None] * len(rows), dtype=pl.String),
    }
    for name in columns:
        data[name] = pl.Series(name, [row.get(name, "") for row in rows], dtype=pl.String)
    return pl.DataFrame(data)


def problem_of(rules: UserRules = RULES, /, **values: str) -> str | None:
    """The problem of one row: GOOD with `values` on top."""
    checked = validate_user_rows(frame([{**GOOD, **values}]), rules)
    problem: str | None = checked["problem"][0]
    return problem


def test_a_good_row_has_no_problem_and_keeps_its_columns() -> None:
    rows = frame([{**GOOD, "email": "jane.doe@example.com", "city": "Lyon", "password": "s3cret!"}])
    checked = validate_user_rows(rows, RULES)
    assert checked.columns == [*rows.columns, "problem"]
    assert checked["problem"].to_list() == [None]
    assert checked.drop("problem").equals(rows)


# --- required values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["username", "firstname", "lastname"])
def test_required_values(column: str) -> None:
    assert problem_of(**{column: ""}) == f"{column} is empty; a value is required"


def test_required_value_null_counts_as_empty() -> None:
    rows = frame([GOOD]).with_columns(pl.lit(None, dtype=pl.String).alias("lastname"))
    assert validate_user_rows(rows, RULES)["problem"].to_list() == ["lastname is empty; a value is required"]


# --- username ---------------------------------------------------------------------------------------------------


def test_username_is_lowercased_as_moodle_does() -> None:
    checked = validate_user_rows(frame([{**GOOD, "username": "J.Doe-2@Example_Org"}]), RULES)
    assert checked["username"].to_list() == ["j.doe-2@example_org"]
    assert checked["problem"].to_list() == [None]


def test_username_with_characters_moodle_does_not_allow() -> None:
    assert problem_of(username="Jöhn Smith!") == (
        "username 'Jöhn Smith!' has characters Moodle does not allow in usernames ('ö !'); allowed are a-z, 0-9 "
        "and - . _ @ unless the site setting extendedusernamechars is on"
    )


def test_extendedusernamechars_allows_any_character() -> None:
    rules = UserRules.from_site({"extendedusernamechars": "1"})
    checked = validate_user_rows(frame([{**GOOD, "username": "Jöhn Smith!"}]), rules)
    assert checked["username"].to_list() == ["jöhn smith!"]
    assert checked["problem"].to_list() == [None]


def test_username_too_long() -> None:
    name = "u" * 101
    assert problem_of(username=name) == (f"username '{'u' * 60}...' is 101 characters long; Moodle stores at most 100")
    assert problem_of(username="u" * 100) is None


def test_duplicate_usernames_in_one_batch_fail_after_the_first() -> None:
    rows = frame([GOOD, {**GOOD, "username": "other"}, {**GOOD, "username": "JDoe"}, GOOD])
    assert validate_user_rows(rows, RULES)["problem"].to_list() == [
        None,
        None,
        "username 'jdoe' already appears on line 2; a user can appear only once in a file",
        "username 'jdoe' already appears on line 2; a user can appear only once in a file",
    ]


def test_duplicate_usernames_across_batches() -> None:
    seen = SeenUsernames()
    first = validate_user_rows(frame([GOOD, {**GOOD, "username": "asmith"}], first_line=2), RULES, seen)
    second = validate_user_rows(frame([{**GOOD, "username": "bjones"}, {**GOOD, "username": "ASmith"}], 4), RULES, seen)
    assert first["problem"].to_list() == [None, None]
    assert second["problem"].to_list() == [
        None,
        "username 'asmith' already appears on line 3; a user can appear only once in a file",
    ]


def test_reading_a_file_twice_with_the_same_seen_usernames_finds_nothing_new() -> None:
    # The pipeline plans every batch in a safety pre-pass, then runs them: the same rows come twice.
    seen = SeenUsernames()
    batches = [frame([GOOD, {**GOOD, "username": "x"}], 2), frame([{**GOOD, "username": "y"}, GOOD], 4)]
    passes = [[validate_user_rows(b, RULES, seen)["problem"].to_list() for b in batches] for _ in range(2)]
    expected = [
        [None, None],
        [None, "username 'jdoe' already appears on line 2; a user can appear only once in a file"],
    ]
    assert passes == [expected, expected]


def test_empty_usernames_are_not_duplicates_of_each_other() -> None:
    rows = frame([{**GOOD, "username": ""}, {**GOOD, "username": ""}])
    assert validate_user_rows(rows, RULES)["problem"].to_list() == ["username is empty; a value is required"] * 2


# --- oldusername ------------------------------------------------------------------------------------------------


def test_oldusername_refused_when_renames_are_not_allowed() -> None:
    assert problem_of(oldusername="J.Old") == (
        "oldusername 'J.Old' is given, but renaming users is not allowed in the users settings"
    )
    assert problem_of(oldusername="") is None


def test_oldusername_when_renames_are_allowed() -> None:
    rules = UserRules.from_site({}, allow_rename=True)
    checked = validate_user_rows(frame([{**GOOD, "oldusername": "J.Old Name"}]), rules)
    # Lower-cased as Moodle looks it up; no character rule: an old username may predate the site's current rule.
    assert checked["oldusername"].to_list() == ["j.old name"]
    assert checked["problem"].to_list() == [None]
    assert problem_of(rules, oldusername="o" * 101) == (
        f"oldusername '{'o' * 60}...' is 101 characters long; Moodle stores at most 100"
    )


# --- email ------------------------------------------------------------------------------------------------------

VALID_EMAILS = [
    "jane.doe@example.com",
    "Jane.Doe@Example.COM",
    "user+tag@sub.example.org",
    "o'brien@example.ie",
    "#!$%&'*+-/=?^_`{}|~@example.org",
    '"jane,doe"@example.com',
    '"a\\"b"@example.com',
    '"a@b"@example.com',
    "a@xn--80ak6aa92e.com",
    "a@b.c1",
    "a@b.c-d",
    "a@[192.168.0.1]",
    "a@[IPv6:2001:db8::1]",
    "a@[IPv6:1:2:3:4:5:6:7:8]",
    "a@[ipv6:1:2:3:4::192.168.0.1]",
    "a" * 64 + "@example.com",
    "a@" + "b" * 63 + ".com",
]
INVALID_EMAILS = [
    "jane",
    "jane@",
    "@example.com",
    "jane@example",  # PHP's filter wants a dot in the domain
    "jane@localhost",
    "jane doe@example.com",
    '"jane doe"@example.com',  # PHP's filter refuses a space even when quoted
    "jane..doe@example.com",
    ".jane@example.com",
    "jane.@example.com",
    "jane@@example.com",
    "jane@example..com",
    "jane@.example.com",
    "jane@example.com.",
    "jane@-example.com",
    "jane@example-.com",
    "jane@ex_ample.com",
    "jane@example.123",
    "jäne@example.com",
    "jane@exämple.com",
    "Jane <jane@example.com>",
    '"<jane>"@example.com',  # allowed by PHP's filter, refused by Moodle's validate_email()
    'a"b@example.com',
    "a@[256.1.1.1]",
    "a@[IPv6:1:2:3:4:5:6:7]",
    "a@[IPv6:1::2:3:4:5:6:7]",
    "a@[IPv6:1:2:3:4:5:1.2.3.4]",
    "(comment)jane@example.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 64 + ".com",
]


@pytest.mark.parametrize("email", VALID_EMAILS)
def test_valid_email(email: str) -> None:
    assert problem_of(email=email) is None


@pytest.mark.parametrize("email", INVALID_EMAILS)
def test_invalid_email(email: str) -> None:
    shown = email if len(email) <= 60 else email[:60] + "..."
    assert problem_of(email=email) == f"email '{shown}' is not a valid e-mail address"


def test_empty_email_is_allowed() -> None:
    assert problem_of(email="") is None


# Moodle 4.5 lib/weblib.php validate_email(): PHPMailer::validateAddress() in its default 'php' mode (line breaks
# refused, then filter_var FILTER_VALIDATE_EMAIL), and no < or >.
_PHP_VALIDATE_EMAIL = r"""
$out = [];
foreach (json_decode(file_get_contents('php://stdin'), true, 512, JSON_THROW_ON_ERROR) as $address) {
    $out[] = strpos($address, "\n") === false && strpos($address, "\r") === false
        && filter_var($address, FILTER_VALIDATE_EMAIL) !== false && !preg_match('/[<>]/', $address);
}
echo json_encode($out, JSON_THROW_ON_ERROR);
"""


def test_email_rule_agrees_with_moodles_validate_email_in_php(php: str) -> None:
    cases = [*VALID_EMAILS, *INVALID_EMAILS]
    # Variations around every case: one character dropped, doubled, or swapped for a tricky one.
    for case in list(cases):
        for i in range(0, len(case), 3):
            cases += [case[:i] + case[i + 1 :], case[:i] + case[i] + case[i:], case[:i] + '"' + case[i + 1 :]]
            cases += [case[:i] + "\\" + case[i:], case[:i] + "." + case[i + 1 :], case[:i] + "@" + case[i + 1 :]]
    cases = [c for c in dict.fromkeys(cases) if c and c == c.strip()]
    done = subprocess.run(
        [php, "-r", _PHP_VALIDATE_EMAIL],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    moodle = json.loads(done.stdout)
    checked = validate_user_rows(frame([{**GOOD, "username": f"u{i}", "email": c} for i, c in enumerate(cases)]), RULES)
    ours = checked["problem"].is_null().to_list()
    assert [c for c, m, o in zip(cases, moodle, ours, strict=True) if m != o] == []
    assert 0 < sum(moodle) < len(cases)


# --- enumerated columns -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("maildisplay", "3", "0, 1 or 2"),
        ("mailformat", "2", "0 or 1"),
        ("maildigest", "-1", "0, 1 or 2"),
        ("autosubscribe", "yes", "0 or 1"),
        ("trackforums", "01", "0 or 1"),
        ("emailstop", "true", "0 or 1"),
        ("suspended", "2", "0 or 1"),
        ("deleted", "yes", "0 or 1"),
    ],
)
def test_enumerated_column_values(column: str, value: str, expected: str) -> None:
    assert problem_of(**{column: value}) == f"{column} '{value}' is not allowed; expected {expected} (or empty)"
    for allowed in ["", *CHOICES[column]]:
        assert problem_of(**{column: allowed}) is None


# --- auth -------------------------------------------------------------------------------------------------------


def test_auth_must_be_an_enabled_plugin() -> None:
    assert problem_of(auth="cas") == (
        "auth 'cas' is not an enabled authentication plugin; expected email, ldap, manual or nologin (or empty)"
    )
    assert problem_of(auth="Manual") is not None  # plugin names are exact
    for auth in ["", "manual", "nologin", "email", "ldap"]:
        assert problem_of(auth=auth) is None


def test_enabled_auths_from_the_site_setting() -> None:
    assert enabled_auths(" email , ldap,,") == frozenset({"manual", "nologin", "email", "ldap"})
    assert enabled_auths(None) == enabled_auths("") == frozenset({"manual", "nologin"})


# --- country, lang, timezone, mnethostid ------------------------------------------------------------------------


def test_country_is_uppercased_and_must_be_an_iso_code() -> None:
    checked = validate_user_rows(frame([{**GOOD, "country": "fr"}, {**GOOD, "username": "b", "country": ""}]), RULES)
    assert checked["country"].to_list() == ["FR", ""]
    assert checked["problem"].to_list() == [None, None]
    expected = "country '{}' is not a country code; expected two letters of ISO 3166-1, such as FR (or empty)"
    assert problem_of(country="XX") == expected.format("XX")
    assert problem_of(country="FRA") == expected.format("FRA")
    assert len(COUNTRY_CODES) == 249


def test_lang_is_normalised_as_tool_sync_does() -> None:
    rows = frame([{**GOOD, "lang": "FR_utf8"}, {**GOOD, "username": "b", "lang": "pt_BR"}])
    checked = validate_user_rows(rows, RULES)
    assert checked["lang"].to_list() == ["fr", "pt_br"]
    assert checked["problem"].to_list() == [None, None]


def test_lang_must_be_a_language_code() -> None:
    assert problem_of(lang="fr FR") == (
        "lang 'fr FR' is not a language code; expected letters, digits, _ or - such as en or pt_br (or empty)"
    )


def test_lang_must_be_installed_when_the_installed_packs_are_known() -> None:
    rules = UserRules.from_site({}, languages=["en", "fr"])
    assert (
        problem_of(rules, lang="DE_utf8") == "lang 'DE_utf8' is not installed on the site; expected en or fr (or empty)"
    )
    assert problem_of(rules, lang="FR") is None


def test_timezone_follows_param_timezone() -> None:
    for zone in ["", "99", "Europe/Paris", "America/Argentina/Buenos_Aires", "UTC", "-5.5", "+13", "12.5"]:
        assert problem_of(timezone=zone) is None
    expected = (
        "timezone '{}' is not a time zone; expected a name such as Europe/Paris, 99 for the server's zone, "
        "or an hour offset such as -5.5 (or empty)"
    )
    for zone in ["Etc/GMT+5", "Europe/", "14", "+1.25", "Europe Paris"]:
        assert problem_of(timezone=zone) == expected.format(zone)


def test_timezone_names_are_checked_when_known() -> None:
    rules = UserRules.from_site({}, timezones=["Europe/Paris", "UTC"])
    assert problem_of(rules, timezone="Europe/Pariss") == (
        "timezone 'Europe/Pariss' is not a known time zone name, such as Europe/Paris"
    )
    assert problem_of(rules, timezone="-5.5") is None


def test_mnethostid_must_be_a_number() -> None:
    assert problem_of(mnethostid="local") == "mnethostid 'local' is not a number; expected the id of an mnet host"
    assert problem_of(mnethostid="1") is None


# --- lengths ----------------------------------------------------------------------------------------------------


def test_max_lengths_come_from_the_schema() -> None:
    user = MoodleSchema("x_").user
    expected = {c.name: c.type.length for c in user.columns if isinstance(c.type, String) and c.type.length}
    assert dict(RULES.max_lengths) == expected
    assert RULES.max_lengths["city"] == 120


@pytest.mark.parametrize(
    ("column", "limit"),
    [("firstname", 100), ("idnumber", 255), ("phone1", 20), ("city", 120), ("institution", 255)],
)
def test_values_longer_than_their_column(column: str, limit: int) -> None:
    assert problem_of(**{column: "é" * limit}) is None  # characters, not bytes
    shown = "é" * min(limit + 1, 60) + ("..." if limit + 1 > 60 else "")
    assert problem_of(**{column: "é" * (limit + 1)}) == (
        f"{column} '{shown}' is {limit + 1} characters long; Moodle stores at most {limit}"
    )


def test_email_too_long_for_its_column() -> None:
    email = "a" * 40 + "@" + "b" * 50 + ".example.com"  # valid, 103 characters
    assert problem_of(email=email) == f"email '{email[:60]}...' is 103 characters long; Moodle stores at most 100"


# --- password ---------------------------------------------------------------------------------------------------


def test_password_longer_than_128_bytes_without_saying_it() -> None:
    password = SECRET + "é" * 60  # 135 bytes
    problem = problem_of(password=password)
    assert problem == "password is longer than Moodle's limit of 128 bytes (UTF-8)"
    assert problem_of(password="é" * 64) is None  # 128 bytes


def test_password_with_nul() -> None:
    assert problem_of(password=f"{SECRET}\0x") == "password contains a NUL character"


def test_messages_never_contain_a_password() -> None:
    # Every rule broken once, each row with a password: long (itself a problem), with a NUL, or acceptable.
    broken = [
        {"username": ""},
        {"firstname": ""},
        {"username": "bad name"},
        {"username": "u" * 101},
        {"username": "jdoe"},  # a duplicate of the first row's
        {"oldusername": "old"},
        {"email": "nope"},
        {"maildisplay": "9"},
        {"auth": "cas"},
        {"country": "XX"},
        {"lang": "fr FR"},
        {"timezone": "GMT+5"},
        {"mnethostid": "x"},
        {"city": "c" * 121},
        {},
    ]
    passwords = [SECRET * 10, f"{SECRET}\0", SECRET]
    rows = [GOOD] + [
        {**GOOD, "username": f"user{i}", **values, "password": passwords[i % 3]} for i, values in enumerate(broken)
    ]
    problems = validate_user_rows(frame(rows), RULES)["problem"].to_list()
    assert problems[0] is None
    assert all(problems[1:-1])
    assert [p for p in problems if p and SECRET in p] == []
    assert problems[-1] is None  # the acceptable password, on an otherwise good row


# --- a whole batch ----------------------------------------------------------------------------------------------


def test_first_problem_wins() -> None:
    assert problem_of(firstname="", email="nope", country="XX") == "firstname is empty; a value is required"
    assert problem_of(email="nope", country="XX") == "email 'nope' is not a valid e-mail address"


def test_mixed_batch_only_bad_rows_get_problems() -> None:
    rows = frame(
        [
            {**GOOD, "username": "JDoe", "email": "jane@example.com", "country": "fr", "lang": "FR_utf8"},
            {**GOOD, "username": "bad user", "email": "", "country": "", "lang": ""},
            {**GOOD, "username": "asmith", "email": "a@example", "country": "nz", "lang": "en"},
            {**GOOD, "username": "BJones", "email": "b.jones@example.org", "country": "", "lang": "pt_BR_utf8"},
            {**GOOD, "username": "jdoe", "email": "", "country": "de", "lang": ""},
            {**GOOD, "username": "cbrown", "email": "", "country": "ZZ", "lang": ""},
        ]
    )
    checked = validate_user_rows(rows, RULES)
    assert checked.select(LINE, "username", "country", "lang", "problem").rows() == [
        (2, "jdoe", "FR", "fr", None),
        (
            3,
            "bad user",
            "",
            "",
            "username 'bad user' has characters Moodle does not allow in usernames (' '); allowed are a-z, 0-9 and "
            "- . _ @ unless the site setting extendedusernamechars is on",
        ),
        (4, "asmith", "NZ", "en", "email 'a@example' is not a valid e-mail address"),
        (5, "bjones", "", "pt_br", None),
        (6, "jdoe", "DE", "", "username 'jdoe' already appears on line 2; a user can appear only once in a file"),
        (
            7,
            "cbrown",
            "ZZ",
            "",
            "country 'ZZ' is not a country code; expected two letters of ISO 3166-1, such as FR (or empty)",
        ),
    ]
    # Untouched columns stay as they were read.
    assert checked.select(RAW, "firstname", "email").equals(rows.select(RAW, "firstname", "email"))


def test_only_the_required_columns_and_an_empty_batch() -> None:
    assert validate_user_rows(frame([GOOD]), RULES)["problem"].to_list() == [None]
    empty = frame([GOOD]).clear()
    checked = validate_user_rows(empty, RULES)
    assert checked.height == 0
    assert checked.schema["problem"] == pl.String
