"""Lookups compare text as Moodle's own code does on the site's database (issue 24; the rules and their sources:
engine/moodle/text_match.py).

The same small files run on the real dump of each server. On MariaDB Moodle's utf8mb4_unicode_ci collation makes
every `=` ignore case and accents, so a value naming a stored row in another case or without its accents still names
it. On PostgreSQL Moodle's lookups (get_record, record_exists) are exact: the same value names nothing, and Moodle's
own create_course() would create a second course beside the stored one. Usernames are lower-cased before the lookup
and e-mail addresses compare case-insensitively (sql_equal(..., false)) on both.
"""

from __future__ import annotations

import pytest

from tests.support.course_factories import (
    STUDENT,
    add_category,
    add_cohort,
    add_enrolment_courses,
    add_group,
    add_users,
)
from tests.support.factories import add_courses, unique
from tests.support.operation_files import header, report_of, run_file
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(dump_site: Site) -> Site:
    config, _ = dump_site
    config.set("run.safety_min_rows", 1000)
    return dump_site


def on_mariadb(gateway: MoodleGateway) -> bool:
    return gateway.kind == "mariadb"


async def test_a_course_shortname_in_another_case(site: Site) -> None:
    """'MATH…' names the stored 'math…' on MariaDB (updated); on PostgreSQL it names nothing: a new course."""
    config, gateway = site
    config.set("operations.courses.forceupdate", True)
    stored = unique("math")
    [course] = await add_courses(gateway, [{"shortname": stored, "fullname": "Old name"}])

    result = await run_file(config, gateway, "courses", header("shortname", "fullname") + f"{stored.upper()};New\n")

    same = await rows_of(gateway, gateway.schema.course, shortname=stored)
    if on_mariadb(gateway):
        assert result.counts == {"updated": 1}, report_of(result)
        assert [(c["id"], c["fullname"]) for c in same] == [(course, "New")]
    else:
        assert result.counts == {"created": 1}, report_of(result)
        assert [(c["id"], c["fullname"]) for c in same] == [(course, "Old name")]
        [new] = await rows_of(gateway, gateway.schema.course, shortname=stored.upper())
        assert new["id"] != course
        assert new["fullname"] == "New"


async def test_a_course_shortname_without_its_accents(site: Site) -> None:
    """'Eco…' names the stored 'Éco…' on MariaDB (accents ignored by the collation); a new course on PostgreSQL."""
    config, gateway = site
    config.set("operations.courses.forceupdate", True)
    plain = unique("eco")
    stored = "É" + plain[1:]
    [course] = await add_courses(gateway, [{"shortname": stored, "fullname": "Old name"}])

    result = await run_file(config, gateway, "courses", header("shortname", "fullname") + f"{plain};New\n")

    [kept] = [c for c in await rows_of(gateway, gateway.schema.course, id=course)]
    if on_mariadb(gateway):
        assert result.counts == {"updated": 1}, report_of(result)
        assert (kept["shortname"], kept["fullname"]) == (plain, "New")  # the file's shortname written
    else:
        assert result.counts == {"created": 1}, report_of(result)
        assert (kept["shortname"], kept["fullname"]) == (stored, "Old name")
        [new] = await rows_of(gateway, gateway.schema.course, shortname=plain)
        assert new["fullname"] == "New"


async def test_a_category_path_in_another_case(site: Site) -> None:
    """A course placed in 'category 1/sci…/biology': the stored 'Category 1/Sci…/Biology' on MariaDB; on PostgreSQL
    a new path of three categories from the top level."""
    config, gateway = site
    top = unique("Sci")
    parent = await add_category(gateway, top, parent=1)  # under the dump's "Category 1"
    child = await add_category(gateway, "Biology", parent=parent.id)
    categories = gateway.schema.course_categories
    before = len(await rows_of(gateway, categories))
    shortname = unique("bio")
    line = f"{shortname};Bio;category 1/{top.lower()}/biology\n"

    result = await run_file(config, gateway, "courses", header("shortname", "fullname", "category") + line)

    assert result.counts == {"created": 1}, report_of(result)
    [course] = await rows_of(gateway, gateway.schema.course, shortname=shortname)
    if on_mariadb(gateway):
        assert course["category"] == child.id, report_of(result)
        assert len(await rows_of(gateway, categories)) == before
    else:
        path = []
        category = int(course["category"])
        while category:
            [made] = await rows_of(gateway, categories, id=category)
            path.append(str(made["name"]))
            category = int(made["parent"])
        assert path == ["biology", top.lower(), "category 1"]
        assert len(await rows_of(gateway, categories)) == before + 3


async def test_usernames_are_lower_cased_on_both(site: Site) -> None:
    """A users file's 'ALICE…' is Moodle's 'alice…' on both databases: the account is updated, none is created."""
    config, gateway = site
    config.set("operations.users.primary_identity", "username")
    [user] = await add_users(gateway, 1)
    [stored] = await rows_of(gateway, gateway.schema.user, id=user)
    users = len(await rows_of(gateway, gateway.schema.user))

    result = await run_file(
        config,
        gateway,
        "users",
        header("username", "firstname", "lastname") + f"{stored['username'].upper()};Ann;Lee\n",
    )

    assert result.counts == {"updated": 1}, report_of(result)
    [after] = await rows_of(gateway, gateway.schema.user, id=user)
    assert (after["username"], after["firstname"], after["lastname"]) == (stored["username"], "Ann", "Lee")
    assert len(await rows_of(gateway, gateway.schema.user)) == users


