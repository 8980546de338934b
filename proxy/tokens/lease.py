"""`RefreshLease`: single flight of a token call across the processes sharing a store.

Inside a process, one task per credential makes the token call (`manager.py`, `oauth1.py`);
across processes (`run --workers N`, replicas) the store's refresh lease for the credential
decides which one does. The others poll: each round they first ask whether the work is done
already (another process stored a newer token), then try the lease again — lock, then re-check
(aiohttp cookbook); the holder re-checks under the lease too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from ..store import Store, StoreError, StoreUnavailable, lease_owner

log = logging.getLogger("signing_proxy.tokens")

POLL = 0.05  # seconds between two attempts at a lease another process holds


class LeaseBusy(Exception):
    """Another process held the lease longer than the caller waits."""


class RefreshLease:
    """The store's refresh leases, taken in the name of this process (`lease_owner`).

    Args:
        store: holds the leases.
        ttl: seconds a lease lasts unless renewed (`renewed()` renews it every third of that),
            so a stalled or killed holder blocks the others for at most this long.
    """

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.owner = lease_owner(secrets.token_hex(6))

    def __repr__(self) -> str:
        return f"RefreshLease(ttl={self.ttl})"

    async def take(self, cid: str, *, wait: float, settled: Callable[[], Awaitable[bool]]) -> bool:
        """Take the lease of credential `cid`: True once held; False as soon as `settled()`
        (asked before each attempt) says another process has done the work meanwhile.

        Raises:
            LeaseBusy: still held by another process after `wait` seconds.
        """
        deadline = time.monotonic() + wait
        while True:
            if await settled():
                return False
            if await self.store.acquire_refresh_lease(cid, self.owner, self.ttl):
                return True
            if time.monotonic() > deadline:
                raise LeaseBusy(cid)
            await asyncio.sleep(POLL)

    async def release(self, cid: str) -> None:
        try:
            await self.store.release_refresh_lease(cid, self.owner)
        except StoreUnavailable:
            pass  # it runs out by itself; the write retry releases it once it can

    @contextlib.asynccontextmanager
    async def renewed(self, cid: str) -> AsyncIterator[None]:
        """Hold the lease taken by `take()` while the body runs (renewed), then release it."""
        renewal = asyncio.create_task(self._renew(cid), name="refresh-lease-renewal")
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await self.release(cid)

    async def _renew(self, cid: str) -> None:
        # The lease is the single flight, not the fence: losing it (stalled past it) is safe,
        # the fenced write then refuses our late token.
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if not await self.store.acquire_refresh_lease(cid, self.owner, self.ttl):
                    log.warning("credential %s: refresh lease lost to another process", cid)
                    return
            except StoreError:
                return
