"""`toolsync generate`: course selections (category, subcategories, pattern) and the delete and reset files written."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tests.support.case_rules import cased
from tests.support.course_factories import add_category
from tests.support.factories import add_courses, unique
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.categories import CategoryProblem
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.command_file import ColumnSpec, CommandFile
from toolsync_tui.engine.tools.course_selection import CourseSelection, SelectionProblem, select_courses
from toolsync_tui.engine.tools.generators import RESET_DEFAULTS, GenerateProblem, generate

Site = tuple[Config, MoodleGateway]
RESET_TAIL = "roles;local_roles;completion;grades;groups;groupings;blog_associations;events;logs;notes;comments;modules"
RESET_VALUES = "student teacher guest;all;yes;all;all;all;yes;yes;yes;yes;yes;all"


@dataclass
class Catalogue:
    """Category 1 / <science> (idnumber) / <biology> / <lab>, and <science> / <chemistry>; a course in each."""

    tag: str  # in every shortname, so that a test's patterns only see its own courses
    science: int
    science_idnumber: str
    science_name: str
    biology_name: str
    chemistry: int
    lab: int
    courses: dict[str, int]  # shortname -> id

    def shortnames(self, *keys: str) -> list[str]:
        return [f"{self.tag}-{key}" for key in keys]


async def catalogue(gateway: MoodleGateway) -> Catalogue:
    tag = unique("G")
    science_name, biology_name = f"Science {tag}", f"Biology {tag}"
    science = await add_category(gateway, science_name, parent=1, idnumber=f"SCI-{tag}")
    biology = await add_category(gateway, biology_name, parent=science.id)
    lab = await add_category(gateway, f"Lab {tag}", parent=biology.id)
    chemistry = await add_category(gateway, f"Chemistry {tag}", parent=science.id)
    rows: list[dict[str, object]] = [
        {
            "shortname": f"{tag}-SCI100",
            "fullname": "Introduction to science",
            "idnumber": f"I-{tag}-1",
            "category": science.id,
        },
        {"shortname": f"{tag}-BIO101", "fullname": "Cells", "idnumber": "", "category": biology.id},
        {"shortname": f"{tag}-BIOLAB", "fullname": "Lab work", "idnumber": f"I-{tag}-3", "category": lab.id},
        {
            "shortname": f"{tag}-CHEM201",
            "fullname": "Organic CHEMISTRY",
            "idnumber": f"I-{tag}-4",
            "category": chemistry.id,
        },
    ]
    ids = await add_courses(gateway, rows)
    return Catalogue(
        tag,
        science.id,
        f"SCI-{tag}",
        science_name,
        biology_name,
        chemistry.id,
        lab.id,
        {str(row["shortname"]): course for row, course in zip(rows, ids, strict=True)},
    )


async def selected(gateway: MoodleGateway, **selection: object) -> list[str]:
    return [c.shortname for c in await select_courses(gateway, CourseSelection(**selection))]  # type: ignore[arg-type]


# -- selection -------------------------------------------------------------------------------


async def test_a_category_by_id_idnumber_or_path_with_or_without_subcategories(site: Site) -> None:
    _, gateway = site
    cat = await catalogue(gateway)
    biology_path = f"Category 1/{cat.science_name}/{cat.biology_name}"
    assert await selected(gateway, categories=[str(cat.science)]) == cat.shortnames("SCI100")
    idnumber = cased(gateway, cat.science_idnumber.lower(), cat.science_idnumber)  # exact on PostgreSQL, as Moodle
    assert await selected(gateway, categories=[idnumber], recursive=True) == cat.shortnames(
        "SCI100", "BIO101", "BIOLAB", "CHEM201"
    )
    assert await selected(gateway, categories=[biology_path]) == cat.shortnames("BIO101")
    path = cased(gateway, biology_path.upper(), biology_path)
    assert await selected(gateway, categories=[f"/{path}/"], recursive=True) == cat.shortnames("BIO101", "BIOLAB")
    assert await selected(gateway, categories=[str(cat.lab), str(cat.chemistry)]) == cat.shortnames("BIOLAB", "CHEM201")


async def test_a_pattern_on_shortname_fullname_or_idnumber_alone_or_within_categories(site: Site) -> None:
    _, gateway = site
    cat = await catalogue(gateway)
    assert await selected(gateway, pattern=f"{cat.tag.lower()}-bio*") == cat.shortnames("BIO101", "BIOLAB")
    assert await selected(gateway, pattern=f"i-{cat.tag}-[34]") == cat.shortnames("BIOLAB", "CHEM201")
    within = await selected(gateway, categories=[str(cat.science)], recursive=True, pattern="*chemistry")
    assert within == cat.shortnames("CHEM201")  # by its fullname, 'Organic CHEMISTRY'
    assert await selected(gateway, categories=[str(cat.science)], pattern="*lab*") == []


async def test_every_course_is_never_the_front_page(site: Site) -> None:
    _, gateway = site
    cat = await catalogue(gateway)
    every = await select_courses(gateway, CourseSelection(every_course=True))
    assert set(cat.courses.values()) <= {c.id for c in every}
    assert 1 not in {c.id for c in every}
    assert await selected(gateway, pattern="*") == [c.shortname for c in every]


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (CourseSelection(), "no selection: give --category and/or --pattern, or --all"),
        (CourseSelection(pattern="X*", every_course=True), "--all selects every course"),
        (CourseSelection(pattern="X*", recursive=True), "--recursive goes with --category"),
        (CourseSelection(pattern=" "), "--pattern is empty"),
    ],
)
async def test_a_selection_must_be_asked_for(site: Site, selection: CourseSelection, message: str) -> None:
    with pytest.raises(SelectionProblem, match=message):
        await select_courses(site[1], selection)


async def test_an_unknown_or_ambiguous_category_is_named(site: Site) -> None:
    _, gateway = site
    cat = await catalogue(gateway)
    with pytest.raises(CategoryProblem, match=f"category 'Category 1/No such {cat.tag}' not found"):
        await selected(gateway, categories=[str(cat.science), f"Category 1/No such {cat.tag}"])
    # An idnumber that is also the path of another category: the id must be given.
    await add_category(gateway, f"Other {cat.tag}", parent=1, idnumber="Category 1")
    with pytest.raises(CategoryProblem, match="category 'Category 1' is ambiguous: the idnumber of category"):
        await selected(gateway, categories=["Category 1"])


# -- files -----------------------------------------------------------------------------------


async def test_delete_file_holds_one_identifier_per_line_in_the_inbox(site: Site) -> None:
    config, gateway = site
    cat = await catalogue(gateway)
    target = DataStore(config.data_dir).preselected("deletecourses.csv")
    target.unlink(missing_ok=True)  # the sandbox's sample
    result = await generate(config, gateway, "deletecourses", CourseSelection([str(cat.science)], recursive=True))
    assert (result.path, result.written, result.left_out) == (target, 4, [])
    assert (
        target.read_bytes()
        == "".join(f"{s}\n" for s in cat.shortnames("SCI100", "BIO101", "BIOLAB", "CHEM201")).encode()
    )


async def test_delete_file_by_idnumber_leaves_out_courses_without_one_and_by_id_writes_ids(site: Site) -> None:
    config, gateway = site
    cat = await catalogue(gateway)
    out = config.base_dir / "sel.csv"
    selection = CourseSelection([cat.science_idnumber], recursive=True)
    config.set("operations.deletecourses.identifier", "idnumber")
    result = await generate(config, gateway, "deletecourses", selection, out)
    assert [c.shortname for c in result.left_out] == cat.shortnames("BIO101")
    assert out.read_bytes() == f"I-{cat.tag}-1\nI-{cat.tag}-3\nI-{cat.tag}-4\n".encode()
    config.set("operations.deletecourses.identifier", "id")
    await generate(config, gateway, "deletecourses", selection, out, force=True)
    assert out.read_text() == "".join(
        f"{cat.courses[s]}\n" for s in cat.shortnames("SCI100", "BIO101", "BIOLAB", "CHEM201")
    )


async def test_reset_file_has_the_identifier_column_and_the_generator_defaults(site: Site) -> None:
    config, gateway = site
    cat = await catalogue(gateway)
    out = config.base_dir / "reset.csv"
    config.set("operations.resetcourses.identifier", "idnumber")
    result = await generate(config, gateway, "resetcourses", CourseSelection(pattern=f"{cat.tag}-*"), out)
    assert result.written == 3
    assert (
        out.read_bytes()
        == (
            f"idnumber;{RESET_TAIL}\n"
            f"I-{cat.tag}-1;{RESET_VALUES}\nI-{cat.tag}-3;{RESET_VALUES}\nI-{cat.tag}-4;{RESET_VALUES}\n"
        ).encode()
    )
    assert [name for name, _ in RESET_DEFAULTS] == RESET_TAIL.split(";")


async def test_values_are_quoted_so_that_toolsync_reads_them_back_unchanged(site: Site) -> None:
    config, gateway = site
    category = await add_category(gateway, unique("Odd"), parent=1)
    tag = unique("Q")
    names = [f'{tag} "quoted"', f"{tag};semi", f"#{tag}", f"{tag},comma", f"{tag} Crème brûlée"]
    await add_courses(gateway, [{"shortname": n, "category": category.id} for n in names])
    config.set("files.separator", "auto")
    delete, reset = config.base_dir / "d.csv", config.base_dir / "r.csv"
    await generate(config, gateway, "deletecourses", CourseSelection([str(category.id)]), delete)
    await generate(config, gateway, "resetcourses", CourseSelection([str(category.id)]), reset)
    assert delete.read_bytes() == (
        f'"{tag} ""quoted"""\n"{tag};semi"\n"#{tag}"\n"{tag},comma"\n{tag} Crème brûlée\n'.encode()
    )
    quoted_row = ";".join(f'"{v}"' for v in [f"{tag};semi", *RESET_VALUES.split(";")])
    assert reset.read_text(encoding="utf-8").splitlines()[2] == quoted_row
    # What toolsync itself reads from them, with the same settings:
    headerless = CommandFile.open(
        delete, ColumnSpec(required=("identifier",), headerless=("identifier",)), config.settings.files
    )
    assert [v for batch in headerless.batches(100) for v in batch["identifier"]] == names
    spec = ColumnSpec(required=("shortname", *RESET_TAIL.split(";")))
    with_header = CommandFile.open(reset, spec, config.settings.files)
    batch = next(with_header.batches(100))
    assert batch["shortname"].to_list() == names
    assert batch["roles"].to_list() == ["student teacher guest"] * len(names)


