"""Routing (docs/request-path.md): the longest route that is a prefix of the path on a segment
boundary."""

from __future__ import annotations

import json

import pytest

from proxy.dataplane.routing import Router
from tests import rawhttp
from tests.builders import connection
from tests.plane import MakeProxy

ROUTES = Router([("/git", "git"), ("/github", "github"), ("/partner", "p1"), ("/partner/v2", "p2")])


@pytest.mark.parametrize(
    ("path", "target", "tail"),
    [
        ("/git", "git", ""),
        ("/git/", "git", "/"),
        ("/git/x", "git", "/x"),
        ("/github/repos", "github", "/repos"),
        ("/partner/v2/items", "p2", "/items"),
        ("/partner/v2", "p2", ""),
        ("/partner/v20/items", "p1", "/v20/items"),
        ("/partner/v1/items", "p1", "/v1/items"),
        ("/partner/v2%2Fitems", "p1", "/v2%2Fitems"),  # an encoded slash is not a boundary
        ("/git/a%20b?q", "git", "/a%20b?q"),
    ],
)
def test_longest_prefix_on_segment_boundary(path: str, target: str, tail: str) -> None:
    assert ROUTES.resolve(path) == (target, tail)


@pytest.mark.parametrize("path", ["/gi", "/gitx", "/githubx/y", "/", "", "/part"])
def test_no_match(path: str) -> None:
    assert ROUTES.resolve(path) is None


def test_root_route_catches_the_rest() -> None:
    router = Router([("", "root"), ("/a", "a")])
    assert router.resolve("/a/x") == ("a", "/x")
    assert router.resolve("/ab/x") == ("root", "/ab/x")
    assert router.resolve("/") == ("root", "/")


def test_add() -> None:
    router: Router[str] = Router()
    router.add("/x", "x")
    assert "/x" in router
    assert router.resolve("/x/1") == ("x", "/1")


async def test_routes_through_the_proxy(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        client = await make_proxy(
            {
                "connections": [
                    connection("github", upstream.base + "/gh"),
                    connection("git", upstream.base + "/g"),
                    connection("partner-v2", upstream.base + "/p2", route="/partner/v2"),
                    connection("partner", upstream.base + "/p1", route="/partner/"),
                ]
            }
        )
        port = rawhttp.port_of(client)
        for path in ("/github/r", "/git/r", "/partner/v2/r", "/partner/v3/r", "/partner"):
            response = await rawhttp.round_trip(port, rawhttp.get(path))
            assert response.status == 200
        assert upstream.targets == ["/gh/r", "/g/r", "/p2/r", "/p1/v3/r", "/p1"]

        missing = await rawhttp.round_trip(port, rawhttp.get("/gitlab/r"))
        assert missing.status == 404
        assert json.loads(missing.body)["code"] == "route_not_found"
        assert missing.get("Proxy-Status") is not None
        assert len(upstream.received) == 5


async def test_healthz_is_not_a_route(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        client = await make_proxy({"connections": [connection("svc", upstream.base)]})
        response = await rawhttp.round_trip(rawhttp.port_of(client), rawhttp.get("/healthz"))
        assert response.status == 200
        assert json.loads(response.body) == {"status": "ok"}
        assert upstream.received == []
