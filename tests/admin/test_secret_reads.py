"""`secret` connections through the management API: reads show the placeholder (configuration)
and never the secret; a connection created through the API may not bind a placeholder."""

from __future__ import annotations

import json

import yaml
from aiohttp.test_utils import TestServer

from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, create_body
from tests.placeholder import CONFIG, secret
from tests.seeds.schema import problems

PLACEHOLDER = "sk-proj-placeholder-a1"
CANARY = "sk-live-CANARY-secret-51c3"


async def test_api_reads_redact_the_secret_and_refuse_new_secret_connections(
    echo_server: TestServer, make_planes: MakePlanes
) -> None:
    tree = yaml.safe_load(CONFIG.format(base=echo_server.make_url("/api"), placeholder=PLACEHOLDER))
    tree["connections"][0]["credentials"][0]["credential"]["data"]["string"]["value"] = CANARY
    tree["templates"] = [
        {"id": "open", "route": "/open", "baseUrl": str(echo_server.make_url("/"))}
    ]
    planes = await make_planes(tree)
    listed = await (await planes.admin.get(CONNECTIONS, headers=AUTH)).text()
    [item] = yaml.safe_load(listed)["items"]
    one = await (await planes.admin.get(f"{CONNECTIONS}/{item['id']}", headers=AUTH)).text()
    openint = await (await planes.admin.get(f"/connection/{item['id']}", headers=AUTH)).text()
    # The read validates against seed 001's `Connection`: `type: secret` is a seed type, the
    # secret is present and redacted as "".
    body = json.loads(one)
    assert problems(body) == [], one
    [entry] = body["credentials"]
    assert entry["credential"]["data"]["string"]["value"] == ""
    assert entry["authSchemeConfig"]["secret"]["placeholder"] == PLACEHOLDER
    for text in (listed, one, openint):
        assert CANARY not in text
        assert PLACEHOLDER in text  # configuration, shown
    # A connection made through the API may not bind a placeholder (its route is shared).
    body = create_body("agent", secret("sk-other-placeholder", ["X-Key"], CANARY), template="open")
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 400
    text = await response.text()
    assert "credentials[0].authSchemeConfig.type" in text and CANARY not in text
