"""A throwaway MariaDB server in a temporary directory, on loopback, for tests and benchmarks."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SHARED_DUMP = Path(__file__).resolve().parents[2].parent / "shared" / "moodle" / "moodle-4.5-mariadb-fresh.sql.gz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tmpfs() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _find(binary: str, *fallbacks: str) -> str:
    for name in (binary, *fallbacks):
        found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
        if found:
            return found
    raise RuntimeError(f"{binary} not found: install the MariaDB server (apt-get install -y mariadb-server)")


@dataclass
class ThrowawayMariaDB:
    """One mariadbd process owning a temporary data directory; `stop()` removes everything."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    client: str
    in_memory: bool = False
    # The account tests connect with over TCP (root has the socket only).
    user: str = "toolsync"
    password: str = "toolsync"

    def restart_if_dead(self) -> bool:
        """Start a new server in place of one that died (MariaDB 10.11 was seen to segfault once in a DESCRIBE while
        a test database was built); True when it did. What the dead one held is gone: callers build again."""
        if self.process.poll() is None:
            return False
        self.stop()
        fresh = ThrowawayMariaDB.start(in_memory=self.in_memory)
        self.root, self.port, self.process = fresh.root, fresh.port, fresh.process
        return True

    @classmethod
    def start(cls, *, in_memory: bool = False) -> ThrowawayMariaDB:
        """in_memory: the data directory on a tmpfs (/dev/shm) when the machine has one, as the tests want (a dump
        loads in about 1 s instead of 4-5 s); benchmarks keep the disk, whose cost is part of what they measure."""
        root = Path(tempfile.mkdtemp(prefix="toolsync-mariadb-", dir=_tmpfs() if in_memory else None))
        datadir = root / "data"
        install_db = _find("mariadb-install-db", "mysql_install_db")
        user_args = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                install_db,
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user_args,
            ],
            check=True,
            capture_output=True,
        )
        port = _free_port()
        # Its own folder for temporary tables: the machine's /tmp is shared with whatever else cleans it (a temporary
        # table's file deleted under the server fails the statement with "Error on delete of '/tmp/#sql-...'").
        (root / "tmp").mkdir()
        process = subprocess.Popen(
            [
                _find("mariadbd", "mysqld"),
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={root / 'mysqld.sock'}",
                f"--pid-file={root / 'mysqld.pid'}",
                f"--tmpdir={root / 'tmp'}",
                "--bind-address=127.0.0.1",
                f"--port={port}",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=512M",
                "--innodb-doublewrite=0",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-allowed-packet=64M",
                f"--log-error={root / 'error.log'}",
                # On a tmpfs, asynchronous I/O (io_uring) buys nothing: plain I/O is one ingredient fewer.
                *(["--innodb-use-native-aio=0"] if in_memory else []),
                *user_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(root=root, port=port, process=process, client=_find("mariadb", "mysql"), in_memory=in_memory)
        server._wait_ready()
        server.sql(
            f"CREATE USER '{server.user}'@'127.0.0.1' IDENTIFIED BY '{server.password}';"
            f"GRANT ALL ON *.* TO '{server.user}'@'127.0.0.1';"
        )
        return server

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd exited early:\n{log}")
            probe = subprocess.run([*self._client_args(), "-e", "SELECT 1"], capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("mariadbd did not become ready in time")

    def _client_args(self, database: str | None = None) -> list[str]:
        args = [self.client, "--no-defaults", f"--socket={self.root / 'mysqld.sock'}", "-uroot"]
        return [*args, database] if database else args

    def sql(self, statements: str, database: str | None = None) -> str:
        done = subprocess.run(
            [*self._client_args(database), "-N", "-e", statements], check=True, capture_output=True, text=True
        )
        return done.stdout

    def create_database(self, name: str) -> None:
        self.sql(
            f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )

    def load_dump(self, name: str, dump: Path = SHARED_DUMP) -> None:
        self.create_database(name)
        # gzip objects have the compressed file's descriptor, so the SQL is piped in as bytes.
        subprocess.run(
            self._client_args(name), input=gzip.decompress(dump.read_bytes()), check=True, capture_output=True
        )

    def url(self, database: str) -> str:
        return f"mysql+aiomysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
