"""`toolsync categories clean`: which categories are empty, the dry run, and what a real run needs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.course_factories import add_category
from tests.support.factories import add_courses, unique
from tests.support.moodle_site import Site as MoodleSite
from tests.support.moodle_site import moodle_site_fixture, site_config, site_db_fixture
from tests.support.tables import rows_of
from toolsync_tui.cli import main
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.bridge.client import BridgeError
from toolsync_tui.engine.moodle.categories import CategoryProblem
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.tools.category_cleanup import CleanupSafetyStop, delete_planned, plan_cleanup

Site = tuple[Config, MoodleGateway]
__all__ = ["moodle_site_fixture", "site_db_fixture"]


@dataclass
class Tree:
    """Category 1 / root /: a (empty) / a1 (empty); b / b1 / b11 (a course); c (a course) / c1 (empty)."""

    root: int
    ids: dict[str, int]
    paths: dict[str, str]

    def line(self, verb: str, *names: str) -> list[str]:
        return [f"{verb}: {self.paths[n]} (id {self.ids[n]})" for n in names]


async def tree(gateway: MoodleGateway) -> Tree:
    root_name = unique("Root")
    root = await add_category(gateway, root_name, parent=1)
    ids: dict[str, int] = {}
    paths: dict[str, str] = {}
    for name, parent in (
        ("a", "root"),
        ("a1", "a"),
        ("b", "root"),
        ("b1", "b"),
        ("b11", "b1"),
        ("c", "root"),
        ("c1", "c"),
    ):
        parent_id = root.id if parent == "root" else ids[parent]
        ids[name] = (await add_category(gateway, name.upper(), parent=parent_id)).id
        paths[name] = (f"Category 1/{root_name}" if parent == "root" else paths[parent]) + f"/{name.upper()}"
    await add_courses(
        gateway,
        [{"shortname": unique("B11C"), "category": ids["b11"]}, {"shortname": unique("CC"), "category": ids["c"]}],
    )
    return Tree(root.id, ids, paths)


async def planned(gateway: MoodleGateway, t: Tree, under: str | None, ignore: bool = False) -> list[str]:
    plan = await plan_cleanup(gateway, under, ignore_subcategories=ignore)
    names = {v: k for k, v in t.ids.items()}
    return [names.get(c, plan.paths[c]) for c in plan.empty]


async def test_empty_categories_leaves_first(site: Site) -> None:
    _, gateway = site
    t = await tree(gateway)
    # b's only course lives in its grandchild b11: b and b1 are not empty; c1 is, though its parent holds a course.
    assert await planned(gateway, t, str(t.root)) == ["a1", "a", "c1"]
    assert await planned(gateway, t, t.paths["a"]) == ["a1"]  # the start category itself stays
    assert await planned(gateway, t, t.paths["b"]) == []


async def test_ignore_subcategories_takes_only_categories_without_subcategories(site: Site) -> None:
    _, gateway = site
    t = await tree(gateway)
    assert await planned(gateway, t, str(t.root), ignore=True) == ["a1", "c1"]


async def test_the_whole_tree_by_default(site: Site) -> None:
    _, gateway = site
    t = await tree(gateway)
    whole = await planned(gateway, t, None)
    assert [n for n in whole if n in t.ids] == ["a1", "a", "c1"]  # other tests' categories may be there too
    assert "Category 1" not in whole  # it holds the tree's courses
    plan = await plan_cleanup(gateway)
    assert plan.site_categories == len(await rows_of(gateway, gateway.schema.course_categories))


async def test_an_unknown_start_category_is_named(site: Site) -> None:
    with pytest.raises(CategoryProblem, match="category 'Nowhere' not found"):
        await plan_cleanup(site[1], "Nowhere")


async def test_the_safety_threshold_counts_the_sites_categories(site: Site) -> None:
    config, gateway = site
    t = await tree(gateway)
    plan = await plan_cleanup(gateway, str(t.root))
    config.set("run.safety_threshold", 0.001)  # below 3 of the site's categories, however many tests made
    config.set("run.safety_min_rows", 3)
    with pytest.raises(CleanupSafetyStop, match=rf"deleting 3 of the site's {plan.site_categories} categories"):
        plan.check_safety(config.settings.run, force=False)
    plan.check_safety(config.settings.run, force=True)
    config.set("run.safety_min_rows", 4)  # 3 categories are too few to stop for
    plan.check_safety(config.settings.run, force=False)


class StandInBridge:
    """The Moodle bridge's delete_categories() as the caller sees it: what it was asked, what it answers."""

    def __init__(self, refuse: dict[int, str] | None = None, fail_after: int | None = None) -> None:
        self.asked: list[int] = []
        self.refuse = refuse or {}
        self.fail_after = fail_after

    async def verify_database(self, database: Any) -> dict[str, Any]:
        return {}

    async def delete_categories(
        self, category_ids: Sequence[int], on_result: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[int, str | None]:
        self.asked = list(category_ids)
        outcomes = {c: self.refuse.get(c) for c in category_ids}
        if self.fail_after is not None:
            raise BridgeError("bridge delete_categories: PHP stopped", dict(list(outcomes.items())[: self.fail_after]))
        return outcomes


async def test_deletion_asks_the_bridge_leaves_first_and_reports_each_category(site: Site) -> None:
    _, gateway = site
    t = await tree(gateway)
    plan = await plan_cleanup(gateway, str(t.root))
    bridge = StandInBridge(refuse={t.ids["a1"]: "the category holds a course"})
    outcomes = await delete_planned(plan, bridge)
    assert bridge.asked == [t.ids["a1"], t.ids["a"], t.ids["c1"]]
    assert plan.outcome_lines(outcomes) == [
        f"not deleted: {t.paths['a1']} (id {t.ids['a1']}): the category holds a course",
        *t.line("deleted", "a", "c1"),
    ]


# -- the command line ------------------------------------------------------------------------


async def toolsync(config: Config, *argv: str) -> int:
    """`toolsync --config <the site's config> ...`, in a thread: main() runs its own event loop."""
    config.save()
    return await asyncio.to_thread(main, ["--config", str(config.path), *argv])


async def test_dry_run_lists_what_would_go_and_deletes_nothing(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config, gateway = site
    t = await tree(gateway)
    before = await rows_of(gateway, gateway.schema.course_categories)
    assert await toolsync(config, "categories", "clean", "--under", t.paths["a"].rsplit("/", 1)[0], "--dry-run") == 0
    root = t.paths["a"].rsplit("/", 1)[0]
    assert capsys.readouterr().out.splitlines() == [
        *t.line("would delete", "a1", "a", "c1"),
        f"categories clean (dry run): 3 empty categories under {root} (id {t.root}) would be deleted; nothing was "
        "deleted",
    ]
    assert await rows_of(gateway, gateway.schema.course_categories) == before
    config.set("run.safety_threshold", 0.001)
    config.set("run.safety_min_rows", 1)
    assert await toolsync(config, "categories", "clean", "--under", str(t.ids["a"]), "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        *t.line("would delete", "a1"),
        f"categories clean (dry run): 1 empty category under {t.paths['a']} (id {t.ids['a']}) would be deleted; "
        "nothing was deleted",
    ]
    assert out[2].startswith("  note: a real run needs --force: 1 of the site's ")


async def test_nothing_to_delete_says_so(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config, gateway = site
    t = await tree(gateway)
    assert await toolsync(config, "categories", "clean", "--under", str(t.ids["b"]), "--dry-run") == 0
    assert capsys.readouterr().out == f"categories clean: no empty category under {t.paths['b']} (id {t.ids['b']})\n"


async def test_a_real_run_without_the_bridge_exits_2(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    config, gateway = site
    t = await tree(gateway)
    assert await toolsync(config, "categories", "clean", "--under", str(t.root)) == 2
    assert capsys.readouterr().err == (
        "toolsync: categories clean: deleting categories needs the Moodle bridge: set [bridge] moodle_dir "
        "(--dry-run lists them without it)\n"
    )
    assert {t.ids["a"], t.ids["a1"]} <= {r["id"] for r in await rows_of(gateway, gateway.schema.course_categories)}


async def test_a_real_run_stops_at_the_safety_threshold_then_needs_a_usable_bridge(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    config, gateway = site
    t = await tree(gateway)
    config.set("bridge.moodle_dir", str(config.base_dir))  # configured, but no Moodle site there
    config.set("run.safety_threshold", 0.001)
    config.set("run.safety_min_rows", 1)
    argv = ("categories", "clean", "--under", str(t.root))
    assert await toolsync(config, *argv) == 3
    err = capsys.readouterr().err
    assert err.startswith("toolsync: categories clean: deleting 3 of the site's ")
    assert err.endswith("Nothing was deleted. Re-run with --force if this is intended.\n")
    assert await toolsync(config, *argv, "--force") == 2
    err = capsys.readouterr().err
    assert err.startswith("toolsync: categories clean: ")
    assert "bridge" in err
    assert "Traceback" not in err


async def test_a_real_run_prints_each_category_and_exits_1_when_one_is_refused(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, gateway = site
    t = await tree(gateway)
    bridge = StandInBridge(refuse={t.ids["c1"]: "it holds a course"})
    monkeypatch.setattr("toolsync_tui.cli.tools.bridge_from_config", lambda config: bridge)
    assert await toolsync(config, "categories", "clean", "--under", str(t.root)) == 1
    root = t.paths["a"].rsplit("/", 1)[0]
    assert capsys.readouterr().out.splitlines() == [
        *t.line("deleted", "a1", "a"),
        f"not deleted: {t.paths['c1']} (id {t.ids['c1']}): it holds a course",
        f"categories clean: 2 deleted, 1 not deleted, of 3 empty categories under {root} (id {t.root})",
    ]
    bridge.refuse, bridge.fail_after = {}, 1
    assert await toolsync(config, "categories", "clean", "--under", str(t.root)) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == t.line("deleted", "a1")
    assert captured.err == "toolsync: categories clean: bridge delete_categories: PHP stopped\n"


# -- on a real Moodle site (tests/support/moodle_site.py) -----------------------------------


async def test_a_real_run_deletes_through_moodle_only_the_empty_categories(
    moodle_site: MoodleSite, site_db: MoodleGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Categories made by Moodle's own API, cleaned by core_course_category::delete_full() through the bridge."""
    root_name = f"TSClean {uuid.uuid4().hex[:8]}"
    answer = await moodle_site.run_php(
        "require_once($CFG->dirroot . '/course/lib.php');\n"
        f"$root = core_course_category::create(['name' => {json.dumps(root_name)}, 'parent' => 0]);\n"
        "$a = core_course_category::create(['name' => 'A', 'parent' => $root->id]);\n"
        "$a1 = core_course_category::create(['name' => 'A1', 'parent' => $a->id]);\n"
        "$b = core_course_category::create(['name' => 'B', 'parent' => $root->id]);\n"
        "$b1 = core_course_category::create(['name' => 'B1', 'parent' => $b->id]);\n"
        f"create_course((object)['fullname' => 'Kept', 'shortname' => {json.dumps(root_name)}, "
        "'category' => $b1->id]);\n"
        "$result = ['root' => $root->id, 'a' => $a->id, 'a1' => $a1->id, 'b' => $b->id, 'b1' => $b1->id];"
    )
    made = {name: int(ident) for name, ident in answer.items()}  # PHP's ids come as strings
    try:
        config = site_config(moodle_site, tmp_path, bridge=True)
        config.save()
        argv = ["--config", str(config.path), "categories", "clean", "--under", str(made["root"])]
        assert await asyncio.to_thread(main, argv) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"deleted: {root_name}/A/A1 (id {made['a1']})",
            f"deleted: {root_name}/A (id {made['a']})",
            f"categories clean: 2 deleted, 0 not deleted, of 2 empty categories under {root_name} (id {made['root']})",
        ]
        left = await rows_of(site_db, site_db.schema.course_categories, id=list(made.values()))
        assert [r["id"] for r in left] == [made["root"], made["b"], made["b1"]]
        contexts = await rows_of(site_db, site_db.schema.context, contextlevel=40, instanceid=[made["a"], made["a1"]])
        assert contexts == []
    finally:
        await moodle_site.run_php(f"core_course_category::get({made['root']})->delete_full(false); $result = true;")
