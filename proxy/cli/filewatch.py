"""Following one file for `run --watch`: every change, through every kind of replacement.

A config file changes in many ways: written in place; an editor's write-then-rename; a
Kubernetes ConfigMap or Secret volume, where the file is a symlink into `..data`, itself a
symlink to a timestamped directory that every update replaces (a new `..data` renamed over the
old one, the old directory deleted); a whole directory moved over another. An inotify watch is
bound to an inode or a directory that these replacements retire, so a watch set up once follows
the first update and then none.

So the file is polled: every `interval` its path is opened afresh (every symlink resolved again
from the top) and the digest of its content compared with the one last reported. A change is
reported once the new content has held still for one more interval, so a file written in place
is not read half-written. A missing file (between a directory's removal and its replacement) is
no change. The cost is one open and read of a small file per interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator

INTERVAL = 0.25  # seconds between looks; a change is reported within two


def content_digest(path: str) -> bytes | None:
    """SHA-256 of the file's content, following every symlink; None when it cannot be read."""
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").digest()
    except OSError:
        return None


class ChangeDetector:
    """Pure: told the digest seen at each look, says when a settled change is to be reported."""

    def __init__(self, initial: bytes | None) -> None:
        self._reported = initial
        self._candidate: bytes | None = None

    def observe(self, digest: bytes | None) -> bool:
        if digest is None or digest == self._reported:
            self._candidate = None
            return False
        if digest != self._candidate:
            self._candidate = digest  # new content: report it if it is still there next time
            return False
        self._reported, self._candidate = digest, None
        return True


async def watch_file(
    path: str, loaded: bytes | None = None, interval: float = INTERVAL
) -> AsyncIterator[None]:
    """Yield once per settled change of the file at `path`, until cancelled.

    `loaded` is the digest of the content in force, taken before it was read (a change made
    since is then reported); by default, the content when the watch starts."""
    detector = ChangeDetector(loaded or await asyncio.to_thread(content_digest, path))
    while True:
        await asyncio.sleep(interval)
        if detector.observe(await asyncio.to_thread(content_digest, path)):
            yield


def watch_file_blocking(
    path: str, stop: threading.Event, loaded: bytes | None = None, interval: float = INTERVAL
) -> Iterator[None]:
    """`watch_file` for a thread; ends when `stop` is set."""
    detector = ChangeDetector(loaded or content_digest(path))
    while not stop.wait(interval):
        if detector.observe(content_digest(path)):
            yield
