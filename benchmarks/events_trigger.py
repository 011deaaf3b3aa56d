"""What `[events] trigger` costs: Moodle's events triggered through the bridge, against toolsync's own log rows.

    python -m benchmarks.events_trigger                 # 2,000 new users, each enrolled into a course and a group
    python -m benchmarks.events_trigger --users 10000 --repeat 5

Three Moodle 4.5 sites made from the same dump (tests/support/moodle_site.py, on a throwaway MariaDB on disk) run the
same users file with toolsync's engine in this process (the bridge's PHP in child processes, as in production):

- `off`: the site's standard log store disabled: toolsync writes no log row (the floor);
- `rows`: toolsync writes the standard-log rows itself, in each batch's transaction (the default);
- `trigger`: `[events] trigger = true`: after each batch commits, the bridge create()s and trigger()s each event,
  observers run, and Moodle's log store writes the rows.

Events are counted from the log rows the `rows` run wrote; the cost of each mode is its run time minus the `off`
run's, per 1,000 events, each the best of `--repeat` runs (new users each time, on the same sites). The time the
bridge's trigger_events calls themselves took is printed too. Welcome messages are off in every run (their PHP
calls are not what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.support.mariadb_server import ThrowawayMariaDB
from tests.support.moodle_site import Site, provision_site, site_config
from tests.support.operation_files import inbox_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.bridge.client import MoodleBridge
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation

COURSE = "EVBENCH"
MODES = ("off", "rows", "trigger")


def users_file(count: int, round_: int) -> str:
    lines = ["username;firstname;lastname;email;course1;role1;group1"]
    lines += [
        f"ev{round_}x{n:06d};Event;User{n};ev{round_}x{n:06d}@example.com;{COURSE};student;Group {n % 20}"
        for n in range(count)
    ]
    return "\n".join(lines) + "\n"


def config_for(site: Site, folder: Path, mode: str) -> Config:
    config = site_config(site, folder, bridge=True)
    config.set("operations.users.primary_identity", "username")
    config.set("events.welcome_messages", False)
    config.set("events.trigger", mode == "trigger")
    return config


async def log_rows(gateway: MoodleGateway) -> int:
    async with gateway.reading() as conn:
        found = await conn.execute(text(f"SELECT COUNT(*) FROM {gateway.schema.prefix}logstore_standard_log"))
        return int(found.scalar() or 0)


class BridgeClock:
    """The time spent in the bridge's trigger_events calls (wrapped for the benchmark's process only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.events = 0
        self.original = MoodleBridge.trigger_events
        clock = self

        async def timed(bridge: MoodleBridge, actor: int, events: Sequence[Mapping[str, Any]]) -> dict[int, str | None]:
            started = time.perf_counter()
            try:
                return await clock.original(bridge, actor, events)
            finally:
                clock.seconds += time.perf_counter() - started
                clock.events += len(events)

        MoodleBridge.trigger_events = timed  # type: ignore[method-assign,assignment]


async def prepare(site: Site, folder: Path, mode: str) -> None:
    gateway = MoodleGateway.for_url(site.url, site.prefix)
    try:
        config = config_for(site, folder, mode)
        inbox_file(config, config.operation("courses").file, f"shortname;fullname\n{COURSE};Events benchmark\n")
        await run_operation(config, gateway, "courses")
        if mode == "off":
            async with gateway.engine.begin() as conn:
                await conn.execute(
                    text(
                        f"UPDATE {gateway.schema.prefix}config_plugins SET value = '' "
                        "WHERE plugin = 'tool_log' AND name = 'enabled_stores'"
                    )
                )
    finally:
        await gateway.close()


async def measure(site: Site, folder: Path, mode: str, users: int, round_: int) -> tuple[float, int]:
    """One users run's time and the log rows it left."""
    gateway = MoodleGateway.for_url(site.url, site.prefix)
    try:
        config = config_for(site, folder, mode)
        before = await log_rows(gateway)
        inbox_file(config, config.operation("users").file, users_file(users, round_))
        clock = time.perf_counter()
        result = await run_operation(config, gateway, "users")
        seconds = time.perf_counter() - clock
        if result.exit_code != 0:
            raise SystemExit(f"{mode}: the users run failed (exit {result.exit_code}): {result.report_path}")
        if mode == "trigger" and not any("triggered through the bridge" in note for note in result.notes):
            raise SystemExit(f"trigger: the bridge triggered nothing: {result.notes}")
        return seconds, await log_rows(gateway) - before
    finally:
        await gateway.close()


async def main(users: int, repeat: int) -> int:
    server = ThrowawayMariaDB.start()
    clock = BridgeClock()
    best: dict[str, tuple[float, int]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="toolsync-events-bench-") as temp:
            sites = {mode: provision_site(server, f"events_{mode}") for mode in MODES}
            for mode, site in sites.items():
                await prepare(site, Path(temp) / mode, mode)
            clock.seconds, clock.events = 0.0, 0  # the users runs only
            for round_ in range(repeat):
                for mode, site in sites.items():
                    seconds, rows = await measure(site, Path(temp) / mode, mode, users, round_)
                    if mode not in best or seconds < best[mode][0]:
                        best[mode] = (seconds, rows)
    finally:
        server.stop()
    floor = best["off"][0]
    events = best["rows"][1]
    if not events or best["trigger"][1] != events or best["off"][1] != 0:
        print(f"not comparable: log rows off {best['off'][1]}, rows {events}, trigger {best['trigger'][1]}")
        return 1
    print(f"{users:,} new users, each enrolled into a course and a group: {events:,} events; best of {repeat}")
    for mode in MODES:
        seconds, rows = best[mode]
        line = f"  {mode:8} {seconds:7.2f} s, {rows:,} log rows"
        if mode != "off":
            extra = seconds - floor
            rate = f"{events / extra:,.0f} events/s" if extra > 0 else "no measurable cost"
            line += f"; over `off`: {extra:+.2f} s = {extra / events * 1000:.2f} s per 1,000 events ({rate})"
        print(line)
    per_call = clock.seconds / clock.events * 1000 if clock.events else 0.0
    print(
        f"  the bridge's trigger_events calls: {clock.events:,} events in {clock.seconds:.2f} s = "
        f"{per_call:.2f} s per 1,000 events (PHP start-up included)"
    )
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000, help="new users in the file (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode, the best counts (default 3)")
    args = parser.parse_args(argv)
    return asyncio.run(main(args.users, args.repeat))


if __name__ == "__main__":
    sys.exit(cli())
