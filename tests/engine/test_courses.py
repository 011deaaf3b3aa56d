"""The course file (uploadcourses.csv): courses and categories as create_course() and fix_course_sortorder() leave
them, updates of the file's cells only, and one clear outcome per bad row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.case_rules import cased
from tests.support.course_factories import add_category, add_users
from tests.support.operation_files import Site, dry_and_real, inbox_file, report_of, welcomes_counted
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunProblem, RunResult, run_operation


async def run_courses(config: Config, gateway: MoodleGateway, content: str, **options: Any) -> RunResult:
    """The course file run on `content` (its preselected name, uploadcourses.csv)."""
    inbox_file(config, "uploadcourses.csv", content)
    return await run_operation(config, gateway, "courses", **options)


async def course(gateway: MoodleGateway, shortname: str) -> dict[str, Any]:
    found = await rows_of(gateway, gateway.schema.course, shortname=shortname)
    assert len(found) == 1, f"{len(found)} courses named {shortname}"
    return found[0]


async def categories_by_name(gateway: MoodleGateway) -> dict[str, dict[str, Any]]:
    return {str(c["name"]): c for c in await rows_of(gateway, gateway.schema.course_categories)}


async def context_of(gateway: MoodleGateway, level: int, instance: int) -> dict[str, Any]:
    found = await rows_of(gateway, gateway.schema.context, contextlevel=level, instanceid=instance)
    assert len(found) == 1
    return found[0]


async def assert_sortorder_consistent(gateway: MoodleGateway) -> None:
    """Moodle's invariants (moodle-db-semantics §1.2): preorder category sortorders k*10000, each category's courses
    at sortorder+1..sortorder+N, coursecount = the courses in it, category path and depth by the parent."""
    cats = {c["id"]: c for c in await rows_of(gateway, gateway.schema.course_categories)}
    courses = await rows_of(gateway, gateway.schema.course)

    def preorder(parent: int) -> list[int]:
        kids = sorted((c for c in cats.values() if c["parent"] == parent), key=lambda c: (c["sortorder"], c["id"]))
        return [i for c in kids for i in (c["id"], *preorder(c["id"]))]

    for k, ident in enumerate(preorder(0), 1):
        cat = cats[ident]
        assert cat["sortorder"] == k * 10000, cat
        parent = cats.get(cat["parent"])
        assert cat["path"] == (parent["path"] if parent else "") + f"/{ident}"
        assert cat["depth"] == (parent["depth"] if parent else 0) + 1
        mine = [c for c in courses if c["category"] == ident]
        assert cat["coursecount"] == len(mine)
        assert sorted(c["sortorder"] for c in mine) == list(
            range(cat["sortorder"] + 1, cat["sortorder"] + len(mine) + 1)
        )
    front = [c for c in courses if c["category"] == 0]
    assert [c["sortorder"] for c in front] == [1]


async def test_new_courses_get_what_create_course_writes(site: Site) -> None:
    config, gateway = site
    result = await run_courses(
        config,
        gateway,
        "shortname;fullname;category;idnumber;summary;format;startdate;visible\n"
        "BIO101;Biology;Science/Biology;BIO-101;Cells;topics;2026-09-01;1\n"
        "CHEM201;Chemistry;Science/Chemistry;CHEM-201;Carbon;weeks;2026-09-07;0\n"
        f"BIO102;Biology 2;{cased(gateway, 'science/biology', 'Science/Biology')};;;;;\n",
    )
    assert result.counts == {"created": 3}, report_of(result)
    cats = await categories_by_name(gateway)
    science, biology = cats["Science"], cats["Biology"]
    assert (biology["parent"], biology["depth"], biology["path"]) == (
        science["id"],
        2,
        f"/{science['id']}/{biology['id']}",
    )
    assert biology["visible"] == 1
    assert biology["coursecount"] == 2
    bio = await course(gateway, "BIO101")
    assert bio["category"] == biology["id"]
    assert bio["idnumber"] == "BIO-101"
    assert bio["summary"] == "Cells"
    assert bio["format"] == "topics"
    assert bio["newsitems"] == 5
    assert bio["visible"] == bio["visibleold"] == 1
    assert bio["enddate"] == bio["startdate"] + 31536000  # moodlecourse courseduration
    chem = await course(gateway, "CHEM201")
    assert chem["visible"] == 0
    assert chem["format"] == "weeks"
    # weeks: the automatic end date is the end of the 4th week
    assert 4 * 7 * 86400 - 3600 <= chem["enddate"] - chem["startdate"] <= 4 * 7 * 86400 + 3600
    # The newest course of a category comes first.
    assert (await course(gateway, "BIO102"))["sortorder"] == biology["sortorder"] + 1
    assert bio["sortorder"] == biology["sortorder"] + 2
    await assert_sortorder_consistent(gateway)

    ctx_bio = await context_of(gateway, 40, biology["id"])
    ctx_course = await context_of(gateway, 50, bio["id"])
    assert ctx_course["path"] == f"{ctx_bio['path']}/{ctx_course['id']}"
    assert ctx_course["depth"] == ctx_bio["depth"] + 1
    sections = await rows_of(gateway, gateway.schema.course_sections, course=bio["id"])
    assert [s["section"] for s in sections] == [0, 1, 2, 3, 4]
    options = await rows_of(gateway, gateway.schema.course_format_options, courseid=chem["id"])
    assert {o["name"]: o["value"] for o in options} == {
        "hiddensections": "1",
        "coursedisplay": "0",
        "automaticenddate": "1",
    }
    instances = await rows_of(gateway, gateway.schema.enrol, courseid=bio["id"])
    assert [(i["enrol"], i["status"], i["sortorder"], i["roleid"]) for i in instances] == [
        ("manual", 0, 0, 5),
        ("guest", 1, 1, 0),
        ("self", 1, 2, 5),
    ]


async def test_a_course_given_no_summary_has_none_as_create_course_leaves_it(site: Site) -> None:
    """create_course() inserts the record it is given: without a summary the column stays NULL and summaryformat at
    its default 0 (moodle-db-semantics §3.1). An empty summary cell gives no summary either (empty cells are absent);
    a later update without a summary leaves it so."""
    config, gateway = site
    result = await run_courses(config, gateway, "shortname;fullname\nNOSUM1;No summary column\n")
    assert result.counts == {"created": 1}, report_of(result)
    empty = await run_courses(config, gateway, "shortname;fullname;summary\nNOSUM2;Empty summary cell;\n")
    assert empty.counts == {"created": 1}, report_of(empty)
    for shortname in ("NOSUM1", "NOSUM2"):
        stored = await course(gateway, shortname)
        assert (stored["summary"], stored["summaryformat"]) == (None, 0), shortname
    config.set("operations.courses.forceupdate", True)
    again = await run_courses(config, gateway, "shortname;fullname;summary\nNOSUM2;Empty summary cell;\n")
    assert again.counts == {"unchanged": 1}, report_of(again)
    stored = await course(gateway, "NOSUM2")
    assert (stored["summary"], stored["summaryformat"]) == (None, 0)


async def test_sortorder_renumbers_like_moodle_on_the_real_dump(dump_site: Site) -> None:
    """A category created under the first top-level one shifts every later category and rebases their courses."""
    config, gateway = dump_site
    first = await run_courses(config, gateway, "shortname;fullname;category\nA1;A;Arts\nS1;S;Science\n")
    assert first.counts == {"created": 2}
    arts_before = (await categories_by_name(gateway))["Arts"]
    second = await run_courses(config, gateway, "shortname;fullname;category\nA2;A2;Arts/Drama\nS2;S2;Science\n")
    assert second.counts == {"created": 2}, report_of(second)
    cats = await categories_by_name(gateway)
    assert cats["Science"]["sortorder"] == arts_before["sortorder"] + 20000  # Drama now sits between them
    assert (await course(gateway, "S2"))["sortorder"] == cats["Science"]["sortorder"] + 1
    assert (await course(gateway, "S1"))["sortorder"] == cats["Science"]["sortorder"] + 2
    await assert_sortorder_consistent(gateway)


async def test_category_by_id_and_by_idnumber(site: Site) -> None:
    config, gateway = site
    maths = await add_category(gateway, "Maths", parent=1, idnumber="MATH")
    result = await run_courses(config, gateway, f"shortname;fullname;category\nM1;M1;{maths.id}\nM2;M2;999999\n")
    assert [c["shortname"] for c in await rows_of(gateway, gateway.schema.course, category=maths.id)] == ["M1"]
    assert "line 3: failed (check) no category has the id 999999" in report_of(result)
    config.set("operations.courses.category_identifier", "idnumber")
    math = cased(gateway, "math", "MATH")
    result = await run_courses(config, gateway, f"shortname;fullname;category\nM3;M3;{math}\nM4;M4;NOPE\n")
    assert (await course(gateway, "M3"))["category"] == maths.id
    assert "line 3: failed (check) no category has the idnumber 'NOPE'" in report_of(result)
    await assert_sortorder_consistent(gateway)


async def test_bad_rows_fail_alone_with_line_column_and_what_was_expected(site: Site) -> None:
    config, gateway = site
    await run_courses(config, gateway, "shortname;fullname;idnumber\nTAKEN;Taken;ID-1\n")
    result = await run_courses(
        config,
        gateway,
        "shortname;fullname;idnumber;category;newsitems;startdate;format\n"
        "TAKEN;Again;;;;;\n"  # exists, forceupdate off
        f"NEW1;New;{cased(gateway, 'id-1', 'ID-1')};;;;\n"  # idnumber of TAKEN (case-insensitive)
        "NEW2;New;;Science//Bio;;;\n"  # empty category name
        "NEW3;New;;;12;;\n"
        "NEW4;New;;;;31/12/2026;\n"
        "NEW5;New;;;;;tiles\n"
        "NEW6;;;;;;\n"  # no fullname
        "OK1;Fine;;;;;\n"
        "OK2;Fine;ID-9;;;;\n"
        f"OK3;Fine;{cased(gateway, 'id-9', 'ID-9')};;;;\n",  # claims OK2's idnumber in the same batch
    )
    report = report_of(result)
    assert result.counts == {"unchanged": 1, "failed": 7, "created": 2}, report
    for expected in (
        "line 2: unchanged (exists) already exists; not updated ([operations.courses] forceupdate is off)",
        f"line 3: failed (check) idnumber '{cased(gateway, 'id-1', 'ID-1')}' is taken by course id",
        "line 4: failed (check) category 'Science//Bio' is not a path of names",
        "line 5: failed (check) column newsitems: '12': expected a whole number from 0 to 10",
        "line 6: failed (check) column startdate: '31/12/2026': expected a date YYYY-MM-DD",
        "line 7: failed (check) column format: 'tiles': expected one of the site's installed formats",
        "line 8: failed (check) a new course needs a fullname and a shortname",
        f"line 11: failed (check) idnumber '{cased(gateway, 'id-9', 'ID-9')}' is claimed by line 10 of this file",
    ):
        assert expected in report
    assert [c["shortname"] for c in await rows_of(gateway, gateway.schema.course, shortname=["OK1", "OK2", "OK3"])] == [
        "OK1",
        "OK2",
    ]
    backwards = await run_courses(
        config, gateway, "shortname;fullname;startdate;enddate\nEND1;E;2026-09-01;2026-08-01\n"
    )
    assert "line 2: failed (check) the course would end (enddate) before it starts (startdate)" in report_of(backwards)
    tryback = result.tryback_path
    assert tryback is not None
    assert "NEW3;New;;;12;;" in tryback.read_text()
    assert "OK1" not in tryback.read_text()


async def test_an_unknown_column_stops_the_run_naming_it(site: Site) -> None:
    config, gateway = site
    with pytest.raises(RunProblem, match="colour"):
        await run_courses(config, gateway, "shortname;fullname;colour\nX;X;red\n")


async def test_update_changes_only_the_cells_given_and_moves_the_context_subtree(site: Site) -> None:
    config, gateway = site
    await run_courses(
        config, gateway, "shortname;fullname;category;summary;visible;lang\nUP1;Before;Old;Kept summary;1;fr\n"
    )
    before = await course(gateway, "UP1")
    config.set("operations.courses.forceupdate", True)
    result = await run_courses(
        config, gateway, "shortname;fullname;category;summary;visible;lang\nUP1;After;New/Place;;0;\n"
    )
    assert result.counts == {"updated": 1}, report_of(result)
    assert "updated: fullname, visible, category" in report_of(result)
    after = await course(gateway, "UP1")
    assert (after["fullname"], after["summary"], after["lang"]) == ("After", "Kept summary", "fr")
    assert after["visible"] == after["visibleold"] == 0
    assert after["timemodified"] >= before["timemodified"]
    assert after["cacherev"] >= before["cacherev"]
    place = (await categories_by_name(gateway))["Place"]
    assert after["category"] == place["id"]
    ctx = await context_of(gateway, 50, after["id"])
    assert ctx["path"] == f"{(await context_of(gateway, 40, place['id']))['path']}/{ctx['id']}"
    assert ctx["depth"] == 4
    flags = await rows_of(gateway, gateway.schema.cache_flags, flagtype="accesslib/dirtycontexts", name=ctx["path"])
    assert len(flags) == 1
    await assert_sortorder_consistent(gateway)
    again = await run_courses(config, gateway, "shortname;fullname;category\nUP1;After;New/Place\n")
    assert again.counts == {"unchanged": 1}, report_of(again)
    config.set("operations.courses.protect_category", True)
    kept = await run_courses(config, gateway, "shortname;fullname;category\nUP1;After;Elsewhere\n")
    assert kept.counts == {"unchanged": 1}
    assert (await course(gateway, "UP1"))["category"] == place["id"]


async def test_update_by_idnumber_renames_and_refuses_a_taken_shortname(site: Site) -> None:
    config, gateway = site
    await run_courses(config, gateway, "shortname;fullname;idnumber\nOLD;Old;K1\nOTHER;Other;K2\n")
    config.set("operations.courses.identifier", "idnumber")
    config.set("operations.courses.forceupdate", True)
    other = cased(gateway, "other", "OTHER")
    result = await run_courses(
        config, gateway, f"shortname;fullname;idnumber\nNEWNAME;Old;K1\n{other};Other;K3\nNEWNAME;x;K2\n"
    )
    report = report_of(result)
    assert "line 2: updated (update) updated: shortname" in report
    assert "line 3: created" not in report
    assert f"shortname '{other}' is taken by course id" in report
    assert "line 4: failed (check) shortname 'NEWNAME' is claimed by line 2 of this file" in report
    assert (await course(gateway, "NEWNAME"))["idnumber"] == "K1"


async def test_topics_self_guest_and_teachers(site: Site) -> None:
    config, gateway = site
    teacher, other = await add_users(gateway, 2)
    users = {u["id"]: u for u in await rows_of(gateway, gateway.schema.user, id=[teacher, other])}
    result = await run_courses(
        config,
        gateway,
        "shortname;fullname;self;guest;topic0;topic2;topic6;teacher1_account;teacher1_role;teacher2_account\n"
        f"T1;T;1;0;General;Week two|About two;Six;{users[teacher]['username']};editingteacher;{users[other]['email']}\n"
        "T2;T;;;;;;nobody-here;;\n",
    )
    report = report_of(result)
    assert result.counts == {"created": 2}, report
    t1 = await course(gateway, "T1")
    sections = {s["section"]: s for s in await rows_of(gateway, gateway.schema.course_sections, course=t1["id"])}
    assert sorted(sections) == [0, 1, 2, 3, 4, 5, 6]
    assert (sections[0]["name"], sections[2]["name"], sections[2]["summary"], sections[6]["name"]) == (
        "General",
        "Week two",
        "About two",
        "Six",
    )
    assert sections[1]["name"] is None
    statuses = {i["enrol"]: i["status"] for i in await rows_of(gateway, gateway.schema.enrol, courseid=t1["id"])}
    assert statuses == {"manual": 0, "guest": 1, "self": 0}
    ctx = await context_of(gateway, 50, t1["id"])
    roles = await rows_of(gateway, gateway.schema.role_assignments, contextid=ctx["id"])
    assert sorted((r["userid"], r["roleid"]) for r in roles) == [(teacher, 3), (other, 4)]  # editingteacher, teacher
    assert len(await rows_of(gateway, gateway.schema.user_enrolments, userid=[teacher, other])) == 2
    assert "line 2, teacher1: created (enrol) enrolled in course" in report
    assert "line 3, teacher1: failed (enrol) no user has the id, username or e-mail 'nobody-here'" in report
    assert result.failed_details == 1

    config.set("operations.courses.forceupdate", True)
    update = await run_courses(config, gateway, "shortname;fullname;self;topic2\nT1;T;0;|New summary\n")
    assert "line 2: updated (update) updated: self disabled, sections" in report_of(update)
    sections = {s["section"]: s for s in await rows_of(gateway, gateway.schema.course_sections, course=t1["id"])}
    assert (sections[2]["name"], sections[2]["summary"]) == (None, "New summary")
    again = await run_courses(config, gateway, "shortname;fullname;self;topic2\nT1;T;0;|New summary\n")
    assert again.counts == {"unchanged": 1}, report_of(again)


async def test_a_weeks_course_ends_with_its_last_week_after_updates(site: Site) -> None:
    config, gateway = site
    await run_courses(config, gateway, "shortname;fullname;format;startdate\nW1;W;weeks;2026-01-05\n")
    config.set("operations.courses.forceupdate", True)
    await run_courses(config, gateway, "shortname;fullname;startdate;topic6\nW1;W;2026-02-02;Week six\n")
    week = await course(gateway, "W1")
    days = (week["enddate"] - week["startdate"]) / 86400
    assert 6 * 7 - 1 / 24 <= days <= 6 * 7 + 1 / 24  # six weeks, whatever daylight saving did


async def test_the_same_course_twice_in_a_batch_applies_in_order(site: Site) -> None:
    config, gateway = site
    config.set("operations.courses.forceupdate", True)
    result = await run_courses(config, gateway, "shortname;fullname\nTWICE;First\nTWICE;Second\n")
    assert result.counts == {"created": 1, "updated": 1}, report_of(result)
    assert (await course(gateway, "TWICE"))["fullname"] == "Second"


async def test_dry_run_writes_nothing_and_says_what_would_happen(site: Site) -> None:
    config, gateway = site
    before = await rows_of(gateway, gateway.schema.course_categories)
    result = await run_courses(config, gateway, "shortname;fullname;category\nDRY1;Dry;Brand/New\n", dry_run=True)
    assert result.counts == {"created": 1}
    assert "would be created in Brand/New (new category)" in report_of(result)
    assert await rows_of(gateway, gateway.schema.course, shortname="DRY1") == []
    assert await rows_of(gateway, gateway.schema.course_categories) == before


async def test_a_dry_run_predicts_the_teachers_of_new_and_updated_courses(site: Site) -> None:
    """teacherN columns: the dry run gives the real run's detail lines and counts its welcome messages."""
    config, gateway = site
    config.set("operations.courses.forceupdate", True)
    ann, bob = await add_users(gateway, 2)
    names = {u["id"]: u["username"] for u in await rows_of(gateway, gateway.schema.user, id=[ann, bob])}
    await run_courses(config, gateway, "shortname;fullname\nTOLD;Old\n")
    content = (
        "shortname;fullname;category;teacher1_account;teacher1_role;teacher2_account;teacher2_role\n"
        f"TOLD;Old;;{names[ann]};editingteacher;{names[bob]};\n"
        f"TNEW;New;Fresh/Branch;{names[bob]};editingteacher;{names[bob]};\n"
        "TNONE;None;;nobody-here;;;\n"
    )

    dry = await run_courses(config, gateway, content, dry_run=True)
    real = await run_courses(config, gateway, content)

    assert dry_and_real(dry) == dry_and_real(real), (report_of(dry), report_of(real))
    assert [p for _, p, _, _ in dry_and_real(real) if p] == ["teacher1", "teacher2"] * 2 + ["teacher1"]
    assert welcomes_counted(dry) == welcomes_counted(real) > 0, (dry.notes, real.notes)
    assert "course 'TNEW'" in report_of(dry)


