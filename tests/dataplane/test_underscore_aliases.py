"""Headers spelt with `_` for `-` that alias what the proxy manages are dropped (docs/request-
path.md): CGI and WSGI upstreams read `Transfer_Encoding` and `Transfer-Encoding` as one
`HTTP_TRANSFER_ENCODING`, so an alias beside the proxy's own framing or credential header could
be the one they believe. On raw sockets, on the lean and the general path."""

from __future__ import annotations

import pytest

from tests import rawhttp
from tests.builders import api_key, connection, on_path
from tests.plane import MakeProxy

SECRET = "sk-underscore-upstream-55e1"
ALIASES = [
    ("Transfer_Encoding", "chunked"),
    ("Content_Length", "5"),
    ("content_length", "7"),
    ("X_Api_Key", "client-chosen"),  # the credential's own header, spelt with `_`
    ("Connection_", "x"),  # not an alias: `connection-` is no managed name
    ("Keep_Alive", "timeout=5"),
    ("X_Forwarded_For", "10.0.0.1"),
    ("X_Connection_Id", "other"),
    ("Proxy_Authorization", "Bearer p"),
]
KEPT = [("X_Custom_Header", "stays"), ("Connection_", "x")]


@pytest.mark.parametrize("path", ["lean", "general"])
async def test_aliases_of_managed_headers_never_reach_the_upstream(
    make_proxy: MakeProxy, path: str
) -> None:
    async with rawhttp.raw_upstream() as upstream:
        svc = connection("svc", upstream.base, api_key("X-Api-Key", "header", SECRET))
        tree = on_path({"connections": [svc]}, path)
        port = rawhttp.port_of(await make_proxy(tree))
        lines = "".join(f"{k}: {v}\r\n" for k, v in [*ALIASES, ("X_Custom_Header", "stays")])
        raw = f"POST /svc/x HTTP/1.1\r\nHost: p\r\n{lines}Content-Length: 3\r\n\r\nabc".encode()
        reply = await rawhttp.round_trip(port, raw)
    assert reply.status == 200
    [received] = upstream.received
    request = received.request
    names = [k for k, _ in request.headers]
    assert request.body == b"abc"
    assert request.get_all("Content-Length") == ["3"]
    assert request.get_all("X-Api-Key") == [SECRET]
    for name, _ in ALIASES:
        if (name, "x") not in KEPT:
            assert name not in names, names
    for name, value in KEPT:
        assert request.get(name) == value
