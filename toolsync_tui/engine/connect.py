"""The doors to the site, opened from the configuration: the database gateway and the Moodle bridge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge
from toolsync_tui.engine.moodle.gateway import DatabaseError, MoodleGateway


def open_gateway(config: Config) -> MoodleGateway:
    """The gateway for a configuration's [database] section."""
    settings = config.settings.database
    if settings.driver == "sqlite":
        path = config.resolve(settings.sqlite_path)
        if not path.exists():
            raise DatabaseError(f"sandbox database {path} does not exist: run `toolsync sandbox init`")
        return MoodleGateway.for_sqlite(path, settings.prefix)
    return MoodleGateway.for_server(
        settings.driver,
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=config.database_password,
        database=settings.name,
        prefix=settings.prefix,
        socket=settings.socket,
        schema=settings.dbschema,
        statement_timeout=settings.statement_timeout,
    )


def bridge_from_config(config: Config) -> MoodleBridge | None:
    """The configured bridge, or None when `[bridge] moodle_dir` is empty (no bridge)."""
    settings = config.settings.bridge
    if not settings.moodle_dir.strip():
        return None
    return MoodleBridge(config.resolve(settings.moodle_dir), php=settings.php, run_as=settings.run_as.strip())


@dataclass(frozen=True)
class BridgeLink:
    """A run's Moodle bridge, opened once: the bridge and its site's `info` when it serves toolsync's database; no
    bridge when none is configured, or when the configured one does not work (`problem`: why)."""

    bridge: MoodleBridge | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def working(self) -> MoodleBridge | None:
        """The bridge, None when none is configured; BridgeError when the configured one does not work."""
        if self.problem is not None:
            raise BridgeError(self.problem)
        return self.bridge


NO_BRIDGE = BridgeLink()


async def open_bridge(config: Config) -> BridgeLink:
    """The configured bridge, checked to serve the database toolsync writes to (this starts PHP once)."""
    bridge = bridge_from_config(config)
    if bridge is None:
        return NO_BRIDGE
    try:
        info = await bridge.verify_database(config.settings.database)
    except BridgeError as exc:
        return BridgeLink(problem=str(exc))
    return BridgeLink(bridge, info)
