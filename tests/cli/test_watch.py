"""`run --watch` follows every update of the config file, however it is replaced, and a burst of
SIGHUPs under load fails no request (docs/operations.md, "Reload").

The proxy runs as a real process in front of the upstream of `tests/cli/reloading.py`, which
answers with the Authorization it received: the bearer token in the file is the config in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from proxy.cli.filewatch import ChangeDetector, content_digest, watch_file
from tests.cli.reloading import Proxy, config, load, running, upstream, write  # noqa: F401

IN_FORCE_WITHIN = 5.0  # seconds: "a few"
UPDATES = 5


class ConfigMapVolume:
    """A directory laid out and updated as the kubelet writes a ConfigMap or Secret volume
    (kubernetes pkg/volume/util/atomic_writer.go): the data in `..<timestamp>/`, the symlink
    `..data` to it, and `proxy.yaml -> ..data/proxy.yaml`. An update writes a new timestamped
    directory, renames a new `..data` symlink over the old one, then deletes the old directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "proxy.yaml"
        self._updates = 0
        root.mkdir()

    def update(self, text: str) -> None:
        self._updates += 1
        fresh = self.root / f"..2026_12_07_13_00_00.{self._updates:09d}"
        fresh.mkdir()
        (fresh / "proxy.yaml").write_text(text, encoding="utf-8")
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        (self.root / "..data_tmp").symlink_to(fresh.name)
        os.replace(self.root / "..data_tmp", data)
        if not self.file.is_symlink():
            self.file.symlink_to("..data/proxy.yaml")
        if old is not None:
            shutil.rmtree(self.root / old)


class ReplacedDirectory:
    """The config's directory moved aside and a new one moved into its place (a deploy tool
    that stages a whole directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "conf" / "proxy.yaml"

    def update(self, text: str) -> None:
        staged = self.root / "conf.new"
        staged.mkdir()
        (staged / "proxy.yaml").write_text(text, encoding="utf-8")
        current = self.root / "conf"
        if current.exists():
            current.rename(self.root / "conf.old")
        staged.rename(current)
        shutil.rmtree(self.root / "conf.old", ignore_errors=True)


class RenameOver:
    """An editor's save: write a new file beside it, rename it over the old one."""

    def __init__(self, root: Path) -> None:
        self.file = root / "proxy.yaml"

    def update(self, text: str) -> None:
        partial = self.file.with_name(".proxy.yaml.swp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.file)


class InPlace:
    """Written into the same inode (`cat > proxy.yaml`, some editors)."""

    def __init__(self, root: Path) -> None:
        self.file = root / "proxy.yaml"

    def update(self, text: str) -> None:
        with open(self.file, "w", encoding="utf-8") as file:
            file.write(text)


Layout = Callable[[Path], ConfigMapVolume | ReplacedDirectory | RenameOver | InPlace]


def yaml_text(base: str, token: str) -> str:
    return yaml.safe_dump(config(base, {"api": token}), sort_keys=False)


async def in_force(
    proxy: Proxy, token: str, within: float = IN_FORCE_WITHIN, everywhere: bool = False
) -> float:
    """Seconds until the proxy signs with `token`; fails after `within`. `everywhere`: on six
    requests in a row, each on a new client connection (the kernel spreads those over the
    workers, which reload each on its own signal)."""
    started = time.monotonic()
    in_a_row = 0
    while in_a_row < (6 if everywhere else 1):
        headers = {"Connection": "close"} if everywhere else {}
        async with proxy.session.get(proxy.base + "/api/x", headers=headers) as response:
            answer = (response.status, await response.text())
        if answer == (200, f"Bearer {token}"):
            in_a_row += 1
            continue
        in_a_row = 0
        elapsed = time.monotonic() - started
        assert elapsed < within, f"{token} not in force after {elapsed:.1f}s: {answer}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("layout", [ConfigMapVolume, ReplacedDirectory, RenameOver, InPlace])
@pytest.mark.parametrize("workers", [1, 2])
async def test_every_update_is_in_force_within_seconds(
    upstream: str,  # noqa: F811
    tmp_path: Path,
    layout: Layout,
    workers: int,
) -> None:
    volume = layout(tmp_path / "mount" if layout is ConfigMapVolume else tmp_path)
    volume.update(yaml_text(upstream, "token-0"))
    extra = ["--watch", *(["--workers", str(workers)] if workers > 1 else [])]
    async with running(volume.file, *extra) as proxy:
        assert await proxy.get("/api/x") == (200, "Bearer token-0")
        for update in range(1, UPDATES + 1):
            volume.update(yaml_text(upstream, f"token-{update}"))
            await in_force(proxy, f"token-{update}", everywhere=workers > 1)
    log = proxy.stderr.decode()
    assert log.count("config reloaded") == UPDATES * workers, log
    assert "reload refused" not in log


async def test_twenty_sighups_in_two_seconds_under_load(
    upstream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"api": "token-0"}))
    async with running(path) as proxy:
        answers: list[tuple[int, str]] = []
        signals_over = asyncio.Event()
        loaders = [
            asyncio.ensure_future(load(proxy, answers, signals_over, most=5000)) for _ in range(4)
        ]
        for signal_number in range(1, 21):
            write(path, config(upstream, {"api": f"token-{signal_number}"}))
            proxy.hangup()
            await asyncio.sleep(0.1)
        signals_over.set()
        await asyncio.wait_for(asyncio.gather(*loaders), 20)
        # The last config is in force, and stays: no late reload of an older file.
        await in_force(proxy, "token-20")
        await asyncio.sleep(0.5)
        assert await proxy.get("/api/x") == (200, "Bearer token-20")
    assert len(answers) >= 40
    assert {status for status, _ in answers} == {200}
    assert {body for _, body in answers} <= {f"Bearer token-{n}" for n in range(21)}
    reloads = proxy.stderr.decode().count("config reloaded")
    assert 1 <= reloads <= 20


def test_a_change_is_reported_once_it_holds_still() -> None:
    detector = ChangeDetector(b"one")
    assert not detector.observe(b"one")
    assert not detector.observe(b"two")  # seen once: perhaps half-written
    assert detector.observe(b"two")  # still there: reported
    assert not detector.observe(b"two")  # once
    assert not detector.observe(None)  # missing mid-swap: no change
    assert not detector.observe(b"two")  # back as it was: nothing to report
    assert not detector.observe(b"three")
    assert not detector.observe(b"four")  # changed again before settling
    assert detector.observe(b"four")


async def test_the_watch_follows_a_configmap_through_every_update(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "mount")
    volume.update("version: 0\n")
    loaded = content_digest(str(volume.file))
    seen: list[bytes | None] = []

    async def follow() -> None:
        async for _ in watch_file(str(volume.file), loaded, interval=0.02):
            seen.append(content_digest(str(volume.file)))

    follower = asyncio.ensure_future(follow())
    try:
        for update in range(1, UPDATES + 1):
            volume.update(f"version: {update}\n")
            deadline = time.monotonic() + IN_FORCE_WITHIN
            while len(seen) < update:
                assert time.monotonic() < deadline, f"update {update} not seen"
                await asyncio.sleep(0.01)
    finally:
        follower.cancel()
    assert seen == [content_digest_of(f"version: {n}\n") for n in range(1, UPDATES + 1)]


def content_digest_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()
