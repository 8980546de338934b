"""Bytes in = bytes out for bodies: a request without a body reaches the
upstream without one and without any framing header the client did not send, whatever the
scheme (a signing scheme buffers the body it signs, an empty one included). Checked on the exact
bytes a raw upstream received."""

from __future__ import annotations

from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection, hmac_credential, oauth2_token
from tests.plane import MakeProxy
from tests.wire_recorder import wire_upstream

OAUTH2 = oauth2_token(
    "http://127.0.0.1:9/token",
    "cid",
    "canary-bodyless-client-secret",
    {"access_token": "canary-bodyless-access", "refresh_token": "canary-bodyless-refresh"},
    expires_at="2099-01-01T00:00:00Z",
)
HMAC_KEY = "canary-hmac-key-2d7f"
SCHEMES = {
    "oauth2": OAUTH2,
    "hmac": hmac_credential(HMAC_KEY, digestInputs=["url", "body"]),
    "bearer": bearer("canary-bodyless-bearer"),
}
FRAMING = ("content-length", "transfer-encoding")


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "POST", "OPTIONS"])
async def test_a_bodyless_request_goes_up_without_framing(
    make_proxy: MakeProxy, scheme: str, method: str
) -> None:
    async with wire_upstream() as upstream:
        tree: dict[str, Any] = {"connections": [connection("svc", upstream.base, SCHEMES[scheme])]}
        port = rawhttp.port_of(await make_proxy(tree))
        raw = f"{method} /svc/x?q=1 HTTP/1.1\r\nHost: p\r\nAccept: */*\r\n\r\n".encode()
        reply = await rawhttp.round_trip(port, raw)
        assert reply.status == 200
        assert upstream.problems == []
        [seen] = upstream.requests
        names = [k.lower() for k, _ in seen.headers]
        assert not set(names) & set(FRAMING), seen.head
        assert seen.raw == seen.head  # nothing after the head: no body bytes either
        assert seen.head.startswith(f"{method} /x?q=1 HTTP/1.1\r\n".encode())
        assert seen.get_all("Accept") == ["*/*"]


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(
    ("framing", "body"),
    [("Content-Length: 0\r\n", b""), ("Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")],
    ids=["content_length_0", "empty_chunked"],
)
async def test_an_empty_body_keeps_the_clients_length_only(
    make_proxy: MakeProxy, scheme: str, framing: str, body: bytes
) -> None:
    # `Content-Length: 0` was the client's: it goes up. An empty chunked body is no body: the
    # hop-by-hop `Transfer-Encoding` is dropped and nothing replaces it.
    async with wire_upstream() as upstream:
        tree: dict[str, Any] = {"connections": [connection("svc", upstream.base, SCHEMES[scheme])]}
        port = rawhttp.port_of(await make_proxy(tree))
        raw = f"POST /svc/x HTTP/1.1\r\nHost: p\r\n{framing}\r\n".encode() + body
        reply = await rawhttp.round_trip(port, raw)
        assert reply.status == 200
        assert upstream.problems == []
        [seen] = upstream.requests
        framing_sent = [(k, v) for k, v in seen.headers if k.lower() in FRAMING]
        assert seen.body == b""
        if framing.startswith("Content-Length"):
            assert framing_sent == [("Content-Length", "0")]
            assert seen.raw == seen.head
        elif framing_sent:
            # A streamed body is passed on as it comes, so its (empty) chunked framing too.
            assert framing_sent == [("Transfer-Encoding", "chunked")]
            assert seen.raw == seen.head + b"0\r\n\r\n"
        else:
            assert seen.raw == seen.head  # a read (empty) body: nothing
