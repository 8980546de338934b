"""The OAuth 2.0 connect flow end to end against a local authorization server that enforces
PKCE (tests/oauth_server.py): init → authorize → callback → proxied request → refresh."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.admin.oauth2 import code_challenge, new_code_verifier
from tests.admin.oauth2_connect import (
    CLIENT_ID,
    CLIENT_SECRET,
    INIT,
    Drive,
    oauth_template,
    provider,
)
from tests.admin.planes import AUTH, CONNECTIONS, ORG, MakePlanes, callback_later
from tests.oauth_server import Client, create_resource_app


@pytest.fixture
async def drive(aiohttp_server: Any, make_planes: MakePlanes) -> Drive:
    server, auth = await provider(aiohttp_server)
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    template = oauth_template(str(auth.make_url("")).rstrip("/"), str(resource.make_url("")))
    planes = await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET})
    return Drive(server, planes)


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    # RFC 7636 Appendix B: verifier and its S256 challenge.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    fresh = new_code_verifier()
    assert 43 <= len(fresh) <= 128 and fresh != new_code_verifier()


async def test_authorize_url(drive: Drive) -> None:
    url = await drive.init(scopes=["drive.file"], additionalParams={"access_type": "offline"})
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    assert parts.path == "/authorize"
    admin_port = drive.planes.admin.port
    assert query["redirect_uri"] == f"http://127.0.0.1:{admin_port}/connections/oauth2/callback"
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["scope"] == "drive.file offline_access"
    assert query["prompt"] == "login"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43
    assert query["access_type"] == "offline"
    assert CLIENT_SECRET not in url
    # The state is fresh each time.
    again = parse_qs(urlsplit(await drive.init()).query)
    assert again["state"][0] != query["state"]
    assert again["scope"] == ["drive.readonly offline_access"]  # the template's defaultScopes


async def test_authorize_url_options(drive: Drive) -> None:
    query = parse_qs(urlsplit(await drive.init(disableOfflineAccess=True, prompt="consent")).query)
    assert query["scope"] == ["drive.readonly"]
    assert query["prompt"] == ["consent"]
    query = parse_qs(
        urlsplit(await drive.init(additionalParams={"approval_prompt": "force"})).query
    )
    assert "prompt" not in query
    assert query["approval_prompt"] == ["force"]
    query = parse_qs(urlsplit(await drive.init(clientId="other-client")).query)
    assert query["client_id"] == ["other-client"]


@pytest.mark.parametrize("name", ["client_id", "state", "redirect_uri", "scope", "prompt"])
async def test_additional_param_colliding_with_a_standard_one_is_400(
    drive: Drive, name: str
) -> None:
    body = {"additionalParams": {name: "x"}}
    response = await drive.planes.admin.post(INIT, json=body, headers=AUTH)
    assert response.status == 400
    error = await response.json()
    assert error["code"] == "validation_failed"
    assert [f["field"] for f in error["fields"]] == [f"additionalParams.{name}"]


async def test_init_refuses_a_client_secret_and_unknown_templates(drive: Drive) -> None:
    response = await drive.planes.admin.post(INIT, json={"clientSecret": "x"}, headers=AUTH)
    assert response.status == 400
    assert [f["field"] for f in (await response.json())["fields"]] == ["clientSecret"]
    response = await drive.planes.admin.post(
        f"/o/{ORG}/templates/nope/oauth2/init", json={}, headers=AUTH
    )
    assert response.status == 404


async def test_connect_then_proxy_then_refresh(drive: Drive) -> None:
    created = await drive.connect(externalId="user-7", connectionName="alice-drive")
    assert created["organisationID"] == ORG
    # Seed 003: a type of its enum, data as base64 strings, the secret fields named and left out.
    assert created["type"] == "OAuth2Refresh"
    assert created["name"] == "alice-drive"
    token = {key: base64.b64decode(value).decode() for key, value in created["data"].items()}
    assert set(token) == {"tokenType", "expiresAt", "scopes"}
    assert created["redactFields"] == ["accessToken", "refreshToken"]
    assert created["expiresAt"] == "0001-01-01T00:00:00Z"  # seed 003: when it is deleted: never
    assert token["tokenType"] == "Bearer"
    assert token["scopes"] == "drive.readonly offline_access"
    for secret in (*drive.server.access, *drive.server.refresh, CLIENT_SECRET):
        assert secret not in str(created)
    # The code was exchanged with the PKCE verifier and the template's client secret.
    (exchange,) = drive.server.token_requests
    assert exchange["form"]["grant_type"] == "authorization_code"
    assert "code_verifier" in exchange["form"]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert exchange["authorization"] == f"Basic {expected}"

    proxy = drive.planes.proxy
    for pick in ("user-7", created["connectionId"]):
        response = await proxy.get("/gdrive/files?q=1", headers={"X-Connection-Id": pick})
        assert response.status == 200, await response.text()
        assert (await response.json())["path"] == "/drive/v3/files?q=1"
    assert drive.server.grants["refresh_token"] == 0

    drive.server.expire_access_tokens()  # the provider says 401 from now on
    response = await proxy.get("/gdrive/files", headers={"X-Connection-Id": "user-7"})
    assert response.status == 200
    assert drive.server.grants["refresh_token"] == 1
    stored = await drive.planes.store.get_token(created["id"])
    assert stored is not None and stored.token is not None
    assert stored.token.access_token in drive.server.access


async def test_callback_updates_the_connection_with_the_same_external_id(drive: Drive) -> None:
    first = await drive.connect(externalId="user-8")
    await drive.planes.proxy.get("/gdrive/x", headers={"X-Connection-Id": "user-8"})
    assert await drive.planes.store.get_token(first["id"]) is not None
    second = await drive.connect(externalId="user-8")
    assert second["connectionId"] == first["connectionId"]
    assert second["id"] != first["id"]
    assert await drive.planes.store.get_token(first["id"]) is None  # the old token is gone
    listed = await (await drive.planes.admin.get(CONNECTIONS, headers=AUTH)).json()
    assert len(listed["items"]) == 1
    response = await drive.planes.proxy.get("/gdrive/x", headers={"X-Connection-Id": "user-8"})
    assert response.status == 200


async def test_state_is_single_use(drive: Drive) -> None:
    location = await drive.authorize(await drive.init())
    assert (await drive.callback(location)).status == 201
    replay = await drive.callback(location)
    assert replay.status == 400
    assert (await replay.json())["code"] == "invalid_state"


async def test_forged_or_missing_state_is_400(drive: Drive) -> None:
    location = await drive.authorize(await drive.init())
    code = parse_qs(urlsplit(location).query)["code"][0]
    admin = drive.planes.admin
    forged = await admin.get("/connections/oauth2/callback", params={"code": code, "state": "x"})
    assert forged.status == 400
    assert (await forged.json())["code"] == "invalid_state"
    missing = await admin.get("/connections/oauth2/callback", params={"code": code})
    assert missing.status == 400
    assert [f["field"] for f in (await missing.json())["fields"]] == ["state"]
    assert await drive.planes.store.list_connections() == []


async def test_state_expires_after_ten_minutes(drive: Drive, aiohttp_client: Any) -> None:
    location = await drive.authorize(await drive.init())
    response = await callback_later(drive.planes, location, aiohttp_client)
    assert response.status == 400
    assert (await response.json())["code"] == "invalid_state"


async def test_a_denied_authorisation_is_the_providers_answer(drive: Drive) -> None:
    drive.server.authorize_error = "access_denied"
    location = await drive.authorize(await drive.init(connectionName="erin"))
    response = await drive.callback(location)
    assert response.status == 400
    error = await response.json()
    assert error["code"] == "access_denied"
    assert error["details"] == "access_denied: denied"
    assert drive.server.hits == 0  # no token request
    assert await drive.planes.store.list_connections() == []
    # The flow was used up: the same state can never complete it later.
    state = parse_qs(urlsplit(location).query)["state"][0]
    late = await drive.planes.admin.get(
        "/connections/oauth2/callback", params={"code": "c", "state": state}
    )
    assert (await late.json())["code"] == "invalid_state"


async def test_the_providers_description_is_answered_sanitised(drive: Drive) -> None:
    # A careless provider echoes the client secret, with a control character and a quote.
    drive.server.authorize_error = "invalid_scope"
    drive.server.authorize_error_description = f'bad scope\n"x" for {CLIENT_SECRET}' + "y" * 400
    response = await drive.callback(await drive.authorize(await drive.init()))
    assert response.status == 400
    error = await response.json()
    assert error["code"] == "authorization_failed"
    assert error["details"].startswith("invalid_scope: bad scope??x? for [redacted]yyy")
    assert len(error["details"]) == len("invalid_scope: ") + 300
    assert CLIENT_SECRET not in await response.text()
    assert await drive.planes.store.list_connections() == []


async def test_reused_code_is_refused_by_the_provider(drive: Drive) -> None:
    location = await drive.authorize(await drive.init())
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert (await drive.callback(location)).status == 201
    # A new flow (fresh state) with the old code: the provider says invalid_grant.
    fresh = parse_qs(urlsplit(await drive.authorize(await drive.init())).query)["state"][0]
    response = await drive.planes.admin.get(
        "/connections/oauth2/callback", params={"code": code, "state": fresh}
    )
    assert response.status == 400
    error = await response.json()
    assert error["code"] == "code_exchange_failed"
    assert error["details"] == "invalid_grant"
    assert code not in str(error)
    assert hashlib.sha256(code.encode()).hexdigest() not in str(error)


async def test_connect_against_a_provider_that_rejects_basic(drive: Drive) -> None:
    """The code exchange is the token manager's call: Basic refused → form, and the working
    style is remembered, so the first refresh goes straight to form."""
    drive.server.clients[CLIENT_ID] = Client(secret=CLIENT_SECRET, basic_allowed=False)
    created = await drive.connect(externalId="user-f")
    basic, form = drive.server.token_requests
    assert basic["authorization"].startswith("Basic ") and "client_secret" not in basic["form"]
    assert form["authorization"] is None
    assert form["form"]["grant_type"] == "authorization_code"
    assert form["form"]["client_secret"] == CLIENT_SECRET
    stored = await drive.planes.store.get_token(created["id"])
    assert stored is not None and stored.client_auth == "form"

    drive.server.expire_access_tokens()
    response = await drive.planes.proxy.get("/gdrive/x", headers={"X-Connection-Id": "user-f"})
    assert response.status == 200, await response.text()
    refresh = drive.server.token_requests[2:]
    assert [r["form"]["grant_type"] for r in refresh] == ["refresh_token"]
    assert refresh[0]["authorization"] is None  # no second Basic attempt


async def test_token_endpoint_redirect_is_not_followed(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    """A 3xx from the token endpoint is a failure, not a hop carrying the code elsewhere."""
    server, auth = await provider(aiohttp_server)
    moved_hits: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        moved_hits.append(request.path)
        raise web.HTTPTemporaryRedirect(str(auth.make_url("/token")))

    mover = web.Application()
    mover.router.add_post("/token", moved)
    mover_server: TestServer = await aiohttp_server(mover)
    auth_url = str(auth.make_url("")).rstrip("/")
    template = oauth_template(
        auth_url, "http://127.0.0.1:9", tokenUrl=str(mover_server.make_url("/token"))
    )
    planes = await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET})
    drive = Drive(server, planes)
    response = await drive.callback(await drive.authorize(await drive.init()))
    assert response.status == 502
    error = await response.json()
    assert error["code"] == "code_exchange_failed"
    assert error["details"] == "token_endpoint_status_307"
    assert moved_hits == ["/token"] and server.hits == 0


async def test_init_refuses_a_template_with_mtls(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    template = oauth_template("http://127.0.0.1:9", "http://127.0.0.1:9", mtlsEnabled=True)
    planes = await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET})
    response = await planes.admin.post(INIT, json={}, headers=AUTH)
    assert response.status == 400
    error = await response.json()
    assert error["code"] == "validation_failed"
    assert "mtlsEnabled" in error["message"]


async def test_prompt_values_joined_by_plus_are_sent_as_a_space_separated_list(
    drive: Drive,
) -> None:
    # Seed 002: "multiple values ... separated by the '+' symbol, i.e. consent+select_account";
    # OpenID Connect Core 1.0 §3.1.2.1: prompt is a space-delimited list.
    for given in ("consent+select_account", "consent select_account"):
        url = await drive.init(prompt=given)
        assert "prompt=consent%20select_account" in url
        assert parse_qs(urlsplit(url).query)["prompt"] == ["consent select_account"]


async def test_seed_string_additional_params_and_template_defaults(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, auth = await provider(aiohttp_server)
    template = oauth_template(
        str(auth.make_url("")).rstrip("/"),
        "http://127.0.0.1:9",
        additionalAuthorizeParams="access_type=offline&hd=example.com",
    )
    planes = await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET})
    drive = Drive(server, planes)
    query = parse_qs(urlsplit(await drive.init()).query)
    assert query["access_type"] == ["offline"] and query["hd"] == ["example.com"]
    # The body's URL-encoded string (seed 002) replaces the template's.
    query = parse_qs(urlsplit(await drive.init(additionalParams="login_hint=a%40b.c")).query)
    assert query["login_hint"] == ["a@b.c"] and "hd" not in query
    response = await planes.admin.post(INIT, json={"additionalParams": "state=x"}, headers=AUTH)
    assert [f["field"] for f in (await response.json())["fields"]] == ["additionalParams.state"]


async def test_pkce_false_connects_without_a_challenge(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, auth = await provider(aiohttp_server)
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    template = oauth_template(
        str(auth.make_url("")).rstrip("/"), str(resource.make_url("")), pkce=False
    )
    planes = await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET})
    drive = Drive(server, planes)
    url = await drive.init()
    assert "code_challenge" not in parse_qs(urlsplit(url).query)
    created = await drive.connect(connectionName="no-pkce")
    (exchange,) = server.token_requests
    assert "code_verifier" not in exchange["form"]
    response = await planes.proxy.get(
        "/gdrive/files", headers={"X-Connection-Id": created["connectionId"]}
    )
    assert response.status == 200
