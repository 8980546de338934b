"""Header hygiene in both directions (docs/request-path.md, RFC 9110 §7.6.1), checked on raw
bytes."""

from __future__ import annotations

from typing import Any

from tests import rawhttp
from tests.builders import api_key, bearer, connection
from tests.plane import MakeProxy

NONE_CREDENTIAL = {"authSchemeConfig": {"type": "none"}, "credential": {"type": "none"}}


async def start(make_proxy: MakeProxy, *connections: dict[str, Any], **top: Any) -> int:
    return rawhttp.port_of(await make_proxy({"connections": list(connections), **top}))


async def sent_upstream(
    make_proxy: MakeProxy, *credentials: dict[str, Any], headers: str = "", **extra: Any
) -> rawhttp.Message:
    """The request the upstream gets for a client's `GET /svc/x` with `headers`, through the
    connection `svc` with `credentials` (`extra`: its other settings)."""
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, connection("svc", upstream.base, *credentials, **extra))
        await rawhttp.round_trip(port, rawhttp.get("/svc/x", headers=headers))
        [seen] = upstream.received
        return seen.request


async def relayed(make_proxy: MakeProxy, answer: bytes) -> rawhttp.Message:
    """What a client gets for `GET /svc/x` when the upstream answers with the bytes `answer`."""
    async with rawhttp.raw_upstream(rawhttp.scripted(answer)) as upstream:
        port = await start(make_proxy, connection("svc", upstream.base))
        return await rawhttp.round_trip(port, rawhttp.get("/svc/x"))


def names(message: rawhttp.Message) -> list[str]:
    return [k.lower() for k, _ in message.headers]


async def test_request_hop_by_hop_headers_are_dropped(make_proxy: MakeProxy) -> None:
    seen = await sent_upstream(
        make_proxy,
        bearer("canary-hop"),
        headers=(
            "X-Named-Hop: 1\r\n"
            "Keep-Alive: timeout=5\r\n"
            "TE: trailers\r\n"
            "Trailer: X-Checksum\r\n"
            "Proxy-Authorization: Basic Y2FuYXJ5LXByb3h5OnB3\r\n"
            "Proxy-Connection: keep-alive\r\n"
            "X-Kept: yes\r\n"
            "Connection: X-Named-Hop, keep-alive\r\n"
        ),
    )
    sent = names(seen)
    for hop in ("x-named-hop", "keep-alive", "te", "trailer", "proxy-authorization"):
        assert hop not in sent
    assert "proxy-connection" not in sent
    assert seen.get_all("X-Kept") == ["yes"]
    # The upstream hop's own Connection header (if any) is the proxy's, not the client's.
    assert all("x-named-hop" not in v.lower() for v in seen.get_all("Connection"))


async def test_only_a_websocket_upgrade_is_forwarded(make_proxy: MakeProxy) -> None:
    # A WebSocket handshake asks the upstream for `websocket` and nothing else the client's
    # `Connection` named (docs/request-path.md#websocket); any other `Upgrade` is dropped.
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, connection("svc", upstream.base))
        for upgrade in ("websocket, h2c", "h2c"):
            response = await rawhttp.round_trip(
                port,
                b"GET /svc/ws HTTP/1.1\r\nHost: p\r\nUpgrade: %s\r\n"
                b"Connection: Upgrade, X-Named-Hop\r\nX-Named-Hop: 1\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"\r\n" % upgrade.encode(),
            )
            assert response.status == 200  # not a 101: relayed as a plain response
        websocket, other = (received.request for received in upstream.received)
        assert websocket.get_all("Upgrade") == ["websocket"]
        assert websocket.get_all("Connection") == ["Upgrade"]
        assert "x-named-hop" not in names(websocket)
        assert "upgrade" not in names(other)
        assert all("upgrade" not in v.lower() for v in other.get_all("Connection"))


async def test_response_hop_by_hop_headers_are_dropped(make_proxy: MakeProxy) -> None:
    response = await relayed(
        make_proxy,
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: X-Upstream-Hop\r\n"
        b"X-Upstream-Hop: secret-topology\r\n"
        b"Keep-Alive: timeout=30\r\n"
        b"Proxy-Authenticate: Basic realm=upstream\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"Upgrade: h2c\r\n"
        b"Trailer: X-Checksum\r\n"
        b"X-End-To-End: kept\r\n"
        b"Content-Length: 2\r\n\r\nok",
    )
    got = names(response)
    for hop in ("x-upstream-hop", "keep-alive", "proxy-authenticate", "upgrade", "trailer"):
        assert hop not in got
    assert "proxy-connection" not in got
    assert all("x-upstream-hop" not in v.lower() for v in response.get_all("Connection"))
    assert response.get_all("X-End-To-End") == ["kept"]
    assert response.body == b"ok"


async def test_host_is_the_upstreams(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, connection("svc", upstream.base))
        await rawhttp.round_trip(port, rawhttp.get("/svc/x", host="client-facing.example"))
        [seen] = upstream.received
        assert seen.request.get_all("Host") == [f"127.0.0.1:{upstream.port}"]


