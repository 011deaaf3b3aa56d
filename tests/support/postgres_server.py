"""A throwaway PostgreSQL server in a temporary directory, on loopback, for tests and benchmarks.

Debian's `postgresql` package brings the binaries (/usr/lib/postgresql/<version>/bin); `initdb` makes a cluster in a
temporary folder, `postgres` serves it on 127.0.0.1 only. PostgreSQL refuses to run as root: as root, the cluster
belongs to the package's `postgres` account and its programs run as that account (runuser).

The real dump is loaded once per server into a template database; each test database is a copy of it
(`CREATE DATABASE ... TEMPLATE`, a file copy: milliseconds instead of the dump's seconds).
"""

from __future__ import annotations

import gzip
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.mariadb_server import _free_port, _tmpfs

SHARED_PG_DUMP = Path(__file__).resolve().parents[2].parent / "shared" / "moodle" / "moodle-4.5-postgres-fresh.sql.gz"
DUMP_TEMPLATE = "moodle_dump_template"
SERVICE_ACCOUNT = "postgres"  # Debian's package creates it; the cluster's owner when the suite runs as root


def postgres_bin(program: str) -> str:
    """A PostgreSQL program: on PATH, or the newest under Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(program)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for directory in versions:
        if (directory / program).exists():
            return str(directory / program)
    raise RuntimeError(f"{program} not found: install the PostgreSQL server (apt-get install -y postgresql)")


def _as_owner() -> dict[str, str]:
    """Popen's arguments that run a server program as the cluster's owner: none, or the package's account as root."""
    return {"user": SERVICE_ACCOUNT, "group": SERVICE_ACCOUNT} if os.geteuid() == 0 else {}


@dataclass
class ThrowawayPostgreSQL:
    """One `postgres` process owning a temporary cluster; `stop()` removes everything."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    user: str = "toolsync"
    password: str = "toolsync"
    templates: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, *, in_memory: bool = False) -> ThrowawayPostgreSQL:
        """in_memory: the cluster on a tmpfs (/dev/shm) when the machine has one, as the tests want; benchmarks keep
        the disk, whose cost is part of what they measure."""
        root = Path(tempfile.mkdtemp(prefix="toolsync-postgres-", dir=_tmpfs() if in_memory else None))
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVICE_ACCOUNT)
            os.chown(root, account.pw_uid, account.pw_gid)
        root.chmod(0o700)
        data = root / "data"
        secret = root / "password"
        secret.write_text("toolsync\n")
        if os.geteuid() == 0:
            os.chown(secret, pwd.getpwnam(SERVICE_ACCOUNT).pw_uid, -1)
        subprocess.run(
            [
                postgres_bin("initdb"),
                f"--pgdata={data}",
                "--username=toolsync",
                f"--pwfile={secret}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",  # as the dump's site was installed
            ],
            check=True,
            capture_output=True,
            **_as_owner(),
        )
        port = _free_port()
        process = subprocess.Popen(
            [
                postgres_bin("postgres"),
                "-D",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={root}",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=256MB",
                # A throwaway cluster: durability is not what the tests or benchmarks measure on it.
                *(["-c", "fsync=off", "-c", "full_page_writes=off"] if in_memory else []),
                "-c",
                "synchronous_commit=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "server.log", "wb"),  # noqa: SIM115 - the process keeps it open
            **_as_owner(),
        )
        server = cls(root=root, port=port, process=process)
        server._wait_ready()
        return server

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited early:\n{log}")
            probe = subprocess.run(
                [*self._client_args("postgres"), "-c", "SELECT 1"], capture_output=True, env=self._env()
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("postgres did not become ready in time")

    def _client_args(self, database: str) -> list[str]:
        return [
            postgres_bin("psql"),
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
        ]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}

    def sql(self, statements: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [*self._client_args(database), "-At", "-c", statements],
            check=True,
            capture_output=True,
            text=True,
            env=self._env(),
        )
        return done.stdout

    def create_database(self, name: str, template: str = "template0") -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE "{template}"')

    def load_dump(self, name: str, dump: Path = SHARED_PG_DUMP) -> None:
        """Database `name`: a copy of the real Moodle dump (loaded once into a template, copied from it)."""
        if DUMP_TEMPLATE not in self.templates:
            self.create_database(DUMP_TEMPLATE)
            script = gzip.decompress(dump.read_bytes())
            # pg_dump's \restrict guards, which older psql clients reject, are not SQL: left out.
            lines = [line for line in script.split(b"\n") if not line.startswith((b"\\restrict", b"\\unrestrict"))]
            subprocess.run(
                self._client_args(DUMP_TEMPLATE),
                input=b"\n".join(lines),
                check=True,
                capture_output=True,
                env=self._env(),
            )
            self.templates.add(DUMP_TEMPLATE)
        self.create_database(name, template=DUMP_TEMPLATE)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def restart_if_dead(self) -> bool:
        """Start a new server in place of one that died; True when it did (callers build their databases again)."""
        if self.process.poll() is None:
            return False
        self.stop()
        fresh = ThrowawayPostgreSQL.start(in_memory=True)
        self.root, self.port, self.process, self.templates = fresh.root, fresh.port, fresh.process, set()
        return True

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown: SIGTERM's "smart" one waits for clients to leave
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
