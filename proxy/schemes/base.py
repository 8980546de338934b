"""The scheme interface: a pure `sign()` that returns a patch, and a default one-step `auth_flow()`.

This is httpx's `Auth` with Envoy's `inject()` as the pure half. A new auth scheme is one module
that subclasses `Scheme`, plus one line in `schemes/__init__.py`. Schemes never do I/O and never
import aiohttp: whatever needs the network (a token refresh) is asked of the driver by yielding a
command, and time and randomness come in through `SigningContext` so tests can fix them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..messages import AuthFlow, OutboundRequest, RequestPatch, Send, TokenSet


class SchemeConfigError(ValueError):
    """A credential that cannot be used; `field` is relative to the connection credential."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def new_nonce() -> str:
    """120 random bits as 30 hex digits: providers built on oauthlib accept nonces of 20 to 30
    letters and digits by default, so a longer one is refused there."""
    return secrets.token_hex(15)


@dataclass(frozen=True, slots=True)
class SigningContext:
    """What a signer may depend on besides the request: the clock, a nonce source, a token."""

    now: Callable[[], float] = time.time
    nonce: Callable[[], str] = new_nonce
    token: TokenSet | None = None


DEFAULT_CONTEXT = SigningContext()


class Scheme:
    """One credential applied to outbound requests.

    Attributes:
        credential_id: stable id of the connection credential this scheme signs with.
        sets_headers: lowercase names of headers `sign()` sets (client copies are dropped).
        passes_headers: lowercase names of client headers `sign()` rewrites: they reach it
            (never dropped as owned), as `secret` needs for the placeholder it swaps.
        requires_body: True when `sign()` reads the body, so the driver must buffer it.
        wants_replayable_body: True when the flow may send the request twice (OAuth 2.0 retry).
        authenticates: False only for `none`; decides whether a client Authorization is dropped.
        needs_token: True when `ctx.token` must hold the current OAuth 2.0 token.
        signs_last: True for a signature over the whole request (AWS SigV4): applied after the
            connection's other credentials, whatever its place in the list.
        owns_client_authorization: True when the scheme reads the client's own `Authorization`
            (the scope of an AWS SDK's placeholder signature) and always replaces or removes it
            itself, so the connection does not drop it first.
    """

    type_name: ClassVar[str] = ""
    # An instance may override it (HMAC reads the body only when `body` is a digest input).
    requires_body: bool = False
    wants_replayable_body: ClassVar[bool] = False
    authenticates: ClassVar[bool] = True
    needs_token: ClassVar[bool] = False
    signs_last: ClassVar[bool] = False
    owns_client_authorization: ClassVar[bool] = False

    credential_id: str = ""
    sets_headers: frozenset[str] = frozenset()
    passes_headers: frozenset[str] = frozenset()
    # (field relative to the credential, message): usable but worth a word from `check`
    # (an expired client certificate).
    warnings: tuple[tuple[str, str], ...] = ()

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        """Return what this credential changes on `request`; pure."""
        raise NotImplementedError

    def constant_headers(self) -> Mapping[str, str] | None:
        """The headers `sign()` sets when they are the same for every request (and it changes
        nothing else), else None. Decided once, when the connection is compiled: such a
        connection takes the lean request path (`connections/lean.py`)."""
        return None

    def reads_body(self, request: OutboundRequest) -> bool:
        """Whether `sign()` reads this request's body; asked per request before the body is read.

        Defaults to `requires_body`; OAuth 1.0a reads it only for form-encoded bodies.
        """
        return self.requires_body

    def signed(self, request: OutboundRequest, ctx: SigningContext) -> OutboundRequest:
        """`request` as this credential sends it (what `explain` prints): `sign()`'s patch
        applied, unless the scheme rewrites more than a patch can say."""
        return request.patched(self.sign(request, ctx))

    def auth_flow(self, request: OutboundRequest, ctx: SigningContext) -> AuthFlow:
        """Yield `Send`/`Refresh` commands; the default signs once and sends."""
        yield Send(self.signed(request, ctx))

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for `explain` and logs."""
        return {"type": self.type_name}
