"""A real small file system for the store's fault tests, and a deadline wait for plain code.

- `small_filesystem()`: a tmpfs of a few MiB mounted for the test (a loop-mounted ext4 image
  where tmpfs cannot be mounted); `fill()` takes every free byte, `free()` gives them back,
  `read_only()` remounts it read-only. Needs root: not root → skip; root and the mount fails →
  the test fails (CI runs as root and must run these).
- `failing_ext4()`: an ext4 image on a loop device mounted `errors=remount-ro`, whose `fs_error()`
  makes the kernel record a file system error, abort the journal and turn the mount read-only
  under the running proxy (the way a store goes read-only in production), and whose `repair()`
  is what an operator does after: unmount, `e2fsck -fy`, mount again.
- `wait_for()`: until a condition holds, within a deadline.

The proxy processes these tests run are `tests.proxyproc.ProxyProcess.on_tree()`.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


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


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
