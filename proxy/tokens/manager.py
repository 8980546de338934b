"""`TokenManager`: OAuth 2.0 tokens obtained, refreshed and stored (docs/request-path.md), the
driver's `TokenProvider`.

Strategy:
- Hot path: `current()` is a dict lookup and a clock comparison while the token is fresh.
- Proactive refresh when `expiresAt` is within `skew` (60 s, Authlib's default leeway, or a
  quarter of the token's lifetime when that is shorter: a 2-minute token is not refreshed on
  every request); a token without an expiry is used until the upstream answers 401.
- One credential id, one credential: every connection carrying the id shares one state here,
  one stored token, one refresh (docs/admin-api.md).
- A token call is never cancelled by its caller: a refresh and the store writes that follow it
  run in a task this manager owns (the credential's *flight*); callers await it shielded, so a
  client that leaves only stops waiting, and a rotated refresh token the provider has issued is
  stored all the same. `close()` waits for flights (bounded) and logs any it had to abandon.
- Single flight, twice over: one flight per credential inside a process, then a refresh
  lease in the store across processes (`run --workers N`, replicas; `lease.RefreshLease`).
  After the lease is taken, the stored token is read again; a token newer than the one that
  failed is reused instead of refreshed again (aiohttp cookbook: lock, then re-check).
- Seeds (docs/request-path.md): the store keeps the fingerprints of every refresh token the
  credential has had (`TokenHistory`). A token from the file or the API replaces the stored one
  only when it is newer than anything seen — never seen, and not expiring before the stored one
  — so an edit that is reverted, a rolled-back file or a changed client secret never sends a
  used-up refresh token again.
- Nothing lost: the new token — with a rotated refresh token — is committed to the store before
  it is returned to anyone (RFC 6749 §6: the old refresh token may be dead the moment the new
  one is issued, so the new one must survive a crash).
- When the store cannot be written (docs/operations.md; `state.PendingWrites`): a token the
  provider issued is kept in memory, used, and its write retried in the background (backoff,
  each attempt bounded) until it commits; while it waits, this process holds the newest token, so it
  neither reads the store's older one back nor waits for the store's lease to refresh it again
  (the old refresh token is never sent again). A refresh that would need the store's lease
  while the store is failing is `StoreUnavailable` (503), as is any other impossible write.
  `store_problem()` tells `/readyz`.
- Failures: `invalid_grant` marks the credential as needing re-authorisation (no more token
  calls until the credential is replaced); anything else fails with the provider's `error` code
  and backs off exponentially, so a dead token endpoint is not hammered.
- Token endpoint calls go through `endpoint.TokenEndpoint` (its own session, no redirects, no
  environment proxies, own timeout; the TLS of `mtlsEnabled`). The authorization-code exchange of
  the connect flow (`exchange_code`) takes the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..connections.compiled import CompiledConnection
from ..errors import CredentialError
from ..messages import TokenSet
from ..schemes.base import Scheme
from ..schemes.oauth1_exchanged import OAuth1ExchangedScheme
from ..schemes.oauth2 import (
    OAuth2Scheme,
    OAuth2Settings,
    TokenEndpointError,
    authorization_code_params,
    client_credentials_params,
    password_params,
    refresh_params,
)
from ..store import (
    StaleToken,
    Store,
    StoredToken,
    StoreUnavailable,
    TokenHistory,
)
from .endpoint import TokenEndpoint
from .lease import LeaseBusy, RefreshLease
from .oauth1 import OAuth1Tokens
from .state import DEFAULT_WRITE_RETRY, CredentialState, PendingWrites
from .state import WriteRetry as WriteRetry  # tests and callers configure it here

log = logging.getLogger("signing_proxy.tokens")

DEFAULT_SKEW = 60.0
_NO_TOKEN = TokenSet(access_token="")


def reauthorization_required() -> CredentialError:
    return CredentialError(
        "credential_reauthorization_required",
        "the OAuth 2.0 grant was rejected (invalid_grant); replace the credential to go on",
        details="invalid_grant",
    )


def refresh_failed(error: str) -> CredentialError:
    return CredentialError(
        "credential_refresh_failed", "the OAuth 2.0 token could not be refreshed", details=error
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between failed token calls: `base * 2**(n-1)`, capped at `cap`."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * 2 ** min(failures - 1, 32)))


class TokenManager:
    """Supplies fresh tokens to `oauth2` schemes; durable through `store`.

    Args:
        store: where tokens live (docs/security.md); its refresh lease makes refreshes single-flight
            across processes sharing it.
        skew: refresh this many seconds before `expiresAt`.
        timeout: total seconds for one token endpoint call.
        lease_ttl: seconds a refresh lease lasts unless renewed; the holder renews it every
            third of that while its token call runs, so a stalled or killed holder blocks the
            others for at most this long.
        backoff: delays between failed token calls of one credential.
        clock: unix time; tests pass a fake.
        exit_wait: seconds `close()` waits for token calls still running (their tokens stored).
    """

    def __init__(
        self,
        store: Store,
        *,
        skew: float = DEFAULT_SKEW,
        timeout: float = 15.0,
        lease_ttl: float = 10.0,
        backoff: Backoff = Backoff(),
        write_retry: WriteRetry = DEFAULT_WRITE_RETRY,
        clock: Callable[[], float] = time.time,
        redirect_uri: str = "",
        exit_wait: float | None = None,
    ) -> None:
        self.store = store
        # The redirect_uri an `oauth2-code` credential's code was issued for (RFC 6749 §4.1.3).
        self.redirect_uri = redirect_uri
        self.skew = skew
        self.timeout = timeout
        self.lease_ttl = lease_ttl
        self.backoff = backoff
        self.write_retry = write_retry
        self.clock = clock
        # A call's own timeout and a moment for its store write.
        self.exit_wait = timeout + 2.0 if exit_wait is None else exit_wait
        # Token calls and their store writes, owned here so no caller can cancel them.
        self._flights: set[asyncio.Task[Any]] = set()
        # Credential id → ids of the connections carrying it: a credential is forgotten only
        # when the last of them goes.
        self._holders: dict[str, set[str]] = {}
        # Credential ids forgotten since a connection last carried them. No token of theirs is
        # written again: a request routed to the replaced connection a moment before, or a
        # refresh landing after the delete, would put back a record no connection carries.
        self._retired: set[str] = set()
        # Token records the store refused, newest per credential, with the version fence of
        # their write, until a retry commits them.
        self.lease = RefreshLease(store, lease_ttl)
        self.pending = PendingWrites(
            store, write_retry, self.lease, stored=self._stored, superseded=self._adopt_stored
        )
        self._states: dict[str, CredentialState] = {}
        self._code_exchanges: set[asyncio.Task[None]] = set()
        self.endpoint = TokenEndpoint(timeout=timeout, clock=clock)
        # The file's `oauth1` credentials, exchanged once for their `oauth1-token`.
        self.oauth1 = OAuth1Tokens(store, clock=clock)

    def __repr__(self) -> str:
        return f"TokenManager(credentials={len(self._states)}, store={self.store!r})"

    # --- lifecycle ---

    async def adopt(self, scheme: OAuth2Scheme, tls: ssl.SSLContext | None = None) -> None:
        """Take `scheme` into service: reconcile its seed with the store (docs/request-path.md).

        While the credential material from the file (or the API) is unchanged, the stored token
        — newer, perhaps with a rotated refresh token — wins; when it changed, a person replaced
        the credential and the seed wins, clearing a `needs reauthorization` mark.

        Args:
            tls: the connection's client-certificate context, for `mtlsEnabled`.
        """
        cid = scheme.credential_id
        seed_fp = self.store.fingerprint(scheme.settings.seed_identity())
        old = self._states.get(cid)
        record, version, reseeded = await self._reconcile(scheme, seed_fp, old)
        state = old
        if state is None:
            state = CredentialState(scheme, tls, seed_fp, None, None)
            self._states[cid] = state
        else:
            # Updated in place: a flight in progress and every connection carrying the id see
            # the same state (one credential id, one credential).
            state.scheme, state.tls, state.seed_fingerprint = scheme, tls, seed_fp
        if reseeded or version >= state.version or state.token is None:
            state.token, state.client_auth = record.token, record.client_auth
            state.needs_reauthorization = record.needs_reauthorization
            state.version, state.history = version, record.history
        if reseeded:
            state.failures, state.retry_at, state.last_error = 0, 0.0, ""
        if state.token is not None:
            metrics.token_expires(cid, state.token.expires_at)

    async def _reconcile(
        self, scheme: OAuth2Scheme, seed_fp: str, old: CredentialState | None
    ) -> tuple[StoredToken, int, bool]:
        """The record `scheme`'s credential goes on from, its version, and whether the seed
        replaced the stored token (docs/request-path.md).

        Same material as stored: the stored token. Other material whose token is newer than
        anything the credential has had: the seed, unfenced (a person's new credential wins).
        Other material with a token already seen or older (a setting changed, an edit reverted,
        a file rolled back): the stored token goes on, now descending from this material.
        """
        cid = scheme.credential_id
        for _ in range(3):
            # A token waiting for the store is newer than the store's.
            waiting = self.pending.waiting(cid)
            record = waiting[0] if waiting is not None else await self.store.get_token(cid)
            version = old.version if waiting is not None and old is not None else 0
            if record is not None and waiting is None:
                version = record.version
            if record is not None and record.seed_fingerprint == seed_fp:
                return record, version, False
            if record is None or self._seed_is_newer(scheme.settings.seed_token, record):
                kept_style = record.client_auth if record is not None else None
                kept_style = kept_style or self.endpoint.known_auth(scheme.settings)
                history = record.history if record is not None else TokenHistory()
                seed = scheme.settings.seed_token
                if seed is not None and seed.refresh_token is not None:
                    history = history.with_seed(self._refresh_fp(seed.refresh_token))
                record = StoredToken(seed, seed_fp, False, kept_style, history=history)
                written = await self._put(cid, record, None)
                return record, written if written is not None else version, True
            record = dataclasses.replace(record, seed_fingerprint=seed_fp)
            try:
                written = await self._put(cid, record, version)
            except StaleToken:
                continue  # another process wrote meanwhile: decide again on its record
            return record, written if written is not None else version, False
        log.warning("credential %s: the store kept changing while adopting it", cid)
        assert record is not None
        return record, version, False

    def _seed_is_newer(self, seed: TokenSet | None, record: StoredToken) -> bool:
        """Whether a seed different from the stored one's replaces the stored token."""
        if seed is None or seed.refresh_token is None:
            return True  # nothing in it a provider can have used up
        if record.history.knows(self._refresh_fp(seed.refresh_token)):
            return False  # the current refresh token, or a used-up one
        stored = record.token
        return not (
            seed.expires_at is not None
            and stored is not None
            and stored.expires_at is not None
            and seed.expires_at <= stored.expires_at
        )

    def _refresh_fp(self, refresh_token: str) -> str:
        return self.store.fingerprint("refresh_token:" + refresh_token)

    async def adopt_connection(self, connection: CompiledConnection) -> None:
        """`adopt()` every `oauth2` credential of `connection`, with its client certificate:
        the certificate credential `mtlsCredentialId` names, else the connection's."""
        metrics.connection_in_service(connection)
        tls = connection.tls
        for scheme in connection.schemes:
            self._holders.setdefault(scheme.credential_id, set()).add(connection.id)
            self._retired.discard(scheme.credential_id)
            if isinstance(scheme, OAuth1ExchangedScheme):
                await self.oauth1.adopt(scheme)
            elif isinstance(scheme, OAuth2Scheme):
                await self.adopt(scheme, _named_tls(connection, scheme) or tls)
                state = self._states[scheme.credential_id]
                if scheme.settings.code is not None and state.token is None:
                    # An `oauth2-code` credential is exchanged at start, in the background (a
                    # token endpoint that is down must not hold the listeners back); a request
                    # meanwhile joins the same single-flight exchange.
                    task = asyncio.create_task(self._exchange_at_start(scheme))
                    self._code_exchanges.add(task)
                    task.add_done_callback(self._code_exchanges.discard)

    async def _exchange_at_start(self, scheme: OAuth2Scheme) -> None:
        try:
            await self.current(scheme)
        except Exception as exc:  # reported again to each request that needs the token
            log.warning(
                "credential %s: the authorization code could not be exchanged (%s)",
                scheme.credential_id,
                getattr(exc, "code", type(exc).__name__),
            )

    async def tokens_of(self, credential_id: str) -> list[TokenSet]:
        """The tokens the credential holds now, in this process and in the store (another
        process may be ahead): what a GET body of a connection carrying it shows."""
        state = self._states.get(credential_id)
        found = [state.token] if state is not None and state.token is not None else []
        record = await self.store.get_token(credential_id)
        if record is not None and record.token is not None:
            found.append(record.token)
        return found

    def health(self, credential_id: str) -> tuple[str, str]:
        """(OpenInt `status`, `status_message`) of one credential: `disconnected` when it needs
        re-authorisation, `error` while refreshes fail, else `healthy`. No secret in either."""
        state = self._states.get(credential_id)
        if state is None:
            return self.oauth1.health(credential_id) or ("healthy", "")
        if state.needs_reauthorization:
            return "disconnected", "re-authorisation required (invalid_grant)"
        if state.failures:
            return "error", f"token refresh failing ({state.last_error})"
        return "healthy", ""

    async def release(self, connection_id: str, credential_ids: Iterable[str]) -> None:
        """Connection `connection_id` no longer carries `credential_ids`; each that no other
        connection of this process carries any more is forgotten, its stored token deleted."""
        for cid in credential_ids:
            holders = self._holders.get(cid)
            if holders is not None:
                holders.discard(connection_id)
                if holders:
                    continue
                del self._holders[cid]
            await self.forget(cid)

    async def forget(self, credential_id: str) -> None:
        """Drop a deleted credential and its stored token; none is written for it again
        until a connection carrying it is adopted."""
        self._retired.add(credential_id)
        self._states.pop(credential_id, None)
        self.pending.drop(credential_id)
        await self.store.delete_token(credential_id)

    async def close(self) -> None:
        """Close the token endpoint client; idempotent. The store is its owner's to close.

        Token writes still waiting for the store get one last attempt; what still fails is
        logged by credential id (the process is going away and cannot keep it).
        """
        await self.oauth1.close()
        await self._land_flights()
        for task in list(self._code_exchanges):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pending.close()
        await self.endpoint.close()

    async def _land_flights(self) -> None:
        """Wait up to `exit_wait` for token calls still running, so the tokens they bring are
        stored; one that does not finish is cancelled and named in the log (its provider may
        have rotated the refresh token already)."""
        flights = [task for task in self._flights if not task.done()]
        if not flights:
            return
        log.info("waiting for %d token call(s) in flight before exit", len(flights))
        _, pending = await asyncio.wait(flights, timeout=self.exit_wait)
        for task in pending:
            log.error(
                "%s: still running after %.0fs at exit; abandoned (the credential may need "
                "re-authorisation if the provider rotated its refresh token)",
                task.get_name(),
                self.exit_wait,
            )
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    def _own(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `work` in a task of this manager: no caller can cancel it."""
        task = asyncio.create_task(work, name=name)
        self._flights.add(task)
        task.add_done_callback(self._flight_done)
        return task

    def _flight_done(self, task: asyncio.Task[Any]) -> None:
        self._flights.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: each waiter got it; none may have stayed

    # --- store writes that may fail ---

    async def _put(self, cid: str, record: StoredToken, expected: int | None) -> int | None:
        """`PendingWrites.put`, unless the credential was forgotten meanwhile (None then:
        nothing is written). The store's one writer thread keeps order, so a write begun before
        `forget` lands before its delete."""
        if cid in self._retired:
            log.info("credential %s: forgotten meanwhile; its token is not stored", cid)
            return None
        return await self.pending.put(cid, record, expected)

    def store_problem(self) -> str | None:
        """Why the store is not taking writes, while token writes wait for it; else None."""
        return self.pending.problem()

    def _stored(self, cid: str, version: int) -> None:
        """A token write that waited for the store committed as `version`."""
        state = self._states.get(cid)
        if state is not None:
            state.version = version

    async def _adopt_stored(self, cid: str) -> None:
        """A token write that waited lost to a newer token another process stored: use that."""
        state = self._states.get(cid)
        if state is not None:
            self._adopt_record(state, await self.store.get_token(cid))

    # --- the connect flow ---

    async def exchange_code(
        self,
        settings: OAuth2Settings,
        code: str,
        code_verifier: str | None,
        redirect_uri: str,
        tls: ssl.SSLContext | None = None,
    ) -> TokenSet:
        """RFC 6749 §4.1.3 with the RFC 7636 §4.5 verifier: the authorization code for a token.

        The same call as a refresh: client authentication Basic then form (starting with the
        style that worked for this client before), `mtlsEnabled` with `tls`, no redirects, the
        manager's timeout. Nothing is stored: the caller makes the credential and `adopt()`s it.

        Raises:
            TokenEndpointError: `error` is the provider's code or one of ours, never a secret;
                `status` is the HTTP status (0 when there was no answer).
        """
        params = authorization_code_params(code, redirect_uri, code_verifier)
        # A code is single use: the call finishes even when the browser leaves.
        work = self.endpoint.request_token(settings, params, tls, None, None)
        call = self._own(work, "code-exchange")
        token: TokenSet = (await asyncio.shield(call))[0]
        return token

    # --- TokenProvider ---

    async def current(self, scheme: Scheme) -> TokenSet:
        """The token to sign with now; refreshed first when it is about to expire."""
        if isinstance(scheme, OAuth1ExchangedScheme):
            return await self.oauth1.current(scheme)
        state = await self._state(scheme)
        if state.needs_reauthorization:
            raise reauthorization_required()
        token = state.token
        if token is not None and token.access_token and not self._expiring(token):
            return token
        if not state.scheme.can_refresh(token):
            if token is not None and token.access_token:
                return token  # nothing to refresh with: the upstream will say if it is dead
            raise reauthorization_required()
        try:
            return await self.refresh(scheme, token or _NO_TOKEN)
        except StoreUnavailable:
            # The refresh could not take the store's lease; a token still alive serves on.
            if token is not None and token.access_token and not self._expired(token):
                return token
            raise
        except CredentialError as exc:
            # A proactive refresh failed but the token is not dead yet: keep using it.
            if (
                exc.code == "credential_refresh_failed"
                and token is not None
                and token.access_token
                and not self._expired(token)
            ):
                return token
            raise

    async def refresh(self, scheme: Scheme, stale: TokenSet) -> TokenSet:
        """A token newer than `stale`: someone else's fresh one, or one from the endpoint."""
        state = await self._state(scheme)
        if state.needs_reauthorization:
            raise reauthorization_required()
        if scheme.credential_id in self._retired:
            # Forgotten: the token call's result could not be kept, so none is made.
            raise refresh_failed("credential_forgotten")
        if self._newer(state.token, stale):
            assert state.token is not None
            return state.token
        flight = state.flight
        if flight is None or flight.done():
            if self.clock() < state.retry_at:
                raise refresh_failed(state.last_error)  # backing off: fail fast
            work = self._refresh_across_processes(state, stale)
            flight = state.flight = self._own(work, f"credential {scheme.credential_id}")
        # Shielded: a caller that leaves (a client gone, a shutdown's grace over) stops
        # waiting; the token call and the store write that keeps its result go on.
        return await asyncio.shield(flight)

    # --- internals ---

    async def _state(self, scheme: Scheme) -> CredentialState:
        if not isinstance(scheme, OAuth2Scheme):
            raise TypeError(f"{type(scheme).__name__} has no OAuth 2.0 tokens")
        state = self._states.get(scheme.credential_id)
        if state is None and scheme.credential_id in self._retired:
            # A request routed to its connection just before the connection was replaced or
            # deleted: signed with the token that connection carries, kept in memory only.
            seed = scheme.settings.seed_token
            auth = self.endpoint.known_auth(scheme.settings)
            return CredentialState(scheme, None, "", seed, auth)
        if state is None:
            # First use without an explicit adopt(). A known id is one credential whatever the
            # scheme object: the material adopted last serves every connection carrying it.
            await self.adopt(scheme)
            state = self._states[scheme.credential_id]
        return state

    def _expired(self, token: TokenSet) -> bool:
        return token.expires_at is not None and token.expires_at <= self.clock()

    def _expiring(self, token: TokenSet) -> bool:
        if token.expires_at is None:
            return False
        skew = self.skew if token.lifetime is None else min(self.skew, token.lifetime / 4)
        return token.expires_at - skew <= self.clock()

    def _newer(self, candidate: TokenSet | None, stale: TokenSet) -> bool:
        return (
            candidate is not None
            and bool(candidate.access_token)
            and candidate.access_token != stale.access_token
            and not self._expiring(candidate)
        )

    def _adopt_record(self, state: CredentialState, record: StoredToken | None) -> None:
        # Another process may have written since we looked. Its record is ours when it descends
        # from our material, or from our token (that process adopted newer material first: a
        # reload it saw before us); anything else is another credential's business.
        if record is None:
            return
        if record.seed_fingerprint != state.seed_fingerprint and not self._descends(state, record):
            return
        state.token = record.token
        state.client_auth = record.client_auth
        state.needs_reauthorization = record.needs_reauthorization
        state.version = record.version
        state.history = record.history
        if record.token is not None:
            metrics.token_expires(state.scheme.credential_id, record.token.expires_at)

    def _descends(self, state: CredentialState, record: StoredToken) -> bool:
        token = state.token
        if token is None or token.refresh_token is None:
            return False
        return record.history.knows(self._refresh_fp(token.refresh_token))

    async def _refresh_across_processes(self, state: CredentialState, stale: TokenSet) -> TokenSet:
        cid = state.scheme.credential_id
        if cid in self.pending:
            # This process alone holds the newest token (the store has an older one): no other
            # process can refresh from it, so no lease is needed, and the store's copy must not
            # be read back over it.
            return await self._obtain(state, state.token or stale)

        async def settled() -> bool:
            self._adopt_record(state, await self.store.get_token(cid))
            if state.needs_reauthorization:
                raise reauthorization_required()
            return self._newer(state.token, stale)

        try:
            # A live holder keeps its lease for up to two token calls (Basic, then form); a
            # dead or stalled one for `lease_ttl` at most.
            wait = 2 * self.timeout + self.lease_ttl + 1.0
            taken = await self.lease.take(cid, wait=wait, settled=settled)
        except LeaseBusy:
            raise refresh_failed("refresh_lease_timeout") from None
        if not taken:
            assert state.token is not None
            return state.token
        async with self.lease.renewed(cid):
            # Re-read under the lease: another process may have committed just before.
            self._adopt_record(state, await self.store.get_token(cid))
            if self._newer(state.token, stale):
                assert state.token is not None
                return state.token
            return await self._obtain(state, state.token or stale)

    async def _superseded(self, state: CredentialState) -> TokenSet:
        """Our refresh lost the fence: use the newer token another process stored."""
        cid = state.scheme.credential_id
        log.warning(
            "credential %s: another process stored a newer token first; this refresh's result "
            "is discarded",
            cid,
        )
        self._adopt_record(state, await self.store.get_token(cid))
        if state.needs_reauthorization:
            raise reauthorization_required()
        if state.token is None or not state.token.access_token:
            raise refresh_failed("superseded")
        return state.token

    async def _obtain(self, state: CredentialState, base: TokenSet) -> TokenSet:
        scheme, settings = state.scheme, state.scheme.settings
        if settings.token_url is None:
            raise reauthorization_required()
        if settings.grant == "authorizationCode":
            if settings.code is not None and not base.access_token:
                # An `oauth2-code` credential: its code, once. The token stored from it descends
                # from the code, so no later start sends the used code again.
                params = authorization_code_params(settings.code, self.redirect_uri)
            elif base.refresh_token is None:
                raise reauthorization_required()
            else:
                params = refresh_params(base)
        elif settings.grant == "clientCredentials":
            params = client_credentials_params(settings.scope)
        elif settings.assertion is not None:
            params = []  # `jwt-bearer`: the JWT is signed for each call (`request_token`)
        else:
            assert settings.username is not None and settings.password is not None
            params = password_params(settings.username, settings.password, settings.scope)
        # The fence is the version the token call starts from: a person's new seed adopted
        # while it runs moves the version, and this result then loses to it.
        expected, started_from = state.version, state.token
        try:
            token, style = await self.endpoint.request_token(
                settings, params, state.tls, state.client_auth, base
            )
        except TokenEndpointError as exc:
            return await self._failed(state, exc, expected)
        history = state.history
        if token.refresh_token is not None:
            history = history.with_issued(self._refresh_fp(token.refresh_token))
        record = StoredToken(token, state.seed_fingerprint, False, style, history=history)
        # Durable before anyone uses it: a crash now must not lose a rotated token. When the
        # store refuses, the token is kept and used all the same (the provider may have retired
        # the old refresh token already) and its write retried. Fenced: if another process
        # stored a newer token meanwhile (we stalled past our lease), ours is discarded.
        try:
            version = await self._put(scheme.credential_id, record, expected)
        except StaleToken:
            try:
                version = await self._put_over_settings(scheme.credential_id, record, started_from)
            except StaleToken:
                return await self._superseded(state)
        if version is not None:
            state.version = version
        state.token, state.client_auth, state.history = token, style, history
        state.failures, state.retry_at, state.last_error = 0, 0.0, ""
        metrics.token_refreshed(scheme.credential_id, "success")
        metrics.token_expires(scheme.credential_id, token.expires_at)
        log.info(
            "credential %s: token obtained (grant %s, expires in %s)",
            scheme.credential_id,
            settings.grant,
            "unknown" if token.expires_at is None else f"{token.expires_at - self.clock():.0f}s",
        )
        return token

    async def _put_over_settings(
        self, cid: str, record: StoredToken, started_from: TokenSet | None
    ) -> int | None:
        """Store `record` after its fenced write lost, when what moved the version was only the
        credential's settings (a reload adopted a changed scope or client while the token call
        ran): the stored token is still the one the call started from, so the call's token is
        the newest, and is written under the stored settings. Otherwise `StaleToken`."""
        current = await self.store.get_token(cid)
        if (
            current is None
            or current.needs_reauthorization
            or started_from is None
            or current.token != started_from
        ):
            raise StaleToken(cid)
        merged = dataclasses.replace(
            record,
            seed_fingerprint=current.seed_fingerprint,
            history=current.history.merged(record.history),
        )
        return await self._put(cid, merged, current.version)

    async def _failed(
        self, state: CredentialState, exc: TokenEndpointError, expected: int
    ) -> TokenSet:
        """Record a failed token call and raise; only when our `invalid_grant` came from a
        refresh token another process had already replaced, return that process's token."""
        cid = state.scheme.credential_id
        # The provider's code or ours (a bounded set of names), never a description.
        metrics.token_refreshed(cid, exc.error.partition(":")[0])
        # A JWT grant uses nothing up: its `invalid_grant` (Google's for a clock off by minutes,
        # a key not yet registered) is retried with backoff like any failure, not a dead end.
        if exc.error == "invalid_grant" and state.scheme.settings.assertion is None:
            record = StoredToken(
                state.token, state.seed_fingerprint, True, state.client_auth, history=state.history
            )
            try:
                version = await self._put(cid, record, expected)
            except StaleToken:
                return await self._superseded(state)
            state.needs_reauthorization = True
            if version is not None:
                state.version = version
            log.warning("credential %s: invalid_grant; re-authorisation needed", cid)
            raise reauthorization_required()
        state.failures += 1
        delay = self.backoff.delay(state.failures)
        state.retry_at = self.clock() + delay
        state.last_error = exc.error
        log.warning(
            "credential %s: token endpoint failed (%s, status %s); next try in %.0fs",
            cid,
            exc.error,
            exc.status,
            delay,
        )
        raise refresh_failed(exc.error)


def _named_tls(connection: CompiledConnection, scheme: OAuth2Scheme) -> ssl.SSLContext | None:
    named = scheme.settings.mtls_credential_id
    if named is None:
        return None
    for entry, other in zip(connection.model.credentials, connection.schemes, strict=True):
        context = getattr(other, "ssl_context", None)
        if named in (entry.id, entry.credential.id, other.credential_id) and isinstance(
            context, ssl.SSLContext
        ):
            return context
    return None
