"""Clients and policy end to end: the proxy against a real local upstream that records what
arrives, and a real token endpoint that counts its hits.

Every refusal is checked for its status, code, `Proxy-Status` and extra header, and for the
upstream (and the token endpoint) having seen nothing. Accepted requests are checked for the
real credential upstream and the client key nowhere in what the upstream received.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.connections.runtime import build_runtime
from tests.accesslog import AccessLogFile
from tests.builders import bearer, connection
from tests.oauth_server import AuthServer, Client, create_auth_app
from tests.plane import MakeProxy, PlaneServer
from tests.upstreams import catch_all

AGENT_KEY = "ck-agent-CANARY-5f1e"
READER_KEY = "ck-reader-CANARY-0a9c"
LIMITED_KEY = "ck-limited-CANARY-77d2"
UPSTREAM_SECRET = "sk-upstream-real-3c4d"
TOKEN_SECRET = "canary-token-client-secret"


@dataclass
class Recorder:
    """A real upstream that records every request's target and headers."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "target": request.raw_path,
                "headers": [(k.decode(), v.decode()) for k, v in request.raw_headers],
                "body": body,
            }
        )
        return web.json_response({"ok": True})


@dataclass
class World:
    proxy: TestClient[Any, Any]
    upstream: Recorder
    tokens: AuthServer
    tree: dict[str, Any]


@pytest.fixture
async def world(aiohttp_server: Any, make_proxy: MakeProxy) -> World:
    recorder = Recorder()
    app = catch_all(recorder.handle)
    upstream: TestServer = await aiohttp_server(app)
    auth = AuthServer(clients={"cid": Client(TOKEN_SECRET)})
    token_server: TestServer = await aiohttp_server(create_auth_app(auth))
    base = str(upstream.make_url("/v1"))
    oauth2_client = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"grant": {"type": "clientCredentials"}},
        },
        "credential": {
            "type": "oauth2-client",
            "data": {
                "oauth2Client": {
                    "clientId": "cid",
                    "clientSecret": TOKEN_SECRET,
                    "tokenUrl": str(token_server.make_url("/token")),
                }
            },
        },
    }
    tree = {
        "clients": [
            {"name": "agent", "key": AGENT_KEY, "connections": ["api", "oauth"]},
            {
                "name": "reader",
                "keySha256": hashlib.sha256(READER_KEY.encode()).hexdigest(),
                "connections": ["ro"],
            },
            {
                "name": "limited",
                "key": LIMITED_KEY,
                "connections": ["*"],
                "rateLimit": {"requests": 2, "per": 60},
            },
        ],
        "connections": [
            connection("api", base, bearer(UPSTREAM_SECRET)),
            connection(
                "ro",
                base,
                bearer(UPSTREAM_SECRET),
                policy={
                    "allow": [
                        {"methods": ["GET", "HEAD"], "paths": ["/repos/*/*/issues", "/user"]},
                        {"methods": ["POST"], "paths": ["/repos/acme/**"]},
                    ]
                },
            ),
            connection("oauth", base, oauth2_client),
        ],
    }
    return World(await make_proxy(tree), recorder, auth, tree)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    text = await response.text()
    assert response.status == status, text
    body: dict[str, Any] = json.loads(text)
    assert body["code"] == code
    assert response.headers["Proxy-Status"].startswith(
        "signing-proxy; error=proxy_internal_response"
    )
    assert code in response.headers["Proxy-Status"]
    return body


