"""TLS on the hop: the loop's SSL with contexts built once, one pool per TLS context (each
client identity gets its own connections, docs/request-path.md certificate), hostname verification
on."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiohttp import web

from proxy.errors import UpstreamUnavailable
from proxy.http1 import Http1Upstream
from proxy.messages import OutboundRequest
from tests.https_clients import tls_server_context


@pytest.fixture
async def tls_port(aiohttp_server: Any, ca: trustme.CA) -> int:
    async def peer(request: web.Request) -> web.Response:
        assert request.transport is not None
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]))

    app = web.Application()
    app.router.add_get("/peer", peer)
    server = await aiohttp_server(app, ssl=tls_server_context(ca, "localhost"))
    port: int = server.port
    return port


@pytest.fixture
async def hop() -> AsyncIterator[Http1Upstream]:
    upstream = Http1Upstream(connect_timeout=2, read_timeout=5)
    yield upstream
    await upstream.close()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def peer_port(hop: Http1Upstream, origin: str, tls: ssl.SSLContext | None) -> str:
    reply = await hop.send(OutboundRequest("GET", origin, "/peer", "", ()), None, tls)
    assert reply.head.status == 200
    return b"".join([chunk async for chunk in reply.iter_chunks()]).decode()


async def test_one_pool_per_tls_context(hop: Http1Upstream, tls_port: int, ca: trustme.CA) -> None:
    origin = f"https://localhost:{tls_port}"
    first, second = trusting(ca), trusting(ca)
    a1 = await peer_port(hop, origin, first)
    a2 = await peer_port(hop, origin, first)
    b1 = await peer_port(hop, origin, second)
    assert a1 == a2  # reused
    assert b1 != a1  # another identity never shares a connection


async def test_untrusted_certificate_is_a_tls_certificate_error(
    hop: Http1Upstream, tls_port: int
) -> None:
    # No context given: the default context (system trust) does not know the test CA.
    with pytest.raises(UpstreamUnavailable) as caught:
        await peer_port(hop, f"https://localhost:{tls_port}", None)
    assert caught.value.proxy_status == "tls_certificate_error"


async def test_hostname_is_verified(hop: Http1Upstream, tls_port: int, ca: trustme.CA) -> None:
    # The certificate names `localhost`; the same server reached as 127.0.0.1 is refused.
    with pytest.raises(UpstreamUnavailable) as caught:
        await peer_port(hop, f"https://127.0.0.1:{tls_port}", trusting(ca))
    assert caught.value.proxy_status == "tls_certificate_error"


async def test_plain_http_to_a_tls_port_is_a_protocol_error_not_a_hang(
    hop: Http1Upstream, tls_port: int
) -> None:
    with pytest.raises(UpstreamUnavailable):
        await peer_port(hop, f"http://localhost:{tls_port}", None)
