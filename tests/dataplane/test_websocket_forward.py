"""WebSocket through a CONNECT tunnel (docs/request-path.md#websocket, forward-proxy mode): the
`websockets` client with `proxy=` does CONNECT, TLS against the proxy's per-host leaf, then its
handshake, which the proxy signs and sends to a TLS `websockets` upstream."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.forwardproxy import client_context, running_plane
from tests.https_clients import tls_server_context
from tests.wsupstream import sample, ws_upstream

BEARER = "canary-wss-bearer-e41"


def bound_tree(port: int, **timeouts: float) -> dict[str, Any]:
    """One connection to the TLS upstream at `localhost:port`, bound to that host (its default)."""
    return {
        "forwardProxy": {"enabled": True},
        "timeouts": timeouts,
        "connections": [
            {
                "name": "wss",
                "baseUrl": f"https://localhost:{port}",
                "credentials": [
                    {
                        "authSchemeConfig": {"type": "bearer"},
                        "credential": {"type": "string", "data": {"string": {"value": BEARER}}},
                    }
                ],
            }
        ],
    }


@pytest.fixture
def upstream_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for `localhost` from a test CA that the proxy's upstream client trusts
    (its default context reads `SSL_CERT_FILE`, as OpenSSL does)."""
    ca = trustme.CA()
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return tls_server_context(ca, "localhost")


async def test_wss_through_a_connect_tunnel(upstream_tls: ssl.SSLContext) -> None:
    async with ws_upstream(tls=upstream_tls, max_size=None) as upstream:
        port = upstream.port
        async with running_plane(bound_tree(port)) as (plane, proxy_port):
            async with connect(
                f"wss://localhost:{upstream.port}/v1/stream?x=1",
                proxy=f"http://127.0.0.1:{proxy_port}",
                ssl=client_context(plane),
                additional_headers={"Authorization": "Bearer sk-placeholder"},
                max_size=None,
            ) as ws:
                # The client trusts the proxy's CA alone: its TLS session is the proxy's.
                peer = ws.transport.get_extra_info("peercert")
                assert ("DNS", "localhost") in peer["subjectAltName"]
                await ws.send("through the tunnel")
                assert await ws.recv() == "through the tunnel"
                large = os.urandom(2 * 2**20)
                await ws.send(large)
                assert await asyncio.wait_for(ws.recv(), 30) == large
                assert sample("signing_proxy_websockets_open", connection="wss") == 1
    [seen] = upstream.handshakes
    assert seen.get_all("Authorization") == [f"Bearer {BEARER}"]  # not the placeholder
    assert seen["Host"] == f"localhost:{port}"
    assert upstream.paths == ["/v1/stream?x=1"]
    assert sample("signing_proxy_websockets_open", connection="wss") == 0


async def test_close_and_idle_timeout_inside_a_tunnel(upstream_tls: ssl.SSLContext) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    async with ws_upstream(handler, tls=upstream_tls) as upstream:
        tree = bound_tree(upstream.port, websocketIdle=0.5)
        async with running_plane(tree) as (plane, proxy_port):
            labels = {"connection": "wss", "reason": "idle_timeout"}
            before = sample("signing_proxy_websocket_closes_total", **labels)
            async with connect(
                f"wss://localhost:{upstream.port}/",
                proxy=f"http://127.0.0.1:{proxy_port}",
                ssl=client_context(plane),
                ping_interval=None,
            ) as ws:
                assert await ws.recv() == "hello"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)  # quiet: the proxy ends it
            assert sample("signing_proxy_websocket_closes_total", **labels) == before + 1
