"""Real `signing-proxy run` processes and a real small file system, for the store's fault tests.

- `small_filesystem()`: a tmpfs of a few MiB mounted for the test (a loop-mounted ext4 image
  where tmpfs cannot be mounted); `fill()` takes every free byte, `free()` gives them back,
  `read_only()` remounts it read-only. Needs root: not root → skip; root and the mount fails →
  the test fails (CI runs as root and must run these).
- `failing_ext4()`: an ext4 image on a loop device mounted `errors=remount-ro`, whose `fs_error()`
  makes the kernel record a file system error, abort the journal and turn the mount read-only
  under the running proxy (the way a store goes read-only in production), and whose `repair()`
  is what an operator does after: unmount, `e2fsck -fy`, mount again.
- `ProxyProcess`: one `python -m proxy run` on a config tree, with plain HTTP helpers.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ports import free_port

PORT_ATTEMPTS = 3  # starts of a ProxyProcess whose port was taken before it could bind it


@dataclass
class SmallFs:
    path: Path

    def fill(self) -> None:
        """Write a filler file until the file system says ENOSPC."""
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 512):  # then the bytes smaller than a big chunk
                with suppress(OSError):
                    while os.write(fd, b"\0" * size):
                        pass
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.path).free < 64 * 1024

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


@contextmanager
def small_filesystem(size_mib: int = 16) -> Iterator[SmallFs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    where = Path(tempfile.mkdtemp(prefix="proxy-smallfs-"))
    image: Path | None = None
    tmpfs = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if tmpfs.returncode != 0:
        image = where.with_suffix(".img")
        with open(image, "wb") as out:
            out.truncate(size_mib * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        loop = subprocess.run(
            ["mount", "-o", "loop", str(image), str(where)], capture_output=True, text=True
        )
        if loop.returncode != 0:
            pytest.fail(
                f"running as root but neither tmpfs ({tmpfs.stderr.strip()}) nor a loop "
                f"device ({loop.stderr.strip()}) could be mounted"
            )
    try:
        yield SmallFs(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with suppress(OSError):
            where.rmdir()
        if image is not None:
            image.unlink(missing_ok=True)


@dataclass
class FailingExt4(SmallFs):
    device: str  # /dev/loopN
    options: str = "errors=remount-ro"

    def sync(self) -> None:
        """Commit the journal: ext4's abort drops what is not committed yet."""
        subprocess.run(["sync", "-f", str(self.path)], check=True)

    def fs_error(self) -> None:
        """ext4's own test hook (fs/ext4/sysfs.c `trigger_fs_error`): ext4_error() as if the
        kernel had found a corrupt block, so `errors=remount-ro` turns the mount read-only."""
        trigger = Path("/sys/fs/ext4") / Path(self.device).name / "trigger_fs_error"
        trigger.write_text("1\n")
        wait_for(self.is_read_only, 10, "ext4 to remount itself read-only")

    def is_read_only(self) -> bool:
        try:
            (self.path / "probe").touch()
        except OSError as exc:
            return exc.errno == errno.EROFS
        (self.path / "probe").unlink()
        return False

    def repair(self) -> None:
        """Unmount, check (exit 1: errors corrected), mount read-write again."""
        subprocess.run(["umount", str(self.path)], check=True)
        fsck = subprocess.run(["e2fsck", "-fy", self.device], capture_output=True, text=True)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
        subprocess.run(["mount", "-o", self.options, self.device, str(self.path)], check=True)


@contextmanager
def failing_ext4(size_mib: int = 16) -> Iterator[FailingExt4]:
    if os.geteuid() != 0:
        pytest.skip("a loop-mounted ext4 needs root (CI runs as root)")
    where = Path(tempfile.mkdtemp(prefix="proxy-ext4-"))
    image = where.with_suffix(".img")
    device = ""
    try:
        with open(image, "wb") as out:
            out.truncate(size_mib * 1024 * 1024)
        steps = [["mkfs.ext4", "-q", "-F", str(image)], ["losetup", "-f", "--show", str(image)]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"running as root but {step[0]} failed: {done.stderr.strip()}")
        device = done.stdout.strip()
        fs = FailingExt4(where, device)
        mount = subprocess.run(
            ["mount", "-o", fs.options, device, str(where)], capture_output=True, text=True
        )
        if mount.returncode != 0:
            pytest.fail(f"running as root but {device} could not be mounted: {mount.stderr}")
        if not (Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error").exists():
            pytest.fail("this kernel's ext4 has no trigger_fs_error in /sys/fs/ext4/<device>/")
        yield fs
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        if device:
            subprocess.run(["losetup", "-d", device], capture_output=True)
        with suppress(OSError):
            where.rmdir()
        image.unlink(missing_ok=True)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx comes back as it is


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request, no redirects followed; any status comes back as a `Reply`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the connection: closed here, not by the garbage collector
            return Reply(exc.code, exc.read(), dict(exc.headers))


class ProxyProcess:
    """`python -m proxy run --config <dir>/proxy.yaml` with `tree` (listen ports filled in).

    The ports are named in the file (`free_port()`), not read back from the log: a restarted
    proxy must come back on the same address for the tests, and the load balancer of the replica
    tests points at one. A start whose port was taken in the moment before the proxy bound it is
    retried on new ports (the ones the test did not choose itself)."""

    def __init__(
        self,
        workdir: Path,
        tree: dict[str, Any],
        *,
        admin: bool = True,
        admin_port: int | None = None,
    ) -> None:
        self._fixed_admin_port = admin_port
        self.port = free_port()
        self.admin_port = (admin_port or free_port()) if admin else None
        tree = {"listen": f"127.0.0.1:{self.port}", **tree}
        if admin:
            tree["admin"] = {"listen": f"127.0.0.1:{self.admin_port}", **tree.get("admin", {})}
        self.config = workdir / f"proxy-{self.port}.yaml"
        self.config.write_text(yaml.safe_dump(tree))
        self.log = workdir / f"proxy-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # Both bound a broken proxy only: on a loaded 2-core machine a start or a drain that
    # closes the store takes seconds.
    def start(self, timeout: float = 60.0) -> ProxyProcess:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            logged = self.log.stat().st_size if self.log.exists() else 0
            if self._start(timeout):
                return self
            taken = b"Address already in use" in self.log.read_bytes()[logged:]
            if not taken or attempt == PORT_ATTEMPTS:
                raise AssertionError(f"the proxy exited: {self.output()}")
            self._move()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> bool:
        """Start and wait until ready: True; False if the proxy exits first."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with suppress(OSError):
                if http("GET", self.base + "/healthz", timeout=1.0).status == 200:
                    return True
            time.sleep(0.05)
        raise AssertionError(f"the proxy did not become ready: {self.output()}")

    def _move(self) -> None:
        """New ports in the config file as it is now (a test may have edited the rest)."""
        tree = yaml.safe_load(self.config.read_text())
        self.port = free_port()
        tree["listen"] = f"127.0.0.1:{self.port}"
        if self.admin_port is not None:
            self.admin_port = self._fixed_admin_port or free_port()
            tree["admin"]["listen"] = f"127.0.0.1:{self.admin_port}"
        self.config.write_text(yaml.safe_dump(tree))

    def get(self, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> Reply:
        return http("GET", self.base + path, timeout=timeout, headers=headers)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def readyz(self) -> Reply:
        return http("GET", self.admin + "/readyz")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