async def test_a_legacy_encoding_setting_writes_that_encoding(site: Site) -> None:
    config, gateway = site
    category = await add_category(gateway, unique("Legacy"), parent=1)
    tag = unique("E")
    await add_courses(gateway, [{"shortname": f"{tag}-Crème", "category": category.id}])
    config.set("files.encoding", "windows-1252")
    config.set("files.separator", ",")
    out = config.base_dir / "legacy.csv"
    await generate(config, gateway, "resetcourses", CourseSelection([str(category.id)]), out)
    assert out.read_bytes().splitlines()[1] == f"{tag}-Crème,{RESET_VALUES.replace(';', ',')}".encode("windows-1252")


async def test_nothing_selected_or_no_identifier_writes_nothing(site: Site) -> None:
    config, gateway = site
    cat = await catalogue(gateway)
    out = config.base_dir / "none.csv"
    with pytest.raises(GenerateProblem, match="no course matches the selection: nothing written"):
        await generate(config, gateway, "deletecourses", CourseSelection(pattern=f"{cat.tag}-nothing*"), out)
    config.set("operations.deletecourses.identifier", "idnumber")
    with pytest.raises(
        GenerateProblem, match=r"the selected courses \(1\) have no idnumber \(operations.deletecourses.identifier\)"
    ):
        await generate(config, gateway, "deletecourses", CourseSelection(pattern=f"{cat.tag}-BIO101"), out)
    assert not out.exists()


