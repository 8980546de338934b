"""A real PostgreSQL server for the tests, started from Debian's `postgresql` package.

`initdb` in a temporary directory, `pg_ctl start` on a free loopback port with the socket in
that directory, as an unprivileged user (`nobody` when the tests run as root: PostgreSQL
refuses to run as root). Durability settings are off (`fsync=off`): the tests prove behaviour,
not crash safety of PostgreSQL itself. Each test gets a database of its own
(`PgServer.new_database()`).

No server binaries: the tests that need one are skipped on a developer machine, and fail when
`CI` is set (`.ci/run` installs the package; a missing server must not pass as green).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PORT_ATTEMPTS = 3


def find_bin_dir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PgServer:
    bin_dir: Path
    data: Path
    port: int
    as_user: list[str]
    _names: Iterator[int] = field(default_factory=itertools.count)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, check=check, timeout=60
        )

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        done = self.run(
            str(self.bin_dir / "psql"),
            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", statement,
        )  # fmt: skip
        return done.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)


def start_server() -> Iterator[PgServer]:
    """Start a server for the session; stop and remove it afterwards."""
    from tests.ports import free_port

    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must not skip the PostgreSQL tests")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="proxy-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    server = PgServer(bin_dir, data, free_port(), as_user)
    server.run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
        "-E", "UTF8", "--no-sync", "--no-instructions",
    )  # fmt: skip
    # PostgreSQL must be told its port; one taken in the moment before it bound it (it logs
    # "Address already in use" and pg_ctl fails) is replaced by another, a few times.
    log_path = root / "log"
    for attempt in range(1, PORT_ATTEMPTS + 1):
        logged = log_path.stat().st_size if log_path.exists() else 0
        options = (
            f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        started = server.run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log_path),
            "-w", "-t", "60", "start", check=False,
        )  # fmt: skip
        if started.returncode == 0:
            break
        log = log_path.read_bytes() if log_path.exists() else b""
        if b"Address already in use" not in log[logged:] or attempt == PORT_ATTEMPTS:
            text = log.decode(errors="replace")
            pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{text}")
        server.port = free_port()
    try:
        yield server
    finally:
        server.run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop",
                   check=False)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
