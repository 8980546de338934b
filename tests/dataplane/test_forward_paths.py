"""Path and query are forwarded byte for byte; dot segments and other hosts are refused
(docs/request-path.md).

Requests go to the proxy on a raw socket and the upstream records its raw request line, so no
client or server library can re-quote what is being checked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection
from tests.plane import MakeProxy


async def proxy_port(make_proxy: MakeProxy, base: str, **extra: Any) -> int:
    client = await make_proxy(
        {"connections": [connection("svc", base, bearer("canary-path-token"), **extra)]}
    )
    return rawhttp.port_of(client)


@pytest.mark.parametrize(
    "tail",
    [
        "/repos/a%2Fb/contents",
        "/files/%28draft%29%20v2.txt",
        "/search/a+b",
        "/percent/100%25",
        "/caf%C3%A9/na%C3%AFve",
        "/mixed/%2f%2F%2e1",  # lowercase escapes stay lowercase; "%2e1" is not a dot segment
        "/colon:at@dollar$comma,semi;eq=",
        "/tilde~under_dash-",
        "/trailing/",
        "/.well-known/x",  # a leading dot that is not a whole segment
        "/...",  # three dots is a name, not a dot segment
        "/a..b/c.",
    ],
)
async def test_path_reaches_upstream_byte_for_byte(make_proxy: MakeProxy, tail: str) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base + "/v1")
        response = await rawhttp.round_trip(port, rawhttp.get("/svc" + tail))
        assert response.status == 200
        assert upstream.targets == ["/v1" + tail]


@pytest.mark.parametrize(
    "query",
    [
        "a=1&a=2&b=&c",
        "q=%2F%28x%29%20y+z%25",
        "name=caf%C3%A9&empty=&&flag",
        "x=%2e%2E&sort=-created_at",
        "redirect=http%3A%2F%2Fevil.example%2F",
        "a=1;b=2",
    ],
)
async def test_query_reaches_upstream_byte_for_byte(make_proxy: MakeProxy, query: str) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base)
        response = await rawhttp.round_trip(port, rawhttp.get(f"/svc/items?{query}"))
        assert response.status == 200
        assert upstream.targets == [f"/items?{query}"]


async def test_empty_query_marker_is_not_invented(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base)
        await rawhttp.round_trip(port, rawhttp.get("/svc/items"))
        assert upstream.targets == ["/items"]


@pytest.mark.parametrize(
    ("base_path", "request_path", "expected"),
    [
        ("/api", "/svc", "/api"),
        ("/api", "/svc/", "/api/"),
        ("/api", "/svc/x", "/api/x"),
        ("/api/", "/svc", "/api/"),  # the baseUrl path as written
        ("/api/", "/svc/x", "/api/x"),  # exactly one "/" between
        ("/api/", "/svc/", "/api/"),
        ("", "/svc", "/"),
        ("", "/svc/x/y", "/x/y"),
        ("/", "/svc/x", "/x"),
        ("/a%20b", "/svc/c", "/a%20b/c"),
        ("/api", "/svc?x=1", "/api?x=1"),
    ],
)
async def test_base_path_join(
    make_proxy: MakeProxy, base_path: str, request_path: str, expected: str
) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base + base_path)
        response = await rawhttp.round_trip(port, rawhttp.get(request_path))
        assert response.status == 200
        assert upstream.targets == [expected]


BAD_PATHS = [
    "/svc/..",
    "/svc/../etc/passwd",
    "/svc/a/../../b",
    "/svc/./x",
    "/svc/x/.",
    "/svc/%2e%2E/x",
    "/svc/%2E/x",
    "/svc/.%2e/x",
    "/svc/..%2Fadmin",
    "/svc/..%2fadmin",
    "/svc/a%2F..%2F..%2Fb",
    "/svc/%2E%2E%5Cadmin",
    "/svc/..%5c",
    "/svc/..\\admin",
    "/svc/%252e%252e/x",  # double-encoded
    "/svc/%25252e%25252E/x",  # triple-encoded
    "/svc/%252E%252E%252Fx",
]


@pytest.mark.parametrize("target", BAD_PATHS)
async def test_dot_segments_refused_before_upstream(make_proxy: MakeProxy, target: str) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base + "/v1")
        response = await rawhttp.round_trip(port, rawhttp.get(target))
        assert response.status == 400, response
        assert json.loads(response.body)["code"] == "bad_path"
        proxy_status = response.get("Proxy-Status")
        assert proxy_status is not None
        assert "error=proxy_internal_response" in proxy_status
        assert upstream.received == []
        assert upstream.connections == 0


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example/x",
        "http://127.0.0.1:1/svc/x",
        "https://evil.example/svc/x",
    ],
)
async def test_non_origin_form_targets_never_reach_another_host(
    make_proxy: MakeProxy, target: str
) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base)
        response = await rawhttp.round_trip(port, rawhttp.get(target))
        assert response.status == 400
        assert json.loads(response.body)["code"] == "bad_path"
        assert response.get("Proxy-Status") is not None
        assert upstream.received == []


@pytest.mark.parametrize("target", ["evil.example:443", "*"])
async def test_unparseable_target_is_refused_by_the_http_layer(
    make_proxy: MakeProxy, target: str
) -> None:
    """Authority-form and asterisk-form with GET never become a request: the HTTP parser
    answers a plain 400 itself, before any handler (and so without the JSON body)."""
    async with rawhttp.raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream.base)
        response = await rawhttp.round_trip(port, rawhttp.get(target))
        assert response.status == 400
        assert upstream.received == []


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "/svc//evil.example/x", "/svc/@evil.example"]
)
async def test_authority_lookalikes_stay_on_the_base_origin(
    make_proxy: MakeProxy, target: str
) -> None:
    """`//host` in a path is an empty segment upstream, never an authority."""
    async with rawhttp.raw_upstream() as upstream:
        client = await make_proxy(
            {
                "connections": [
                    connection("svc", upstream.base + "/v1", bearer("canary-path-token")),
                    connection("root", upstream.base + "/r", route="/"),
                ]
            }
        )
        response = await rawhttp.round_trip(rawhttp.port_of(client), rawhttp.get(target))
        assert response.status == 200
        [seen] = upstream.received
        assert seen.request.get("Host") == f"127.0.0.1:{upstream.port}"
        assert seen.request.target.startswith(("/v1/", "/r/"))