# --- 401 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-client-key"},
        {"X-Api-Key": AGENT_KEY[:-1]},
        {"Authorization": f"Digest {AGENT_KEY}"},
        {"Proxy-Authorization": f"Basic {AGENT_KEY}"},
    ],
)
async def test_no_or_unknown_key_is_401_and_nothing_goes_upstream(
    world: World, headers: dict[str, str]
) -> None:
    response = await world.proxy.get("/api/anything", headers=headers)
    await refused(response, 401, "client_unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="signing-proxy"'
    assert world.upstream.seen == []


async def test_401_comes_before_routing(world: World) -> None:
    # A caller without a key learns nothing about which routes exist.
    response = await world.proxy.get("/no-such-route/x")
    await refused(response, 401, "client_unauthorized")


# --- presenting the key and never forwarding it --------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", f"Bearer {AGENT_KEY}"),
        ("Authorization", f"token {AGENT_KEY}"),
        ("Authorization", basic(AGENT_KEY, "")),
        ("Authorization", basic("x", AGENT_KEY)),
        ("X-Api-Key", AGENT_KEY),
        ("Proxy-Authorization", f"Bearer {AGENT_KEY}"),
    ],
)
async def test_each_way_of_presenting_the_key_works_and_the_key_never_leaves(
    world: World, name: str, value: str
) -> None:
    response = await world.proxy.get("/api/models?x=1", headers={name: value, "X-Keep": "yes"})
    assert response.status == 200, await response.text()
    [seen] = world.upstream.seen
    assert seen["target"] == "/v1/models?x=1"
    headers = dict((k.lower(), v) for k, v in seen["headers"])
    assert headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert headers["x-keep"] == "yes"
    assert AGENT_KEY not in json.dumps(seen["headers"])
    assert "x-api-key" not in headers


async def test_another_x_api_key_passes_when_the_key_came_in_authorization(
    world: World,
) -> None:
    # Only the header that carried the client key is removed.
    headers = {"Authorization": f"Bearer {AGENT_KEY}", "X-Api-Key": "the-app's-own"}
    assert (await world.proxy.get("/api/x", headers=headers)).status == 200
    [seen] = world.upstream.seen
    assert ("X-Api-Key", "the-app's-own") in seen["headers"]


# --- 403 -----------------------------------------------------------------------------------


async def test_a_connection_the_client_may_not_use_is_403_client_forbidden(world: World) -> None:
    response = await world.proxy.get("/ro/user", headers={"X-Api-Key": AGENT_KEY})
    await refused(response, 403, "client_forbidden")
    response = await world.proxy.get("/api/user", headers={"X-Api-Key": READER_KEY})
    await refused(response, 403, "client_forbidden")
    assert world.upstream.seen == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/ro/repos/octo/hello/issues", True),
        ("HEAD", "/ro/repos/octo/hello/issues", True),
        ("GET", "/ro/user", True),
        ("POST", "/ro/repos/acme/widgets/issues", True),
        ("POST", "/ro/repos/acme", True),
        ("DELETE", "/ro/repos/octo/hello/issues", False),
        ("POST", "/ro/repos/octo/hello/issues", False),
        ("GET", "/ro/repos/octo/hello/pulls", False),
        ("GET", "/ro/user/", False),
        ("GET", "/ro", False),
        # `%2F` is content of its segment: three segments, not four.
        ("GET", "/ro/repos/octo%2Fhello/issues", False),
        ("GET", "/ro/repos/%6Fcto/hello/issues", True),  # decoded before matching
    ],
)
async def test_policy_allows_only_its_methods_and_paths(
    world: World, method: str, path: str, allowed: bool
) -> None:
    response = await world.proxy.request(method, path, headers={"X-Api-Key": READER_KEY})
    if allowed:
        assert response.status == 200, await response.text()
        # (aiohttp's client normalises `%6F` to `o` before sending: compare decoded.)
        assert [unquote(seen["target"]) for seen in world.upstream.seen] == [
            unquote("/v1" + path[3:])
        ]
    else:
        await refused(response, 403, "request_forbidden")
        assert world.upstream.seen == []


async def test_policy_holds_without_clients(aiohttp_server: Any, make_proxy: MakeProxy) -> None:
    recorder = Recorder()
    app = catch_all(recorder.handle)
    upstream: TestServer = await aiohttp_server(app)
    policy = {"allow": [{"methods": ["GET"]}]}
    proxy = await make_proxy(
        {"connections": [connection("gh", str(upstream.make_url("")), bearer("t"), policy=policy)]}
    )
    assert (await proxy.get("/gh/anything")).status == 200
    await refused(await proxy.post("/gh/anything", data=b"x"), 403, "request_forbidden")
    assert len(recorder.seen) == 1


# --- 429 -----------------------------------------------------------------------------------


