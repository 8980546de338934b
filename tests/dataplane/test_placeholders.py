"""`secret` placeholders through the reverse mode, on raw sockets (docs/placeholders.md).

The placeholder in a declared header of its own connection is swapped for the secret; anywhere
else — another header, the request-target, another connection's route — the request is 403
`placeholder_misdirected` and no upstream sees a byte of it (each upstream counts its requests
and TCP connections).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from proxy.connections.runtime import build_runtime
from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import bearer, connection
from tests.placeholder import secret
from tests.plane import MakeProxy, PlaneServer
from tests.wsupstream import ws_upstream

PLACEHOLDER = "sk-placeholder-agent-0001"
OTHER_PLACEHOLDER = "sk-placeholder-agent-0002"
SECRET = "sk-real-CANARY-6b1d9f"
OTHER_SECRET = "sk-real-CANARY-other-77aa"


@dataclass
class Setup:
    port: int
    ai: rawhttp.RawUpstream  # its connection holds PLACEHOLDER, in Authorization and X-Api-Key
    mail: rawhttp.RawUpstream  # its connection holds OTHER_PLACEHOLDER in Authorization
    plain: rawhttp.RawUpstream  # a bearer connection without any placeholder

    @property
    def upstreams(self) -> list[rawhttp.RawUpstream]:
        return [self.ai, self.mail, self.plain]

    def hits(self) -> int:
        return sum(len(u.received) + u.connections for u in self.upstreams)


@pytest.fixture
async def setup(make_proxy: MakeProxy) -> AsyncIterator[Setup]:
    async with AsyncExitStack() as stack:
        ai = await stack.enter_async_context(rawhttp.raw_upstream())
        mail = await stack.enter_async_context(rawhttp.raw_upstream())
        plain = await stack.enter_async_context(rawhttp.raw_upstream())
        tree = {
            "connections": [
                connection(
                    "ai", ai.base, secret(PLACEHOLDER, ["Authorization", "X-Api-Key"], SECRET)
                ),
                connection(
                    "mail", mail.base, secret(OTHER_PLACEHOLDER, ["Authorization"], OTHER_SECRET)
                ),
                connection("plain", plain.base, bearer("canary-plain-token")),
            ]
        }
        port = rawhttp.port_of(await make_proxy(tree))
        yield Setup(port, ai, mail, plain)


def request(target: str, headers: str) -> bytes:
    return rawhttp.get(target, host="proxy.test", headers=headers)


async def test_placeholder_in_a_declared_header_becomes_the_secret(setup: Setup) -> None:
    response = await rawhttp.round_trip(
        setup.port, request("/ai/v1/models?limit=2", f"Authorization: Bearer {PLACEHOLDER}\r\n")
    )
    assert response.status == 200
    [seen] = setup.ai.received
    assert seen.request.target == "/v1/models?limit=2"
    assert seen.request.get_all("Authorization") == [f"Bearer {SECRET}"]
    # The whole value works too, in the other declared header, in any case of its name.
    await rawhttp.round_trip(setup.port, request("/ai/x", f"x-api-key: {PLACEHOLDER}\r\n"))
    assert setup.ai.received[1].request.get_all("x-api-key") == [SECRET]
    # A declared header without the placeholder goes up as sent; nothing else changes.
    await rawhttp.round_trip(setup.port, request("/ai/y", "X-Api-Key: own-key\r\nX-Other: 1\r\n"))
    third = setup.ai.received[2].request
    assert third.get_all("X-Api-Key") == ["own-key"] and third.get("X-Other") == "1"
    assert all(SECRET not in value for _, value in third.headers)
    assert setup.mail.received == [] and setup.plain.received == []


async def test_a_secret_is_inserted_as_written(make_proxy: MakeProxy) -> None:
    # Backslashes and group references in a secret are text, never a regex template.
    value = r"s\1e\g<0>c&ret"
    async with rawhttp.raw_upstream() as upstream:
        tree = {
            "connections": [connection("ai", upstream.base, secret(PLACEHOLDER, ["X-Key"], value))]
        }
        port = rawhttp.port_of(await make_proxy(tree))
        await rawhttp.round_trip(port, request("/ai/", f"X-Key: Token {PLACEHOLDER}\r\n"))
        assert upstream.received[0].request.get_all("X-Key") == [f"Token {value}"]


MISDIRECTED = [
    pytest.param("/ai/v1", f"X-Other: {PLACEHOLDER}\r\n", "x-other", id="another-header"),
    pytest.param("/ai/v1", f"Cookie: key={PLACEHOLDER}\r\n", "cookie", id="cookie"),
    pytest.param(
        "/ai/v1",
        f"Authorization: Bearer {PLACEHOLDER}\r\nX-Debug: {PLACEHOLDER}\r\n",
        "x-debug",
        id="declared-and-another",
    ),
    pytest.param(f"/ai/v1?key={PLACEHOLDER}", "", "request-target", id="query"),
    pytest.param(
        "/ai/v1?key=" + "".join(f"%{b:02X}" for b in PLACEHOLDER.encode()),
        "",
        "request-target",
        id="query-percent-encoded",
    ),
    pytest.param(f"/ai/{PLACEHOLDER}/x", "", "request-target", id="path"),
    pytest.param(
        "/ai/v1", f"Authorization: Bearer x{PLACEHOLDER}\r\n", "not the whole", id="not-a-token"
    ),
    pytest.param(
        "/mail/send", f"Authorization: Bearer {PLACEHOLDER}\r\n", "another connection", id="route"
    ),
    pytest.param(
        "/plain/x", f"Authorization: Bearer {PLACEHOLDER}\r\n", "another connection", id="plain"
    ),
    pytest.param(
        "/ai/v1", f"Authorization: Bearer {OTHER_PLACEHOLDER}\r\n", "another", id="other-secret"
    ),
    pytest.param("/ai/v1", f"X_Api_Key: {PLACEHOLDER}\r\n", "a header", id="underscore-alias"),
]


REQUESTS = "signing_proxy_requests_total"


@pytest.mark.parametrize(("target", "headers", "where"), MISDIRECTED)
async def test_a_misdirected_placeholder_is_refused_and_nothing_is_sent(
    setup: Setup, access_log: AccessLogFile, target: str, headers: str, where: str
) -> None:
    connection = target.split("/")[1]
    labels = {"connection": connection, "method": "GET", "code": "403"}
    before = REGISTRY.get_sample_value(REQUESTS, labels) or 0.0
    response = await rawhttp.round_trip(setup.port, request(target, headers))
    assert response.status == 403
    body = json.loads(response.body)
    assert body["code"] == "placeholder_misdirected"
    proxy_status = response.get("Proxy-Status") or ""
    assert proxy_status.startswith("signing-proxy; error=proxy_internal_response")
    assert "placeholder_misdirected" in proxy_status and where in proxy_status + body.get(
        "details", ""
    )
    # No upstream was connected to, let alone sent anything.
    assert setup.hits() == 0
    # The answer names where, never what; no secret is in it or in the access line (which
    # shows the path as the client sent it: a placeholder is no secret).
    answer = response.body.decode() + proxy_status
    log = access_log.lines()
    for value in (PLACEHOLDER, OTHER_PLACEHOLDER, SECRET, OTHER_SECRET):
        assert value not in answer
        assert value in (PLACEHOLDER, OTHER_PLACEHOLDER) or value not in "\n".join(log)
    # Counted as a 403 of the connection it was sent to, like every refusal.
    assert (REGISTRY.get_sample_value(REQUESTS, labels) or 0.0) - before == 1


async def test_other_connections_work_as_before(setup: Setup) -> None:
    # No placeholder: the guard lets everything through untouched, on every connection.
    response = await rawhttp.round_trip(
        setup.port, request("/plain/x?q=1", "Authorization: Bearer client-dummy\r\n")
    )
    assert response.status == 200
    [seen] = setup.plain.received
    assert seen.request.get_all("Authorization") == ["Bearer canary-plain-token"]
    response = await rawhttp.round_trip(
        setup.port, request("/mail/send", f"Authorization: Bearer {OTHER_PLACEHOLDER}\r\n")
    )
    assert response.status == 200
    assert setup.mail.received[0].request.get_all("Authorization") == [f"Bearer {OTHER_SECRET}"]


async def test_a_body_is_not_scanned(setup: Setup) -> None:
    body = f'{{"note": "{PLACEHOLDER}"}}'.encode()
    raw = (
        b"POST /ai/v1 HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n"
        + f"Authorization: Bearer {PLACEHOLDER}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    response = await rawhttp.round_trip(setup.port, raw)
    assert response.status == 200
    [seen] = setup.ai.received
    assert seen.request.body == body
    assert seen.request.get_all("Authorization") == [f"Bearer {SECRET}"]


async def test_keep_alive_goes_on_after_a_refusal(setup: Setup) -> None:
    # A refused request is answered in the proxy's voice; the next request on the same client
    # connection is served.
    async with rawhttp.opened(setup.port) as (reader, writer):
        writer.write(
            b"GET /plain/a HTTP/1.1\r\nHost: p\r\n"
            + f"X-Leak: {PLACEHOLDER}\r\n\r\n".encode()
            + b"GET /plain/b HTTP/1.1\r\nHost: p\r\n\r\n"
        )
        first = await rawhttp.read_response(reader)
        second = await rawhttp.read_response(reader)
    assert (first.status, second.status) == (403, 200)
    assert setup.plain.targets == ["/b"]


async def test_a_websocket_handshake_gets_the_secret_or_is_refused(make_proxy: MakeProxy) -> None:
    # The handshake is a request like any other: the placeholder swapped in its declared header,
    # refused (and nothing dialled) anywhere else.
    async with ws_upstream() as upstream:
        tree = {
            "connections": [
                connection("ws", upstream.base, secret(PLACEHOLDER, ["Authorization"], SECRET))
            ]
        }
        proxy = await make_proxy(tree)
        url = f"ws://127.0.0.1:{rawhttp.port_of(proxy)}/ws/chat"
        headers = {"Authorization": f"Bearer {PLACEHOLDER}"}
        async with connect(url, proxy=None, additional_headers=headers) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
        [seen] = upstream.handshakes
        assert seen.get_all("Authorization") == [f"Bearer {SECRET}"]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url + f"?token={PLACEHOLDER}", proxy=None):
                pass
        assert refused.value.response.status_code == 403
        assert b"placeholder_misdirected" in refused.value.response.body
        assert len(upstream.handshakes) == 1


async def test_a_reload_binds_and_unbinds_placeholders(make_proxy: MakeProxy) -> None:
    # SIGHUP's path (`DataPlane.reload`): the guard follows the file, in both directions.
    async with rawhttp.raw_upstream() as upstream:
        plain = {"connections": [connection("plain", upstream.base, bearer("canary-plain-2"))]}
        proxy = await make_proxy(plain)
        assert isinstance(proxy.server, PlaneServer)
        plane = proxy.server.app
        port = rawhttp.port_of(proxy)
        leak = request("/plain/x", f"X-Debug: {PLACEHOLDER}\r\n")
        assert (await rawhttp.round_trip(port, leak)).status == 200  # no placeholder bound yet
        bound = {
            "connections": [
                *plain["connections"],
                connection("ai", upstream.base, secret(PLACEHOLDER, ["Authorization"], SECRET)),
            ]
        }
        await plane.reload(build_runtime(bound, {}))
        assert (await rawhttp.round_trip(port, leak)).status == 403
        swap = request("/ai/y", f"Authorization: Bearer {PLACEHOLDER}\r\n")
        assert (await rawhttp.round_trip(port, swap)).status == 200
        assert upstream.received[-1].request.get_all("Authorization") == [f"Bearer {SECRET}"]
        await plane.reload(build_runtime(plain, {}))
        assert (await rawhttp.round_trip(port, leak)).status == 200
        assert len(upstream.received) == 3


async def test_with_clients_the_key_and_the_placeholder_travel_apart(
    make_proxy: MakeProxy,
) -> None:
    # A client key and a placeholder are different things in different headers: the key
    # (`X-Api-Key` here, `Proxy-Authorization` in forward mode) is checked and dropped, the
    # placeholder in its declared header swapped.
    client_key = "ck-agent-CANARY-90ab"
    async with rawhttp.raw_upstream() as upstream:
        tree = {
            "clients": [{"name": "agent", "key": client_key, "connections": ["ai"]}],
            "connections": [
                connection("ai", upstream.base, secret(PLACEHOLDER, ["Authorization"], SECRET))
            ],
        }
        port = rawhttp.port_of(await make_proxy(tree))
        headers = f"X-Api-Key: {client_key}\r\nAuthorization: Bearer {PLACEHOLDER}\r\n"
        assert (await rawhttp.round_trip(port, request("/ai/v1", headers))).status == 200
        [seen] = upstream.received
        assert seen.request.get_all("Authorization") == [f"Bearer {SECRET}"]
        assert all(client_key not in value for _, value in seen.request.headers)
        # Without the client key the placeholder alone gets nobody in.
        alone = request("/ai/v1", f"Authorization: Bearer {PLACEHOLDER}\r\n")
        assert (await rawhttp.round_trip(port, alone)).status == 401
        assert len(upstream.received) == 1
