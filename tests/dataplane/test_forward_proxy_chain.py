"""Inside a CONNECT tunnel a request takes the reverse mode's whole path (docs/forward-proxy.md):
an OAuth 2.0 token refreshed after the upstream's 401 and the request replayed, the
connection's policy, the client's rate limit, metrics and the access line, all against real
servers (the strict authorization and resource server of `tests/oauth_server.py`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from tests.accesslog import AccessLogFile
from tests.builders import oauth2_client
from tests.forwardproxy import intercepted, request, running_plane
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app
from tests.rawhttp import port_of

CLIENT_ID, SECRET, CLIENT_KEY = "fwd-cid", "fwd-client-secret-81c2", "fwd-agent-key-0d4e"


def tree_for(token_url: str, resource_port: int) -> dict[str, Any]:
    return {
        "forwardProxy": {"enabled": True},
        "clients": [
            {
                "name": "agent",
                "key": CLIENT_KEY,
                "connections": ["api"],
                "rateLimit": {"requests": 3, "per": 3600},
            }
        ],
        "connections": [
            {
                "name": "api",
                "baseUrl": f"http://localhost:{resource_port}",
                "policy": {"allow": [{"methods": ["GET"], "paths": ["/v1/**"]}]},
                "credentials": [oauth2_client(token_url, CLIENT_ID, SECRET)],
            }
        ],
    }


def counted(code: str) -> float:
    sample = REGISTRY.get_sample_value(
        "signing_proxy_requests_total", {"connection": "api", "method": "GET", "code": code}
    )
    return sample or 0.0


async def test_refresh_replay_policy_rate_limit_metrics_and_log_inside_a_tunnel(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    provider = AuthServer(access_ttl=3600)
    provider.clients[CLIENT_ID] = Client(secret=SECRET)
    auth: TestServer = await aiohttp_server(create_auth_app(provider))
    resource: TestServer = await aiohttp_server(create_resource_app(provider))
    port = port_of(resource)
    log = AccessLogFile(tmp_path / "access.log")
    ok_before = counted("200")
    try:
        tree = tree_for(f"http://127.0.0.1:{port_of(auth)}/token", port)
        key = f"Proxy-Authorization: Bearer {CLIENT_KEY}\r\n"
        async with (
            running_plane(tree, log.writer) as (plane, proxy_port),
            intercepted(plane, proxy_port, f"localhost:{port}", headers=key) as (reader, writer),
        ):
            head = f"GET /v1/a HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
            first = await request(reader, writer, head)
            assert first.status == 200 and json.loads(first.body)["path"] == "/v1/a"
            assert provider.grants["client_credentials"] == 1
            # The provider revokes every token: the upstream's 401 makes the proxy fetch
            # a new one and replay the request, the client sees only the 200.
            provider.expire_access_tokens()
            replayed = await request(reader, writer, head)
            assert replayed.status == 200
            assert provider.grants["client_credentials"] == 2
            # The connection's policy, as in the reverse mode.
            forbidden = await request(
                reader, writer, f"DELETE /v1/a HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
            )
            assert forbidden.status == 403
            assert json.loads(forbidden.body)["code"] == "request_forbidden"
            # The client's rate limit (3 per hour: two used above; a refusal takes none).
            await request(reader, writer, head)
            limited = await request(reader, writer, head)
            assert limited.status == 429
            assert json.loads(limited.body)["code"] == "rate_limited"
        assert counted("200") - ok_before == 3
        lines = [(m["method"], m["path"], m["connection"], m["status"]) for m in log.parsed()]
        assert lines[0][0] == "CONNECT" and lines[0][3] == "200"
        assert ("GET", "/v1/a", "api", "200") in lines
        assert ("DELETE", "/v1/a", "api", "403") in lines
        assert ("GET", "/v1/a", "api", "429") in lines
        assert SECRET not in log.path.read_text() and CLIENT_KEY not in log.path.read_text()
    finally:
        log.close()
    await asyncio.sleep(0)
