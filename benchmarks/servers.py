"""The database server a benchmark runs against: a throwaway MariaDB or PostgreSQL, and its CPU time.

`start_server(kind)` starts one on disk (the disk's cost is part of what the benchmarks measure) with the same
interface for the benchmarks: `sql(statements, database)` answering one line per row, values separated by tabs (as
the mariadb client's `-N`), `load_dump(name)`, `url(name)`, `port`, `stop()`.

`server_cpu_seconds(server)`: the server's CPU seconds so far (user + system), from /proc.

- MariaDB is one process (threads): mariadbd's own utime + stime.
- PostgreSQL is a process per connection and per background task (checkpointer, WAL writer, autovacuum ...), all
  children of the postmaster. A connection's backend exits when the connection closes, and toolsync closes its
  connections before it exits: summing the live children's times after a run would miss the backends that did the
  run's work. The kernel adds a child's times to its parent's cutime + cstime when the parent reaps it, and the
  postmaster reaps every backend: so the figure is the postmaster's own utime + stime, its reaped children's cutime +
  cstime, and each live child's utime + stime. A difference of two readings counts each backend once, wherever it is
  at each reading (alive at the first and reaped by the second: its time moved from one sum to the other).
  pg_stat views hold no CPU time (pg_stat_statements has execution times, wall clock, and needs a preloaded library).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Literal

from benchmarks.floor import mariadbd_cpu_seconds
from tests.support.mariadb_server import ThrowawayMariaDB
from tests.support.postgres_server import ThrowawayPostgreSQL

ServerKind = Literal["mariadb", "postgresql"]
SERVER_KINDS: tuple[ServerKind, ...] = ("mariadb", "postgresql")
TICKS = os.sysconf("SC_CLK_TCK")


class BenchPostgreSQL(ThrowawayPostgreSQL):
    """ThrowawayPostgreSQL whose `sql()` separates values by tabs, as the mariadb client does: the benchmarks' checks
    split a row on whitespace."""

    def sql(self, statements: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [*self._client_args(database), "-At", "-F", "\t", "-c", statements],
            check=True,
            capture_output=True,
            text=True,
            env=self._env(),
        )
        return done.stdout


Server = ThrowawayMariaDB | BenchPostgreSQL


def start_server(kind: ServerKind) -> Server:
    if kind == "postgresql":
        server = BenchPostgreSQL.start(in_memory=False)
        assert isinstance(server, BenchPostgreSQL)
        return server
    return ThrowawayMariaDB.start()


def server_kind(server: Server) -> ServerKind:
    return "postgresql" if isinstance(server, BenchPostgreSQL) else "mariadb"


def server_program(server: Server) -> str:
    """The server's program, as the printouts name it."""
    return "postgres" if isinstance(server, BenchPostgreSQL) else "mariadbd"


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state first: utime is [11], cutime [13])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree_cpu_seconds(pid: int) -> float:
    """A process's CPU seconds, those of its children it has reaped, and those of its live children (see above)."""
    own = _stat(pid)
    ticks = sum(int(own[k]) for k in (11, 12, 13, 14))
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):  # exited meanwhile: counted once reaped
            continue
        if int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


def server_cpu_seconds(server: Server) -> float:
    """The server's CPU seconds so far (user + system): mariadbd's, or the postmaster's and its children's."""
    if isinstance(server, BenchPostgreSQL):
        return process_tree_cpu_seconds(server.process.pid)
    return mariadbd_cpu_seconds(server)
