"""Redirects pass through, never followed; URLs under baseUrl come back via the proxy route
(docs/request-path.md Responses)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection
from tests.plane import MakeProxy

CLIENT_HOST = "gateway.internal:9999"
VIA_PROXY = f"http://{CLIENT_HOST}/svc"


def replying(status: int, *headers: str) -> rawhttp.Responder:
    async def respond(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        head = "".join(f"{h}\r\n" for h in headers)
        writer.write(f"HTTP/1.1 {status} X\r\n{head}Content-Length: 0\r\n\r\n".encode())
        await writer.drain()

    return respond


async def through_proxy(
    make_proxy: MakeProxy, upstream: rawhttp.RawUpstream, target: str = "/svc/items", **extra: Any
) -> rawhttp.Message:
    client = await make_proxy(
        {
            "connections": [
                connection("svc", upstream.base + "/v1", bearer("canary-redirect"), **extra)
            ]
        }
    )
    return await rawhttp.round_trip(rawhttp.port_of(client), rawhttp.get(target, host=CLIENT_HOST))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_passed_through_not_followed(make_proxy: MakeProxy, status: int) -> None:
    async with rawhttp.raw_upstream() as target_server:
        elsewhere = f"{target_server.base}/stolen"
        async with rawhttp.raw_upstream(replying(status, f"Location: {elsewhere}")) as upstream:
            response = await through_proxy(make_proxy, upstream)
            assert response.status == status
            assert response.get_all("Location") == [elsewhere]  # not under baseUrl: untouched
            assert len(upstream.received) == 1
            assert target_server.received == []  # never followed, so no credential went there


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("{base}/v1/items?page=2", VIA_PROXY + "/items?page=2"),
        ("{base}/v1", VIA_PROXY),
        ("/v1/items/7", VIA_PROXY + "/items/7"),
        ("/elsewhere", "/elsewhere"),
        ("{base}/v2/items", "{base}/v2/items"),
        ("https://other.example/v1/items", "https://other.example/v1/items"),
        ("items/7", "items/7"),
    ],
)
async def test_location_rewrite(make_proxy: MakeProxy, location: str, expected: str) -> None:
    async with rawhttp.raw_upstream() as upstream:
        upstream.responder = replying(302, "Location: " + location.format(base=upstream.base))
        response = await through_proxy(make_proxy, upstream)
        assert response.get_all("Location") == [expected.format(base=upstream.base)]


async def test_link_and_content_location_rewrite(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        b = upstream.base
        upstream.responder = replying(
            200,
            f'Link: <{b}/v1/items?page=2>; rel="next", <https://docs.example/p>; rel="help"',
            f'Link: <{b}/v1/items?page=1>; rel="prev"',
            f"Content-Location: {b}/v1/items/7",
        )
        response = await through_proxy(make_proxy, upstream)
        assert response.get_all("Link") == [
            f'<{VIA_PROXY}/items?page=2>; rel="next", <https://docs.example/p>; rel="help"',
            f'<{VIA_PROXY}/items?page=1>; rel="prev"',
        ]
        assert response.get_all("Content-Location") == [f"{VIA_PROXY}/items/7"]


async def test_rewrite_can_be_turned_off(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        location = f"{upstream.base}/v1/items?page=2"
        link = f'<{upstream.base}/v1/items?page=3>; rel="next"'
        upstream.responder = replying(302, f"Location: {location}", f"Link: {link}")
        response = await through_proxy(make_proxy, upstream, rewriteResponseUrls=False)
        assert response.get_all("Location") == [location]
        assert response.get_all("Link") == [link]


async def test_rewrite_keeps_the_next_request_going_through_the_proxy(
    make_proxy: MakeProxy,
) -> None:
    """Follow the rewritten `next` link by hand: it lands on the same upstream path, signed."""
    async with rawhttp.raw_upstream() as upstream:
        upstream.responder = replying(200, f'Link: <{upstream.base}/v1/items?page=2>; rel="next"')
        client = await make_proxy(
            {"connections": [connection("svc", upstream.base + "/v1", bearer("canary-next"))]}
        )
        port = rawhttp.port_of(client)
        first = await rawhttp.round_trip(port, rawhttp.get("/svc/items", host=f"127.0.0.1:{port}"))
        link = first.get("Link")
        assert link is not None
        next_url = link[1 : link.index(">")]
        prefix = f"http://127.0.0.1:{port}"
        assert next_url.startswith(prefix)
        await rawhttp.round_trip(port, rawhttp.get(next_url[len(prefix) :]))
        assert upstream.targets == ["/v1/items", "/v1/items?page=2"]
        assert upstream.received[1].request.get("Authorization") == "Bearer canary-next"
