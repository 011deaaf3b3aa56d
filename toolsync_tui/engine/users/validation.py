"""The rows of a users file checked against what Moodle 4.5 accepts, before anything is looked up or written.

`validate_user_rows` gives every row at most one problem (the first found, naming the column, the value and what is
expected) and normalises the values Moodle normalises. It reads no database: the site settings it needs come in a
`UserRules`, built once per run. Rules that need the database (identity lookups, e-mail collisions, admins and the
guest account, mnet hosts) belong to the operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import polars as pl
from sqlalchemy import String

from toolsync_tui.engine.moodle.passwords import password_problem
from toolsync_tui.engine.moodle.schema import MoodleSchema
from toolsync_tui.engine.rows import LINE, shown

PROBLEM: Final = "problem"
REQUIRED: Final = ("username", "firstname", "lastname")
# get_enabled_auth_plugins(): these two are enabled whatever $CFG->auth says.
ALWAYS_ENABLED_AUTHS: Final = frozenset({"manual", "nologin"})

# The keys of Moodle's lang/en/countries.php, where core_user's `country` choices come from
# (get_list_of_countries(true): the whole list, whatever allcountrycodes says): the 249 ISO 3166-1 alpha-2 codes.
_COUNTRIES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY
    BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK
    FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR
    IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
    ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES: Final = frozenset(_COUNTRIES.split())

# core_user types these PARAM_INT/PARAM_BOOL only; the values that mean something are the ones Moodle's forms offer
# (user/editlib.php, user/forum_form.php, tool_uploaduser's user_form.php). Empty always means "not given".
CHOICES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "maildisplay": ("0", "1", "2"),  # hidden, everyone, course members only
        "mailformat": ("0", "1"),  # plain text, HTML
        "maildigest": ("0", "1", "2"),  # no digest, complete, subjects
        "autosubscribe": ("0", "1"),
        "trackforums": ("0", "1"),
        "emailstop": ("0", "1"),
        "suspended": ("0", "1"),
        "deleted": ("0", "1"),  # the contract: 1 deletes, 0 or empty does not
    }
)

_FIRST = "__first_line"


def _email_pattern() -> str:
    """PHP's FILTER_VALIDATE_EMAIL pattern (ext/filter, no unicode flag), as the Rust regex engine takes it.

    Moodle's validate_email() (lib/weblib.php) is PHPMailer::validateAddress() in its default 'php' mode, i.e.
    filter_var($address, FILTER_VALIDATE_EMAIL). PHP's pattern has look-aheads; the same language is written here
    without them (their length limits are checked apart, see `_email_too_long`), and its case-insensitivity as
    explicit A-Z, since it is ASCII only in PHP. Linear-time matching: no input can make it backtrack for ever.
    """
    atom = r"[\x21\x23-\x27\x2A\x2B\x2D\x2F-\x39\x3D\x3F\x41-\x5A\x5E-\x7E]+"
    quoted = r"\x22(?:[\x01-\x08\x0B\x0C\x0E-\x1F\x21\x23-\x5B\x5D-\x7F]|\x5C[\x00-\x7F])*\x22"
    word = f"(?:{atom}|{quoted})"
    # Labels then a top-level label starting with a letter (PHP's optional "xn--" prefixes add nothing to this).
    label = "[a-zA-Z0-9]+(?:-+[a-zA-Z0-9]+)*"
    host = rf"(?:{label}\.)+[a-zA-Z][a-zA-Z0-9]*(?:-+[a-zA-Z0-9]+)*"
    octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    ipv4 = rf"{octet}(?:\.{octet}){{3}}"

    def groups(count: int) -> str:
        return f"[a-fA-F0-9]{{1,4}}(?::[a-fA-F0-9]{{1,4}}){{{count - 1}}}" if count else ""

    # PHP's look-aheads allow at most 6 groups around "::", and at most 4 before an embedded IPv4 address.
    compressed = "|".join(f"{groups(a)}::{groups(b)}" for a in range(7) for b in range(7 - a))
    compressed_v4 = "|".join(f"{groups(a)}::{groups(b) + ':' if b else ''}" for a in range(5) for b in range(5 - a))
    tag = "[iI][pP][vV]6:"
    literal = rf"\[(?:{tag}(?:{groups(8)}|{compressed})|(?:{tag}(?:{groups(6)}:|{compressed_v4}))?{ipv4})\]"
    return rf"^{word}(?:\.{word})*@(?:{host}|{literal})$"


EMAIL_PATTERN: Final = _email_pattern()
# clean_param(PARAM_TIMEZONE): a legacy offset (+-0..13, halves to 12.5), 99 (the server's zone) or a name.
TIMEZONE_PATTERN: Final = (
    r"^(?:[+-]?(?:0?[0-9](?:\.[5|0])?|1[0-3](?:\.0)?|1[0-2]\.5)|99|[[:alnum:]]+(?:/?[[:alpha:]_-])+)$"
)


@dataclass(frozen=True)
class UserRules:
    """What the site allows, read once per run; see `from_site`."""

    max_lengths: Mapping[str, int]  # mdl_user text columns -> length in characters
    extendedusernamechars: bool = False
    auth_plugins: frozenset[str] = ALWAYS_ENABLED_AUTHS
    allow_rename: bool = False  # whether `oldusername` may be used
    countries: frozenset[str] = COUNTRY_CODES
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: CHOICES)
    languages: frozenset[str] | None = None  # installed language packs; None: only the code's form is checked
    timezones: frozenset[str] | None = None  # known zone names; None: only PARAM_TIMEZONE's form is checked

    @classmethod
    def from_site(
        cls,
        config: Mapping[str, str | None],
        schema: MoodleSchema | None = None,
        *,
        allow_rename: bool = False,
        languages: Iterable[str] | None = None,
        timezones: Iterable[str] | None = None,
    ) -> UserRules:
        """Rules from the site's `mdl_config` values (name -> value); lengths from the schema's `user` table.

        `timezones` may be `zoneinfo.available_timezones()`, when the system's zone data is as recent as PHP's.
        """
        user = (schema or MoodleSchema()).user
        return cls(
            max_lengths=MappingProxyType(
                {c.name: c.type.length for c in user.columns if isinstance(c.type, String) and c.type.length}
            ),
            extendedusernamechars=_php_true(config.get("extendedusernamechars")),
            auth_plugins=enabled_auths(config.get("auth")),
            allow_rename=allow_rename,
            languages=None if languages is None else frozenset(languages),
            timezones=None if timezones is None else frozenset(timezones),
        )


def enabled_auths(setting: str | None) -> frozenset[str]:
    """The auth plugins a user may have: $CFG->auth (comma-separated) plus manual and nologin."""
    return ALWAYS_ENABLED_AUTHS | {name.strip() for name in (setting or "").split(",") if name.strip()}


def _php_true(value: str | None) -> bool:
    return value not in (None, "", "0")


class SeenUsernames:
    """The first line of every username met so far in one file, so that batches see each other's usernames.

    Keyed by line, not by order of arrival: the same file read again (the safety pre-pass, then the run) finds each
    row's own line as the first and reports nothing new. Use one instance per file.
    """

    def __init__(self) -> None:
        # A dict, not a frame: each batch then costs its own size, not the size of the file read so far.
        self._first: dict[str, int] = {}

    def first_lines(self, lines: pl.Series, usernames: pl.Series) -> pl.Series:
        """For each row, the first line with its (normalised) username, this batch included; null for empty ones."""
        batch = (
            pl.DataFrame({"username": usernames, LINE: lines})
            .filter(pl.col("username") != "")
            .group_by("username")
            .agg(pl.col(LINE).min())
        )
        first = self._first
        for username, line in batch.iter_rows():
            first[username] = min(line, first.get(username, line))
        lookup = {username: first[username] for username in batch["username"]}
        return usernames.replace_strict(lookup, default=None, return_dtype=pl.Int64)


def validate_user_rows(rows: pl.DataFrame, rules: UserRules, seen: SeenUsernames | None = None) -> pl.DataFrame:
    """`rows` (String columns as read, only those of the file) with `problem` added and values normalised.

    `problem` is null for a good row, else the first problem found. Normalised in place: username and oldusername
    lower-cased (PARAM_USERNAME), country upper-cased, lang lower-cased without a trailing "_utf8" (as tool_sync
    does). Pass the same `seen` for every batch of a file to find duplicate usernames across batches.
    """
    present = {name for name in rows.columns if not name.startswith("__")}  # the file's columns
    rows = rows.with_columns(pl.col(name).fill_null("") for name in present)
    normal = _normalised(present)
    if "username" in present:
        seen = SeenUsernames() if seen is None else seen
        first = seen.first_lines(rows[LINE], rows.select(normal["username"]).to_series())
        rows = rows.with_columns(first.alias(_FIRST))
    checks = [  # in order: a row's problem is the first that applies
        *_required(present),
        *_username(present, rules, normal),
        *_oldusername(present, rules, normal),
        *_formats(present, rules, normal),
        *_lengths(rows.columns, rules, normal),
        *_password(present),
    ]
    problem = pl.coalesce(*checks, pl.lit(None, dtype=pl.String)).alias(PROBLEM)
    return rows.with_columns(problem, *normal.values()).drop(_FIRST, strict=False)


def _normalised(present: set[str]) -> dict[str, pl.Expr]:
    lower = {name: pl.col(name).str.to_lowercase().alias(name) for name in ("username", "oldusername")}
    normal = {
        **lower,
        "country": pl.col("country").str.to_uppercase().alias("country"),
        "lang": pl.col("lang").str.to_lowercase().str.replace(r"_utf8$", "").alias("lang"),
    }
    return {name: expr for name, expr in normal.items() if name in present}


def _problem(condition: pl.Expr, template: str, *values: pl.Expr) -> pl.Expr:
    """`template` ({} placeholders) where `condition` holds, null elsewhere."""
    message = pl.format(template, *values) if values else pl.lit(template)
    return pl.when(condition).then(message).otherwise(pl.lit(None, dtype=pl.String))


def _either(values: Iterable[str]) -> str:
    """The values as a message lists them: 0, 1 or 2."""
    *rest, last = values
    return f"{', '.join(rest)} or {last}" if rest else last


def _required(present: set[str]) -> list[pl.Expr]:
    # tool_sync's required columns; user_create_user() refuses an empty username, the upload tool empty names.
    return [
        _problem(pl.col(name) == "", f"{name} is empty; a value is required") for name in REQUIRED if name in present
    ]


def _username(present: set[str], rules: UserRules, normal: Mapping[str, pl.Expr]) -> list[pl.Expr]:
    if "username" not in present:
        return []
    written, username = pl.col("username"), normal["username"]
    checks: list[pl.Expr] = []
    if not rules.extendedusernamechars:
        # clean_param(PARAM_USERNAME) would silently drop the other characters and so make another username;
        # user_create_user() throws 'invalidusername' for a username that cleaning changes.
        extra = username.str.replace_all(r"[-._@a-z0-9]", "")
        checks.append(
            _problem(
                extra != "",
                "username '{}' has characters Moodle does not allow in usernames ('{}'); allowed are a-z, 0-9 and "
                "- . _ @ unless the site setting extendedusernamechars is on",
                shown(written),
                extra,
            )
        )
    checks.append(_too_long("username", username, rules.max_lengths.get("username")))
    checks.append(
        _problem(
            pl.col(_FIRST) < pl.col(LINE),
            "username '{}' already appears on line {}; a user can appear only once in a file",
            shown(username),
            pl.col(_FIRST),
        )
    )
    return checks


def _oldusername(present: set[str], rules: UserRules, normal: Mapping[str, pl.Expr]) -> list[pl.Expr]:
    if "oldusername" not in present:
        return []
    written = pl.col("oldusername")
    if not rules.allow_rename:
        return [
            _problem(
                written != "",
                "oldusername '{}' is given, but renaming users is not allowed in the users settings",
                shown(written),
            )
        ]
    # No character check: the old name is looked up as it is, and may predate a change of extendedusernamechars.
    return [_too_long("oldusername", normal["oldusername"], rules.max_lengths.get("username"))]


def _formats(present: set[str], rules: UserRules, normal: Mapping[str, pl.Expr]) -> list[pl.Expr]:
    checks: list[pl.Expr] = []
    if "email" in present:
        email = pl.col("email")
        checks.append(_problem(_email_invalid(email), "email '{}' is not a valid e-mail address", shown(email)))
    for name, allowed in rules.choices.items():
        if name in present:
            value = pl.col(name)
            checks.append(
                _problem(
                    (value != "") & ~value.is_in(allowed),
                    f"{name} '{{}}' is not allowed; expected {_either(allowed)} (or empty)",
                    shown(value),
                )
            )
    if "auth" in present:
        # PARAM_AUTH and is_enabled_auth(): an installed and enabled plugin, named exactly.
        auth = pl.col("auth")
        checks.append(
            _problem(
                (auth != "") & ~auth.is_in(sorted(rules.auth_plugins)),
                f"auth '{{}}' is not an enabled authentication plugin; expected {_either(sorted(rules.auth_plugins))}"
                " (or empty)",
                shown(auth),
            )
        )
    if "country" in present:
        checks.append(
            _problem(
                (normal["country"] != "") & ~normal["country"].is_in(sorted(rules.countries)),
                "country '{}' is not a country code; expected two letters of ISO 3166-1, such as FR (or empty)",
                shown(pl.col("country")),
            )
        )
    if "lang" in present:
        checks.extend(_lang(rules, normal["lang"]))
    if "timezone" in present:
        checks.extend(_timezone(rules))
    if "mnethostid" in present:
        value = pl.col("mnethostid")
        checks.append(
            _problem(
                (value != "") & ~value.str.contains(r"^[0-9]+$"),
                "mnethostid '{}' is not a number; expected the id of an mnet host",
                shown(value),
            )
        )
    return checks


def _email_invalid(email: pl.Expr) -> pl.Expr:
    """Whether Moodle's validate_email() refuses a non-empty address (an empty one is allowed here).

    One difference is left: PHP's regex engine gives up on addresses of many quoted words (its backtracking limit;
    eight words such as "b" are enough) and filter_var() then calls them invalid. They pass here.
    """
    return (email != "") & (
        email.str.contains(r"[\r\n<>]")  # PHPMailer refuses line breaks; Moodle adds < and >
        | (email.str.len_bytes() > 320)  # FILTER_VALIDATE_EMAIL's limit
        | ~email.str.contains(EMAIL_PATTERN)
        | email.str.contains(r"[^.@]{64}[^@]*$")  # a domain label of 64 characters or more
        | _email_too_long(email)
    )


def _email_too_long(email: pl.Expr) -> pl.Expr:
    """PHP's two length look-aheads: at least 255 "units" from the start, or 65 before an @ they reach.

    A unit is a character or an escaped pair, with a quote before and after it at most. Counting stops where no
    unit fits: at an empty quoted word ("") opening the address, at an escaped DEL (\\ then 0x7F), and an @ right
    after an empty quoted word is not reached. Odd addresses escape the limits that way in PHP, so they do here.
    """
    pairs = email.str.replace_all(r"\x5C[\x00-\x7E]", "x")  # a backslash left over is the escaped DEL
    reached = pl.when(pairs.str.starts_with('""')).then(pl.lit("")).otherwise(pairs.str.replace(r"(?s)\x5C.*", ""))

    def before_last_at(text: pl.Expr) -> pl.Expr:
        return pl.when(text.str.contains("@")).then(text.str.replace("@[^@]*$", "")).otherwise(pl.lit(""))

    local = before_last_at(reached)
    local = pl.when(local.str.contains(r'(?:^|\.)""$')).then(before_last_at(local)).otherwise(local)

    def units(text: pl.Expr) -> pl.Expr:
        return text.str.replace_all('"', "").str.len_chars()

    return (units(reached) >= 255) | (units(local) >= 65)


def _lang(rules: UserRules, lang: pl.Expr) -> list[pl.Expr]:
    written = pl.col("lang")
    # clean_param(PARAM_LANG) is PARAM_SAFEDIR then "is this language pack installed".
    checks = [
        _problem(
            (lang != "") & ~lang.str.contains(r"^[a-z0-9_-]+$"),
            "lang '{}' is not a language code; expected letters, digits, _ or - such as en or pt_br (or empty)",
            shown(written),
        )
    ]
    if rules.languages is not None:
        installed = sorted(rules.languages)
        checks.append(
            _problem(
                (lang != "") & ~lang.is_in(installed),
                f"lang '{{}}' is not installed on the site; expected {_either(installed or ['en'])} (or empty)",
                shown(written),
            )
        )
    return checks


def _timezone(rules: UserRules) -> list[pl.Expr]:
    value = pl.col("timezone")
    checks = [
        _problem(
            (value != "") & ~value.str.contains(TIMEZONE_PATTERN),
            "timezone '{}' is not a time zone; expected a name such as Europe/Paris, 99 for the server's zone, "
            "or an hour offset such as -5.5 (or empty)",
            shown(value),
        )
    ]
    if rules.timezones is not None:
        named = value.str.contains("[A-Za-z]")  # offsets and 99 have no letters
        checks.append(
            _problem(
                named & ~value.is_in(sorted(rules.timezones)),
                "timezone '{}' is not a known time zone name, such as Europe/Paris",
                shown(value),
            )
        )
    return checks


def _too_long(name: str, value: pl.Expr, limit: int | None) -> pl.Expr:
    if limit is None:
        return pl.lit(None, dtype=pl.String)
    return _problem(
        value.str.len_chars() > limit,
        f"{name} '{{}}' is {{}} characters long; Moodle stores at most {limit}",
        shown(pl.col(name)),
        value.str.len_chars(),
    )


def _lengths(columns: list[str], rules: UserRules, normal: Mapping[str, pl.Expr]) -> list[pl.Expr]:
    # VARCHAR(n) on utf8mb4 counts characters. The password column holds the hash: see _password instead.
    skip = {"username", "password"}
    return [
        _too_long(name, normal.get(name, pl.col(name)), rules.max_lengths[name])
        for name in columns
        if name in rules.max_lengths and name not in skip
    ]


def _password(present: set[str]) -> list[pl.Expr]:
    if "password" not in present:
        return []
    # The message says why, never what: password_problem() does not quote the password.
    return [pl.col("password").map_elements(password_problem, return_dtype=pl.String)]