async def test_emails_compare_case_insensitively_on_both(site: Site) -> None:
    """Accounts named by e-mail: 'X@EXAMPLE.COM' is the stored 'x@example.com' on both (sql_equal(..., false))."""
    config, gateway = site
    config.set("operations.users.primary_identity", "email")
    [user] = await add_users(gateway, 1)
    [stored] = await rows_of(gateway, gateway.schema.user, id=user)

    result = await run_file(
        config,
        gateway,
        "users",
        header("username", "firstname", "lastname", "email")
        + f"{stored['username']};Eve;Ray;{stored['email'].upper()}\n",
    )

    assert result.counts == {"updated": 1}, report_of(result)
    [after] = await rows_of(gateway, gateway.schema.user, id=user)
    assert (after["firstname"], after["email"]) == ("Eve", stored["email"])


async def test_enrolment_usernames_and_role_shortnames(site: Site) -> None:
    """uid 'ALICE…' (by username) is 'alice…' on both; rolename 'Student' is role 'student' on MariaDB only."""
    config, gateway = site
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    [course] = await add_enrolment_courses(gateway, 1)
    first, second = await add_users(gateway, 2)
    names = {
        int(u["id"]): str(u["username"])
        for u in await rows_of(gateway, gateway.schema.user)
        if u["id"] in (first, second)
    }
    lines = (
        f"student;{course.shortname};{names[first].upper()};manual\nStudent;{course.shortname};{names[second]};manual\n"
    )

    result = await run_file(config, gateway, "enrols", header("rolename", "cid", "uid", "enrol") + lines)

    enrolled = {
        int(r["userid"]) for r in await rows_of(gateway, gateway.schema.user_enrolments, enrolid=course.instance())
    }
    roles = {
        (int(r["userid"]), int(r["roleid"]))
        for r in await rows_of(gateway, gateway.schema.role_assignments, contextid=course.contextid)
    }
    if on_mariadb(gateway):
        assert result.counts == {"created": 2}, report_of(result)
        assert enrolled == {first, second}
        assert roles == {(first, STUDENT), (second, STUDENT)}
    else:
        assert result.counts == {"created": 1, "failed": 1}, report_of(result)
        assert enrolled == {first}
        assert roles == {(first, STUDENT)}


async def test_a_cohort_idnumber_in_another_case(site: Site) -> None:
    """cidnumber 'COH…' names the stored 'coh…' on MariaDB (renamed, a member added); PostgreSQL creates a cohort."""
    config, gateway = site
    config.set("operations.cohorts.user_identifier", "id")
    idnumber = unique("coh")
    cohort = await add_cohort(gateway, unique("Cohort"), idnumber=idnumber)
    [user] = await add_users(gateway, 1)
    name = unique("New cohort")

    result = await run_file(
        config,
        gateway,
        "cohorts",
        header("cmd", "cidnumber", "cname", "userid") + f"add;{idnumber.upper()};{name};{user}\n",
    )

    [member] = await rows_of(gateway, gateway.schema.cohort_members, userid=user)
    assert result.counts == {"created": 1}, report_of(result)  # the membership
    if on_mariadb(gateway):  # the stored cohort, which the row also renames
        assert member["cohortid"] == cohort
        [stored] = await rows_of(gateway, gateway.schema.cohort, id=cohort)
        assert (stored["name"], stored["idnumber"]) == (name, idnumber)
    else:
        [made] = await rows_of(gateway, gateway.schema.cohort, name=name)
        assert (made["idnumber"], member["cohortid"]) == (idnumber.upper(), made["id"])
        [stored] = await rows_of(gateway, gateway.schema.cohort, id=cohort)
        assert stored["idnumber"] == idnumber


async def test_a_group_name_in_another_case(site: Site) -> None:
    """A groups file's 'Group…' is the stored 'group…' of the course on MariaDB; a second group on PostgreSQL."""
    config, gateway = site
    config.set("operations.groups.course_identifier", "id")
    [course] = await add_enrolment_courses(gateway, 1)
    stored = unique("group")
    group = await add_group(gateway, course.id, stored)

    result = await run_file(
        config, gateway, "groups", header("courseid", "name") + f"{course.id};{stored.capitalize()}\n"
    )

    names = sorted(str(g["name"]) for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id))
    if on_mariadb(gateway):
        assert result.counts == {"skipped": 1}, report_of(result)  # found; add-only mode does not rename it
        assert names == [stored]
    else:
        assert result.counts == {"created": 1}, report_of(result)
        assert names == sorted([stored, stored.capitalize()])
    assert group in {int(g["id"]) for g in await rows_of(gateway, gateway.schema.groups, courseid=course.id)}
