"""A seed `oauth1` credential (`{state, oauthToken, oauthVerifier}`) in proxy.yaml: a front end
took the provider's redirect of a flow this proxy's `oauth1/init` started and wrote the values
into the file. At start the proxy exchanges the verifier once at `tokenEndpoint` (RFC 5849 §2.3),
stores the token, and signs with it; a restart uses the stored token. The provider is oauthlib's
(`tests/oauth1_provider.py`); the proxy runs as a real process on a SQLite store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from proxy.cli import main
from proxy.config.models import DEFAULT_ORGANISATION_ID
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import open_store
from tests.builders import bearer, connection
from tests.oauth1_provider import Provider, provider_app, template
from tests.plane import PlaneServer
from tests.proxyproc import proxy_process
from tests.seeds.schema import problems

ADMIN_TOKEN = "canary-admin-token-o1f"
VERIFIER = "canary-verifier-never-shown-3f9"


def oauth1_credential(origin: str, oauth_token: str, verifier: str) -> dict[str, Any]:
    """The template's scheme with a seed `oauth1` credential, as a connection entry of the file."""
    (auth,) = template(origin, "sha256", "AUTH_STYLE_AUTHORIZATION_HEADER")["authSchemeConfigs"]
    value = {"state": "", "oauthToken": oauth_token, "oauthVerifier": verifier}
    return {"authSchemeConfig": auth, "credential": {"type": "oauth1", "data": {"oauth1": value}}}


async def test_oauth1_credential_in_the_file_is_exchanged_once(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    provider = Provider()
    server: TestServer = await aiohttp_server(provider_app(provider))
    origin = str(server.make_url("")).rstrip("/")
    # Port 0 for both listeners: the ports the proxy got are read back from its log. (The
    # consent's callback then names port 0; the test takes the verifier from it, not the proxy.)
    tree: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        "store": {"path": str(tmp_path / "state.db")},
        "timeouts": {"shutdownGrace": 0},
        "templates": [template(origin, "sha256", "AUTH_STYLE_AUTHORIZATION_HEADER")],
    }
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(tree))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with proxy_process(path, listeners=2) as proc, aiohttp.ClientSession() as session:
        init = f"{proc.admin}/o/{DEFAULT_ORGANISATION_ID}/templates/netsuite/oauth1/init"
        async with session.post(init, json={"params": {"account": "acme"}}, headers=auth) as r:
            assert r.status == 200, await r.text()
            authorize = (await r.json())["url"]
        async with session.get(authorize, allow_redirects=False) as consent:
            assert consent.status == 302  # the front end takes this redirect, not the proxy
            query = parse_qs(urlsplit(consent.headers["Location"]).query)
    oauth_token, verifier = query["oauth_token"][0], query["oauth_verifier"][0]
    assert provider.hits["accesstoken"] == 0
    tree["connections"] = [
        connection("acme", origin + "/acme/api", oauth1_credential(origin, oauth_token, verifier))
    ]
    path.write_text(yaml.safe_dump(tree))
    # First two workers sharing the store (one exchange between them), then a plain restart.
    for start, args in enumerate([("--workers", "2"), ()]):
        running = proxy_process(path, *args, listeners=2)
        async with running as proc, aiohttp.ClientSession() as session:
            async with session.get(proc.base + "/acme/records?limit=5") as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["valid"] is True  # oauthlib verified it
            # The first start exchanged the verifier once; the restart used the stored token.
            assert provider.hits["accesstoken"] == 1, f"start {start}"
            # Read back, the credential is the oauth1-token it became (seed 001's Connection).
            listed = f"{proc.admin}/o/{DEFAULT_ORGANISATION_ID}/connections"
            async with session.get(listed, headers=auth) as r:
                [item] = (await r.json())["items"]
            assert problems(item) == []
            credential = item["credentials"][0]["credential"]
            assert credential["type"] == "oauth1-token"
            assert credential["data"]["oauth1Token"] == {
                "token": "",
                "tokenSecret": "",
                "additionalParams": [],
            }
        assert verifier.encode() not in proc.stderr
        # One worker exchanged; the other waited for its token, never calling the flow unknown.
        assert proc.stderr.count(b"oauth1 verifier exchanged") == (1 if start == 0 else 0)
        assert b"state is unknown" not in proc.stderr
    [(token, secret)] = provider.access_tokens.items()
    assert token.encode() not in proc.stderr and secret.encode() not in proc.stderr
    assert provider.hits["records"] == 2
    store = open_store(str(tmp_path / "state.db"))
    try:  # the flow was consumed by the exchange
        assert await store.take_flow("oauth1:" + oauth_token) is None
    finally:
        await store.close()


