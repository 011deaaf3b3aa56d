"""The standard log's fixed parts checked against Moodle and PHP themselves: each event of the catalog against its
class's init() in the Moodle 4.5 source, and the encodings of `other` against PHP's json_encode() and serialize()."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.moodle_site import SITE_ENV, moodle_code_tree
from toolsync_tui.engine.moodle import events
from toolsync_tui.engine.moodle.event_log import EventKind, php_json, php_serialize

KINDS = {name: kind for name, kind in vars(events).items() if isinstance(kind, EventKind)}
LEVELS = {"LEVEL_OTHER": 0, "LEVEL_TEACHING": 1, "LEVEL_PARTICIPATING": 2}


@pytest.fixture(scope="module")
def moodle_dir() -> Path:
    installed = os.environ.get(SITE_ENV)
    return Path(installed) if installed else moodle_code_tree()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_event_of_the_catalog_is_what_its_class_says(name: str, moodle_dir: Path) -> None:
    kind = KINDS[name]
    component, _, classname = kind.eventname.strip("\\").split("\\")
    assert component == "core"
    source = (moodle_dir / "lib" / "classes" / "event" / f"{classname}.php").read_text()
    init = re.search(r"function init\(\)\s*\{(.*?)\n    \}", source, re.S)
    assert init is not None
    data = dict(re.findall(r"\$this->data\['(\w+)'\]\s*=\s*([^;]+);", init.group(1)))
    assert kind.crud == data["crud"].strip("'")
    assert kind.edulevel == LEVELS[data["edulevel"].removeprefix("self::")]
    assert kind.objecttable == (data["objecttable"].strip("'") if "objecttable" in data else None)
    assert (kind.component, kind.target, kind.action) == (component, *classname.rsplit("_", 1))
    assert name == classname.upper()


OTHERS: list[object] = [
    None,
    {},
    {"forgottenreset": False},
    {"shortname": "a/b", "fullname": 'Été \u2013 日本 😀 "q" \\ \n\t<&>\''},
    {"sectionnum": 0, "enrol": "manual", "n": -5, "t": True},
    {"updatedfields": {"fullname": "x", "visible": 0, "startdate": 1700000000}, "empty": {}},
    {"0": "a", "1": "b"},
    {"5": "a", "list": [1, "2", None]},
    {"ratio": 0.5, "whole": 2.0},
]


def test_other_is_encoded_as_php_encodes_it(php: str) -> None:
    code = (
        "$values = json_decode(file_get_contents('php://stdin'), true);"
        "foreach ($values as $v) { $v = $v === [] ? [] : $v;"
        ' echo json_encode([json_encode($v), serialize($v)]), "\\n"; }'
    )
    # JSON itself cannot say 2.0 apart from 2: PHP decodes each value of OTHERS as Python writes it.
    given = json.dumps(OTHERS)
    done = subprocess.run([php, "-r", code], input=given, capture_output=True, text=True, check=True)
    expected = [json.loads(line) for line in done.stdout.splitlines()]
    assert [[php_json(o), php_serialize(o)] for o in OTHERS] == expected  # type: ignore[arg-type]


def test_the_logged_columns_are_every_column_of_the_standard_log_but_its_id() -> None:
    """LOG_COLUMNS (record()'s order, the floors' and the tests' column lists) names the table's columns, no other."""
    from toolsync_tui.engine.moodle.event_log import LOG_COLUMNS
    from toolsync_tui.engine.moodle.schema import MoodleSchema

    table = MoodleSchema("mdl_").logstore_standard_log
    assert sorted(LOG_COLUMNS) == sorted(c.name for c in table.columns if c.name != "id")
    assert len(set(LOG_COLUMNS)) == len(LOG_COLUMNS)
