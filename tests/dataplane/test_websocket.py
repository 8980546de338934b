"""WebSocket through the reverse mode (docs/request-path.md#websocket): the `websockets` package
as client and as upstream, and raw sockets where the bytes themselves are the point."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import ssl
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import (
    api_key,
    bearer,
    certificate_credential,
    connection,
    hmac_sha256,
    oauth2_token,
)
from tests.https_clients import tls_server_context
from tests.oauth_server import AuthServer, Client, create_auth_app, serve_app
from tests.plane import MakeProxy, PlaneServer
from tests.wsupstream import sample, ws_upstream

BEARER = "canary-ws-bearer-5c1"
CLOSES = "signing_proxy_websocket_closes_total"
HANDSHAKE = (
    b"GET /svc/chat HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
KEY = "canary-ws-apikey-77e"
OAUTH_SECRET = "canary-ws-oauth-secret-0b2"


async def start(make_proxy: MakeProxy, *connections: dict[str, Any], **top: Any) -> Any:
    return await make_proxy({"connections": list(connections), **top})


def ws_url(proxy: Any, path: str) -> str:
    return f"ws://127.0.0.1:{rawhttp.port_of(proxy)}{path}"


async def test_echo_both_ways_with_credentials_on_the_handshake(make_proxy: MakeProxy) -> None:
    async with ws_upstream() as upstream:
        proxy = await start(
            make_proxy,
            connection("svc", upstream.base, api_key("X-Api-Key", "header", KEY), bearer(BEARER)),
        )
        async with connect(
            ws_url(proxy, "/svc/chat?room=7"),
            proxy=None,
            additional_headers={"Authorization": "Bearer client-dummy", "X-Kept": "yes"},
        ) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary\xff")
            assert await ws.recv() == b"\x00\x01binary\xff"
            handshake_reply = ws.response
        [seen] = upstream.handshakes
        # Every credential of the chain reached the upstream, the client's dummy key did not.
        assert seen.get_all("Authorization") == [f"Bearer {BEARER}"]
        assert seen.get_all("X-Api-Key") == [KEY]
        assert seen.get_all("X-Kept") == ["yes"]
        assert seen["Upgrade"].lower() == "websocket"
        assert upstream.paths == ["/chat?room=7"]
        # ... and nothing of them came back to the client.
        assert handshake_reply is not None
        answer = str(handshake_reply.headers) + handshake_reply.reason_phrase
        assert BEARER not in answer and KEY not in answer
        assert handshake_reply.status_code == 101


async def test_large_messages_both_ways(make_proxy: MakeProxy) -> None:
    size = 4 * 2**20  # four times the websockets default limit
    async with ws_upstream(max_size=None) as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        async with connect(ws_url(proxy, "/svc/"), proxy=None, max_size=None) as ws:
            for message in (os.urandom(size), os.urandom(size // 3)):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 30) == message
            text = "é" * (size // 4)
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 30) == text


async def test_close_from_the_client_reaches_the_upstream(make_proxy: MakeProxy) -> None:
    closed: asyncio.Future[tuple[int | None, str | None]] = asyncio.Future()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            closed.set_result((rcvd.code, rcvd.reason) if rcvd else (None, None))

    async with ws_upstream(handler) as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        labels = {"connection": "svc", "reason": "upstream_closed"}
        before = sample(CLOSES, **labels)
        async with connect(ws_url(proxy, "/svc/"), proxy=None) as ws:
            await ws.close(code=4000, reason="client is done")
        assert await asyncio.wait_for(closed, 5) == (4000, "client is done")
        # After the closing handshake the server closes TCP first (RFC 6455 §7.1.1): the
        # tunnel ended on the upstream's side.
        await wait_for_sample(CLOSES, before + 1, **labels)


async def test_a_client_dropping_the_connection_ends_the_upstreams(make_proxy: MakeProxy) -> None:
    gone: asyncio.Future[None] = asyncio.Future()

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()
        gone.set_result(None)

    async with ws_upstream(handler) as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        labels = {"connection": "svc", "reason": "client_closed"}
        before = sample(CLOSES, **labels)
        async with rawhttp.opened(rawhttp.port_of(proxy)) as (reader, writer):
            writer.write(HANDSHAKE)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
        await asyncio.wait_for(gone, 5)  # no closing handshake: the TCP close carried through
        await wait_for_sample(CLOSES, before + 1, **labels)


async def test_close_from_the_upstream_reaches_the_client(make_proxy: MakeProxy) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("bye soon")
        await ws.close(code=4001, reason="upstream is done")

    async with ws_upstream(handler) as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        async with connect(ws_url(proxy, "/svc/"), proxy=None) as ws:
            assert await ws.recv() == "bye soon"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "upstream is done")


async def wait_for_sample(name: str, value: float, **labels: str) -> None:
    async with asyncio.timeout(5):
        while sample(name, **labels) < value:
            await asyncio.sleep(0.02)


async def test_idle_timeout_closes_and_metrics_count(make_proxy: MakeProxy) -> None:
    async with ws_upstream() as upstream:
        proxy = await start(
            make_proxy, connection("idle", upstream.base), timeouts={"websocketIdle": 0.5}
        )
        labels = {"connection": "idle"}
        closes = sample("signing_proxy_websocket_closes_total", reason="idle_timeout", **labels)
        up = sample("signing_proxy_websocket_bytes_total", direction="to_upstream", **labels)
        down = sample("signing_proxy_websocket_bytes_total", direction="to_client", **labels)
        async with connect(
            ws_url(proxy, "/idle/"), proxy=None, ping_interval=None, compression=None
        ) as ws:
            assert sample("signing_proxy_websockets_open", **labels) == 1
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
            loop = asyncio.get_running_loop()
            quiet_since = loop.time()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)  # nothing moves: the proxy closes it
            # (0.4: the proxy saw the last byte a moment before this client did)
            assert loop.time() - quiet_since >= 0.4
        assert sample("signing_proxy_websockets_open", **labels) == 0
        assert (
            sample("signing_proxy_websocket_closes_total", reason="idle_timeout", **labels)
            == closes + 1
        )
        # A 1000-byte text frame each way (plus its header; the client's is masked).
        assert (
            sample("signing_proxy_websocket_bytes_total", direction="to_upstream", **labels)
            > up + 1000
        )
        assert (
            sample("signing_proxy_websocket_bytes_total", direction="to_client", **labels)
            > down + 1000
        )


async def test_an_answer_other_than_101_is_relayed_as_a_response(make_proxy: MakeProxy) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "no websocket for you\n")

    async with ws_upstream(gate=refuse) as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base, bearer(BEARER)))
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(proxy, "/svc/"), proxy=None)
        assert refused.value.response.status_code == 403
        assert refused.value.response.body == b"no websocket for you\n"
        # The upgrade attempt's upstream connection never went back to the pool.
        assert proxy.app.forwarder.upstream.pool.idle_count() == 0


async def test_the_upgraded_connection_never_returns_to_the_pool(make_proxy: MakeProxy) -> None:
    async with ws_upstream() as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        async with connect(ws_url(proxy, "/svc/"), proxy=None) as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
        pool = proxy.app.forwarder.upstream.pool
        assert pool.idle_count() == 0
        assert not pool._all  # nothing of the tunnel is left in the pool's books


async def test_another_protocol_upgrade_is_ignored(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        # What `curl --http2 http://...` sends: the server may ignore it (RFC 9110 §7.8).
        response = await rawhttp.round_trip(
            rawhttp.port_of(proxy),
            b"GET /svc/x HTTP/1.1\r\nHost: p\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        )
        assert response.status == 200
        assert response.body == b"ok"
        [seen] = upstream.received
        assert seen.request.get_all("Upgrade") == []
        assert seen.request.get_all("HTTP2-Settings") == []


async def test_raw_bytes_pass_untouched_both_ways(make_proxy: MakeProxy) -> None:
    """The tunnel relays bytes, not messages: a frame the client sends with its handshake and
    one the upstream sends with its 101 arrive exactly as written, and so does what follows."""
    from_client = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # RFC 6455 §5.7: masked "Hello"
    from_upstream = b"\x81\x05Hello"  # RFC 6455 §5.7: unmasked "Hello"
    seen: list[bytes] = []
    handshake: list[bytes] = []

    async def upstream_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshake.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" + from_upstream
        )
        seen.append(await reader.readexactly(len(from_client)))
        seen.append(await reader.readexactly(6))
        writer.write(b"\x88\x02\x03\xe8")  # close, 1000
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream_side, "127.0.0.1", 0)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        proxy = await start(make_proxy, connection("svc", base, bearer(BEARER)))
        async with rawhttp.opened(rawhttp.port_of(proxy)) as (reader, writer):
            writer.write(HANDSHAKE + from_client)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
            assert b"\r\nConnection: Upgrade\r\n" in head and b"\r\nUpgrade: websocket\r\n" in head
            assert (
                await asyncio.wait_for(reader.readexactly(len(from_upstream)), 5) == from_upstream
            )
            writer.write(b"\x88\x80\x11\x22\x33\x44")  # a masked close frame, no payload
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x88\x02\x03\xe8"
            assert await asyncio.wait_for(reader.read(), 5) == b""  # then the proxy closes
    assert seen == [from_client, b"\x88\x80\x11\x22\x33\x44"]
    request = handshake[0].decode("latin-1")
    assert request.startswith("GET /chat HTTP/1.1\r\n")
    assert f"\r\nAuthorization: Bearer {BEARER}\r\n" in request
    assert "\r\nConnection: Upgrade\r\n" in request and "\r\nUpgrade: websocket\r\n" in request


async def test_oauth2_handshake_refreshes_on_401_and_replays(make_proxy: MakeProxy) -> None:
    """The provider revoked the token: the handshake's 401 gets one refresh and the handshake
    goes once more, with the new token, on a new upstream connection."""
    auth = AuthServer(clients={"cid": Client(OAUTH_SECRET)})
    seed = auth.issue("cid")
    statuses: list[int] = []

    def check_token(ws: ServerConnection, request: Request) -> Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        entry = auth.access.get(token)
        if entry is None or entry[0] <= time.time():
            statuses.append(401)
            refused = ws.respond(401, "token expired or unknown\n")
            refused.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return refused
        statuses.append(101)
        return None

    async with AsyncExitStack() as exits, ws_upstream(gate=check_token) as upstream:
        token_url = await serve_app(create_auth_app(auth), exits) + "/token"
        proxy = await start(
            make_proxy,
            connection("svc", upstream.base, oauth2_token(token_url, "cid", OAUTH_SECRET, seed)),
        )
        auth.expire_access_tokens()
        async with connect(ws_url(proxy, "/svc/"), proxy=None) as ws:
            await ws.send("after a refresh")
            assert await ws.recv() == "after a refresh"
        assert statuses == [401, 101]
        assert auth.grants["refresh_token"] == 1
        first, replayed = (h["Authorization"] for h in upstream.handshakes)
        assert first == f"Bearer {seed['access_token']}"
        assert replayed != first and replayed.startswith("Bearer ")


async def test_hmac_over_the_handshake(make_proxy: MakeProxy) -> None:
    key = "canary-ws-hmac-key-3d9"

    def verify(ws: ServerConnection, request: Request) -> Response | None:
        url = f"http://127.0.0.1:{ws.local_address[1]}{request.path}"
        expected = hmac.new(key.encode(), url.encode(), hashlib.sha256).hexdigest()
        if request.headers.get("X-Sig") != expected:
            return ws.respond(403, "bad signature\n")
        return None

    async with ws_upstream(gate=verify) as upstream:
        proxy = await start(
            make_proxy, connection("svc", upstream.base, hmac_sha256(key, "url", "body"))
        )
        async with connect(ws_url(proxy, "/svc/feed?since=1%2C2"), proxy=None) as ws:
            await ws.send("signed")
            assert await ws.recv() == "signed"
        assert upstream.paths == ["/feed?since=1%2C2"]


async def test_client_key_taken_off_the_handshake(make_proxy: MakeProxy) -> None:
    client_key = "canary-ws-client-key-a80"
    async with ws_upstream() as upstream:
        proxy = await start(
            make_proxy,
            connection("svc", upstream.base, bearer(BEARER)),
            clients=[{"name": "agent", "key": client_key, "connections": ["svc"]}],
        )
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(proxy, "/svc/"), proxy=None)
        assert refused.value.response.status_code == 401
        assert upstream.handshakes == []  # refused before any upstream contact
        async with connect(
            ws_url(proxy, "/svc/"), proxy=None, additional_headers={"X-Api-Key": client_key}
        ) as ws:
            await ws.send("as agent")
            assert await ws.recv() == "as agent"
        [seen] = upstream.handshakes
        assert client_key not in str(seen)
        assert seen["Authorization"] == f"Bearer {BEARER}"


async def test_access_line_when_the_websocket_ends(
    make_proxy: MakeProxy, access_log: AccessLogFile
) -> None:
    async with ws_upstream() as upstream:
        proxy = await start(make_proxy, connection("svc", upstream.base))
        async with connect(ws_url(proxy, "/svc/chat"), proxy=None, compression=None) as ws:
            await ws.send("x" * 300)
            assert await ws.recv() == "x" * 300
            await asyncio.sleep(0.3)
        async with asyncio.timeout(5):
            while not access_log.path.read_text():
                await asyncio.sleep(0.02)
        [line] = access_log.parsed()
        assert (line["method"], line["path"], line["status"]) == ("GET", "/svc/chat", "101")
        assert int(line["bytes"]) > 300  # every byte sent to the client after the 101
        assert float(line["duration"]) >= 300


async def test_shutdown_cuts_an_open_websocket_after_the_grace() -> None:
    async with ws_upstream() as upstream:
        runtime = build_runtime({"connections": [connection("down", upstream.base)]}, {})
        server = PlaneServer(create_app(runtime), grace=0.3)
        await server.start_server()
        labels = {"connection": "down", "reason": "shutdown"}
        before = sample(CLOSES, **labels)
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/down/", proxy=None) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                await asyncio.wait_for(server.close(), 5)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
        finally:
            await server.close()
        assert sample(CLOSES, **labels) == before + 1
        assert sample("signing_proxy_websockets_open", connection="down") == 0


async def test_wss_upstream_with_a_client_certificate(make_proxy: MakeProxy) -> None:
    """`ws://proxy/<route>/` to an `https://` baseUrl: the handshake and the tunnel run over
    TLS to the upstream, which requires the connection's client certificate (mTLS)."""
    ca = trustme.CA()
    client_cert = ca.issue_cert("client.example", common_name="client.example")
    context = tls_server_context(ca, "127.0.0.1", client_certificates=ssl.CERT_REQUIRED)
    peers: list[str] = []

    def who(ws: ServerConnection, request: Request) -> Response | None:
        peer = ws.transport.get_extra_info("peercert")
        peers.append(dict(pair[0] for pair in peer["subject"])["commonName"])
        return None

    credential = certificate_credential(client_cert, ca.cert_pem.bytes().decode())
    async with ws_upstream(gate=who, tls=context, max_size=None) as upstream:
        assert upstream.base.startswith("https://")
        proxy = await start(make_proxy, connection("svc", upstream.base, credential))
        async with connect(ws_url(proxy, "/svc/"), proxy=None, max_size=None) as ws:
            message = os.urandom(3 * 2**20)
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), 30) == message
        assert peers == ["client.example"]


