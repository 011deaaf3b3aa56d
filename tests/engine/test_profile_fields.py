"""Custom profile fields: encoding as Moodle stores each type, row problems, forceunique, and the bulk upsert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
from sqlalchemy import select

from tests.support.case_rules import cased
from tests.support.factories import unique
from tests.support.user_factories import add_fields
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.site_settings import site_timezone
from toolsync_tui.engine.users.profile_fields import (
    PROBLEM,
    USERID,
    ProfileField,
    encode_profile_values,
    load_profile_fields,
    profile_column_problems,
    save_profile_data,
    unique_value_problems,
    unknown_profile_columns,
)

Site = tuple[Config, MoodleGateway]
LONDON = "Europe/London"  # the sandbox's and the baseline's site timezone


async def add_users(gateway: MoodleGateway, count: int) -> list[int]:
    user = gateway.schema.user
    names = [unique("pfuser") for _ in range(count)]
    rows = [
        {"username": n, "firstname": "F", "lastname": "L", "email": f"{n}@example.com", "mnethostid": 1} for n in names
    ]
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, user, rows)
        found = await gateway.fetch_in(conn, user, "username", names, ["id", "username"])
    ids = dict(zip(found["username"], found["id"], strict=True))
    return [ids[n] for n in names]


async def stored(gateway: MoodleGateway, fields: dict[str, ProfileField]) -> set[tuple[int, str, str, int]]:
    """(userid, field key, data, dataformat) of every stored value of these fields."""
    data = gateway.schema.user_info_data
    keys = {f.id: key for key, f in fields.items()}
    async with gateway.reading() as conn:
        rows = await conn.execute(select(data).where(data.c.fieldid.in_(list(keys))))
        return {(r.userid, keys[r.fieldid], r.data, r.dataformat) for r in rows}


def batch(fields: dict[str, ProfileField], columns: Mapping[str, Sequence[str | None]]) -> pl.DataFrame:
    return pl.DataFrame({fields[key].column: values for key, values in columns.items()})


async def test_each_type_encodes_as_moodle_stores_it(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(
        gateway,
        {
            "text": {"datatype": "text", "param1": "30", "param2": "10", "param3": "0"},
            "area": {"datatype": "textarea", "defaultdataformat": 1},
            "menu": {"datatype": "menu", "param1": "Red\nGreen\nLight blue"},
            "box": {"datatype": "checkbox", "defaultdata": "0"},
            "day": {"datatype": "datetime", "param1": "1900", "param2": "2050", "param3": None, "defaultdata": "0"},
            "when": {"datatype": "datetime", "param1": "1900", "param2": "2050", "param3": "1", "defaultdata": "0"},
            "skype": {"datatype": "social", "name": "skype", "param1": "skype"},
        },
    )
    assert await site_timezone(gateway) == LONDON
    rows = batch(
        fields,
        {
            "text": ["  S-0042 ", "0123456789", "", None, "x"],
            "area": ["<p>Hello</p>", "line", "", "", "y"],
            "menu": ["Red", "Light blue", "", "Green", "Green"],
            "box": ["1", "0", "", "0", "1"],
            # Moodle's make_timestamp() in the site's zone (values checked with PHP's DateTime): midnight GMT, midnight
            # BST, a timestamp on a date-only field (its local day's midnight), "not set", Moodle's own y-m-d-h-i-s.
            "day": ["2024-03-05", "2024-07-01", "1709600000", "0", "2024-07-01-10-30-00"],
            # With time: local time, the timestamp kept, a time in the spring gap (moves an hour on), the autumn fold
            # (its second pass, GMT), seconds.
            "when": ["2024-07-01 10:30", "1709600000", "2024-03-31 01:30", "2024-10-27 01:30", "1999-12-31 23:59:59"],
            "skype": ["echo123", "", "", "", ""],
        },
    )

    encoded = encode_profile_values(rows, fields, await site_timezone(gateway))

    assert encoded[PROBLEM].to_list() == [None] * 5
    assert encoded.drop(PROBLEM).to_dict(as_series=False) == {
        fields["text"].column: ["S-0042", "0123456789", None, None, "x"],
        fields["area"].column: ["<p>Hello</p>", "line", None, None, "y"],
        fields["menu"].column: ["Red", "Light blue", None, "Green", "Green"],
        fields["box"].column: ["1", "0", None, "0", "1"],
        fields["day"].column: ["1709596800", "1719788400", "1709596800", "0", "1719788400"],
        fields["when"].column: ["1719826200", "1709600000", "1711848600", "1729992600", "946684799"],
        fields["skype"].column: ["echo123", None, None, None, None],
    }


async def test_invalid_values_name_the_column_the_value_and_what_is_expected(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(
        gateway,
        {
            "code": {"datatype": "text", "param1": "30", "param2": "10"},
            "menu": {"datatype": "menu", "param1": "Red\r\nGreen\r\nBlue"},
            "box": {"datatype": "checkbox"},
            "day": {"datatype": "datetime", "param1": "1900", "param2": "2050"},
        },
    )
    code, menu, box, day = (fields[k].column for k in ("code", "menu", "box", "day"))
    rows = batch(
        fields,
        {
            "code": ["ABCDEFGHIJK", "", "", "", "", "", "ok", "é" * 10],
            "menu": ["Purple", "red", "", "", "", "", "", ""],
            "box": ["", "yes", "true", "", "", "", "", ""],
            "day": ["", "", "", "2024-02-30", "tomorrow", "1850-01-01", "99999999999999", ""],
        },
    )

    encoded = encode_profile_values(rows, fields, LONDON)

    # One problem a row, the first bad cell in column order; bad cells are never encoded.
    assert encoded[PROBLEM].to_list() == [
        f"{code} 'ABCDEFGHIJK': expected at most 10 characters, got 11",
        f"{menu} 'red': expected one of the menu options 'Red', 'Green', 'Blue'",
        f"{box} 'true': expected 0 or 1",
        f"{day} '2024-02-30': expected a date YYYY-MM-DD, YYYY-MM-DD hh:mm[:ss] or a unix timestamp",
        f"{day} 'tomorrow': expected a date YYYY-MM-DD, YYYY-MM-DD hh:mm[:ss] or a unix timestamp",
        f"{day} '1850-01-01': expected a date in the years 1900 to 2050",
        f"{day} '99999999999999': expected a date YYYY-MM-DD, YYYY-MM-DD hh:mm[:ss] or a unix timestamp",
        None,  # ten characters, not ten bytes
    ]
    assert encoded[code].to_list() == [None, None, None, None, None, None, "ok", "é" * 10]
    assert encoded[menu].to_list() == [None] * 8
    assert encoded[box].to_list() == [None] * 8
    assert encoded[day].to_list() == [None] * 8
    checkbox_alone = encode_profile_values(batch(fields, {"box": ["yes"]}), fields, LONDON)
    assert checkbox_alone[PROBLEM].to_list() == [f"{box} 'yes': expected 0 or 1"]


async def test_a_long_value_is_cut_in_the_message(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(gateway, {"code": {"datatype": "text", "param2": "5"}})
    encoded = encode_profile_values(batch(fields, {"code": ["x" * 100]}), fields, LONDON)
    assert encoded[PROBLEM].to_list() == [
        f"{fields['code'].column} '{'x' * 60}...': expected at most 5 characters, got 100"
    ]


async def test_forceunique_values_held_by_another_user_or_an_earlier_row(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(
        gateway,
        {
            "number": {"datatype": "text", "param2": "20", "forceunique": 1},
            "free": {"datatype": "text", "param2": "20"},
        },
    )
    holder, other = await add_users(gateway, 2)
    number, free = fields["number"].column, fields["free"].column
    async with gateway.transaction() as conn:
        await save_profile_data(
            gateway, conn, pl.DataFrame({USERID: [holder], number: ["S-1"], free: ["same"]}), fields
        )
    s_1, new = cased(gateway, "s-1", "S-1"), cased(gateway, "new", "NEW")
    rows = pl.DataFrame(
        {
            USERID: [other, holder, None, None, other, other, None],
            number: [s_1, "S-1", "NEW", new, None, "X", "Y"],
            free: ["same", "same", "", "", "same", "", ""],
        },
        schema_overrides={USERID: pl.Int64},
    )
    encoded = encode_profile_values(rows, fields, LONDON).with_columns(rows[USERID])

    async with gateway.reading() as conn:
        problems = await unique_value_problems(gateway, conn, encoded, fields)

    assert problems.to_list() == [
        f"{number} '{s_1}': already used by another user (the field requires unique values)",
        None,  # the holder keeps its own value
        None,
        f"{number} '{new}': already used by an earlier row of the file",
        None,  # empty: nothing to check
        None,
        None,
    ]
    assert problems.name == PROBLEM


async def test_save_inserts_then_updates_then_writes_nothing_on_a_rerun(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(
        gateway,
        {
            "code": {"datatype": "text", "param2": "20"},
            "box": {"datatype": "checkbox"},
            "area": {"datatype": "textarea"},
        },
    )
    ann, bob = await add_users(gateway, 2)

    async def save(columns: Mapping[str, Sequence[str | None]]) -> int:
        rows = batch(fields, columns).with_columns(pl.Series(USERID, [ann, bob]))
        encoded = encode_profile_values(rows, fields, LONDON).with_columns(rows[USERID])
        async with gateway.transaction() as conn:
            return await save_profile_data(gateway, conn, encoded, fields)

    first = {"code": ["A-1", "B-1"], "box": ["1", ""], "area": ["Bio", ""]}
    assert await save(first) == 4
    assert await stored(gateway, fields) == {
        (ann, "code", "A-1", 0),
        (ann, "box", "1", 0),
        (ann, "area", "Bio", 0),
        (bob, "code", "B-1", 0),
    }
    # A format chosen in Moodle's editor stays: the upload tool only sets the text of a stored value.
    data = gateway.schema.user_info_data
    async with gateway.transaction() as conn:
        await conn.execute(
            data.update().where(data.c.userid == ann, data.c.fieldid == fields["area"].id).values(dataformat=1)
        )

    second = {"code": ["A-1", "B-2"], "box": ["0", "0"], "area": ["Biology", ""]}
    assert await save(second) == 4  # three updates and one insert; ann's code is unchanged
    after = {
        (ann, "code", "A-1", 0),
        (ann, "box", "0", 0),
        (ann, "area", "Biology", 1),
        (bob, "code", "B-2", 0),
        (bob, "box", "0", 0),
    }
    assert await stored(gateway, fields) == after

    assert await save(second) == 0
    assert await save({"code": ["", ""], "box": ["", ""], "area": ["", ""]}) == 0  # empty cells leave values alone
    assert await stored(gateway, fields) == after


async def test_a_user_twice_in_a_batch_keeps_the_last_value(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(gateway, {"code": {"datatype": "text"}})
    [ann] = await add_users(gateway, 1)
    rows = pl.DataFrame({USERID: [ann, ann], fields["code"].column: ["first", "last"]})
    async with gateway.transaction() as conn:
        assert await save_profile_data(gateway, conn, rows, fields) == 1
    assert await stored(gateway, fields) == {(ann, "code", "last", 0)}


async def test_profile_columns_naming_no_field_are_file_level_problems(site: Site) -> None:
    _, gateway = site
    fields = await add_fields(
        gateway, {"colour": {"datatype": "menu", "param1": "a\nb"}, "odd": {"datatype": "conditional"}}
    )
    colour, odd = fields["colour"].column, fields["odd"].column
    missing = unique("profile_field_nosuch")
    columns = ["username", colour, missing, colour.upper().replace("PROFILE_FIELD_", "profile_field_"), odd]
    async with gateway.reading() as conn:
        every = await load_profile_fields(gateway, conn)

    assert unknown_profile_columns(columns, every) == [missing]
    upper = columns[3]
    assert profile_column_problems(columns, every) == [
        f"column {missing}: the site has no custom profile field '{missing.removeprefix('profile_field_')}'",
        f"columns {colour} and {upper} both set the profile field '{fields['colour'].shortname}'",
        f"column {odd}: profile fields of type 'conditional' are not supported",
    ]
    # A header in capitals finds its field, as in the upload tool; unsupported types are not encoded.
    encoded = encode_profile_values(pl.DataFrame({upper: ["b"], odd: ["x"]}), every, LONDON)
    assert encoded.to_dict(as_series=False) == {PROBLEM: [None], colour: ["b"]}


async def test_on_the_real_moodle_schema(dump_db_url: str) -> None:
    """Moodle's own tables and utf8mb4_unicode_ci collation: unique values clash whatever their case."""
    gateway = MoodleGateway.for_url(dump_db_url, "mdl_")
    try:
        fields = await add_fields(
            gateway,
            {
                "number": {"datatype": "text", "param1": "30", "param2": "2048", "param3": "0", "forceunique": 1},
                "start": {"datatype": "datetime", "param1": "2000", "param2": "2030", "param3": None},
            },
        )
        ann, bob = await add_users(gateway, 2)
        other_case = cased(gateway, "étudiant-7", "Étudiant-7")
        rows = batch(fields, {"number": ["Étudiant-7", other_case], "start": ["2024-09-02", ""]})
        assert await site_timezone(gateway) == LONDON
        encoded = encode_profile_values(rows, fields, LONDON).with_columns(pl.Series(USERID, [ann, bob]))
        async with gateway.transaction() as conn:
            assert await save_profile_data(gateway, conn, encoded.head(1), fields) == 2
            problems = await unique_value_problems(gateway, conn, encoded, fields)
        assert problems.to_list() == [
            None,
            f"{fields['number'].column} '{other_case}': already used by another user "
            "(the field requires unique values)",
        ]
        # 2024-09-02 00:00 BST
        assert await stored(gateway, fields) == {(ann, "number", "Étudiant-7", 0), (ann, "start", "1725231600", 0)}
    finally:
        await gateway.close()
