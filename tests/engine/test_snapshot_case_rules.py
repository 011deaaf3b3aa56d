"""Snapshot mode, `ledger adopt` and picture archives compare a file's keys with the stored values as the operation's
own lookups do on the site's database (engine/snapshot/matching.py, engine/moodle/text_match.py; issue 24).

On MariaDB Moodle's collation makes 'MATH101' name the stored 'math101'; on PostgreSQL Moodle's lookups are exact, so
the row fails "not found" and the snapshot is not about 'math101' at all: nothing of it is removed, as for a course
the site does not have. Inside a scope the file does name, a key that differs only in case still keeps its record on
every database: a snapshot never removes a record because of a case mismatch. Adoption takes only what the run would
find. Each test runs on the real dump of both servers (the pictures one on the SQLite sandbox too).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from sqlalchemy import select

from tests.support.accounts import add_user
from tests.support.course_factories import add_cohort, add_enrolment_courses, add_group
from tests.support.factories import unique
from tests.support.operation_files import Site, header, report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.ledger import ledger_for_site
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.pictures.source import LATER, NAME, ArchiveSource, owner_key
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.engine.snapshot.adopt import adopt

ENROLS = header("rolename", "cid", "uid", "enrol")


def snapshot(config: Config, operation: str) -> None:
    config.set(f"operations.{operation}.mode", "snapshot")
    config.set("run.guard_min_share", 0)  # these files shrink on purpose
    config.set("run.safety_min_rows", 1000)  # a few records of a small site: not what these tests are about


def snapshot_lines(result: RunResult) -> list[str]:
    return [line for line in report_of(result).splitlines() if line.endswith("not in the snapshot file")]


async def enrolled(gateway: MoodleGateway, course: int) -> set[int]:
    ue, enrol = gateway.schema.user_enrolments, gateway.schema.enrol
    async with gateway.reading() as conn:
        query = select(ue.c.userid).join(enrol, enrol.c.id == ue.c.enrolid).where(enrol.c.courseid == course)
        return set((await conn.execute(query)).scalars())


async def rename_course(gateway: MoodleGateway, course: int, shortname: str) -> None:
    table = gateway.schema.course
    async with gateway.transaction() as conn:
        await conn.execute(table.update().where(table.c.id == course).values(shortname=shortname))


async def test_an_enrolments_snapshot_naming_a_course_in_another_case(dump_site: Site) -> None:
    """The site's 'math…', the file's 'MATH…': MariaDB names it (the unnamed owned enrolment goes); on PostgreSQL
    the row fails "course not found" and nothing of 'math…' is removed, as with a course the site does not have."""
    config, gateway = dump_site
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    stored = unique("math")
    await rename_course(gateway, course.id, stored)
    a, b = unique("snapc"), unique("snapc")
    ids = [await add_user(gateway, username=n) for n in (a, b)]
    rows = "".join(f"student;{stored};{n};manual\n" for n in (a, b))
    assert (await run_file(config, gateway, "enrols", ENROLS + rows)).counts == {"created": 2}  # the ledger's
    snapshot(config, "enrols")

    result = await run_file(config, gateway, "enrols", ENROLS + f"student;{stored.upper()};{a};manual\n")

    if gateway.kind == "mariadb":
        assert result.counts == {"unchanged": 1, "deleted": 1}, report_of(result)
        assert await enrolled(gateway, course.id) == {ids[0]}
        (line,) = snapshot_lines(result)
        assert b in line, line
    else:
        assert result.counts == {"failed": 1}, report_of(result)
        assert f"cid '{stored.upper()}': no course has this shortname" in report_of(result)
        assert not snapshot_lines(result)
        assert await enrolled(gateway, course.id) == set(ids)
    before = await enrolled(gateway, course.id)

    # A course the site does not have, on either database: the row fails, nothing is removed.
    unknown = await run_file(config, gateway, "enrols", ENROLS + f"student;{unique('nosuch')};{a};manual\n")
    assert unknown.counts == {"failed": 1}, report_of(unknown)
    assert not snapshot_lines(unknown)
    assert await enrolled(gateway, course.id) == before


async def test_a_user_key_in_another_case_keeps_its_enrolment_on_every_database(dump_site: Site) -> None:
    """By idnumber, 'id…' for the stored 'ID…' in a course the file names: found on MariaDB; on PostgreSQL the row
    fails "not found", yet its enrolment is not unenrolled for that (a case mismatch). The unnamed one goes on both."""
    config, gateway = dump_site
    config.set("operations.enrols.user_identifier", "idnumber")
    config.set("operations.enrols.course_identifier", "shortname")
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    keys = [unique("ID") for _ in range(3)]
    names = [unique("snapi") for _ in keys]
    ids = [await add_user(gateway, username=n, idnumber=k) for n, k in zip(names, keys, strict=True)]
    rows = "".join(f"student;{course.shortname};{k};manual\n" for k in keys)
    assert (await run_file(config, gateway, "enrols", ENROLS + rows)).counts == {"created": 3}
    snapshot(config, "enrols")

    content = ENROLS + f"student;{course.shortname};{keys[0].lower()};manual\n"
    content += f"student;{course.shortname};{keys[1]};manual\n"
    result = await run_file(config, gateway, "enrols", content)

    if gateway.kind == "mariadb":
        assert result.counts == {"unchanged": 2, "deleted": 1}, report_of(result)
    else:
        assert result.counts == {"failed": 1, "unchanged": 1, "deleted": 1}, report_of(result)
        assert f"uid '{keys[0].lower()}': no user has this idnumber" in report_of(result)
    assert await enrolled(gateway, course.id) == {ids[0], ids[1]}
    (line,) = snapshot_lines(result)
    assert names[2] in line, line


async def test_a_group_members_snapshot_naming_a_group_in_another_case(dump_site: Site) -> None:
    """Groups by name: 'group …' for the stored 'Group …' names it on MariaDB only; on PostgreSQL the row fails and
    none of the group's members is removed."""
    config, gateway = dump_site
    options = "operations.groupmembers"
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    config.set(f"{options}.user_identifier", "username")
    config.set(f"{options}.group_identifier", "name")
    config.set(f"{options}.course_identifier", "shortname")
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    name = unique("Group ")
    group = await add_group(gateway, course.id, name)
    users = [unique("snapg"), unique("snapg")]
    ids = [await add_user(gateway, username=n) for n in users]
    assert (
        await run_file(
            config, gateway, "enrols", ENROLS + "".join(f"student;{course.shortname};{n};manual\n" for n in users)
        )
    ).counts == {"created": 2}
    members = header("groupid", "userid", "courseid")
    added = await run_file(
        config, gateway, "groupmembers", members + "".join(f"{name};{n};{course.shortname}\n" for n in users)
    )
    assert added.counts == {"created": 2}, report_of(added)
    snapshot(config, "groupmembers")

    result = await run_file(
        config, gateway, "groupmembers", members + f"{name.lower()};{users[0]};{course.shortname}\n"
    )

    gm = gateway.schema.groups_members
    async with gateway.reading() as conn:
        left = set((await conn.execute(select(gm.c.userid).where(gm.c.groupid == group))).scalars())
    if gateway.kind == "mariadb":
        assert result.counts == {"unchanged": 1, "deleted": 1}, report_of(result)
        assert left == {ids[0]}
    else:
        assert result.counts == {"failed": 1}, report_of(result)
        assert not snapshot_lines(result)
        assert left == set(ids)


