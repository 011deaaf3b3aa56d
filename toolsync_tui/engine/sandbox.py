"""`toolsync sandbox init DIR`: a local SQLite Moodle with a fresh site's rows and sample files."""

from __future__ import annotations

import asyncio
import os
import shutil
from importlib import resources
from pathlib import Path

from toolsync_tui.config import Config, ConfigError, load_config, new_config
from toolsync_tui.engine.datadir import privacy
from toolsync_tui.engine.datadir.store import DataStore
from toolsync_tui.engine.moodle.baseline import install_baseline
from toolsync_tui.engine.moodle.gateway import MoodleGateway

CONFIG_NAME = "toolsync.toml"
DATABASE_NAME = "sandbox.sqlite"
MOODLE_DATA = "moodledata"


def sandbox_document() -> dict[str, object]:
    return {
        "database": {"driver": "sqlite", "sqlite_path": DATABASE_NAME, "prefix": "mdl_"},
        "files": {"data_dir": "data"},
        # The sample files name courses by shortname, users by username and groups by idnumber.
        "operations": {
            "enrols": {"course_identifier": "shortname", "user_identifier": "username"},
            "groups": {"course_identifier": "shortname", "group_identifier": "idnumber"},
            "groupmembers": {
                "course_identifier": "shortname",
                "group_identifier": "idnumber",
                "user_identifier": "username",
            },
            "cohortscourses": {"course_identifier": "shortname"},
            # The sandbox's own file pool, in place of a Moodle site's moodledata.
            "pictures": {"moodle_data_dir": MOODLE_DATA},
        },
    }


async def init_sandbox(directory: Path) -> Config:
    """Create (or refuse to overwrite) a sandbox in `directory`; returns its configuration."""
    database = directory / DATABASE_NAME
    config = await asyncio.to_thread(_prepare_directory, directory)
    gateway = MoodleGateway.for_sqlite(database, config.settings.database.prefix)
    try:
        await install_baseline(gateway)
    finally:
        await gateway.close()
    await asyncio.to_thread(_lay_out_data, config)
    return config


def _prepare_directory(directory: Path) -> Config:
    config_path = directory / CONFIG_NAME
    if config_path.exists() or (directory / DATABASE_NAME).exists():
        raise ConfigError(
            f"{directory} already holds a sandbox; remove {CONFIG_NAME} and {DATABASE_NAME} to start afresh"
        )
    directory.mkdir(mode=privacy.PRIVATE[0], parents=True, exist_ok=True)
    # Its accounts' rows are the owner's only, as the data directory (SQLite's journals take the file's mode).
    os.close(privacy.create_file(directory / DATABASE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return new_config(config_path, sandbox_document())


def _lay_out_data(config: Config) -> None:
    """Data directory with the sample command files (and picture archive) in its inbox, the file pool's folder; the
    config is saved last."""
    store = DataStore(config.data_dir)
    store.ensure(group_readable=config.settings.files.group_readable)
    privacy.make_folder(config.resolve(MOODLE_DATA) / "filedir", group_readable=False)
    samples = resources.files("toolsync_tui").joinpath("samples")
    for sample in samples.iterdir():
        if sample.name.endswith((".csv", ".zip")):
            with sample.open("rb") as data, os.fdopen(privacy.create_file(store.inbox / sample.name), "wb") as out:
                shutil.copyfileobj(data, out)
    config.save()


def existing_sandbox(directory: Path) -> Path | None:
    """The configuration of the sandbox in `directory`, None when there is none (nothing is created)."""
    config_path = directory / CONFIG_NAME
    return config_path if config_path.is_file() else None


async def open_or_create_sandbox(directory: Path) -> Config:
    """The embedded sandbox used when no configuration exists: created on first start."""
    config_path = directory / CONFIG_NAME
    if await asyncio.to_thread(config_path.exists):
        return load_config(config_path)
    return await init_sandbox(directory)
