"""The management API with an `aws` credential: the secret key and session token are never read
back (redacted as `""`, as every seed secret is), and posted back so they are refused at their
field."""

from __future__ import annotations

import json
from typing import Any

from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, create_body

SECRET = "canary-aws-secret-key-api-51"
TOKEN = "canary-aws-session-token-api-52"


def aws_entry(params: dict[str, Any]) -> dict[str, Any]:
    key = {"accessKeyId": "AKIDSURFACES", "secretAccessKey": SECRET, "sessionToken": TOKEN}
    return {
        "authSchemeConfig": {"type": "aws-sigv4", "awsSigV4": params},
        "credential": {"type": "aws", "data": {"aws": key}},
    }


async def test_the_api_never_reads_back_the_secret_key(make_planes: MakePlanes) -> None:
    params = {"region": "eu-west-1", "service": "s3"}
    template = {"id": "aws", "route": "/aws", "baseUrl": "https://s3.eu-west-1.amazonaws.com",
                "authSchemeConfigs": [{"type": "aws-sigv4", "awsSigV4": params}]}  # fmt: skip
    planes = await make_planes({"templates": [template]})
    body = create_body("bucket", {"credential": aws_entry(params)["credential"]}, template="aws")
    created = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert created.status == 201, await created.text()
    text = await created.text()
    connection_id = json.loads(text)["id"]
    read = await planes.admin.get(f"{CONNECTIONS}/{connection_id}", headers=AUTH)
    listed = await planes.admin.get(CONNECTIONS, headers=AUTH)
    for answer in (text, await read.text(), await listed.text()):
        assert SECRET not in answer and TOKEN not in answer
    got = await read.json()
    data = got["credentials"][0]["credential"]["data"]["aws"]
    assert data == {"accessKeyId": "AKIDSURFACES", "secretAccessKey": "", "sessionToken": ""}
    # Posted back as read, the redacted key is refused at its field.
    back = {"connectionTemplateId": "aws", "connection": got}
    again = await planes.admin.post(CONNECTIONS, json=back, headers=AUTH)
    assert again.status == 400
    fields = {f["field"]: f["message"] for f in (await again.json())["fields"]}
    here = "connection.credentials[0].credential.data.aws"
    assert fields[f"{here}.secretAccessKey"] == "redacted: supply the value"
