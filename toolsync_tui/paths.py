"""Where toolsync looks for its configuration and keeps the embedded sandbox."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "TOOLSYNC_CONFIG"


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else Path.home() / fallback


def user_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "toolsync" / "toolsync.toml"


def embedded_sandbox_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "toolsync" / "sandbox"


def find_config(explicit: Path | None) -> Path | None:
    """--config, then $TOOLSYNC_CONFIG, then the user's config file; None means: use the sandbox."""
    if explicit is not None:
        return explicit
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    path = user_config_path()
    return path if path.exists() else None