async def test_adopt_takes_what_the_run_would_find_by_each_keys_rule(dump_site: Site, tmp_path: Path) -> None:
    """A cohort idnumber, a course shortname and a user idnumber in another case: adopted on MariaDB, not found on
    PostgreSQL. A username in upper case and an e-mail address in another case: adopted on both (Moodle lower-cases
    usernames; e-mail addresses compare case-insensitively)."""
    config, gateway = dump_site
    mariadb = gateway.kind == "mariadb"
    ledger = await ledger_for_site(config.data_dir, gateway)
    users = [unique("adoptc") for _ in range(2)]
    ids = [await add_user(gateway, username=n, idnumber=f"ID-{n}".upper(), email=f"{n}@Example.com") for n in users]

    # Cohort memberships made by hand, the file giving the cohort's idnumber lower-cased.
    idnumber = unique("COH")
    cohort = await add_cohort(gateway, idnumber, idnumber=idnumber)
    cm = gateway.schema.cohort_members
    async with gateway.transaction() as conn:
        await gateway.insert_many(conn, cm, [{"cohortid": cohort, "userid": i, "timeadded": 1} for i in ids])
    config.set("operations.cohorts.user_identifier", "username")
    config.set("operations.cohorts.cohort_identifier", "idnumber")
    path = tmp_path / "cohorts.csv"
    path.write_text(header("cidnumber", "userid") + "".join(f"{idnumber.lower()};{n}\n" for n in users))
    adoption = await adopt(config, gateway, "cohorts", path)
    assert (adoption.adopted, adoption.not_found) == ((2, []) if mariadb else (0, [2, 3]))
    assert len(ledger.owned("cohort_member")) == (2 if mariadb else 0)

    # Enrolments made by hand, the file giving the course in upper case and the users by upper-cased username.
    config.set("operations.enrols.user_identifier", "username")
    config.set("operations.enrols.course_identifier", "shortname")
    (course,) = await add_enrolment_courses(gateway, 1, instances=(("manual", 0),))
    stored = unique("math")
    await rename_course(gateway, course.id, stored)
    ue = gateway.schema.user_enrolments
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn, ue, [{"enrolid": course.instances["manual"][0], "userid": i, "timestart": 0} for i in ids]
        )
    path = tmp_path / "enrols.csv"
    path.write_text(
        ENROLS + f"student;{stored.upper()};{users[0].upper()};manual\nstudent;{stored};{users[1].upper()};manual\n"
    )
    adoption = await adopt(config, gateway, "enrols", path)
    assert (adoption.adopted, adoption.not_found) == ((2, []) if mariadb else (1, [2]))

    # Accounts: by idnumber in lower case (exact on PostgreSQL), by e-mail address in upper case (caseless).
    config.set("operations.users.primary_identity", "idnumber")
    path = tmp_path / "users.csv"
    path.write_text(header("username", "firstname", "lastname", "idnumber") + f";F;L;{f'ID-{users[0]}'.lower()}\n")
    adoption = await adopt(config, gateway, "users", path, dry_run=True)
    assert (adoption.adopted, adoption.not_found) == ((1, []) if mariadb else (0, [2]))
    config.set("operations.users.primary_identity", "email")
    content = f";F;L;{users[0].upper()}@EXAMPLE.COM\n{users[1].upper()};F;L;\n"
    path.write_text(header("username", "firstname", "lastname", "email") + content)
    adoption = await adopt(config, gateway, "users", path, dry_run=True)
    assert (adoption.adopted, adoption.not_found) == (2, [])


