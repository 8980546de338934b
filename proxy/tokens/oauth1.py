"""`OAuth1Tokens`: the `oauth1` credentials of the file exchanged once for their `oauth1-token`
(RFC 5849 §2.3), the way `tokens/manager.py` exchanges an `oauth2-code`.

- At start (`adopt`), a credential whose token is already stored — descended from the same
  `{oauthToken, oauthVerifier}` — uses it: a restart never sends the verifier again.
- Else, in the background (a token endpoint that is down must not hold the listeners back), the
  OAuth 1.0a flow this proxy's `oauth1/init` started is taken from the store by the credential's
  `oauthToken` (single use: it holds the temporary secret the exchange is signed with), the
  verifier is exchanged at `tokenEndpoint`, and the token is stored before it is used. A request
  meanwhile waits for that same exchange.
- An unknown, used or expired flow, or a refused exchange: requests on that connection get 502
  `credential_reauthorization_required` (no secret in it), logged once; everything else serves.
  Each later request reads the store again first.
- Processes sharing the store (`run --workers N`) exchange under the store's lease for the
  credential: one takes the flow and stores the token, the others wait for it and use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import models as m
from ..errors import CredentialError, ProxyError
from ..messages import TokenSet
from ..schemes.oauth1_exchanged import TOKEN_TYPE, OAuth1ExchangedScheme, token_set
from ..store import Store, StoredToken, StoreUnavailable
from .lease import LeaseBusy, RefreshLease
from .oauth1_client import STATE_PREFIX, exchange_verifier, token_value

log = logging.getLogger("signing_proxy.tokens")


def unusable(reason: str) -> CredentialError:
    return CredentialError(
        "credential_reauthorization_required",
        f"the oauth1 credential cannot be used: {reason}; connect again (oauth1/init) and "
        "replace the credential",
    )


UNKNOWN_STATE = "its OAuth 1.0a state is unknown, used or expired"
# Longer than one exchange may take (`post_signed`: 30 s): a live holder keeps the lease throughout;
# a dead one (same host) is taken over at once, elsewhere after this long.
LEASE_TTL = 40.0


@dataclass(slots=True)
class _Exchange:
    """One credential: its token once known, else the exchange under way or why it failed."""

    scheme: OAuth1ExchangedScheme
    seed_fingerprint: str
    token: TokenSet | None = None
    task: asyncio.Task[None] | None = None
    failure: str = ""


class OAuth1Tokens:
    """Tokens for `OAuth1ExchangedScheme`s, durable through `store`."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._states: dict[str, _Exchange] = {}
        self.lease = RefreshLease(store, LEASE_TTL)

    def __repr__(self) -> str:
        return f"OAuth1Tokens(credentials={len(self._states)})"

    async def adopt(self, scheme: OAuth1ExchangedScheme) -> None:
        """Use the stored token descended from this credential, else start its exchange."""
        cid = scheme.credential_id
        fingerprint = self.store.fingerprint(scheme.seed_identity())
        old = self._states.get(cid)
        if old is not None and old.seed_fingerprint == fingerprint:
            old.scheme = scheme  # a reload with the same credential: nothing to do again
            return
        if old is not None and old.task is not None:
            old.task.cancel()  # the file now holds another credential: its exchange is moot
        state = _Exchange(scheme, fingerprint)
        self._states[cid] = state
        if await self._stored(state):
            return
        state.task = asyncio.create_task(self._exchange(state), name="oauth1-exchange")

    async def current(self, scheme: OAuth1ExchangedScheme) -> TokenSet:
        state = self._states.get(scheme.credential_id)
        if state is None or state.scheme.seed_identity() != scheme.seed_identity():
            await self.adopt(scheme)
            state = self._states[scheme.credential_id]
        if state.token is not None:
            return state.token
        if state.task is not None:
            await asyncio.shield(state.task)
        # Read the store again: another worker may have taken the flow and stored the token.
        if state.token is None and not await self._stored(state):
            raise unusable(state.failure or UNKNOWN_STATE)
        assert state.token is not None
        return state.token

    def health(self, credential_id: str) -> tuple[str, str] | None:
        """(OpenInt `status`, `status_message`) of a credential of ours, else None."""
        state = self._states.get(credential_id)
        if state is None:
            return None
        if state.token is None and state.failure:
            return "disconnected", f"re-authorisation required ({state.failure})"
        return "healthy", ""

    async def close(self) -> None:
        for state in self._states.values():
            if state.task is not None and not state.task.done():
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task

    async def _stored(self, state: _Exchange) -> bool:
        record = await self.store.get_token(state.scheme.credential_id)
        if (
            record is None
            or record.seed_fingerprint != state.seed_fingerprint
            or record.token is None
            or record.token.token_type != TOKEN_TYPE
        ):
            return False
        state.token = record.token
        return True

    async def _exchange(self, state: _Exchange) -> None:
        """Single flight across the processes sharing the store (`run --workers N`): under the
        store's lease for this credential, the token another process stored meanwhile wins."""
        cid = state.scheme.credential_id
        try:
            taken = await self.lease.take(
                cid, wait=LEASE_TTL + 1.0, settled=lambda: self._stored(state)
            )
        except LeaseBusy:
            state.failure = "another process holds its exchange"
            log.warning("credential %s: the oauth1 exchange of another process did not "
                        "finish; requests on its connection get 502", cid)  # fmt: skip
            return
        if not taken:
            return
        try:
            if not await self._stored(state):
                await self._exchange_once(state)
        finally:
            await self.lease.release(cid)

    async def _exchange_once(self, state: _Exchange) -> None:
        scheme = state.scheme
        cid = scheme.credential_id
        value = scheme.value
        try:
            flow = await self.store.take_flow(STATE_PREFIX + value.oauth_token, now=self.clock())
            if flow is None or flow.extra.get("kind") != "oauth1":
                state.failure = UNKNOWN_STATE
                log.warning("credential %s: the oauth1 credential's state is unknown, used or "
                            "expired; requests on its connection get 502", cid)  # fmt: skip
                return
            verifier = value.oauth_verifier.get_secret_value()
            answer = await exchange_verifier(
                scheme.auth, flow, value.oauth_token, verifier, refused=502
            )
        except ProxyError as exc:
            # The code and status of the endpoint's answer; its body may echo secrets.
            state.failure = f"the token endpoint exchange failed ({exc.code})"
            log.warning("credential %s: the oauth1 verifier could not be exchanged (%s, %s)",
                        cid, exc.code, exc.details or "no answer")  # fmt: skip
            return
        except Exception as exc:  # e.g. a connection error the client did not wrap
            state.failure = f"the token endpoint exchange failed ({type(exc).__name__})"
            log.warning("credential %s: the oauth1 verifier could not be exchanged (%s)",
                        cid, type(exc).__name__)  # fmt: skip
            return
        token = token_set(m.OAuth1TokenValue.model_validate(token_value(scheme.auth, flow, answer)))
        try:
            await self.store.put_token(
                cid, StoredToken(token, state.seed_fingerprint), expected_version=None
            )
        except StoreUnavailable as exc:
            # The flow is used up either way; the token serves this process. A restart before
            # the store takes writes again finds no token and no flow: connect again then.
            log.error("credential %s: the oauth1 token could not be stored (%s)", cid, exc.reason)
        state.token = token
        log.info("credential %s: oauth1 verifier exchanged for its token", cid)