# -- the command line ------------------------------------------------------------------------


async def toolsync(config: Config, *argv: str) -> int:
    """`toolsync --config <the site's config> ...`, in a thread: main() runs its own event loop."""
    if not config.path.exists():
        config.save()
    return await asyncio.to_thread(main, ["--config", str(config.path), *argv])


async def test_cli_writes_the_preselected_file_and_refuses_to_overwrite_it(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    config, gateway = site
    cat = await catalogue(gateway)
    target = DataStore(config.data_dir).preselected("resetcourses.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("kept\n")
    argv = ("generate", "resetcourses", "--category", cat.science_idnumber, "--recursive", "--pattern", "*lab*")
    assert await toolsync(config, *argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"toolsync: generate resetcourses: {target} exists: give --force to overwrite it, or --output another file\n"
    )
    assert target.read_text() == "kept\n"
    assert await toolsync(config, *argv, "--force") == 0
    assert capsys.readouterr().out == f"generate resetcourses: 1 course written to {target} (by shortname)\n"
    assert target.read_text() == f"shortname;{RESET_TAIL}\n{cat.tag}-BIOLAB;{RESET_VALUES}\n"


async def test_cli_warns_about_courses_left_out(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config, gateway = site
    cat = await catalogue(gateway)
    config.set("operations.deletecourses.identifier", "idnumber")
    config.save()
    out = config.base_dir / "out.csv"
    assert await toolsync(config, "generate", "deletecourses", "--pattern", f"{cat.tag}-*", "--output", str(out)) == 0
    captured = capsys.readouterr()
    assert captured.err == f"toolsync: warning: left out 1 selected course with an empty idnumber: {cat.tag}-BIO101\n"
    assert captured.out == f"generate deletecourses: 3 courses written to {out} (by idnumber)\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["deletecourses"], "no selection: give --category and/or --pattern, or --all to select every course"),
        (["resetcourses", "--category", "Nowhere/Else"], "category 'Nowhere/Else' not found"),
        (["deletecourses", "--all", "--output", "/nonexistent-dir/x.csv"], "cannot write /nonexistent-dir/x.csv"),
    ],
)
async def test_cli_problems_are_one_line_and_exit_2(
    site: Site, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    config, gateway = site
    await catalogue(gateway)
    DataStore(config.data_dir).preselected("resetcourses.csv").unlink(missing_ok=True)
    assert await toolsync(config, "generate", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"toolsync: generate {argv[0]}: ")
    assert message in err
    assert len(err.splitlines()) == 1
