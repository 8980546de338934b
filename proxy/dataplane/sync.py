"""Connections created, updated or deleted through the management API, applied to the live
template routes of every process that serves the data plane (docs/admin-api.md, `run --workers N`).

The admin listener runs in one process (worker 0), but every worker routes requests from its
own `Templates`, and the kernel spreads requests over the workers. The store is the truth:
every connection write bumps `connections_revision` in the same transaction, and each process's
`ConnectionSync`:
- is told of a change at once when the store can push (PostgreSQL LISTEN/NOTIFY: replicas on
  other machines), and polls the revision otherwise (every `interval`, 1 s; with push, every
  `PUSHED_INTERVAL` as a safety net for a notification lost while reconnecting). When the
  revision moved, it reloads the API-created
  connections and applies the difference: new and changed ones are served (their OAuth 2.0
  credentials adopted first), removed ones withdrawn (their tokens forgotten), so a deleted
  credential stops being used everywhere within about a second;
- checks once more before a template route answers 404 to an unknown `X-Connection-Id`
  (`catch_up`), so a connection created a moment ago serves at once in every worker. Such checks
  are at most one per `min_gap` (100 ms) per process: unknown ids cannot hammer the store.

`serve_connection` and `withdraw_connection` are the one way a connection starts or stops
serving: the management API uses them in its own process, the reload everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from ..connections.compiled import CompiledConnection
from ..connections.templates import TemplateRoute, Templates, compile_stored, stored_model
from ..store import ConnectionStore, StoredConnection
from ..tokens.manager import TokenManager

log = logging.getLogger("signing_proxy.sync")

SYNC_INTERVAL = 1.0  # seconds between revision checks
MIN_CHECK_GAP = 0.1  # seconds between checks prompted by unknown connection ids
PUSHED_INTERVAL = 10.0  # seconds between revision checks when the store pushes changes


def credential_ids(connection: CompiledConnection) -> set[str]:
    return {scheme.credential_id for scheme in connection.schemes}


async def serve_connection(
    route: TemplateRoute, tokens: TokenManager, connection: CompiledConnection
) -> None:
    """Adopt the connection's OAuth 2.0 credentials, then serve it (replacing the one with its
    id); tokens of credentials the replaced connection had and this one has not are forgotten,
    unless another connection still carries them (one credential id, one credential)."""
    await tokens.adopt_connection(connection)  # the new credential's seed wins
    old = route.add(connection)
    if old is not None:
        await tokens.release(old.id, credential_ids(old) - credential_ids(connection))


async def withdraw_connection(
    templates: Templates, tokens: TokenManager, connection: CompiledConnection
) -> None:
    """Stop serving a deleted connection, then forget the tokens of its credentials that no
    other connection carries."""
    route = _route_of(templates, connection)
    if route is not None:
        route.discard(connection.id)
    await tokens.release(connection.id, credential_ids(connection))


def _route_of(templates: Templates, connection: CompiledConnection) -> TemplateRoute | None:
    template_id = connection.model.connection_template_id
    return templates.get(template_id) if template_id else None


class ConnectionSync:
    """Keeps one process's template routes equal to the connections in the store.

    Args:
        interval: seconds between revision checks in the background.
        min_gap: least seconds between two checks prompted by unknown ids.
    """

    def __init__(
        self,
        store: ConnectionStore,
        templates: Templates,
        tokens: TokenManager,
        *,
        interval: float = SYNC_INTERVAL,
        min_gap: float = MIN_CHECK_GAP,
    ) -> None:
        self.store = store
        self.templates = templates
        self.tokens = tokens
        self.interval = interval
        self.min_gap = min_gap
        self._revision: int | None = None
        self._checked_at = -math.inf  # time.monotonic() when the last check began
        self._gate = asyncio.Lock()  # one check at a time
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set by the store's push
        self._pushed = False

    def __repr__(self) -> str:
        return f"ConnectionSync(revision={self._revision}, interval={self.interval})"

    async def start(self) -> None:
        """Serve what the store holds now, then follow it (nothing to follow without templates)."""
        await self.check()
        if not self.templates.routes:
            return
        for route in self.templates.routes.values():
            route.catch_up = self.catch_up
        try:
            self._pushed = await self.store.watch_connections(self._wake.set)
        except Exception as exc:
            log.warning("connection push unavailable (%s); polling", type(exc).__name__)
        if self._pushed:
            log.info("connection changes are pushed by the store (LISTEN/NOTIFY)")
        self._task = asyncio.create_task(self._follow(), name="connection-sync")

    async def stop(self) -> None:
        for route in self.templates.routes.values():
            route.catch_up = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check(self) -> bool:
        """Reload when the store's revision moved since the last check; True when it had."""
        async with self._gate:
            return await self._check()

    async def catch_up(self) -> None:
        """Make sure a check that began after this call has run, waiting out `min_gap`.

        Callers that arrive together share one check; a failing store is logged and leaves the
        routes as they are (the caller answers from them).
        """
        arrived = time.monotonic()
        async with self._gate:
            if self._checked_at > arrived:
                return
            pause = self._checked_at + self.min_gap - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                await self._check()
            except Exception as exc:
                log.warning("connection check failed (%s)", type(exc).__name__)

    async def _follow(self) -> None:
        while True:
            interval = max(self.interval, PUSHED_INTERVAL) if self._pushed else self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self.check()
            except Exception as exc:
                # Type only: the message of a store error may quote a value. Retried next tick.
                log.warning("connection sync failed (%s); retrying", type(exc).__name__)

    async def _check(self) -> bool:
        # Under `changing`: an admin change in this process is never half seen, nor undone by
        # a list read before it.
        async with self.templates.changing:
            self._checked_at = time.monotonic()
            revision = await self.store.connections_revision()
            if revision == self._revision:
                return False
            await self._apply(await self.store.list_connections())
            # Only now: a reload that failed half-way is tried again on the next check.
            self._revision = revision
            return True

    async def _apply(self, stored: list[StoredConnection]) -> None:
        served = {c.id: c for c in self.templates.connections()}
        added = changed = 0
        for record in stored:
            old = served.pop(record.id, None)
            found = stored_model(record, self.templates)
            if found is not None and old is not None and found[1] == old.model:
                continue  # unchanged (or this process made the change)
            compiled = compile_stored(record, found[1]) if found is not None else None
            if found is None or compiled is None:
                route = _route_of(self.templates, old) if old is not None else None
                if route is not None and old is not None:
                    # Not servable here (logged), but still in the store: keep its tokens.
                    route.discard(old.id)
                continue
            await serve_connection(found[0], self.tokens, compiled)
            if old is None:
                added += 1
            else:
                changed += 1
        for gone in served.values():
            await withdraw_connection(self.templates, self.tokens, gone)
        if self._revision is not None and (added or changed or served):
            log.info(
                "connections reloaded from the store: %d new, %d changed, %d removed",
                added,
                changed,
                len(served),
            )