async def test_unknown_state_is_a_502_on_that_connection_only(
    aiohttp_server: Any,
    aiohttp_client: Any,
    echo_server: TestServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No flow in the store for this oauthToken (never started here, already used, or
    expired): that connection answers 502, logged once; the others serve."""
    provider = Provider()
    server: TestServer = await aiohttp_server(provider_app(provider))
    origin = str(server.make_url("")).rstrip("/")
    credential = oauth1_credential(origin, "temporarytoken000000001", VERIFIER)
    tree = {
        "connections": [
            connection("acme", origin + "/acme/api", credential),
            connection("echo", str(echo_server.make_url("")), bearer("canary-bearer-o1f")),
        ]
    }
    store = open_store(str(tmp_path / "state.db"))
    caplog.set_level(logging.INFO, "proxy")
    plane = create_app(build_runtime(tree, {}), store=store)
    client: TestClient[Any, Any] = await aiohttp_client(PlaneServer(plane))
    for _ in range(2):
        response = await client.get("/acme/records")
        assert response.status == 502
        body = await response.json()
        assert body["code"] == "credential_reauthorization_required"
        assert "OAuth 1.0a state is unknown, used or expired" in body["message"]
        assert VERIFIER not in await response.text()
        echoed = await client.get("/echo/x")
        assert echoed.status == 200  # the other connection serves on
    logged = [r for r in caplog.records if "state is unknown" in r.getMessage()]
    assert len(logged) == 1 and VERIFIER not in caplog.text
    assert provider.hits["accesstoken"] == 0
    assert plane.tokens is not None  # what the admin API reports as the credential's status
    [scheme] = plane.runtime.connections[0].schemes
    status, message = plane.tokens.health(scheme.credential_id)
    assert status == "disconnected" and "unknown, used or expired" in message


OFFLINE = "https://acme.example"  # `check` and `explain` reach no network


def write_config(path: Path, credential: dict[str, Any]) -> Path:
    """`path` written as a proxy.yaml of one connection `acme` at `OFFLINE` with `credential`."""
    path.write_text(yaml.safe_dump({"connections": [connection("acme", OFFLINE, credential)]}))
    return path


def test_check_accepts_the_shape_and_names_a_missing_token_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` cannot see the store: it accepts the shape; the exchange needs tokenEndpoint."""
    credential = oauth1_credential(OFFLINE, "temporarytoken000000001", VERIFIER)
    path = write_config(tmp_path / "proxy.yaml", credential)
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok, 1 connection(s)\n" and err == ""
    params = credential["authSchemeConfig"]["oauth1"]
    params["tokenAuth"] = True  # the browser-flow endpoints become optional
    del params["tokenEndpoint"]
    write_config(path, credential)
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(
        "connections[0].credentials[0].authSchemeConfig.oauth1.tokenEndpoint: required to exchange"
    )
    assert VERIFIER not in out + err


def test_explain_shows_a_placeholder_for_the_token_still_to_exchange(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credential = oauth1_credential(OFFLINE, "temporarytoken000000001", VERIFIER)
    path = write_config(tmp_path / "proxy.yaml", credential)
    assert main(["explain", "--config", str(path), "GET", "/acme/x"]) == 0
    out = capsys.readouterr().out
    assert 'oauth_token="%3Coauth1-token%3A%20exchanged%20at%20run%20time%3E"' in out
    assert VERIFIER not in out and "temporarytoken" not in out
