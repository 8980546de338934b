"""Every seed endpoint answers in its seed shape: `Connection` (000/001) with ULID ids and
timestamps, a GET body POSTed back, and OpenInt's snake_case `GET /connection/{id}` (004)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestServer
from ulid import ULID

from tests.admin.oauth2_connect import Drive, oauth_template, provider
from tests.admin.planes import (
    AUTH,
    CONNECTIONS,
    MakePlanes,
    Planes,
    create,
    create_body,
    header,
    string_credential,
)
from tests.oauth_server import create_resource_app
from tests.seeds.schema import problems_but_template_id as problems


def rfc3339(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_created_connection_has_ulid_ids_and_timestamps(crm: Planes) -> None:
    created = await create(crm, create_body("acme", string_credential("canary-key-w1")))
    ULID.from_str(created["id"])  # raises unless a ULID
    assert rfc3339(created["createdAt"]) == rfc3339(created["updatedAt"])
    [entry] = created["credentials"]
    ULID.from_str(entry["id"])
    assert entry["credential"]["id"] == entry["id"]
    assert entry["credential"]["organisationId"] == crm.runtime.config.organisation_id
    got = await (await crm.admin.get(f"{CONNECTIONS}/{created['id']}", headers=AUTH)).json()
    assert got == created
    # A file connection shows the time the file was loaded.
    listed = await (await crm.admin.get(CONNECTIONS, headers=AUTH)).json()
    filed = next(c for c in listed["items"] if c["name"] == "filed")
    rfc3339(filed["createdAt"])


async def test_a_get_body_posted_back_with_its_secrets_creates_the_same_connection(
    crm: Planes,
) -> None:
    created = await create(
        crm, create_body("acme", string_credential("canary-key-w2"), externalId="user-9")
    )
    got = await (await crm.admin.get(f"{CONNECTIONS}/{created['id']}", headers=AUTH)).json()
    assert "canary-key-w2" not in str(got)
    response = await crm.admin.delete(f"{CONNECTIONS}/{created['id']}", headers=AUTH)
    assert response.status == 204
    # Only the secret field filled in; every other field exactly as GET returned it.
    got["credentials"][0]["credential"]["data"]["string"]["value"] = "canary-key-w2"
    body = {"connectionTemplateId": got["connectionTemplateId"], "connection": got}
    again = await create(crm, body)
    for moving in ("createdAt", "updatedAt"):
        again.pop(moving), created.pop(moving)
    assert again == created
    seen = await (await crm.proxy.get("/crm/x", headers={"X-Connection-Id": "user-9"})).json()
    assert header(seen, "X-Api-Key") == ["canary-key-w2"]
    # Posting it while it exists is a conflict on its id.
    response = await crm.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 409


async def test_read_only_fields_must_agree_with_the_request(crm: Planes) -> None:
    body = create_body("acme", string_credential("canary-key-w3"))
    body["connection"].update({"route": "/elsewhere", "connectionTemplateId": "other"})
    response = await crm.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 400
    fields = sorted(f["field"] for f in (await response.json())["fields"])
    assert fields == ["connection.connectionTemplateId", "connection.route"]


async def test_base_url_go_zero_is_the_templates_and_a_bare_host_gets_https(crm: Planes) -> None:
    template_base = crm.templates.get("crm").template.model.base_url  # type: ignore[union-attr]
    body = create_body("zero", string_credential("canary-key-w4"))
    body["connection"]["baseUrl"] = ""
    assert (await create(crm, body))["baseUrl"] == template_base
    body = create_body("shop", string_credential("canary-key-w5"))
    body["connection"]["baseUrl"] = "myshop.example.com/admin"
    assert (await create(crm, body))["baseUrl"] == "https://myshop.example.com/admin"


async def test_openint_body_is_seed_004(crm: Planes) -> None:
    created = await create(
        crm, create_body("acme", string_credential("canary-key-w6"), externalId="user-3")
    )
    plain = await (await crm.admin.get(f"/connection/{created['id']}", headers=AUTH)).json()
    prefixed = await crm.admin.get(f"/connection/conn_{created['id']}", headers=AUTH)
    assert prefixed.status == 200 and await prefixed.json() == plain
    assert plain["id"] == f"conn_{created['id']}"
    assert plain["customer_id"] == "user-3"
    assert plain["connector_config_id"] == "crm"
    assert plain["display_name"] == "acme"
    assert plain["status"] == "healthy" and plain["disabled"] is False
    assert plain["created_at"] == created["createdAt"]
    assert "api_key" not in plain["settings"] and "canary-key-w6" not in str(plain)
    assert "connector" not in plain
    shown = await (
        await crm.admin.get(
            f"/connection/{created['id']}?include_secrets=true&expand=connector", headers=AUTH
        )
    ).json()
    assert shown["settings"]["api_key"] == "canary-key-w6"
    assert shown["settings"]["credentials"][0]["data"] == {"string": {"value": "canary-key-w6"}}
    assert shown["connector"]["auth_type"] == "API_KEY"
    assert shown["connector"]["name"] == "crm"


async def test_openint_oauth_settings_and_status(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, auth = await provider(aiohttp_server)
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    catalogue = [{"name": "drive.readonly", "description": "Read your files"}]
    template = oauth_template(
        str(auth.make_url("")).rstrip("/"), str(resource.make_url("")), scopes=catalogue
    )
    planes = await make_planes(
        {"templates": [template]}, env={"SECRET": "canary-client-secret-d41f"}
    )
    drive = Drive(server, planes)
    created = await drive.connect(connectionName="alice")
    url = f"/connection/{created['connectionId']}?refresh_policy=none"
    body = await (await planes.admin.get(url + "&expand=connector", headers=AUTH)).json()
    oauth = body["settings"]["oauth"]["credentials"]
    assert set(oauth) >= {"token_type", "scope", "expires_at", "expires_in", "client_id", "raw"}
    assert "access_token" not in oauth and "refresh_token" not in oauth
    assert oauth["scope"] == "drive.readonly offline_access"
    assert 0 < oauth["expires_in"] <= 3600
    assert body["connector"]["auth_type"] == "OAUTH2"
    assert body["connector"]["scopes"] == [
        {
            "scope": "drive.readonly",
            "display_name": "drive.readonly",
            "description": "Read your files",
        }
    ]
    shown = await (await planes.admin.get(url + "&include_secrets=true", headers=AUTH)).json()
    token = shown["settings"]["oauth"]["credentials"]
    assert token["access_token"] in server.access and token["refresh_token"] in server.refresh
    assert shown["settings"]["access_token"] == token["access_token"]
    # The provider revokes the grant: the connection needs a person again.
    server.expire_access_tokens()
    server.refresh.clear()
    response = await planes.proxy.get(
        "/gdrive/files", headers={"X-Connection-Id": created["connectionId"]}
    )
    assert response.status == 502, await response.text()
    body = await (await planes.admin.get(url, headers=AUTH)).json()
    assert body["status"] == "disconnected"
    assert "invalid_grant" in body["status_message"]


async def test_callback_for_a_token_without_refresh_token_is_raw(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, auth = await provider(aiohttp_server)
    server.issue_refresh_tokens = False
    template = oauth_template(str(auth.make_url("")).rstrip("/"), "http://127.0.0.1:9")
    planes = await make_planes(
        {"templates": [template]}, env={"SECRET": "canary-client-secret-d41f"}
    )
    created = await Drive(server, planes).connect(connectionName="bob")
    assert created["type"] == "Raw"
    assert created["redactFields"] == ["accessToken"]
    decoded = {k: base64.b64decode(v).decode() for k, v in created["data"].items()}
    assert decoded["tokenType"] == "Bearer"


async def test_oauth2_code_credential_is_exchanged_once_at_create(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, auth = await provider(aiohttp_server)
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    template = oauth_template(str(auth.make_url("")).rstrip("/"), str(resource.make_url("")))
    planes = await make_planes(
        {"templates": [template]}, env={"SECRET": "canary-client-secret-d41f"}
    )
    drive = Drive(server, planes)
    # A front end took the browser redirect of a flow the proxy started, and hands the code over.
    location = await drive.authorize(await drive.init())
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def body(name: str, code: str, state: str) -> dict[str, Any]:
        value = {"code": code, "state": state, "additionalParams": "resource=drive"}
        credential = {"type": "oauth2-code", "data": {"oauth2Code": value}}
        return create_body(name, {"credential": credential}, template="gdrive")

    created = await create(planes, body("carol", query["code"], query["state"]))
    assert problems(created) == []  # seed 001's Connection
    [entry] = created["credentials"]
    assert entry["credential"]["type"] == "oauth2-token"
    token = entry["credential"]["data"]["oauth2Token"]
    assert set(token) == {"accessToken", "refreshToken", "tokenType", "expiresAt", "scopes"}
    assert token["accessToken"] == token["refreshToken"] == ""  # redacted
    (exchange,) = server.token_requests
    assert exchange["form"]["code_verifier"] and exchange["form"]["resource"] == "drive"
    response = await planes.proxy.get("/gdrive/files", headers={"X-Connection-Id": created["id"]})
    assert response.status == 200
    # The state was consumed; the code is single use: the provider's error comes back as a 400.
    callback = await drive.callback(location)
    assert callback.status == 400
    response = await planes.admin.post(
        CONNECTIONS, json=body("dave", query["code"], ""), headers=AUTH
    )
    assert response.status == 400
    error = await response.json()
    assert error["code"] == "code_exchange_failed" and error["details"] == "invalid_grant"
    assert query["code"] not in str(error)
