"""Clients and policy on connections created through the management API: a client reaches
every connection of a template (`crm`) or one of them (`crm/<externalId>`), and the
template's `policy` holds for each connection created from it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer

from tests.admin.planes import (
    AUTH,
    CONNECTIONS,
    MakePlanes,
    Planes,
    api_key_template,
    create_body,
    string_credential,
)

ALL_KEY = "ck-crm-all-CANARY-aa11"
ONE_KEY = "ck-crm-one-CANARY-bb22"


async def planes_with_clients(echo_server: TestServer, make_planes: MakePlanes) -> Planes:
    base = str(echo_server.make_url("/api"))
    policy = {"allow": [{"methods": ["GET"], "paths": ["/contacts/**"]}]}
    planes = await make_planes(
        {
            "templates": [api_key_template(base, policy=policy)],
            "clients": [
                {"name": "crm-all", "key": ALL_KEY, "connections": ["crm"]},
                {"name": "crm-one", "key": ONE_KEY, "connections": ["crm/cust-42"]},
            ],
        }
    )
    for name, external in (("Acme", "cust-42"), ("Globex", "cust-7")):
        body = create_body(name, string_credential(f"canary-{external}"), externalId=external)
        response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
        assert response.status == 201, await response.text()
    return planes


async def get(planes: Planes, key: str, external: str, path: str = "/crm/contacts/1") -> Any:
    return await planes.proxy.get(path, headers={"X-Api-Key": key, "X-Connection-Id": external})


async def test_a_template_entry_reaches_every_connection_of_the_template(
    echo_server: TestServer, make_planes: MakePlanes
) -> None:
    planes = await planes_with_clients(echo_server, make_planes)
    for external in ("cust-42", "cust-7"):
        response = await get(planes, ALL_KEY, external)
        assert response.status == 200, await response.text()
        seen = await response.json()
        # The upstream got the end user's own key, never the client key.
        assert ["X-Api-Key", f"canary-{external}"] in seen["headers"]
        assert ALL_KEY not in str(seen)


async def test_a_template_id_external_id_entry_reaches_that_one_only(
    echo_server: TestServer, make_planes: MakePlanes
) -> None:
    planes = await planes_with_clients(echo_server, make_planes)
    assert (await get(planes, ONE_KEY, "cust-42")).status == 200
    response = await get(planes, ONE_KEY, "cust-7")
    assert response.status == 403
    assert (await response.json())["code"] == "client_forbidden"


async def test_the_template_policy_holds_for_its_connections(
    echo_server: TestServer, make_planes: MakePlanes
) -> None:
    planes = await planes_with_clients(echo_server, make_planes)
    response = await get(planes, ALL_KEY, "cust-42", "/crm/invoices/1")
    assert response.status == 403
    assert (await response.json())["code"] == "request_forbidden"
    headers = {"X-Api-Key": ALL_KEY, "X-Connection-Id": "cust-42"}
    response = await planes.proxy.post("/crm/contacts/1", data=b"{}", headers=headers)
    assert response.status == 403
    assert (await response.json())["code"] == "request_forbidden"
