"""Which site a command works on: the configuration found, else the embedded sandbox."""

from __future__ import annotations

from pathlib import Path

from toolsync_tui.config import Config, load_config
from toolsync_tui.paths import embedded_sandbox_dir, find_config


async def load_or_sandbox(explicit: Path | None) -> Config:
    path = find_config(explicit)
    if path is None:
        from toolsync_tui.engine.sandbox import open_or_create_sandbox  # a configured site never needs it

        return await open_or_create_sandbox(embedded_sandbox_dir())
    return load_config(path)
