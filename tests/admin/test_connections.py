"""CreateConnection / list / GetConnection / DELETE, and traffic on the template route."""

from __future__ import annotations

from typing import Any

from ulid import ULID

from tests.admin.planes import (
    AUTH,
    CONNECTIONS,
    Planes,
    create,
    create_body,
    header,
    string_credential,
)


async def test_created_connection_serves_at_once_by_id_and_external_id(crm: Planes) -> None:
    created = await create(
        crm, create_body("acme", string_credential("canary-key-acme-1"), externalId="user-42")
    )
    assert created["name"] == "acme"
    assert created["externalId"] == "user-42"
    assert created["connectionTemplateId"] == "crm"
    assert created["route"] == "/crm"
    auth = created["credentials"][0]["authSchemeConfig"]
    assert ULID.from_str(auth["apiKey"].pop("id"))  # made once, as the seed's ids are
    assert auth == {
        "type": "api-key",
        "apiKey": {"name": "X-Api-Key", "in": "header", "description": ""},
    }
    for pick in (created["id"], "user-42"):
        response = await crm.proxy.get("/crm/items?q=1", headers={"X-Connection-Id": pick})
        assert response.status == 200
        seen = await response.json()
        assert seen["target"] == "/api/items?q=1"
        assert header(seen, "X-Api-Key") == ["canary-key-acme-1"]
        assert header(seen, "X-Connection-Id") == []  # picks the connection, never forwarded


async def test_each_end_user_gets_their_own_credential(crm: Planes) -> None:
    await create(crm, create_body("a", string_credential("canary-key-a"), externalId="ua"))
    await create(crm, create_body("b", string_credential("canary-key-b"), externalId="ub"))
    for user, key in (("ua", "canary-key-a"), ("ub", "canary-key-b")):
        seen = await (await crm.proxy.get("/crm/x", headers={"X-Connection-Id": user})).json()
        assert header(seen, "X-Api-Key") == [key]


async def test_template_route_needs_a_known_connection_id(crm: Planes) -> None:
    await create(crm, create_body("acme", string_credential("canary-key-acme-2")))
    missing = await crm.proxy.get("/crm/items")
    assert missing.status == 400
    assert (await missing.json())["code"] == "connection_id_required"
    assert "connection_id_required" in missing.headers["Proxy-Status"]
    unknown = await crm.proxy.get("/crm/items", headers={"X-Connection-Id": "nobody"})
    assert unknown.status == 404
    assert (await unknown.json())["code"] == "connection_not_found"


async def test_credential_may_bring_its_own_scheme_config_of_the_same_type(crm: Planes) -> None:
    own = {
        "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "key", "in": "query"}},
        **string_credential("canary-key-q"),
    }
    created = await create(crm, create_body("q", own))
    seen = await (await crm.proxy.get("/crm/x", headers={"X-Connection-Id": created["id"]})).json()
    assert seen["target"] == "/api/x?key=canary-key-q"


async def test_base_url_override(crm: Planes, echo_server: Any) -> None:
    body = create_body("other", string_credential("canary-key-o"))
    body["connection"]["baseUrl"] = str(echo_server.make_url("/elsewhere"))
    created = await create(crm, body)
    seen = await (await crm.proxy.get("/crm/x", headers={"X-Connection-Id": created["id"]})).json()
    assert seen["target"] == "/elsewhere/x"


async def test_list_get_delete(crm: Planes) -> None:
    created = await create(
        crm, create_body("acme", string_credential("canary-key-acme-3"), externalId="e1")
    )
    listed = await (await crm.admin.get(CONNECTIONS, headers=AUTH)).json()
    assert sorted(c["name"] for c in listed["items"]) == ["acme", "filed"]
    got = await crm.admin.get(f"{CONNECTIONS}/{created['id']}", headers=AUTH)
    assert got.status == 200
    assert got.headers["Cache-Control"] == "no-store"
    assert await got.json() == created

    deleted = await crm.admin.delete(f"{CONNECTIONS}/{created['id']}", headers=AUTH)
    assert deleted.status == 204
    assert (await crm.admin.get(f"{CONNECTIONS}/{created['id']}", headers=AUTH)).status == 404
    assert await crm.store.get_connection(created["id"]) is None
    gone = await crm.proxy.get("/crm/x", headers={"X-Connection-Id": "e1"})
    assert (await gone.json())["code"] == "connection_not_found"
    again = await crm.admin.delete(f"{CONNECTIONS}/{created['id']}", headers=AUTH)
    assert again.status == 404
    assert (await again.json())["code"] == "not_found"


async def test_file_connection_is_listed_but_not_deletable(crm: Planes) -> None:
    listed = await (await crm.admin.get(CONNECTIONS, headers=AUTH)).json()
    (filed,) = [c for c in listed["items"] if c["name"] == "filed"]
    response = await crm.admin.delete(f"{CONNECTIONS}/{filed['id']}", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["code"] == "conflict"
    assert (await crm.proxy.get("/filed/x")).status == 200


async def test_duplicate_name_or_external_id_within_a_template_is_409(crm: Planes) -> None:
    await create(crm, create_body("acme", string_credential("canary-k1"), externalId="e1"))
    for body in (
        create_body("acme", string_credential("canary-k2")),
        create_body("other", string_credential("canary-k3"), externalId="e1"),
    ):
        response = await crm.admin.post(CONNECTIONS, json=body, headers=AUTH)
        assert response.status == 409
        error = await response.json()
        assert error["code"] == "conflict"
        assert "canary" not in await response.text()
    assert len(await crm.store.list_connections()) == 1


async def test_other_organisation_is_404_everywhere(crm: Planes) -> None:
    created = await create(crm, create_body("acme", string_credential("canary-k4")))
    other = "/o/01JZZZZZZZZZZZZZZZZZZZZZZZ"
    for method, path in (
        ("GET", f"{other}/connections"),
        ("POST", f"{other}/connections"),
        ("GET", f"{other}/connections/{created['id']}"),
        ("DELETE", f"{other}/connections/{created['id']}"),
        ("POST", f"{other}/templates/crm/oauth2/init"),
    ):
        response = await crm.admin.request(method, path, json={}, headers=AUTH)
        assert response.status == 404, (method, path)
        assert (await response.json())["code"] == "not_found"
    assert await crm.store.get_connection(created["id"]) is not None


async def test_unknown_connection_is_404(crm: Planes) -> None:
    for path in (f"{CONNECTIONS}/nope", "/connection/nope"):
        response = await crm.admin.get(path, headers=AUTH)
        assert response.status == 404
        assert (await response.json())["code"] == "not_found"
