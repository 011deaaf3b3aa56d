"""Sandboxes for tests: one made per test run, copied for each test that wants one."""

from __future__ import annotations

import shutil
from pathlib import Path

from toolsync_tui.config import Config, load_config
from toolsync_tui.engine.sandbox import CONFIG_NAME


def copy_sandbox(template: Path, directory: Path) -> Config:
    """A fresh sandbox in `directory`, as `toolsync sandbox init` would make it: the template's files copied (with
    today's times, as new files have), its configuration's paths being relative to it."""
    shutil.copytree(template, directory, copy_function=shutil.copy)
    return load_config(directory / CONFIG_NAME)
