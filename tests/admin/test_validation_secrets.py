"""No secret in an admin API validation error: JSON typo shapes and control characters.

The YAML side (`check`, `run`) is tests/config/test_config_typos.py and
tests/config/test_config_control_chars.py; the API shares their rules: an unknown key which may be a
mistyped value is never printed, and a value bound for a header may hold no control character.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.admin.planes import AUTH, CONNECTIONS, Planes, create_body, string_credential

CANARY = "CANARYjson8Rt"

# JSON bodies of the management API, as text: the shapes a person types by hand.
JSON_TYPOS = [
    f'{{"string": {{"value:{CANARY}": null}}}}',
    f'{{"string": {{"{CANARY}": "value"}}}}',
    f'{{"string": {{"value": "x", "{CANARY}": ""}}}}',
    f'{{"string": {{"value" "{CANARY}"}}}}',
    f'{{"string": {{"value": "{CANARY}",}}}}',
    f'{{"string": {{"value": "{CANARY}"}}',
    f'{{"string": "{CANARY}"}}',
    f'{{"string": {{"value": ["{CANARY}"]}}}}',
    f'{{"string": {{"value": {{"{CANARY}": 1}}}}}}',
]


@pytest.mark.parametrize("data", JSON_TYPOS)
async def test_admin_validation_errors_carry_no_canary(crm: Planes, data: str) -> None:
    body = (
        '{"connectionTemplateId": "crm", "connection": {"name": "typo", "credentials": '
        f'[{{"credential": {{"type": "string", "data": {data}}}}}]}}}}'
    )
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await crm.admin.post(CONNECTIONS, data=body.encode(), headers=headers)
    text = await response.text()
    assert response.status == 400, text
    assert CANARY not in text
    assert CANARY not in response.headers.get("Proxy-Status", "")
    error: dict[str, Any] = json.loads(text)
    assert error["code"] == "validation_failed"
    for field in error.get("fields", []):
        assert field["field"].startswith("connection.credentials[0].credential")


async def test_the_admin_api_refuses_it_too(crm: Planes) -> None:
    body = create_body("ctl", string_credential(f"{CANARY}\r\nX-Injected: 1"))
    response = await crm.admin.post(CONNECTIONS, json=body, headers=AUTH)
    text = await response.text()
    assert response.status == 400, text
    assert CANARY not in text
    fields = [f["field"] for f in (await response.json())["fields"]]
    assert fields == ["connection.credentials[0].credential.data.string.value"]
    assert await crm.store.list_connections() == []
