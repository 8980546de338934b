"""Token state: what a process knows about each OAuth 2.0 credential (`CredentialState`), and
the token writes the store refused, kept until a retry commits them (`PendingWrites`).

When the store cannot be written (docs/operations.md): a token the provider issued is kept in
memory, used, and its write retried in the background (backoff, each attempt bounded) until it
commits; while it waits, this process holds the newest token, so it neither reads the store's
older one back nor waits for the store's lease to refresh it again (the old refresh token is
never sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..messages import TokenSet
from ..schemes.oauth2 import ClientAuth, OAuth2Scheme
from ..store import StaleToken, Store, StoredToken, StoreError, StoreUnavailable, TokenHistory
from .lease import RefreshLease

log = logging.getLogger("signing_proxy.tokens")


@dataclass(slots=True)
class CredentialState:
    """What a process knows about one credential, shared by every connection carrying its id;
    `flight` is its refresh while one runs (single flight)."""

    scheme: OAuth2Scheme
    tls: ssl.SSLContext | None
    seed_fingerprint: str
    token: TokenSet | None
    client_auth: ClientAuth | None
    needs_reauthorization: bool = False
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    version: int = 0  # the store's version of `token`: the fence of the next write
    history: TokenHistory = TokenHistory()
    flight: asyncio.Task[TokenSet] | None = None


@dataclass(frozen=True, slots=True)
class WriteRetry:
    """Retries of a token write the store refused: `first`, doubling up to `cap`; each attempt
    may take `attempt_timeout` s (a hung file system must not hold the retry loop forever)."""

    first: float = 0.1
    cap: float = 5.0
    attempt_timeout: float = 10.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.first * 2 ** min(failures, 32)))


DEFAULT_WRITE_RETRY = WriteRetry()


class PendingWrites:
    """Token writes to `store`, and those it refused: newest per credential, with the version
    fence of their write, retried in the background until they commit.

    Args:
        stored: called with (credential id, version) when a waiting record committed.
        superseded: awaited with the credential id when a waiting record lost to a newer one
            another process stored.
        lease: released for a credential once its waiting record committed (the failing store
            could not release it earlier).
    """

    def __init__(
        self,
        store: Store,
        retry: WriteRetry,
        lease: RefreshLease,
        *,
        stored: Callable[[str, int], None],
        superseded: Callable[[str], Awaitable[None]],
    ) -> None:
        self.store = store
        self.retry = retry
        self.lease = lease
        self._stored = stored
        self._superseded = superseded
        self._unstored: dict[str, tuple[StoredToken, int | None]] = {}
        self._write_problem = ""
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"PendingWrites(waiting={len(self._unstored)})"

    def __contains__(self, cid: object) -> bool:
        return cid in self._unstored

    def waiting(self, cid: str) -> tuple[StoredToken, int | None] | None:
        """The record waiting for the store and its fence, if any."""
        return self._unstored.get(cid)

    def drop(self, cid: str) -> None:
        self._unstored.pop(cid, None)

    def problem(self) -> str | None:
        """Why the store is not taking writes, while token writes wait for it; else None."""
        if not self._unstored:
            return None
        return f"{len(self._unstored)} token write(s) waiting: {self._write_problem}"

    async def put(self, cid: str, record: StoredToken, expected: int | None) -> int | None:
        """Store `record` fenced by `expected`: its new version, or None when the store refused
        and the record waits in memory for the background retry.

        Raises:
            StaleToken: a newer token is stored (another process refreshed meanwhile).
        """
        waiting = self._unstored.get(cid)
        if waiting is None:
            try:
                return await self.store.put_token(cid, record, expected_version=expected)
            except StoreUnavailable as exc:
                self._write_problem = exc.reason
                log.warning(
                    "credential %s: the token could not be stored (%s); kept in memory and "
                    "retried until the store takes it",
                    cid,
                    exc.reason,
                )
        else:
            # Behind an earlier unstored record: only the newest is kept, with the earlier
            # one's fence (the store has not moved for us since).
            expected = waiting[1]
        self._unstored[cid] = (record, expected)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="token-write-retry")
        return None

    async def close(self) -> None:
        """Token writes still waiting for the store get one last attempt; what still fails is
        logged by credential id (the process is going away and cannot keep it)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await flusher
        if self._unstored:
            await self._flush_once()
            for cid in self._unstored:
                log.error(
                    "credential %s: its newest token could not be stored before exit (%s); "
                    "it may need re-authorisation",
                    cid,
                    self._write_problem,
                )

    async def _flush(self) -> None:
        failures = 0
        while self._unstored:
            await asyncio.sleep(self.retry.delay(failures))
            if await self._flush_once():
                failures = 0
            else:
                failures += 1

    async def _flush_once(self) -> bool:
        """Try every waiting write once; True when at least one committed."""
        progressed = False
        for cid, entry in list(self._unstored.items()):
            if cid not in self._unstored:
                continue  # dropped (its credential forgotten) while an earlier write ran
            record, expected = entry
            put = self.store.put_token(cid, record, expected_version=expected)
            try:
                version = await asyncio.wait_for(put, self.retry.attempt_timeout)
            except (StoreUnavailable, TimeoutError) as exc:
                self._write_problem = getattr(exc, "reason", "the store did not answer in time")
                continue
            except StaleToken:
                # Another process stored a newer token meanwhile: ours is the older one.
                log.warning("credential %s: a newer token was stored elsewhere; ours dropped", cid)
                self._unstored.pop(cid, None)
                with contextlib.suppress(StoreError):
                    await self._superseded(cid)
                progressed = True
                continue
            except StoreError as exc:  # any other store failure: the retry must live on
                self._write_problem = type(exc).__name__
                continue
            if self._unstored.get(cid) is entry:
                del self._unstored[cid]
                self._stored(cid, version)
            elif cid in self._unstored:
                # A newer record replaced it while the write ran: it descends from this one.
                self._unstored[cid] = (self._unstored[cid][0], version)
            progressed = True
            log.info("credential %s: the token kept in memory is stored now", cid)
            with contextlib.suppress(StoreError):
                # A lease the failing store could not release earlier.
                await self.lease.release(cid)
        return progressed
