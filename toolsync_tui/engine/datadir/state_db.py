"""toolsync's own SQLite state files in the data directory (protected group memberships, the ownership ledger, the
runs' change journals): private from the first byte, their tables made on the first write, one clear error; and the
site their entries belong to."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from toolsync_tui.engine.datadir import privacy

if TYPE_CHECKING:
    from toolsync_tui.engine.moodle.gateway import MoodleGateway


@contextmanager
def state_db(
    path: Path, *, write: bool, tables: Sequence[str], problem: type[Exception], what: str
) -> Iterator[sqlite3.Connection]:
    """A connection to the state file at `path`; writing makes it (and its folder) private and runs `tables` (CREATE
    ... IF NOT EXISTS) first. Any SQLite or system error raises `problem`: "<what> <path> cannot be used: why"."""
    try:
        if write:
            _private(path)
        with closing(sqlite3.connect(path, timeout=30)) as db:
            if write:
                for statement in tables:
                    db.execute(statement)
            yield db
    except (sqlite3.Error, OSError) as exc:
        raise problem(f"{what} {path} cannot be used: {exc}") from None


def _private(path: Path) -> None:
    """The folder and the file made private (privacy.py) before SQLite opens it; its journal takes the file's mode."""
    path.parent.mkdir(mode=privacy.folder_mode(path.parent.parent), parents=True, exist_ok=True)
    os.close(privacy.create_file(path, os.O_WRONLY | os.O_CREAT))


async def site_of(gateway: MoodleGateway) -> str:
    """The site a state entry belongs to (one data directory may serve several sites in turn): $CFG->siteidentifier,
    else (a sandbox has none) the database's address with its table prefix."""
    found = await gateway.config_values(["siteidentifier"])
    return (found.get("siteidentifier") or "").strip() or database_address(gateway)


def database_address(gateway: MoodleGateway) -> str:
    """The database's address, however the gateway was opened: the SQLite file, else host:port/name (or the socket),
    with the table prefix."""
    url = gateway.engine.url
    if gateway.kind == "sqlite":
        where = str(Path(url.database or "").resolve())
    else:
        socket = url.query.get("unix_socket" if gateway.kind == "mariadb" else "host")
        port = url.port or (3306 if gateway.kind == "mariadb" else 5432)
        where = f"{socket if isinstance(socket, str) else f'{url.host}:{port}'}/{url.database}"
    return f"{where} prefix {gateway.schema.prefix}"
