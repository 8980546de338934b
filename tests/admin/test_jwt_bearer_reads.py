"""A `jwt-bearer` connection created through the management API: its key is never read back."""

from __future__ import annotations

import json

from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, create_body
from tests.builders import jwt_bearer
from tests.jwt_provider import private_pem
from tests.seeds.schema import problems_but_template_id

KEY = private_pem("rsa")
CANARIES = [KEY.splitlines()[2]]
GITHUB = {"flavor": "github-app", "issuer": "123", "subject": "456"}


async def test_api_reads_redact_the_key(make_planes: MakePlanes) -> None:
    planes = await make_planes({"templates": [{"id": "crm", "baseUrl": "https://api.example.com"}]})
    body = create_body("robot", jwt_bearer(KEY, kind="binary", **GITHUB))
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    created = await response.json()
    listed = await (await planes.admin.get(CONNECTIONS, headers=AUTH)).json()
    one = await (await planes.admin.get(f"{CONNECTIONS}/{created['id']}", headers=AUTH)).json()
    for read in (created, listed, one):
        assert not any(canary in json.dumps(read) for canary in CANARIES)
    # Seed 001 names `jwt-bearer` as an AuthSchemeType: the body is a seed `Connection`.
    assert problems_but_template_id(one) == [], json.dumps(one, indent=1)
    credential = one["credentials"][0]
    assert credential["authSchemeConfig"]["jwtBearer"]["id"]  # a ULID, as every sub-object
    assert credential["credential"]["data"]["binary"]["valueBase64"] == ""
    assert credential["authSchemeConfig"]["jwtBearer"]["issuer"] == "123"
    # Posted back without the key: refused naming the field.
    back = create_body("robot-2", {k: v for k, v in credential.items() if k != "id"})
    response = await planes.admin.post(CONNECTIONS, json=back, headers=AUTH)
    assert response.status == 400
    assert "valueBase64" in await response.text()
