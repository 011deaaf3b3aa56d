"""The one line that says which Moodle site the interface works on: a badge and a detail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toolsync_tui.config import DatabaseSettings
from toolsync_tui.engine.moodle.gateway import SiteInfo
from toolsync_tui.views.formatting import short_path

SiteState = Literal["connecting", "ready", "error"]


@dataclass(frozen=True)
class SiteStatus:
    state: SiteState
    badge: str
    detail: str


def _where(database: DatabaseSettings, base_dir: Path) -> str:
    if database.driver == "sqlite":
        return short_path(base_dir / database.sqlite_path, base_dir)
    return f"{database.socket or f'{database.host}:{database.port}'}/{database.name}"


def connecting(database: DatabaseSettings, base_dir: Path) -> SiteStatus:
    return SiteStatus("connecting", "…", f"connecting to {_where(database, base_dir)}")


def ready(info: SiteInfo, base_dir: Path) -> SiteStatus:
    # The sandbox's label is an absolute path; relative to the config it stays short (and stable in tests).
    where = short_path(Path(info.label), base_dir) if info.is_sandbox else info.label
    badge = "SANDBOX" if info.is_sandbox else "MariaDB"
    return SiteStatus("ready", badge, f"{where} · prefix {info.prefix} · Moodle {info.release}")


def failed(message: str) -> SiteStatus:
    return SiteStatus("error", "NO DATABASE", message)
