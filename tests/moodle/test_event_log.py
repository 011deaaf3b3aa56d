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


def test_log_rows_column_by_column_are_each_events_row() -> None:
    """A part of several kinds, an `other` several events share, one unique, none: each row as the event says it."""
    from toolsync_tui.engine.moodle.event_log import LOG_COLUMNS, Event, EventLog

    enrol = {"enrol": "manual"}  # one dict for every enrolment of the plugin, as course_events shares it
    given = [
        Event(events.USER_ENROLMENT_CREATED, 11, 21, 50, 31, 31, 41, enrol),
        Event(events.ROLE_ASSIGNED, 5, 21, 50, 31, 31, 41, {"id": 9, "component": "", "itemid": 0}),
        Event(events.USER_ENROLMENT_CREATED, 12, 22, 50, 32, 32, 42, enrol),
        Event(events.USER_CREATED, 42, 23, 30, 42, 0, 42),
    ]

    def row(kind: EventKind, objectid: int, context: int, level: int, instance: int, course: int, user: int,
            other: str) -> dict[str, object]:  # fmt: skip
        return {
            "eventname": kind.eventname, "component": "core", "action": kind.action, "target": kind.target,
            "objecttable": kind.objecttable, "objectid": objectid, "crud": "c", "edulevel": 0,
            "contextid": context, "contextlevel": level, "contextinstanceid": instance, "userid": 2,
            "courseid": course, "relateduserid": user, "anonymous": 0, "other": other, "timecreated": 1_700_000_000,
            "origin": "cli", "ip": None, "realuserid": None,
        }  # fmt: skip

    expected = [
        row(events.USER_ENROLMENT_CREATED, 11, 21, 50, 31, 31, 41, '{"enrol":"manual"}'),
        row(events.ROLE_ASSIGNED, 5, 21, 50, 31, 31, 41, '{"id":9,"component":"","itemid":0}'),
        row(events.USER_ENROLMENT_CREATED, 12, 22, 50, 32, 32, 42, '{"enrol":"manual"}'),
        row(events.USER_CREATED, 42, 23, 30, 42, 0, 42, "null"),
    ]
    rows = EventLog(enabled=True, actor_id=2)._rows(given, 1_700_000_000)
    assert [list(r.items()) for r in rows] == [list(r.items()) for r in expected]  # LOG_COLUMNS' order too
    assert list(rows[0]) == list(LOG_COLUMNS)
    alone = EventLog(enabled=True, actor_id=2, json_format=False)._rows(given[:1] + given[2:3], 1_700_000_000)
    assert alone.shared["eventname"] == events.USER_ENROLMENT_CREATED.eventname  # one kind: its columns shared
    assert alone.column("other") == ['a:1:{s:5:"enrol";s:6:"manual";}'] * 2
