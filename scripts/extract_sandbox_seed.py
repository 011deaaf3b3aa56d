"""Regenerate toolsync_tui/engine/moodle/sandbox_seed.json: a fresh Moodle site's baseline rows.

Usage: python scripts/extract_sandbox_seed.py HOST PORT USER PASSWORD DATABASE
Reads the tables declared in engine/moodle/schema.py from a database loaded with the real fresh-install dump.
"""

from __future__ import annotations

import decimal
import json
import re
import sys
from pathlib import Path

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolsync_tui.engine.moodle.schema import MoodleSchema

TARGET = Path(__file__).resolve().parents[1] / "toolsync_tui" / "engine" / "moodle" / "sandbox_seed.json"
# Plugin settings the engine reads (course defaults, enrolment method defaults); the rest is not needed.
PLUGINS = (
    "moodlecourse",
    "enrol_manual",
    "enrol_self",
    "enrol_guest",
    "enrol_cohort",
    "enrol_meta",
    "auth_manual",
    "tool_uploaduser",
    "tool_uploadcourse",
    "tool_dataprivacy",  # whether deleting a user files a data deletion request
    "tool_log",  # the enabled log stores
    "logstore_standard",  # the standard log's format
)
# block_instances: a fresh site's are the system pages' blocks, whose contexts (level 80) the seed leaves out.
SKIPPED_TABLES = {"sessions", "cache_flags", "files", "block_instances"}
SITE_SECRETS = re.compile(r"salt|secret|privatekey|siteidentifier|cronremotepassword")


def main() -> None:
    host, port, user, password, database = sys.argv[1:6]
    conn = pymysql.connect(
        host=host,
        port=int(port),
        user=user,
        password=password,
        database=database,
        cursorclass=pymysql.cursors.DictCursor,
    )
    schema = MoodleSchema("mdl_")
    seed: dict[str, list[dict[str, object]]] = {}
    with conn.cursor() as cur:
        for name in sorted(schema.metadata.tables):
            short = name.removeprefix("mdl_")
            if short in SKIPPED_TABLES:
                continue
            if short == "config_plugins":
                cur.execute(f"SELECT * FROM {name} WHERE plugin IN %s ORDER BY id", (PLUGINS,))
            elif short == "context":
                cur.execute(f"SELECT * FROM {name} WHERE contextlevel IN (10, 30, 40, 50) ORDER BY id")
            else:
                cur.execute(f"SELECT * FROM {name} ORDER BY id")
            rows = [
                {k: (int(v) if isinstance(v, decimal.Decimal) else v) for k, v in row.items()} for row in cur.fetchall()
            ]
            if short == "user":
                for row in rows:  # no credential of the lab site travels into the sandbox
                    row["password"] = ""
            if short == "config":
                for row in rows:
                    if SITE_SECRETS.search(str(row["name"])):
                        row["value"] = ""
            if rows:
                seed[short] = rows
    TARGET.write_text(json.dumps(seed, separators=(",", ":"), ensure_ascii=False, sort_keys=True))
    print(f"wrote {TARGET}: " + ", ".join(f"{k} {len(v)}" for k, v in seed.items()))


if __name__ == "__main__":
    main()
