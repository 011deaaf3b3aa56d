"""Custom profile fields: the `profile_field_<shortname>` columns of the users file.

Values are encoded as Moodle stores them when the upload tool feeds a CSV cell to `profile_save_data()`, that is
through each type's `edit_save_data_preprocess()` (user/profile/field/<type>/field.class.php), with the checks of
the upload tool's `convert_external_data()` / `uu_check_custom_profile_data()` turned into row problems where Moodle
would silently store something else:

* text: the trimmed cell; more than param2 characters (the maximum length, 2048 by default) is a problem where
  Moodle would cut it.
* social, textarea: the trimmed cell (the upload tool trims every cell). New rows get dataformat 0 (FORMAT_MOODLE, as
  the upload tool sets); an update leaves the stored dataformat alone, as `edit_save_data()` does.
* menu: one of the options of param1 (one a line), compared exactly, as `isset($options[$value])`.
* checkbox: '0' or '1' (Moodle stores whatever it is given; anything else is a problem here).
* datetime: a unix timestamp string. Accepted: `YYYY-MM-DD`, `YYYY-MM-DD hh:mm[:ss]`, Moodle's own
  `YYYY-MM-DD-hh-mm-ss`, a unix timestamp, and '0' for "not set" (stored as '0'). Dates are local times of the site's
  timezone, as `make_timestamp()` reads them; without param3 (include time) the time is dropped, midnight of that
  local day is stored, even for a timestamp. As PHP's DateTime does, a local time in a DST gap moves one hour forward
  and one in the repeated autumn hour is read as its second pass (standard time). A year outside param1..param2 is a
  problem (Moodle clamps it); so is a day that does not exist (PHP rolls it over).
* forceunique: a value another user holds is a problem, as in the upload tool's preview (`edit_validate_field()`).

An empty cell leaves the stored value alone: the contract says absent and empty columns never reset data on update,
so a file can carry a profile column for only some of its users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import shown

PREFIX = "profile_field_"
PROBLEM = "profile_problem"  # the first problem of a row's profile cells, null when they are all fine
USERID = "userid"
FORMAT_MOODLE = 0
SUPPORTED_TYPES = frozenset({"text", "textarea", "menu", "checkbox", "datetime", "social"})
DEFAULT_MAX_LENGTH = 2048  # param2's default in the text field's definition form
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d-%H-%M-%S")
DATE_EXPECTED = "a date YYYY-MM-DD, YYYY-MM-DD hh:mm[:ss] or a unix timestamp"
SHOWN_OPTIONS = 10


@dataclass(frozen=True, slots=True)
class ProfileField:
    """A row of mdl_user_info_field."""

    id: int
    shortname: str
    name: str
    datatype: str
    required: bool
    locked: bool
    forceunique: bool
    defaultdata: str
    param1: str | None
    param2: str | None
    param3: str | None
    param4: str | None
    param5: str | None

    @property
    def column(self) -> str:
        return PREFIX + self.shortname

    @property
    def supported(self) -> bool:
        return self.datatype in SUPPORTED_TYPES

    @property
    def options(self) -> list[str]:
        """Menu options, one a line of param1 (the definition form drops carriage returns)."""
        return (self.param1 or "").replace("\r", "").split("\n")

    @property
    def max_length(self) -> int:
        return _int(self.param2) or DEFAULT_MAX_LENGTH

    @property
    def years(self) -> tuple[int | None, int | None]:
        """A datetime field's start and end year."""
        return _int(self.param1), _int(self.param2)

    @property
    def with_time(self) -> bool:
        return self.param3 not in (None, "", "0")


