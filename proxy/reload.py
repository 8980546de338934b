"""Reloading `proxy.yaml` while serving: on SIGHUP, and with `run --watch` when the file changes.

The file is read and checked exactly as at start-up. Invalid: every problem is logged with its
field path and the running configuration stays. Valid: the data plane swaps in the new
connections, credentials, routes, clients and policies at once (`DataPlane.reload`); a request
already in flight keeps the forwarder it started with, so it finishes on the old configuration.
OAuth 2.0 credentials are adopted again by the token manager, whose descent rule keeps a stored
(refreshed) token attached while the file's token is unchanged (docs/request-path.md).

What needs new sockets or a new store (`listen`, `admin`, `store`) is not changed by a reload;
a change there is logged as needing a restart. Reloads never run concurrently: one that is asked
for while another runs starts once it is done, so the last version of the file always wins.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .config.load import ConfigInvalid, Runtime, load_runtime

if TYPE_CHECKING:
    from .app import DataPlane

log = logging.getLogger("signing_proxy.reload")

# Settings bound at start-up: sockets, the store, the admin app.
_RESTART_ONLY = ("listen", "admin", "store", "organisation_id", "templates")


class Reloader:
    """Re-reads the config file for one data plane; see the module docstring."""

    def __init__(self, path: str, plane: DataPlane) -> None:
        self.path = path
        self.plane = plane
        self._lock = asyncio.Lock()
        self.generation = 0  # successful reloads so far

    async def reload(self) -> bool:
        """Read, check and apply the file; False (and every problem logged) when invalid."""
        async with self._lock:
            try:
                runtime = await asyncio.to_thread(load_runtime, self.path)
            except ConfigInvalid as exc:
                for problem in exc.problems:
                    log.error(
                        "reload refused: %s",
                        problem,
                        extra={"event": "reload_failed", "field": problem.field},
                    )
                log.error(
                    "reload refused: %d problem(s) in %s; the running configuration stays",
                    len(exc.problems),
                    self.path,
                    extra={"event": "reload_failed"},
                )
                return False
            old = self.plane.runtime
            await self.plane.reload(runtime)
            for warning in runtime.warnings:
                log.warning(
                    "config warning: %s",
                    warning,
                    extra={"event": "config_warning", "field": warning.field},
                )
            self.generation += 1
            self._report(old, runtime)
            return True

    def _report(self, old: Runtime, new: Runtime) -> None:
        before = {c.name: c for c in old.connections}
        after = {c.name: c for c in new.connections}
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        kept = after.keys() & before.keys()
        changed = sorted(n for n in kept if after[n].model != before[n].model)
        log.info(
            "config reloaded: %d connection(s); added %s, removed %s, changed %s",
            len(after),
            added or "none",
            removed or "none",
            changed or "none",
            extra={"event": "reload", "added": added, "removed": removed, "changed": changed},
        )
        for setting in _RESTART_ONLY:
            if getattr(old.config, setting) != getattr(new.config, setting):
                log.warning(
                    "reload: %s changed; it takes effect at the next restart",
                    setting,
                    extra={"event": "reload_restart_needed", "setting": setting},
                )

    async def watch(self) -> None:
        """Reload whenever the file changes (`run --watch`), until cancelled."""
        async for _ in watch_file(self.path):
            await self.reload()


# The directory is watched, not the file: editors and `kubectl` replace a file by renaming
# another over it, which a watch on the old inode would miss.
async def watch_file(path: str) -> AsyncIterator[None]:
    """Yield once per change of the file at `path` (an editor's rename-and-replace included)."""
    from watchfiles import awatch

    target = Path(path).resolve()
    async for _ in awatch(target.parent, watch_filter=_concerning(target), debounce=200, step=50):
        yield


def watch_file_blocking(path: str, stop: threading.Event) -> Iterator[None]:
    """`watch_file` for a thread; ends when `stop` is set."""
    from watchfiles import watch

    target = Path(path).resolve()
    for _ in watch(
        target.parent, watch_filter=_concerning(target), debounce=200, step=50, stop_event=stop
    ):
        yield


def _concerning(target: Path) -> Callable[[object, str], bool]:
    def concerns(_: object, changed: str) -> bool:
        return Path(changed).name == target.name

    return concerns
