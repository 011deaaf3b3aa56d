"""A copy of a test database on the same server, MariaDB or PostgreSQL: tests that run one file several ways (overlapped
or in turn) start each way from the same rows and the same next ids."""

from __future__ import annotations

from tests.support.fault_site import copy_database as copy_mariadb_database
from tests.support.mariadb_server import ThrowawayMariaDB
from tests.support.postgres_server import ThrowawayPostgreSQL


def copy_database(server: ThrowawayMariaDB | ThrowawayPostgreSQL, source: str, target: str) -> str:
    """Database `target`: every table of `source` with its rows and its id counters (MariaDB's auto-increment,
    PostgreSQL's sequences); its URL."""
    if isinstance(server, ThrowawayMariaDB):
        return copy_mariadb_database(server, source, target)
    # A template copy takes everything, sequences included; PostgreSQL refuses one while the source has sessions,
    # and a closed gateway's connections may still be leaving.
    server.sql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{source}' AND pid <> pg_backend_pid()"
    )
    server.create_database(target, template=source)
    return server.url(target)
