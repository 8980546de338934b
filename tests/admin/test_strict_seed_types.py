"""The reader is as strict as the seed: its types without coercion (`"false"` is no boolean,
`"10"` no number) and no default for what signs (`hmac.algorithm`, `hmac.encoding`,
`oauth1.signatureMethod`, `apiKey.name`, `apiKey.in`), in proxy.yaml, in API bodies and in the
init body; each error names the field and what it expects (docs/configuration.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from tests.admin.planes import AUTH, CONNECTIONS, ORG, MakePlanes
from tests.builders import connection

CRED = "connections[0].credentials[0]"
BOOLEAN = "must be a boolean (true or false, not a string)"


def token_entry() -> dict[str, Any]:
    grant = {"type": "clientCredentials", "clientCredentials": {}}
    return {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": "https://auth.example.com/token", "grant": grant},
        },
        "credential": {
            "type": "oauth2-client",
            "data": {"oauth2Client": {"clientId": "cid", "clientSecret": "canary-cs-t1"}},
        },
    }


def hmac_entry(**hmac: Any) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "hmac", "hmac": {"name": "X-Sig", "in": "header", **hmac}},
        "credential": {"type": "string", "data": {"string": {"value": "canary-key-t2"}}},
    }


def oauth1_entry(**oauth1: Any) -> dict[str, Any]:
    params = {"consumerKey": "ck", "consumerSecret": "canary-cs-t3", "tokenAuth": True, **oauth1}
    return {
        "authSchemeConfig": {"type": "oauth1", "oauth1": params},
        "credential": {
            "type": "oauth1-token",
            "data": {"oauth1Token": {"token": "t", "tokenSecret": "canary-ts-t4"}},
        },
    }


def tree_with(entry: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"connections": [connection("api", "https://api.example.com", entry)], **top}


def problems(tree: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    text = [f"{p.field}: {p.message}" for p in caught.value.problems]
    assert all("canary" not in line for line in text)
    return text


def set_at(tree: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    *parents, last = path.split(".")
    target = tree
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return tree


ENTRY = "connections.0.credentials.0"


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (f"{ENTRY}.authSchemeConfig.oauth2.pkce", "yes", "authSchemeConfig.oauth2.pkce", BOOLEAN),
        (
            f"{ENTRY}.authSchemeConfig.oauth2.mtlsEnabled",
            "false",
            "authSchemeConfig.oauth2.mtlsEnabled",
            BOOLEAN,
        ),
        (
            f"{ENTRY}.credential.data.oauth2Client.mTLSEnabled",
            "false",
            "credential.data.oauth2Client.mTLSEnabled",
            BOOLEAN,
        ),
        ("connections.0.forwardClientAuthorization", "true", None, BOOLEAN),
    ],
)
def test_strings_are_not_booleans_in_proxy_yaml(
    path: str, value: str, field: str | None, message: str
) -> None:
    tree = set_at(tree_with(token_entry()), path, value)
    where = f"{CRED}.{field}" if field else "connections[0].forwardClientAuthorization"
    assert problems(tree) == [f"{where}: {message}"]


def test_top_level_numbers_and_booleans_are_strict_too() -> None:
    tree = tree_with(token_entry(), forwardedHeaders="true", limits={"maxBodyBytes": "10"})
    assert sorted(problems(tree)) == [
        f"forwardedHeaders: {BOOLEAN}",
        "limits.maxBodyBytes: must be an integer (a number, not a string)",
    ]
    # The same values with their own types load.
    build_runtime(tree_with(token_entry(), forwardedHeaders=True, limits={"maxBodyBytes": 10}), {})


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (hmac_entry(encoding="hex"), "hmac.algorithm", "required: one of sha1, sha256, sha512"),
        (
            hmac_entry(algorithm="sha256"),
            "hmac.encoding",
            "required: one of hex, base64, base64url",
        ),
        (
            hmac_entry(algorithm="", encoding="hex"),
            "hmac.algorithm",
            "Input should be 'sha1', 'sha256' or 'sha512'",
        ),
        (
            hmac_entry(algorithm="sha256", encoding=""),
            "hmac.encoding",
            "Input should be 'hex', 'base64' or 'base64url'",
        ),
        (oauth1_entry(), "oauth1.signatureMethod", "required: one of sha1, sha256"),
        (
            oauth1_entry(signatureMethod=""),
            "oauth1.signatureMethod",
            "Input should be 'sha1' or 'sha256'",
        ),
    ],
)
def test_what_signs_has_no_default(entry: dict[str, Any], field: str, message: str) -> None:
    assert problems(tree_with(entry)) == [f"{CRED}.authSchemeConfig.{field}: {message}"]


def test_api_key_name_and_in_are_required() -> None:
    entry = {
        "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "", "in": ""}},
        "credential": {"type": "string", "data": {"string": {"value": "canary-key-t5"}}},
    }
    assert sorted(problems(tree_with(entry))) == [
        f"{CRED}.authSchemeConfig.apiKey.in: Input should be 'header', 'query' or 'cookie'",
        f"{CRED}.authSchemeConfig.apiKey.name: String should have at least 1 character",
    ]
    entry["authSchemeConfig"]["apiKey"] = {}
    assert sorted(problems(tree_with(entry))) == [
        f"{CRED}.authSchemeConfig.apiKey.in: required: one of header, query, cookie",
        f"{CRED}.authSchemeConfig.apiKey.name: required",
    ]


async def test_api_and_init_bodies_are_strict(make_planes: MakePlanes) -> None:
    auth = token_entry()["authSchemeConfig"]
    auth["oauth2"]["grant"] = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": "cid", "clientSecret": "canary-cs-t6"},
    }
    auth["oauth2"]["authorizeUrl"] = "https://auth.example.com/authorize"
    template = {"id": "drive", "baseUrl": "https://api.example.com", "authSchemeConfigs": [auth]}
    planes = await make_planes({"templates": [template]})
    # Seed 002's init body: `disableOfflineAccess: "true"` is no boolean.
    init = f"/o/{ORG}/templates/drive/oauth2/init"
    response = await planes.admin.post(init, json={"disableOfflineAccess": "true"}, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["fields"] == [
        {"field": "disableOfflineAccess", "message": BOOLEAN}
    ]
    response = await planes.admin.post(init, json={"disableOfflineAccess": True}, headers=AUTH)
    assert response.status == 200
    # A create body: a string for a boolean, an hmac without algorithm in a given scheme.
    token = {"accessToken": "canary-at-t7", "refreshToken": "canary-rt-t8"}
    body = {
        "connectionTemplateId": "drive",
        "connection": {
            "name": "strict",
            "forwardClientAuthorization": "false",
            "credentials": [
                {
                    "authSchemeConfig": {**auth, "oauth2": {**auth["oauth2"], "pkce": "yes"}},
                    "credential": {"type": "oauth2-token", "data": {"oauth2Token": token}},
                }
            ],
        },
    }
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 400
    fields = {f["field"]: f["message"] for f in (await response.json())["fields"]}
    assert fields == {
        "connection.forwardClientAuthorization": BOOLEAN,
        "connection.credentials[0].authSchemeConfig.oauth2.pkce": BOOLEAN,
    }
    assert "canary" not in str(fields)
