"""`bearer`: RFC 6750 §2.1 `Authorization: Bearer <b64token>`."""

from __future__ import annotations

from proxy.messages import OutboundRequest, Send
from proxy.schemes.base import DEFAULT_CONTEXT
from proxy.schemes.bearer import BearerScheme

CANARY = "CANARYbear51"


def request(*headers: tuple[str, str]) -> OutboundRequest:
    return OutboundRequest("GET", "https://api.github.com", "/user", "", headers)


def test_rfc6750_header_form() -> None:
    # RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; its example token is "mF_9.B5f-4.1JqM".
    scheme = BearerScheme("cred", "mF_9.B5f-4.1JqM")
    signed = request().patched(scheme.sign(request(), DEFAULT_CONTEXT))
    assert signed.headers == (("Authorization", "Bearer mF_9.B5f-4.1JqM"),)


def test_replaces_a_client_authorization_of_any_case() -> None:
    scheme = BearerScheme("cred", "real")
    client = request(("authorization", "Bearer sdk-dummy"), ("Accept", "application/json"))
    signed = client.patched(scheme.sign(client, DEFAULT_CONTEXT))
    assert signed.headers == (("Accept", "application/json"), ("Authorization", "Bearer real"))


def test_scheme_flags_and_describe_without_the_token() -> None:
    scheme = BearerScheme("cred-7", CANARY)
    assert scheme.sets_headers == {"authorization"}
    assert scheme.authenticates and not scheme.requires_body
    assert scheme.credential_id == "cred-7"
    assert scheme.describe() == {"type": "bearer"}
    assert CANARY not in repr(scheme)


def test_auth_flow_is_one_signed_send() -> None:
    flow = BearerScheme("cred", "t").auth_flow(request(), DEFAULT_CONTEXT)
    [command] = list(flow)
    assert isinstance(command, Send)
    assert command.request.header("authorization") == "Bearer t"