async def test_a_template_column_needs_the_bridge(site: Site) -> None:
    config, gateway = site
    with pytest.raises(RunProblem, match="template column needs the Moodle bridge"):
        await run_courses(config, gateway, "shortname;fullname;template\nTPL1;T;SOMECOURSE\n")
    assert await rows_of(gateway, gateway.schema.course, shortname="TPL1") == []


async def test_hidden_new_categories_when_configured(site: Site) -> None:
    config, gateway = site
    config.set("operations.courses.new_categories_visible", False)
    await run_courses(config, gateway, "shortname;fullname;category\nH1;H;Hidden/Below\n")
    cats = await categories_by_name(gateway)
    assert (cats["Hidden"]["visible"], cats["Below"]["visible"], cats["Below"]["visibleold"]) == (0, 0, 0)


async def test_sortorder_fix_repairs_an_orphan_category_and_its_contexts(site: Site) -> None:
    """A category whose parent is gone becomes a top-level one, last, its context under the system context."""
    config, gateway = site
    parent = await add_category(gateway, "Doomed", parent=1)
    orphan = await add_category(gateway, "Orphan", parent=parent.id)
    table = gateway.schema.course_categories
    async with gateway.transaction() as conn:
        await conn.execute(table.delete().where(table.c.id == parent.id))
    await run_courses(config, gateway, f"shortname;fullname;category\nFIX1;F;{orphan.id}\n")  # the fix follows
    repaired = (await rows_of(gateway, table, id=orphan.id))[0]
    assert (repaired["parent"], repaired["depth"], repaired["path"]) == (0, 1, f"/{orphan.id}")
    ctx = await context_of(gateway, 40, orphan.id)
    assert (ctx["path"], ctx["depth"]) == (f"/1/{ctx['id']}", 2)
    await assert_sortorder_consistent(gateway)


