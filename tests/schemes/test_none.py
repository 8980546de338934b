"""`none`: adds nothing and does not make the proxy own the client's Authorization."""

from __future__ import annotations

from proxy.messages import OutboundRequest, RequestPatch
from proxy.schemes.base import DEFAULT_CONTEXT
from proxy.schemes.none import NoneScheme

REQUEST = OutboundRequest(
    "POST", "https://api.example.com", "/v1/x", "a=1", (("Authorization", "Bearer user"),)
)


def test_sign_returns_an_empty_patch() -> None:
    scheme = NoneScheme("cred-1")
    assert scheme.sign(REQUEST, DEFAULT_CONTEXT) == RequestPatch()
    assert REQUEST.patched(scheme.sign(REQUEST, DEFAULT_CONTEXT)) == REQUEST


def test_none_neither_authenticates_nor_owns_headers() -> None:
    scheme = NoneScheme("cred-1")
    assert scheme.authenticates is False
    assert scheme.sets_headers == frozenset()
    assert (scheme.requires_body, scheme.wants_replayable_body) == (False, False)
    assert scheme.describe() == {"type": "none"}


def test_auth_flow_sends_the_request_unchanged() -> None:
    [command] = list(NoneScheme("cred-1").auth_flow(REQUEST, DEFAULT_CONTEXT))
    assert command.request == REQUEST  # type: ignore[union-attr]
