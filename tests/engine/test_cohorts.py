"""The cohort file end to end on SQLite and MariaDB: create, update, members, del, free, delete, safety."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.case_rules import cased
from tests.support.course_factories import add_category, add_cohort, add_enrolment_courses, add_users
from tests.support.factories import unique
from tests.support.operation_files import identifiers_by_id, report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, SafetyStop

Site = tuple[Config, MoodleGateway]


@pytest.fixture
def site(site: Site) -> Site:
    """Users by id; cohorts by idnumber (the default)."""
    identifiers_by_id(site[0], "cohorts", "user_identifier")
    site[0].set("operations.cohorts.cohort_identifier", "idnumber")
    return site


async def run(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    return await run_file(config, gateway, "cohorts", content, **options)


async def cohort_rows(gateway: MoodleGateway, idnumber: str) -> list[dict[str, Any]]:
    cohort = gateway.schema.cohort
    async with gateway.reading() as conn:
        rows = await conn.execute(select(cohort).where(cohort.c.idnumber == idnumber))
        return [dict(r._mapping) for r in rows]


async def members(gateway: MoodleGateway, cohortid: int) -> set[int]:
    cm = gateway.schema.cohort_members
    async with gateway.reading() as conn:
        rows = await conn.execute(select(cm.c.userid, cm.c.timeadded).where(cm.c.cohortid == cohortid))
        found = list(rows)
    assert all(int(t) > 0 for _, t in found)
    return {int(u) for u, _ in found}


async def test_add_creates_updates_and_reruns(site: Site) -> None:
    config, gateway = site
    ann, bob = await add_users(gateway, 2)
    code = unique("C")
    content = (
        "cmd;cidnumber;cname;cdescription;userid\n"
        f"add;{code};Year 1;First year;{ann}\n"
        f";{code};;;{bob}\n"
        f"add;{code};;;999999\n"
    )
    result = await run(config, gateway, content)
    assert result.counts == {"created": 2, "failed": 1}
    [row] = await cohort_rows(gateway, code)
    assert (row["name"], row["description"], row["contextid"]) == ("Year 1", "First year", 1)
    assert (row["descriptionformat"], row["visible"], row["component"], row["theme"]) == (1, 1, "", "")
    assert row["timecreated"] == row["timemodified"]
    assert row["timecreated"] > 0
    assert await members(gateway, row["id"]) == {ann, bob}
    assert "user '999999' not found" in report_of(result)
    assert result.tryback_path is not None
    assert result.tryback_path.read_text().splitlines()[1:] == [f"add;{code};;;999999"]

    again = await run(config, gateway, f"cidnumber;userid\n{code};{ann}\n{code};{bob}\n")
    assert again.counts == {"unchanged": 2}

    updated = await run(config, gateway, f"cidnumber;cname;cdescription;cvisible\n{code};Year One;Desc;0\n")
    assert updated.counts == {"updated": 1}
    [row] = await cohort_rows(gateway, code)
    assert (row["name"], row["description"], row["visible"]) == ("Year One", "Desc", 0)


async def test_category_context_and_autocreate_off(site: Site) -> None:
    config, gateway = site
    code, other = unique("C"), unique("C")
    ctx = gateway.schema.context
    async with gateway.reading() as conn:
        catctx = (await conn.execute(select(ctx.c.id).where(ctx.c.contextlevel == 40, ctx.c.instanceid == 1))).scalar()
    result = await run(config, gateway, f"cidnumber;cname;ccatcontext\n{code};In cat;1\n{other};Bad cat;999999\n")
    assert result.counts == {"created": 1, "failed": 1}
    [row] = await cohort_rows(gateway, code)
    assert row["contextid"] == catctx
    assert "ccatcontext '999999': no such course category" in report_of(result)

    # The same category by idnumber and by path of names (a sub-category of it too).
    categories = gateway.schema.course_categories
    async with gateway.reading() as conn:
        top = (await conn.execute(select(categories.c.name).where(categories.c.id == 1))).scalar_one()
    sub = await add_category(gateway, "Biology", parent=1, idnumber=unique("CAT"))
    by_number, by_path, by_sub, lost = (unique("C") for _ in range(4))
    named = await run(
        config,
        gateway,
        "cidnumber;cname;ccatcontextidnumber;ccatcontextpath\n"
        f"{by_number};By idnumber;{sub.idnumber};\n"
        f"{by_path};By path;;{cased(gateway, top.upper(), top)}\n"
        f"{by_sub};By sub path;;{top} / {cased(gateway, 'biology', 'Biology')}\n"
        f"{lost};Lost;;{top}/Chemistry\n",
    )
    assert named.counts == {"created": 3, "failed": 1}, report_of(named)
    assert [(await cohort_rows(gateway, c))[0]["contextid"] for c in (by_number, by_path, by_sub)] == [
        sub.contextid,
        catctx,
        sub.contextid,
    ]
    assert f"ccatcontextpath '{top}/Chemistry': no such course category" in report_of(named)

    config.set("operations.cohorts.autocreate", False)
    off = await run(config, gateway, f"cidnumber;cname\n{unique('C')};Nope\n")
    assert off.counts == {"failed": 1}
    assert "not found (autocreate is off)" in report_of(off)


async def test_del_free_delete(site: Site) -> None:
    config, gateway = site
    ann, bob, cid = await add_users(gateway, 3)
    code = unique("C")
    cohort = await add_cohort(gateway, "Del", idnumber=code)
    await run(config, gateway, "cidnumber;userid\n" + "".join(f"{code};{u}\n" for u in (ann, bob, cid)))
    result = await run(
        config,
        gateway,
        f"cmd;cidnumber;userid\ndel;{code};{ann}\ndel;{code};999999\ndel;{code};\ndel;{code};{ann}\ndel;nope;{bob}\n",
    )
    assert result.counts == {"deleted": 1, "unchanged": 1, "failed": 3}
    assert await members(gateway, cohort) == {bob, cid}
    report = report_of(result)
    assert "user '999999' not found" in report
    assert "to delete the cohort itself use cmd delete" in report
    assert await cohort_rows(gateway, code)  # never deleted by del

    freed = await run(config, gateway, f"cmd;cidnumber\nfree;{code}\n", force=True)
    assert freed.counts == {"deleted": 1}
    assert await members(gateway, cohort) == set()

    await run(config, gateway, f"cidnumber;userid\n{code};{ann}\n")
    dry = await run(config, gateway, f"cmd;cidnumber\ndelete;{code}\n", dry_run=True, force=True)
    assert dry.counts == {"deleted": 1}
    assert await cohort_rows(gateway, code)
    gone = await run(config, gateway, f"cmd;cidnumber\ndelete;{code}\n", force=True)
    assert gone.counts == {"deleted": 1}
    assert await cohort_rows(gateway, code) == []
    assert await members(gateway, cohort) == set()
    again = await run(config, gateway, f"cmd;cidnumber\ndelete;{code}\n")
    assert again.counts == {"unchanged": 1}


async def test_delete_refused_when_enrol_cohort_uses_it(site: Site) -> None:
    config, gateway = site
    code = unique("C")
    cohort = await add_cohort(gateway, "Bound", idnumber=code)
    [course] = await add_enrolment_courses(gateway)
    async with gateway.transaction() as conn:
        await gateway.insert_many(
            conn,
            gateway.schema.enrol,
            [
                {
                    "enrol": "cohort",
                    "status": 0,
                    "courseid": course.id,
                    "sortorder": 5,
                    "roleid": 5,
                    "customint1": cohort,
                }
            ],
        )
    result = await run(config, gateway, f"cmd;cidnumber\ndelete;{code}\n", force=True)
    assert result.counts == {"failed": 1}
    assert "cohort enrolment method(s) use it" in report_of(result)
    assert await cohort_rows(gateway, code)


async def test_dry_run_and_safety(site: Site) -> None:
    config, gateway = site
    users = await add_users(gateway, 12)
    code = unique("C")
    dry = await run(config, gateway, f"cidnumber;cname;userid\n{code};Dry;{users[0]}\n", dry_run=True)
    assert dry.counts == {"created": 1}
    assert "would be created" in report_of(dry)
    assert await cohort_rows(gateway, code) == []

    await run(config, gateway, "cidnumber;cname;userid\n" + "".join(f"{code};S;{u}\n" for u in users))
    [row] = await cohort_rows(gateway, code)
    removal = "cmd;cidnumber;userid\n" + "".join(f"del;{code};{u}\n" for u in users)
    with pytest.raises(SafetyStop):
        await run(config, gateway, removal)
    with pytest.raises(SafetyStop):
        await run(config, gateway, f"cmd;cidnumber\nfree;{code}\n")
    with pytest.raises(SafetyStop):
        await run(config, gateway, f"cmd;cidnumber\ndelete;{code}\n")
    assert len(await members(gateway, row["id"])) == 12
    forced = await run(config, gateway, removal, force=True)
    assert forced.counts == {"deleted": 12}


async def test_plain_adds_planned_like_row_by_row(site: Site) -> None:
    """The column-wise planner of plain adds (cohorts that exist, only add rows) and the row-by-row planner (used
    when another command names the cohort) give the same outcomes, messages and rows."""
    config, gateway = site
    ann, bob, cid = await add_users(gateway, 3)
    lines = [
        "{code};;;;{ann}",  # added
        "{code};Renamed;;;{bob}",  # name changed, added
        "{code};Renamed;About;0;{ann}",  # description and visible changed, already a member
        "{code};Renamed;About;0;",  # up to date
        "{code};Renamed;Other;;999999",  # unknown user: fails, changes nothing
        "{code};;Other;7;{cid}",  # bad cvisible
        "{code};Back;About;1;{cid}",  # name and visible changed, added
    ]
    reports = []
    for tail in ("", "del;{code};;;;{cid}\n"):  # a del row sends the cohort to the row-by-row planner
        code = unique("C")
        cohort = await add_cohort(gateway, "Start", idnumber=code)
        await run(config, gateway, f"cidnumber;userid\n{code};{ann}\n")
        content = "cmd;cidnumber;cname;cdescription;cvisible;userid\n" + "".join(
            f"add;{line}\n".format(code=code, ann=ann, bob=bob, cid=cid) for line in lines
        )
        result = await run(config, gateway, content + tail.format(code=code, cid=cid), force=True)
        report = report_of(result).replace(code, "CODE")
        reports.append(report.splitlines()[: report.count("\n") - (1 if tail else 0)])
        [row] = await cohort_rows(gateway, code)
        assert (row["name"], row["description"], row["visible"]) == ("Back", "About", 1)
        assert await members(gateway, cohort) == ({ann, bob, cid} if not tail else {ann, bob})
    plain, row_by_row = reports
    assert [line for line in plain if "CODE" in line] == [line for line in row_by_row if "CODE" in line]
    assert "updated (name)" in "\n".join(plain)
    assert "updated (description, visible)" in "\n".join(plain)
    assert "already a member of cohort 'Renamed'" in "\n".join(plain)
    assert "cvisible '7': expected 0 or 1" in "\n".join(plain)


async def test_batches_written_while_the_next_is_planned_see_each_other(site: Site) -> None:
    """With batches of 2 rows, each batch's write overlaps the next batch's planning on MariaDB: a cohort created by
    one batch, a member added by one and named again by the next, and a member added then removed, all come out as
    if the batches ran one after the other."""
    config, gateway = site
    config.set("run.batch_size", 2)
    ann, bob, cid = await add_users(gateway, 3)
    code, other = unique("C"), unique("C")
    existing = await add_cohort(gateway, "Existing", idnumber=other)
    content = (
        "cmd;cidnumber;cname;userid\n"
        f"add;{other};;{ann}\n"  # batch 1: plain adds to a stored cohort
        f"add;{other};;{bob}\n"
        f"add;{other};;{ann}\n"  # batch 2: a pair batch 1 added (waits for it)
        f"add;{code};New;{ann}\n"  # creates a cohort
        f"add;{code};;{bob}\n"  # batch 3: the cohort batch 2 created
        f"del;{other};;{bob}\n"  # removes a member batch 1 added
        f"add;{other};;{cid}\n"  # batch 4
    )
    result = await run(config, gateway, content)
    assert result.counts == {"created": 5, "unchanged": 1, "deleted": 1}, report_of(result)
    assert await members(gateway, existing) == {ann, cid}
    [new] = await cohort_rows(gateway, code)
    assert await members(gateway, new["id"]) == {ann, bob}


DUPLICATE = "INSERT INTO mdl_config (name, value) VALUES ('version', 'duplicate')"
# Per server: a statement a trigger runs to refuse a row, and what the report then quotes of the server's words.
REFUSALS = {
    # A duplicate key (IntegrityError).
    "duplicate": {
        "mariadb": (DUPLICATE, "Duplicate entry"),
        "postgresql": (DUPLICATE, "duplicate key value violates unique constraint"),
    },
    # A trigger's own error: a SIGNAL, which pymysql classes as operational (a lost connection's class), and
    # PL/pgSQL's RAISE (SQLSTATE P0001): a refusal all the same.
    "raised": {
        "mariadb": ("SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'", "refused by test (error 1644)"),
        "postgresql": ("RAISE EXCEPTION 'refused by test'", "refused by test (SQLSTATE P0001)"),
    },
}


async def refusing_trigger(gateway: MoodleGateway, name: str, user: int, refusal: str) -> None:
    """A trigger that runs `refusal` when a membership of `user` is inserted."""
    condition = f"NEW.userid = {user}"
    async with gateway.transaction() as conn:
        if gateway.kind == "mariadb":
            await conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON mdl_cohort_members FOR EACH ROW "
                f"IF {condition} THEN {refusal}; END IF"
            )
            return
        await conn.exec_driver_sql(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF {condition} THEN {refusal}; END IF; RETURN NEW; END $$"
        )
        await conn.exec_driver_sql(
            f"CREATE TRIGGER {name} BEFORE INSERT ON mdl_cohort_members FOR EACH ROW EXECUTE FUNCTION {name}()"
        )


async def drop_trigger(gateway: MoodleGateway, name: str) -> None:
    """Drops refusing_trigger's trigger: it waits for any transaction the run left open on the table, so a run
    that left one fails here."""
    drops = [f"DROP TRIGGER {name}"]
    if gateway.kind == "postgresql":
        drops = [f"DROP TRIGGER {name} ON mdl_cohort_members", f"DROP FUNCTION {name}()"]
    async with gateway.transaction() as conn:
        for drop in drops:
            await asyncio.wait_for(conn.exec_driver_sql(drop), 20)


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_batch_whose_write_fails(site: Site, case: str) -> None:
    """A write refused by the database fails its batch's rows, nothing of it written, and leaves no transaction
    open (the DROP TRIGGER after the run would wait for it); the batches before it are written, also with
    overlapping writes. On PostgreSQL the refused statement aborts the batch's transaction: the later batches run
    on fresh ones."""
    config, gateway = site
    if gateway.kind == "sqlite":
        pytest.skip("the refusing trigger is MariaDB's or PostgreSQL's SQL")
    refusal, said = REFUSALS[case][gateway.kind]
    config.set("run.batch_size", 2)
    users = await add_users(gateway, 6)
    code = unique("C")
    cohort = await add_cohort(gateway, "Refusing", idnumber=code)
    trigger = unique("refuse_")
    await refusing_trigger(gateway, trigger, users[3], refusal)
    content = "cidnumber;userid\n" + "".join(f"{code};{u}\n" for u in users)
    try:
        result = await run(config, gateway, content)
    finally:
        await drop_trigger(gateway, trigger)
    assert result.counts == {"created": 4, "failed": 2}
    assert "the database refused the batch: " in report_of(result)
    assert "; nothing of this batch was written" in report_of(result)
    assert said in report_of(result)
    assert await members(gateway, cohort) == {users[0], users[1], users[4], users[5]}