async def test_every_column_reaches_the_course_row(dump_site: Site) -> None:
    """On the real dump (its themes and formats): each optional column as the course row stores it."""
    config, gateway = dump_site
    header = (
        "shortname;fullname;idnumber;summary;format;showgrades;newsitems;startdate;enddate;marker;maxbytes;"
        "legacyfiles;showreports;visible;visibleold;coursedisplay;groupmode;groupmodeforce;defaultgroupingid;"
        "enablecompletion;showactivitydates;lang;theme;timecreated;timemodified;sortorder"
    )
    row = (
        "ALL1;Every column;ALL-1;<p>Sum</p>;weeks;0;3;2026-09-01 08:00;@1800000000;2;1048576;1;1;0;1;1;2;1;0;0;0;"
        "fr;classic;1700000000;1700000001;99"
    )
    result = await run_courses(config, gateway, f"{header}\n{row}\n")
    assert result.counts == {"created": 1}, report_of(result)
    stored = await course(gateway, "ALL1")
    expected = {
        "fullname": "Every column",
        "idnumber": "ALL-1",
        "summary": "<p>Sum</p>",
        "summaryformat": 0,  # create_course() given no format: the DB default, as Moodle writes it
        "format": "weeks",
        "showgrades": 0,
        "newsitems": 3,
        "marker": 2,
        "maxbytes": 1048576,
        "legacyfiles": 1,
        "showreports": 1,
        "visible": 0,
        "visibleold": 0,  # follows visible, as create_course() does
        "groupmode": 2,
        "groupmodeforce": 1,
        "defaultgroupingid": 0,
        "enablecompletion": 0,
        "showcompletionconditions": None,  # completion off
        "showactivitydates": 0,
        "lang": "fr",
        "theme": "classic",
        "timecreated": 1700000000,
        "timemodified": 1700000000,  # = timecreated, as create_course() writes it
    }
    assert {k: stored[k] for k in expected} == expected
    # The site's timezone (Europe/London on the dump) reads the local time: 08:00 BST is 07:00 UTC.
    assert stored["startdate"] == 1788246000
    # weeks computes its own end date (automaticenddate), whatever the enddate column said
    assert stored["enddate"] != 1800000000
    assert stored["enddate"] > stored["startdate"]
    options = {
        o["name"]: o["value"]
        for o in await rows_of(gateway, gateway.schema.course_format_options, courseid=stored["id"])
    }
    assert options == {"hiddensections": "1", "coursedisplay": "1", "automaticenddate": "1"}
    await assert_sortorder_consistent(gateway)