def _int(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


async def load_profile_fields(gateway: MoodleGateway, conn: AsyncConnection) -> dict[str, ProfileField]:
    """Every field definition by shortname (the lowest id wins should a shortname be repeated)."""
    t = gateway.schema.user_info_field
    rows = await conn.execute(select(t).order_by(t.c.id))
    fields: dict[str, ProfileField] = {}
    for r in rows:
        fields.setdefault(
            r.shortname,
            ProfileField(
                id=int(r.id),
                shortname=r.shortname,
                name=r.name,
                datatype=r.datatype,
                required=bool(r.required),
                locked=bool(r.locked),
                forceunique=bool(r.forceunique),
                defaultdata=r.defaultdata or "",
                param1=r.param1,
                param2=r.param2,
                param3=r.param3,
                param4=r.param4,
                param5=r.param5,
            ),
        )
    return fields


# -- columns (file-level) ---------------------------------------------------------------------


def match_profile_columns(columns: Iterable[str], fields: Mapping[str, ProfileField]) -> dict[str, ProfileField]:
    """File column -> field, for the profile columns naming a field: by exact shortname, else in lower case (the
    upload tool's fallback for a header written in capitals)."""
    by_column = {f.column: f for f in fields.values()}
    matched = {}
    for column in columns:
        if column.startswith(PREFIX):
            field = by_column.get(column) or by_column.get(column.lower())
            if field is not None:
                matched[column] = field
    return matched


def unknown_profile_columns(columns: Iterable[str], fields: Mapping[str, ProfileField]) -> list[str]:
    """The profile_field_ columns naming no field of the site."""
    columns = list(columns)
    matched = match_profile_columns(columns, fields)
    return [c for c in columns if c.startswith(PREFIX) and c not in matched]


def profile_column_problems(columns: Sequence[str], fields: Mapping[str, ProfileField]) -> list[str]:
    """File-level problems of the header, to report once: unknown fields, unsupported types, a field set twice."""
    problems = [
        f"column {c}: the site has no custom profile field '{c.removeprefix(PREFIX)}'"
        for c in unknown_profile_columns(columns, fields)
    ]
    seen: dict[str, str] = {}
    for column, field in match_profile_columns(columns, fields).items():
        if not field.supported:
            problems.append(f"column {column}: profile fields of type '{field.datatype}' are not supported")
        if field.shortname in seen:
            problems.append(
                f"columns {seen[field.shortname]} and {column} both set the profile field '{field.shortname}'"
            )
        seen.setdefault(field.shortname, column)
    return problems


# -- validation and encoding (per row, vectorised) --------------------------------------------


def encode_profile_values(
    batch: pl.DataFrame, fields: Mapping[str, ProfileField], timezone: str = "UTC"
) -> pl.DataFrame:
    """One row per row of `batch`: PROBLEM (the first bad profile cell, in column order, or null) and per supported
    field of the file its column `profile_field_<shortname>` holding the `data` to store, null to leave it alone
    (an empty cell, or a bad one)."""
    values: list[pl.Expr] = []
    problems: list[pl.Expr] = []
    done: set[str] = set()
    for column, field in match_profile_columns(batch.columns, fields).items():
        if not field.supported or field.shortname in done:
            continue  # reported once by profile_column_problems
        done.add(field.shortname)
        cell = pl.col(column).cast(pl.String).str.strip_chars()
        given = cell.is_not_null() & (cell != "")
        encoded, problem = _encode(field, cell, timezone)
        values.append(pl.when(given & problem.is_null()).then(encoded).alias(field.column))
        problems.append(pl.when(given).then(problem))
    first = pl.coalesce(problems) if problems else pl.repeat(None, pl.len(), dtype=pl.String)
    return batch.select(first.cast(pl.String).alias(PROBLEM), *values)


def _encode(field: ProfileField, cell: pl.Expr, timezone: str) -> tuple[pl.Expr, pl.Expr]:
    """The stored value and the problem (null when fine) of a non-empty trimmed cell."""
    nothing = pl.lit(None, dtype=pl.String)
    if field.datatype == "text":
        length = cell.str.len_chars()
        limit = field.max_length
        too_long = pl.format(f"at most {limit} characters, got {{}}", length)
        return cell, pl.when(length > limit).then(_problem(field, cell, too_long)).otherwise(nothing)
    if field.datatype == "checkbox":
        return cell, pl.when(cell.is_in(["0", "1"])).then(nothing).otherwise(_problem(field, cell, "0 or 1"))
    if field.datatype == "menu":
        options = field.options
        listed = ", ".join(f"'{o}'" for o in options[:SHOWN_OPTIONS])
        more = f" (and {len(options) - SHOWN_OPTIONS} more)" if len(options) > SHOWN_OPTIONS else ""
        choices = f"one of the menu options {listed}{more}"
        return cell, pl.when(cell.is_in(options)).then(nothing).otherwise(_problem(field, cell, choices))
    if field.datatype == "datetime":
        return _encode_datetime(field, cell, timezone)
    return cell, nothing  # textarea, social: the text as given


def _encode_datetime(field: ProfileField, cell: pl.Expr, timezone: str) -> tuple[pl.Expr, pl.Expr]:
    # At most 11 digits: any real date, and no overflow turning seconds into microseconds.
    stamp = pl.when(cell.str.contains(r"^-?\d{1,11}$")).then(cell.cast(pl.Int64, strict=False))
    wall = pl.coalesce([cell.str.to_datetime(f, time_unit="us", strict=False, exact=True) for f in DATE_FORMATS])
    local = pl.from_epoch(stamp, "s").dt.replace_time_zone("UTC").dt.convert_time_zone(timezone)
    if field.with_time:
        seconds = pl.coalesce(stamp, _epoch(wall, timezone))
    else:
        day = pl.coalesce(local.dt.date(), wall.dt.date()).cast(pl.Datetime("us"))
        seconds = _epoch(day, timezone)
    year = pl.coalesce(local.dt.year(), wall.dt.year())
    start, end = field.years
    in_range = pl.lit(True)
    if start is not None:
        in_range &= year >= start
    if end is not None:
        in_range &= year <= end
    unset = cell == "0"  # Moodle stores 0 for "not set"
    problem = (
        pl.when(unset)
        .then(pl.lit(None, dtype=pl.String))
        .when(seconds.is_null())
        .then(_problem(field, cell, DATE_EXPECTED))
        .when(~in_range)
        .then(_problem(field, cell, f"a date in the years {start or '...'} to {end or '...'}"))
    )
    return pl.when(unset).then(pl.lit("0")).otherwise(seconds.cast(pl.String)), problem


def _epoch(wall: pl.Expr, timezone: str) -> pl.Expr:
    """Unix time of a local wall time as PHP's DateTime reads it: a repeated hour as its second pass (standard
    time), a skipped one moved an hour forward."""
    zoned = wall.dt.replace_time_zone(timezone, ambiguous="latest", non_existent="null")
    later = (wall + pl.duration(hours=1)).dt.replace_time_zone(timezone, ambiguous="latest", non_existent="null")
    return pl.coalesce(zoned, later).dt.epoch("s")


def _problem(field: ProfileField, cell: pl.Expr, expected: str | pl.Expr) -> pl.Expr:
    what = expected if isinstance(expected, pl.Expr) else pl.lit(expected)
    # Column and expectation go in as values: a brace in an option must not read as a placeholder.
    return pl.format("{} '{}': expected {}", pl.lit(field.column), shown(cell), what)


# -- forceunique (database lookup) -------------------------------------------------------------


async def unique_value_problems(
    gateway: MoodleGateway, conn: AsyncConnection, rows: pl.DataFrame, fields: Mapping[str, ProfileField]
) -> pl.Series:
    """Per row of `rows` (USERID, null for a user still to create, and encoded profile columns): the first value of a
    forceunique field held by another user, in the database or in an earlier row of the batch; null when none.

    Values compare as Moodle's `data = ?` does on the site's database (text_match.py): case and accents ignored on
    MariaDB (lower-cased on SQLite), exact on PostgreSQL.
    """
    data = gateway.schema.user_info_data
    match = TextMatch(gateway.kind)
    indexed = rows.with_row_index("__row").with_columns(pl.col(USERID).cast(pl.Int64))
    problems: list[pl.Series] = []
    for field in fields.values():
        if not field.forceunique or field.column not in rows.columns:
            continue
        value = pl.col(field.column)
        given = indexed.select("__row", USERID, value.alias("value"), match.given(value).alias("key")).filter(
            pl.col("value").is_not_null()
        )
        holders = await gateway.fetch_in(
            conn,
            data,
            "data",
            given["value"].unique().to_list(),
            ["userid", "data"],
            where=data.c.fieldid == field.id,
            casefold=match.casefold,
        )
        holders = holders.select(
            match.stored(pl.col("data").cast(pl.String)).alias("key"),
            pl.col("userid").cast(pl.Int64).alias("holder"),
        )
        in_database = (
            given.join(holders, on="key", how="inner")
            .filter(pl.col(USERID).is_null() | (pl.col("holder") != pl.col(USERID)))
            .select("__row")
            .unique()
        )
        # Among the rows left (in row order), the first of a value keeps it; a later one clashes unless same user.
        first = pl.col("__row").first().over("key")
        first_user = pl.col(USERID).first().over("key")
        earlier = given.join(in_database, on="__row", how="anti", maintain_order="left").filter(
            (pl.col("__row") != first) & (pl.col(USERID) == first_user).fill_null(False).not_()
        )
        used = pl.format("{} '{}': already used by {}", pl.lit(field.column), shown(pl.col("value")), pl.col("by"))
        found = (
            pl.concat(
                [
                    given.join(in_database, on="__row", how="semi").with_columns(
                        by=pl.lit("another user (the field requires unique values)")
                    ),
                    earlier.with_columns(by=pl.lit("an earlier row of the file")),
                ]
            )
            .unique("__row", keep="first", maintain_order=True)
            .select("__row", used.alias(f"problem{len(problems)}"))
        )
        problems.append(
            indexed.select("__row").join(found, on="__row", how="left", maintain_order="left").drop("__row").to_series()
        )
    if not problems:
        return pl.Series(PROBLEM, [None] * rows.height, dtype=pl.String)
    return pl.DataFrame(problems).select(pl.coalesce(pl.all()).cast(pl.String).alias(PROBLEM)).to_series()


# -- writing ------------------------------------------------------------------------------------


async def plan_profile_data(
    gateway: MoodleGateway,
    conn: AsyncConnection,
    rows: pl.DataFrame,
    fields: Mapping[str, ProfileField],
    *,
    new_users: bool = False,
) -> pl.DataFrame:
    """The mdl_user_info_data rows to write for `rows` (USERID and encoded profile columns, null = leave alone):
    id (null for a new row), userid, fieldid, data, and `stored`, the value it replaces (null for a new row);
    unchanged values are left out. One read of the stored rows, none for `new_users` (accounts created in this
    transaction: they have none)."""
    data = gateway.schema.user_info_data
    wanted_fields = [f for f in fields.values() if f.column in rows.columns]
    schema = {"id": pl.Int64, "userid": pl.Int64, "fieldid": pl.Int64, "data": pl.String, "stored": pl.String}
    if not wanted_fields or rows.is_empty():
        return pl.DataFrame(schema=schema)
    field_ids = pl.DataFrame(
        {"column": [f.column for f in wanted_fields], "fieldid": [f.id for f in wanted_fields]},
        schema={"column": pl.String, "fieldid": pl.Int64},
    )
    wanted = (
        rows.select(pl.col(USERID).cast(pl.Int64), *(pl.col(f.column).cast(pl.String) for f in wanted_fields))
        .unpivot(index=USERID, variable_name="column", value_name="data")
        .drop_nulls("data")
        .join(field_ids, on="column", maintain_order="left")
        .unique([USERID, "fieldid"], keep="last", maintain_order=True)  # a user twice in a batch: the last row wins
    )
    if new_users:
        return wanted.select(
            pl.lit(None, dtype=pl.Int64).alias("id"),
            USERID,
            "fieldid",
            "data",
            pl.lit(None, dtype=pl.String).alias("stored"),
        )
    stored = await gateway.fetch_in(
        conn,
        data,
        USERID,
        wanted[USERID].unique().to_list(),
        ["id", "userid", "fieldid", "data"],
        where=data.c.fieldid.in_(field_ids["fieldid"].to_list()),
    )
    stored = stored.cast({"id": pl.Int64, "userid": pl.Int64, "fieldid": pl.Int64, "data": pl.String})
    return (
        wanted.join(stored.rename({"data": "stored"}), on=[USERID, "fieldid"], how="left")
        .filter(pl.col("id").is_null() | (pl.col("stored") != pl.col("data")))
        .select(list(schema))
    )


async def write_profile_data(gateway: MoodleGateway, conn: AsyncConnection, changes: pl.DataFrame) -> int:
    """Apply plan_profile_data's rows: one multi-row INSERT for the new, one CASE UPDATE for the changed."""
    data = gateway.schema.user_info_data
    new = changes.filter(pl.col("id").is_null())
    changed = changes.filter(pl.col("id").is_not_null())
    await gateway.insert_many(
        conn,
        data,
        new.select(USERID, "fieldid", "data", pl.lit(FORMAT_MOODLE).alias("dataformat")).to_dicts(),
    )
    await gateway.update_many(conn, data, "id", changed.select("id", "data").to_dicts())
    return changes.height


async def save_profile_data(
    gateway: MoodleGateway, conn: AsyncConnection, rows: pl.DataFrame, fields: Mapping[str, ProfileField]
) -> int:
    """Upsert the profile values of `rows` (USERID and encoded columns); how many rows were inserted or updated.

    An unchanged re-run writes nothing.
    """
    return await write_profile_data(gateway, conn, await plan_profile_data(gateway, conn, rows, fields))