def zipped(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in names:
            zf.writestr(name, b"\xff\xd8\xff")
    return buffer.getvalue()


def superseded(tmp_path: Path, kind: str, field: str, names: list[str]) -> dict[str, str]:
    """Entry -> the later entry that wins over it, for an archive of these entries."""
    path = tmp_path / "pictures.zip"
    path.write_bytes(zipped(names))
    source = ArchiveSource.open(path, owner_key=owner_key(kind, field))
    rows = [row for batch in source.batches(100) for row in batch.select(NAME, LATER).iter_rows()]
    return {name: later for name, later in rows if later is not None}


async def test_two_archive_entries_are_one_users_as_the_owner_lookup_compares(site: Site, tmp_path: Path) -> None:
    """'AB1.jpg' and 'ab1.png' by idnumber name two accounts on PostgreSQL (the lookup is exact there), one on
    MariaDB and the SQLite sandbox; usernames are lower-cased everywhere, e-mail addresses compare caselessly."""
    _, gateway = site
    exact = gateway.kind == "postgresql"
    by_idnumber = superseded(tmp_path, gateway.kind, "idnumber", ["AB1.jpg", "x/ab1.png"])
    assert by_idnumber == ({} if exact else {"AB1.jpg": "x/ab1.png"})
    assert superseded(tmp_path, gateway.kind, "username", ["Jo.jpg", "jo.png"]) == {"Jo.jpg": "jo.png"}
    assert superseded(tmp_path, gateway.kind, "hostedusername", ["Jo@1.jpg", "jo@1.png", "jo@2.png"]) == {
        "Jo@1.jpg": "jo@1.png"
    }
    assert superseded(tmp_path, gateway.kind, "email", ["A@X.org.jpg", "a@x.org.png"]) == {"A@X.org.jpg": "a@x.org.png"}
