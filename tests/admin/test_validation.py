"""Bad API input: 400 `validation_failed` with seed field paths, and nothing written."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.admin.conftest import AUTH, CONNECTIONS, Planes, create_body, string_credential


async def problems(planes: Planes, body: Any, *, raw: bytes | None = None) -> dict[str, Any]:
    if raw is not None:
        response = await planes.admin.post(CONNECTIONS, data=raw, headers=AUTH)
    else:
        response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 400, await response.text()
    assert "proxy_internal_response" in response.headers["Proxy-Status"]
    error: dict[str, Any] = await response.json()
    assert error["code"] == "validation_failed"
    # Nothing partially written: not in the store, not serving, not listed.
    assert await planes.store.list_connections() == []
    assert list(planes.templates.connections()) == []
    return error


def fields(error: dict[str, Any]) -> list[str]:
    return [f["field"] for f in error.get("fields", [])]


@pytest.mark.parametrize(
    ("credential", "path"),
    [
        (
            {
                "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "", "in": "header"}},
                **string_credential("canary-v1"),
            },
            "connection.credentials[0].authSchemeConfig.apiKey.name",
        ),
        (
            {
                "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "k", "in": "body"}},
                **string_credential("canary-v2"),
            },
            "connection.credentials[0].authSchemeConfig.apiKey.in",
        ),
        (
            {"credential": {"type": "basic-auth", "data": {"basicAuth": {"username": "u"}}}},
            "connection.credentials[0].credential.type",
        ),
        (
            {"credential": {"type": "string", "data": {"string": {}}}},
            "connection.credentials[0].credential.data.string.value",
        ),
        (
            {"credential": {"type": "strin", "data": {}}},
            "connection.credentials[0].credential.type",
        ),
        (
            {"authSchemeConfig": {"type": "bearer"}, **string_credential("canary-v3")},
            "connection.credentials[0].authSchemeConfig.type",
        ),
        (
            {**string_credential("canary-v4"), "colour": "red"},
            "connection.credentials[0].colour",
        ),
    ],
)
async def test_field_paths(crm: Planes, credential: dict[str, Any], path: str) -> None:
    error = await problems(crm, create_body("acme", credential))
    assert path in fields(error)
    assert "canary" not in str(error)


async def test_one_credential_per_template_scheme(crm: Planes) -> None:
    error = await problems(
        crm, create_body("acme", string_credential("canary-a"), string_credential("canary-b"))
    )
    assert fields(error) == ["connection.credentials"]
    error = await problems(crm, create_body("acme"))
    assert fields(error) == ["connection.credentials"]


async def test_top_level_problems(crm: Planes) -> None:
    error = await problems(crm, create_body("acme", string_credential("k"), template="nope"))
    assert fields(error) == ["connectionTemplateId"]
    error = await problems(crm, {"connection": {"name": ""}, "extra": True})
    assert set(fields(error)) >= {"connectionTemplateId", "connection.name", "extra"}
    error = await problems(crm, [1, 2])
    assert error["message"]
    body = create_body("acme", string_credential("k"))
    body["connection"]["baseUrl"] = "ftp://example.com"
    error = await problems(crm, body)
    assert fields(error) == ["connection.baseUrl"]


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"", b'{"a": NaN'])
async def test_malformed_json_is_400(crm: Planes, raw: bytes) -> None:
    error = await problems(crm, None, raw=raw)
    assert "JSON" in error["message"]


async def test_body_too_large_is_413(crm: Planes) -> None:
    body = io.BytesIO(b"x" * (2 * 1024 * 1024))
    response = await crm.admin.post(CONNECTIONS, data=body, headers=AUTH)
    assert response.status == 413
    assert (await response.json())["code"] == "payload_too_large"
