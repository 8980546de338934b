"""Bad API input: 400 `validation_failed` with seed field paths, and nothing written."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.admin.planes import AUTH, CONNECTIONS, Planes, create_body, string_credential


async def problems(planes: Planes, body: Any, *, raw: bytes | None = None) -> dict[str, Any]:
    if raw is not None:
        headers = {**AUTH, "Content-Type": "application/json"}
        response = await planes.admin.post(CONNECTIONS, data=raw, headers=headers)
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
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await crm.admin.post(CONNECTIONS, data=body, headers=headers)
    assert response.status == 413
    assert (await response.json())["code"] == "payload_too_large"


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_json_nested_beyond_the_limit_is_400_not_500(crm: Planes, depth: int) -> None:
    # Python's JSON decoder recurses per level: 100k levels used to end in a RecursionError.
    for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
        error = await problems(crm, None, raw=opening * depth + closing * depth)
        assert error["message"] == "the body nests deeper than 64 levels"


async def test_json_nested_within_the_limit_is_validated_as_usual(crm: Planes) -> None:
    # Exactly 64 levels (the body, `connection`, then 62 lists), and brackets inside a string
    # do not count as nesting: the body is validated and its field errors are reported.
    body = create_body("deep", {**string_credential("[[[[{{{{" * 20), "colour": 1})
    name: Any = "x"
    for _ in range(62):
        name = [name]
    body["connection"]["name"] = name
    error = await problems(crm, None, raw=json.dumps(body).encode())
    assert error["message"] == "the body is invalid"
    assert "connection.name" in fields(error)
    assert "connection.credentials[0].colour" in fields(error)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_body_not_sent_as_json_is_415(crm: Planes, content_type: str | None) -> None:
    # A web page can post text/plain or a form cross-site without a CORS preflight; it cannot
    # send application/json that way, so only that is read.
    body = json.dumps(create_body("x", string_credential("canary-415"))).encode()
    headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
    response = await crm.admin.post(CONNECTIONS, data=body, headers=headers)
    assert response.status == 415, await response.text()
    assert (await response.json())["code"] == "unsupported_media_type"
    assert "proxy_internal_response" in response.headers["Proxy-Status"]
    assert await crm.store.list_connections() == []


async def test_json_with_a_charset_is_accepted(crm: Planes) -> None:
    body = json.dumps(create_body("utf8", string_credential("canary-charset"))).encode()
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    response = await crm.admin.post(CONNECTIONS, data=body, headers=headers)
    assert response.status == 201, await response.text()