async def test_credential_header_replaces_clients_case_insensitively(
    make_proxy: MakeProxy,
) -> None:
    seen = await sent_upstream(
        make_proxy,
        api_key("X-Api-Key", "header", "canary-key-91"),
        headers="x-api-KEY: client-1\r\nX-API-KEY: client-2\r\n",
    )
    assert seen.get_all("x-api-key") == ["canary-key-91"]


async def test_never_two_authorization_headers(make_proxy: MakeProxy) -> None:
    seen = await sent_upstream(
        make_proxy,
        bearer("canary-bearer"),
        headers="authorization: Bearer sdk-dummy\r\nAUTHORIZATION: Basic eA==\r\n",
    )
    assert seen.get_all("Authorization") == ["Bearer canary-bearer"]


async def test_credential_cookie_replaces_clients(make_proxy: MakeProxy) -> None:
    seen = await sent_upstream(
        make_proxy,
        api_key("session", "cookie", "canary-c"),
        headers="Cookie: session=client; theme=dark\r\nCookie: lang=en\r\n",
    )
    [cookie] = seen.get_all("Cookie")
    pairs = [p.strip() for p in cookie.split(";")]
    assert sorted(pairs) == ["lang=en", "session=canary-c", "theme=dark"]


async def test_client_authorization_dropped_when_connection_authenticates(
    make_proxy: MakeProxy,
) -> None:
    seen = await sent_upstream(
        make_proxy,
        api_key("X-Api-Key", "header", "canary-k2"),
        headers="Authorization: Bearer sdk-dummy\r\n",
    )
    assert seen.get_all("Authorization") == []
    assert seen.get_all("X-Api-Key") == ["canary-k2"]


async def test_client_authorization_kept_when_opted_in(make_proxy: MakeProxy) -> None:
    seen = await sent_upstream(
        make_proxy,
        api_key("X-Api-Key", "header", "canary-k3"),
        headers="Authorization: Bearer per-user\r\n",
        forwardClientAuthorization=True,
    )
    assert seen.get_all("Authorization") == ["Bearer per-user"]


async def test_client_authorization_kept_on_a_none_connection(make_proxy: MakeProxy) -> None:
    seen = await sent_upstream(
        make_proxy, NONE_CREDENTIAL, headers="Authorization: Bearer per-user\r\n"
    )
    assert seen.get_all("Authorization") == ["Bearer per-user"]


CLIENT_FORWARDED = (
    "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Host: internal.example\r\n"
    "X-Forwarded-Proto: http\r\nForwarded: for=10.1.2.3\r\n"
)


async def test_no_forwarded_headers_by_default(make_proxy: MakeProxy) -> None:
    """Internal addresses never reach a third party: the proxy adds none, and drops the client's."""
    sent = names(await sent_upstream(make_proxy, headers=CLIENT_FORWARDED))
    assert not [n for n in sent if n.startswith("x-forwarded-") or n == "forwarded"]


async def test_forwarded_headers_when_configured(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, connection("svc", upstream.base), forwardedHeaders=True)
        await rawhttp.round_trip(
            port, rawhttp.get("/svc/x", host=f"proxy.example:{port}", headers=CLIENT_FORWARDED)
        )
        [seen] = upstream.received
        # One header each: the chain is extended with the peer, not duplicated.
        assert seen.request.get_all("X-Forwarded-For") == ["10.1.2.3, 127.0.0.1"]
        assert seen.request.get_all("X-Forwarded-Proto") == ["http"]
        assert seen.request.get_all("X-Forwarded-Host") == [f"proxy.example:{port}"]


async def test_repeated_response_headers_are_preserved_in_order(make_proxy: MakeProxy) -> None:
    response = await relayed(
        make_proxy,
        b"HTTP/1.1 200 OK\r\n"
        b"Set-Cookie: a=1; Path=/\r\n"
        b"X-Multi: first\r\n"
        b"Set-Cookie: b=2; HttpOnly\r\n"
        b"X-Multi: second\r\n"
        b"Content-Length: 0\r\n\r\n",
    )
    assert response.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert response.get_all("X-Multi") == ["first", "second"]


async def test_upstream_cookies_are_never_replayed(make_proxy: MakeProxy) -> None:
    """No cookie jar: a Set-Cookie for one client never rides on a later request."""
    answer = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=user-a-session; Path=/\r\nContent-Length: 0\r\n\r\n"
    )
    async with rawhttp.raw_upstream(rawhttp.scripted(answer)) as upstream:
        port = await start(make_proxy, connection("svc", upstream.base))
        for _ in range(3):
            await rawhttp.round_trip(port, rawhttp.get("/svc/x"))
        assert len(upstream.received) == 3
        assert all(r.request.get_all("Cookie") == [] for r in upstream.received)


async def test_proxy_adds_no_client_headers_of_its_own(make_proxy: MakeProxy) -> None:
    """A faithful hop: no User-Agent, Accept or Accept-Encoding that the client did not send."""
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, connection("svc", upstream.base))
        await rawhttp.round_trip(port, rawhttp.get("/svc/x"))
        [seen] = upstream.received
        sent = names(seen.request)
        for added in ("user-agent", "accept", "accept-encoding", "content-type"):
            assert added not in sent
