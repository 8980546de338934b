"""OAuth 2.0 through the proxy, against the strict local authorization and resource servers."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from proxy.connections.runtime import build_runtime
from proxy.store import open_store
from proxy.tokens.manager import Backoff, TokenManager
from tests.builders import connection, oauth2_client
from tests.oauth_server import AuthServer, Client
from tests.plane import MakeApi
from tests.tokens.oauth2 import (
    PASSWORD,
    SECRET,
    Servers,
    token_credential,
)


def client_credential(token_url: str, **oauth2: Any) -> dict[str, Any]:
    return oauth2_client(token_url, "cid", SECRET, **oauth2)


def secrets_of(server: AuthServer) -> list[str]:
    return [SECRET, PASSWORD, *server.refresh, *server.access]


async def test_100_concurrent_requests_on_expired_token_one_refresh(
    oauth: Servers, make_api: MakeApi
) -> None:
    seed = oauth.server.issue("cid")
    api = await make_api(
        oauth.resource_url, token_credential(oauth.token_url, seed, time.time() - 10)
    )
    responses = await asyncio.gather(*(api.get("/api/items") for _ in range(100)))
    assert [r.status for r in responses] == [200] * 100
    assert oauth.server.hits == 1 and oauth.server.grants["refresh_token"] == 1


async def test_proactive_refresh_within_skew(oauth: Servers, make_api: MakeApi) -> None:
    oauth.server.access_ttl = 30  # expires within the 60 s skew: refreshed before use
    seed = oauth.server.issue("cid")
    api = await make_api(
        oauth.resource_url, token_credential(oauth.token_url, seed, time.time() + 30)
    )
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.grants["refresh_token"] == 1
    assert oauth.server.resource_hits == 1  # no 401 round trip: refreshed before the request


async def test_token_without_expiry_used_until_401_then_refresh_and_retry(
    oauth: Servers, make_api: MakeApi
) -> None:
    seed = oauth.server.issue("cid")
    api = await make_api(oauth.resource_url, token_credential(oauth.token_url, seed))
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.hits == 0
    oauth.server.expire_access_tokens()  # revoked/expired behind our back
    body = b"payload" * 100
    response = await api.post("/api/x", data=body)
    assert response.status == 200
    assert (await response.json())["method"] == "POST"
    assert oauth.server.grants["refresh_token"] == 1
    assert oauth.server.resource_hits == 3  # ok, 401, retried ok


async def test_large_body_401_passes_through(oauth: Servers, make_api: MakeApi) -> None:
    seed = oauth.server.issue("cid")
    api = await make_api(
        oauth.resource_url,
        token_credential(oauth.token_url, seed),
        limits={"replayBodyBytes": 1024},
    )
    oauth.server.expire_access_tokens()
    response = await api.post("/api/x", data=b"x" * 4096)
    assert response.status == 401  # the upstream's own answer, as it was
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "Proxy-Status" not in response.headers
    assert oauth.server.hits == 0
    # A small body is kept and retried after one refresh.
    assert (await api.post("/api/x", data=b"x" * 10)).status == 200
    assert oauth.server.grants["refresh_token"] == 1


async def test_second_401_goes_to_the_client(oauth: Servers, make_api: MakeApi) -> None:
    seed = oauth.server.issue("cid")
    api = await make_api(oauth.resource_url, token_credential(oauth.token_url, seed))
    oauth.server.expire_access_tokens()
    oauth.server.access_ttl = -1  # every new token is dead on arrival
    response = await api.get("/api/x")
    assert response.status == 401
    assert oauth.server.grants["refresh_token"] == 1  # one refresh, one retry, no loop


async def test_invalid_grant_fails_fast_until_replaced(
    oauth: Servers, make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = oauth.server.issue("cid")
    store = open_store(None)
    api = await make_api(
        oauth.resource_url, token_credential(oauth.token_url, seed, time.time() - 1), store
    )
    oauth.server.revoke_all()
    for _ in range(5):
        response = await api.get("/api/x")
        assert response.status == 502
        body = await response.json()
        assert body["code"] == "credential_reauthorization_required"
        assert "proxy_internal_error" in response.headers["Proxy-Status"]
    assert oauth.server.hits == 1  # no more token calls after invalid_grant
    text = caplog.text + str(body)
    for secret in secrets_of(oauth.server):
        assert secret not in text
    # Replaced (a new token pasted into the file / API): it works again.
    tokens = api.app.tokens
    fresh = oauth.server.issue("cid")
    runtime = build_runtime(
        {
            "connections": [
                connection("api", oauth.resource_url, token_credential(oauth.token_url, fresh))
            ]
        },
        {},
    )
    await tokens.adopt_connection(runtime.connections[0])
    stored = await store.get_token(runtime.connections[0].schemes[0].credential_id)
    assert stored is not None and not stored.needs_reauthorization


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("500", "token_endpoint_status_500"),
        ("not_json", "not_json"),
        ("no_access_token", "missing_access_token"),
        ("timeout", "token_endpoint_timeout"),
    ],
)
async def test_refresh_failures_back_off(
    oauth: Servers, make_api: MakeApi, mode: str, detail: str
) -> None:
    seed = oauth.server.issue("cid")
    api = await make_api(
        oauth.resource_url,
        token_credential(oauth.token_url, seed, time.time() - 1),
        timeout=0.3,
        backoff=Backoff(base=0.5, cap=10),
    )
    oauth.server.fail_mode = mode
    for _ in range(10):
        response = await api.get("/api/x")
        assert response.status == 502
        body = await response.json()
        assert (body["code"], body["details"]) == ("credential_refresh_failed", detail)
    assert oauth.server.hits == 1  # a dead endpoint is not hammered
    await asyncio.sleep(0.55)
    assert (await api.get("/api/x")).status == 502
    assert oauth.server.hits == 2  # one more try after the backoff
    oauth.server.fail_mode = None
    await asyncio.sleep(1.05)  # second failure: 1 s backoff
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.hits == 3


async def test_provider_error_code_in_details_never_description(
    oauth: Servers, make_api: MakeApi
) -> None:
    oauth.server.clients["cid"] = Client("another-secret")  # ours is now wrong
    api = await make_api(oauth.resource_url, client_credential(oauth.token_url))
    response = await api.get("/api/x")
    body = await response.json()
    assert (response.status, body["code"], body["details"]) == (
        502,
        "credential_refresh_failed",
        "invalid_client",
    )
    assert SECRET not in str(body) and SECRET not in response.headers["Proxy-Status"]
    assert oauth.server.hits == 2  # Basic, then form, then back off


async def test_basic_rejected_falls_back_to_form_and_remembers(
    oauth: Servers, make_api: MakeApi
) -> None:
    oauth.server.clients["cid"] = Client(SECRET, basic_allowed=False)
    store = open_store(None)
    api = await make_api(oauth.resource_url, client_credential(oauth.token_url), store)
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.hits == 2
    assert oauth.server.token_requests[0]["authorization"].startswith("Basic ")
    assert oauth.server.token_requests[1]["form"]["client_secret"] == SECRET
    credential_id = api.app.tokens._states.popitem()[0]  # noqa: SLF001
    stored = await store.get_token(credential_id)
    assert stored is not None and stored.client_auth == "form"
    # The next token request goes straight to the working style.
    oauth.server.expire_access_tokens()
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.hits == 3 and oauth.server.token_requests[2]["authorization"] is None


async def test_client_credentials_with_scopes_and_additional_params(
    oauth: Servers, make_api: MakeApi
) -> None:
    credential = client_credential(
        oauth.token_url,
        defaultScopes=["read", "write"],
        additionalTokenParams="audience=https%3A%2F%2Fapi.example&resource=scheme",
    )
    # The credential's own URL-encoded additionalParams come after the scheme's and win.
    credential["credential"]["data"]["oauth2Client"]["additionalParams"] = "resource=own&t=1"
    api = await make_api(oauth.resource_url, credential)
    responses = await asyncio.gather(*(api.get("/api/x") for _ in range(20)))
    assert {r.status for r in responses} == {200}
    assert oauth.server.grants["client_credentials"] == 1
    form = oauth.server.token_requests[0]["form"]
    assert form["scope"] == "read write" and form["audience"] == "https://api.example"
    assert form["resource"] == "own" and form["t"] == "1"
    oauth.server.expire_access_tokens()  # a client-credentials token is fetched anew on 401
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.grants["client_credentials"] == 2


async def test_password_grant(oauth: Servers, make_api: MakeApi) -> None:
    def credential(password: str) -> dict[str, Any]:
        grant = {"type": "password", "password": {"clientId": "cid", "clientSecret": SECRET}}
        return {
            "authSchemeConfig": {
                "type": "oauth2",
                "oauth2": {"tokenUrl": oauth.token_url, "grant": grant},
            },
            "credential": {
                "type": "oauth2-password",
                "data": {"oauth2Password": {"username": "alice", "password": password}},
            },
        }

    api = await make_api(oauth.resource_url, credential(PASSWORD))
    assert (await api.get("/api/x")).status == 200
    assert oauth.server.grants["password"] == 1
    wrong = await make_api(oauth.resource_url, credential("canary-wrong-password"))
    response = await wrong.get("/api/x")
    body = await response.json()
    assert body["code"] == "credential_reauthorization_required"
    assert "canary-wrong-password" not in str(body)


async def test_stored_token_wins_on_restart_and_file_change_wins(
    oauth: Servers, make_api: MakeApi, tmp_path: Path
) -> None:
    db = str(tmp_path / "state.db")
    seed = oauth.server.issue("cid")
    credential = token_credential(oauth.token_url, seed, time.time() - 1)
    first = await make_api(oauth.resource_url, credential, open_store(db))
    assert (await first.get("/api/x")).status == 200  # refreshed: the seed's token is used up
    await first.close()
    assert not oauth.server.accepts(seed["refresh_token"])
    hits = oauth.server.hits

    second = await make_api(oauth.resource_url, credential, open_store(db))
    assert (await second.get("/api/x")).status == 200
    assert oauth.server.hits == hits  # the stored, newer token, not the file's dead one
    await second.close()

    pasted = oauth.server.issue("cid")  # a person pastes a new token into the file
    third = await make_api(
        oauth.resource_url, token_credential(oauth.token_url, pasted), open_store(db)
    )
    # Only the pasted access token is still good: a 200 without a token call proves it is used.
    oauth.server.access = {
        k: v for k, v in oauth.server.access.items() if k == pasted["access_token"]
    }
    response = await third.get("/api/x")
    assert response.status == 200
    assert oauth.server.hits == hits  # the pasted access token is used as it is


async def test_two_processes_one_sqlite_store_refresh_once(oauth: Servers, tmp_path: Path) -> None:
    # Two TokenManagers on two connections to one file stand for two worker processes.
    db = str(tmp_path / "state.db")
    seed = oauth.server.issue("cid")
    runtime = build_runtime(
        {
            "connections": [
                connection(
                    "api",
                    oauth.resource_url,
                    token_credential(oauth.token_url, seed, time.time() - 1),
                )
            ]
        },
        {},
    )
    api = runtime.connections[0]
    scheme = api.schemes[0]
    stores = [open_store(db), open_store(db)]
    managers = [TokenManager(store) for store in stores]
    for manager in managers:
        await manager.adopt_connection(api)
    oauth.server.delay = 0.3  # both are waiting while the one call is in flight
    stale = await stores[0].get_token(scheme.credential_id)
    assert stale is not None and stale.token is not None
    results = await asyncio.gather(
        *(m.refresh(scheme, stale.token) for m in managers for _ in range(10))
    )
    assert oauth.server.grants["refresh_token"] == 1
    assert len({t.access_token for t in results}) == 1
    for manager, store in zip(managers, stores, strict=True):
        await manager.close()
        await store.close()


async def test_oauth2_code_credential_in_the_file_is_exchanged_once(
    oauth: Servers, make_api: MakeApi, tmp_path: Path
) -> None:
    """Seed `oauth2-code` in proxy.yaml: exchanged at start for an oauth2-token; the token
    stored from it descends from the code, so a restart never sends the used code again."""
    redirect = "http://127.0.0.1:8081/connections/oauth2/callback"  # the default admin callback
    authorize = oauth.token_url.replace("/token", "/authorize")
    async with aiohttp.ClientSession() as browser:
        query = {"response_type": "code", "client_id": "cid", "redirect_uri": redirect}
        async with browser.get(authorize, params=query, allow_redirects=False) as consent:
            code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    grant = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": "cid", "clientSecret": SECRET},
    }
    credential = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": oauth.token_url, "grant": grant},
        },
        "credential": {"type": "oauth2-code", "data": {"oauth2Code": {"code": code, "state": ""}}},
    }
    db = str(tmp_path / "state.db")
    first = await make_api(oauth.resource_url, credential, open_store(db), redirect_uri=redirect)
    for _ in range(200):  # exchanged at start, before any request (bounded wait)
        if oauth.server.grants["authorization_code"]:
            break
        await asyncio.sleep(0.05)
    assert oauth.server.grants["authorization_code"] == 1
    assert (await first.get("/api/x")).status == 200
    assert oauth.server.grants["authorization_code"] == 1
    (exchange,) = oauth.server.token_requests
    assert exchange["form"]["code"] == code and exchange["form"]["redirect_uri"] == redirect
    await first.close()
    second = await make_api(oauth.resource_url, credential, open_store(db), redirect_uri=redirect)
    assert (await second.get("/api/x")).status == 200
    assert oauth.server.grants["authorization_code"] == 1  # the stored token, no replay
    await second.close()