async def test_the_rate_limit_is_429_with_retry_after(world: World) -> None:
    headers = {"X-Api-Key": LIMITED_KEY}
    assert (await world.proxy.get("/api/1", headers=headers)).status == 200
    assert (await world.proxy.get("/ro/user", headers=headers)).status == 200
    response = await world.proxy.get("/api/3", headers=headers)
    await refused(response, 429, "rate_limited")
    # 2 per 60 s: the next token is about 30 s away.
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert len(world.upstream.seen) == 2
    # Other clients have their own buckets.
    assert (await world.proxy.get("/api/4", headers={"X-Api-Key": AGENT_KEY})).status == 200


async def test_a_forbidden_request_spends_no_rate_limit(world: World) -> None:
    headers = {"X-Api-Key": LIMITED_KEY}
    for _ in range(3):
        await refused(
            await world.proxy.delete("/ro/user", headers=headers), 403, "request_forbidden"
        )
    assert (await world.proxy.get("/api/1", headers=headers)).status == 200


# --- before any body read or token endpoint contact ----------------------------------------


async def test_the_token_endpoint_is_not_contacted_for_a_refused_request(world: World) -> None:
    await refused(await world.proxy.get("/oauth/x"), 401, "client_unauthorized")
    response = await world.proxy.get("/oauth/x", headers={"X-Api-Key": READER_KEY})
    await refused(response, 403, "client_forbidden")
    assert world.tokens.hits == 0
    response = await world.proxy.get("/oauth/x", headers={"X-Api-Key": AGENT_KEY})
    assert response.status == 200, await response.text()
    assert world.tokens.hits == 1


@pytest.mark.parametrize(
    ("key", "target", "status"),
    [(None, "/api/upload", 401), (READER_KEY, "/api/upload", 403), (READER_KEY, "/ro/up", 403)],
)
async def test_refusal_comes_before_the_body_is_read(
    world: World, key: str | None, target: str, status: int
) -> None:
    # The head announces 10 MB and none of it is sent: an answer proves nothing waited for it.
    reader, writer = await asyncio.open_connection("127.0.0.1", world.proxy.server.port)
    try:
        auth = f"X-Api-Key: {key}\r\n" if key else ""
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: proxy.test\r\n{auth}"
            "Content-Length: 10000000\r\n\r\n".encode()
        )
        await writer.drain()
        started = time.monotonic()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.split()[1] == str(status).encode()
        assert time.monotonic() - started < 10
    finally:
        writer.close()
    assert world.upstream.seen == []


# --- audit ---------------------------------------------------------------------------------


async def test_the_access_log_names_the_client_and_never_a_key(
    world: World, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    caplog.set_level(logging.DEBUG)
    await world.proxy.get("/api/x", headers={"Authorization": f"Bearer {AGENT_KEY}"})
    await world.proxy.get("/ro/user", headers={"X-Api-Key": READER_KEY})
    await world.proxy.get("/api/x", headers={"X-Api-Key": "wrong-CANARY-key"})
    access = access_log.messages()
    assert len(access) == 3
    assert access[0].endswith(" client=agent")
    assert access[1].endswith(" client=reader")
    assert "client=" not in access[2]
    everything = "\n".join([*(r.getMessage() for r in caplog.records), *access_log.lines()])
    assert "CANARY" not in everything
    assert hashlib.sha256(READER_KEY.encode()).hexdigest() not in everything


async def test_a_reload_keeps_rate_limits_and_applies_new_clients(
    world: World, make_proxy: MakeProxy
) -> None:
    headers = {"X-Api-Key": LIMITED_KEY}
    for _ in range(2):
        assert (await world.proxy.get("/api/x", headers=headers)).status == 200
    server = world.proxy.server
    assert isinstance(server, PlaneServer)
    plane = server.app
    tree = copy.deepcopy(world.tree)
    await plane.reload(build_runtime(tree, {}))
    # The same client with the same limit: still spent, a reload refills nothing.
    await refused(await world.proxy.get("/api/x", headers=headers), 429, "rate_limited")
    # A client removed from the file is unknown from the next request on.
    tree["clients"] = [c for c in tree["clients"] if c["name"] != "agent"]
    await plane.reload(build_runtime(tree, {}))
    response = await world.proxy.get("/api/x", headers={"X-Api-Key": AGENT_KEY})
    await refused(response, 401, "client_unauthorized")