async def test_a_client_that_does_not_read_holds_the_upstream_back(make_proxy: MakeProxy) -> None:
    """Flow control through the tunnel: while the client reads nothing, the upstream's writes
    stall once the socket buffers on the way are full (the proxy holds no more than its
    transport's buffer), and then everything arrives, in order."""
    chunk = bytes(range(256)) * 256  # 64 KiB
    written = 0
    stalled: asyncio.Future[int] = asyncio.Future()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        writer.write(b"Connection: Upgrade\r\n\r\n")
        while written < 256 * 2**20:
            writer.write(chunk)
            written += len(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                stalled.set_result(written)
                break
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        proxy = await start(make_proxy, connection("svc", base))
        async with rawhttp.opened(rawhttp.port_of(proxy)) as (reader, writer):
            writer.write(HANDSHAKE)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
            held = await asyncio.wait_for(stalled, 30)  # the client has read nothing since
            assert held < 64 * 2**20  # socket buffers, not the whole flood
            received = await asyncio.wait_for(reader.read(), 30)  # until the upstream closes
    assert len(received) == held
    assert received == chunk * (held // len(chunk))


async def test_a_reload_sets_the_idle_timeout_of_new_websockets(make_proxy: MakeProxy) -> None:
    async with ws_upstream() as upstream:
        tree: dict[str, Any] = {"connections": [connection("svc", upstream.base)]}
        proxy = await make_proxy(tree)
        await proxy.app.reload(build_runtime({**tree, "timeouts": {"websocketIdle": 0.3}}, {}))
        async with connect(ws_url(proxy, "/svc/"), proxy=None, ping_interval=None) as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)


async def test_a_101_to_another_protocol_is_a_502(make_proxy: MakeProxy) -> None:
    async def wrong_protocol(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        )
        await writer.drain()
        await reader.read()  # until the proxy closes it
        writer.close()

    server = await asyncio.start_server(wrong_protocol, "127.0.0.1", 0)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        proxy = await start(make_proxy, connection("svc", base))
        response = await rawhttp.round_trip(rawhttp.port_of(proxy), HANDSHAKE)
    assert response.status == 502
    assert json.loads(response.body)["code"] == "upstream_bad_response"
    assert "http_protocol_error" in (response.get("Proxy-Status") or "")
