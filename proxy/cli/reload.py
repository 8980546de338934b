"""Reloading `proxy.yaml` while serving: on SIGHUP, and with `run --watch` when the file changes.

The file is read and checked exactly as at start-up. Invalid: every problem is logged with its
field path and the running configuration stays. Valid: the data plane swaps in the new
connections, credentials, routes, clients and policies at once (`DataPlane.reload`); a request
already in flight keeps the forwarder it started with, so it finishes on the old configuration.
OAuth 2.0 credentials are adopted again by the token manager, whose descent rule keeps a stored
(refreshed) token attached while the file's token is unchanged (docs/request-path.md).

What needs new sockets or a new store (`listen`, `admin`, `store`) is not changed by a reload;
a change there is logged as needing a restart. Reloads never run concurrently: one that is asked
for while another runs starts once it is done, so the last version of the file always wins; the
requests that arrive while one waits to start join it (it reads the file after all of them), so a
burst of SIGHUPs costs two reloads, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..config.load import ConfigInvalid
from ..connections.runtime import Runtime, load_runtime
from .filewatch import watch_file

if TYPE_CHECKING:
    from ..dataplane.plane import DataPlane

log = logging.getLogger("signing_proxy.reload")

# Settings bound at start-up: sockets, the store, the admin app.
_RESTART_ONLY = ("listen", "admin", "store", "organisation_id", "templates")


class Reloader:
    """Re-reads the config file for one data plane; see the module docstring."""

    def __init__(self, path: str, plane: DataPlane, *, loaded: bytes | None = None) -> None:
        self.path = path
        self._loaded = loaded  # digest of the file the running config was read from (--watch)
        self.plane = plane
        self._lock = asyncio.Lock()
        self._waiting: asyncio.Future[bool] | None = None  # asked for, not yet reading the file

    async def reload(self) -> bool:
        """Read, check and apply the file; False (and every problem logged) when invalid.
        The access lines queued so far are written first, valid file or not."""
        self.plane.flush_access_log()
        if self._waiting is None:
            self._waiting = asyncio.ensure_future(self._reload_when_free())
        # Shielded: a caller that stops waiting does not cancel a reload others joined.
        return await asyncio.shield(self._waiting)

    async def _reload_when_free(self) -> bool:
        async with self._lock:
            self._waiting = None  # the file is read from here on: a later request needs a new run
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
        async for _ in watch_file(self.path, self._loaded):
            await self.reload()
