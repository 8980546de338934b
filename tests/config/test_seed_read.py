"""Reading the seed shapes: the platform's own fields, Go zero values, unselected sibling objects,
the scope catalogue, URL-encoded parameter strings and the mTLS spellings (docs/design.md, "Seed
fields you will meet in an export")."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.schemes.oauth2 import OAuth2Scheme
from tests.builders import connection
from tests.plane import MakeProxy

CRED = "connections[0].credentials[0]"
BASE = {
    "id": "01HZX3G9C6M6Z8Q3V5T1R2S4P7",
    "description": "as exported",
    "validationMessages": [{"text": "ok", "severity": "info", "detail": ["checked"]}],
}
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def problems(tree: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    return [f"{p.field}: {p.message}" for p in caught.value.problems]


def one(entry: dict[str, Any], base_url: str = "https://api.example.com") -> dict[str, Any]:
    return {"connections": [connection("api", base_url, entry)]}


def token_entry(token: dict[str, Any], **oauth2: Any) -> dict[str, Any]:
    grant = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": "cid", "clientSecret": "canary-cs-1"},
        "clientCredentials": {},
        "password": None,
    }
    return {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": "https://auth.example.com/token", "grant": grant, **oauth2},
        },
        "credential": {"type": "oauth2-token", "data": {"oauth2Token": token}},
    }


async def test_go_zero_token_type_sends_bearer(
    echo_server: TestServer, make_proxy: MakeProxy
) -> None:
    # What a Go exporter writes for an unset token: "" everywhere, the zero time, null lists.
    token = {
        "accessToken": "canary-access-2",
        "tokenType": "",
        "refreshToken": "",
        "expiresAt": GO_ZERO_TIME,
        "scopes": None,
    }
    entry = token_entry(token, scopes=None, defaultScopes=None, additionalTokenParams="")
    entry["credential"].update(
        {"id": "", "organisationId": "", "name": "", "errors": None, "expiresAt": GO_ZERO_TIME}
    )
    proxy = await make_proxy(one(entry, str(echo_server.make_url("/up"))))
    response = await proxy.get("/api/x")
    assert response.status == 200
    headers = dict((await response.json())["headers"])
    assert headers["Authorization"] == "Bearer canary-access-2"


def test_go_zero_on_a_required_field_is_reported() -> None:
    entry = {
        "authSchemeConfig": {
            "type": "hmac",
            "hmac": {"name": "", "in": "header", "algorithm": "sha256", "encoding": "hex"},
        },
        "credential": {"type": "string", "data": {"string": {"value": "k"}}},
    }
    [message] = problems(one(entry))
    assert message.startswith(f"{CRED}.authSchemeConfig.hmac.name: ")


def test_null_digest_inputs_is_the_default_and_empty_list_an_error() -> None:
    def hmac(digest: Any) -> dict[str, Any]:
        return {
            "authSchemeConfig": {
                "type": "hmac",
                "hmac": {
                    "name": "X-Sig",
                    "in": "header",
                    "algorithm": "sha256",
                    "digestInputs": digest,
                    "encoding": "hex",
                },
            },
            "credential": {"type": "string", "data": {"string": {"value": "k"}}},
        }

    [compiled] = build_runtime(one(hmac(None)), {}).connections
    assert compiled.model.credentials[0].auth_scheme_config.hmac.digest_inputs == ["body"]
    [message] = problems(one(hmac([])))
    assert message.startswith(f"{CRED}.authSchemeConfig.hmac.digestInputs: ")


def test_platform_fields_are_read_at_their_place() -> None:
    entry = {
        "id": "01HZX3G9C6M6Z8Q3V5T1R2S4P8",
        "authSchemeConfig": {
            "type": "api-key",
            "apiKey": {**BASE, "name": "X-Key", "in": "header"},
            "none": {},
            "basicAuth": None,
            "certificate": {},
        },
        "credential": {
            "id": "01HZX3G9C6M6Z8Q3V5T1R2S4P9",
            "organisationId": "01JAAAAAAAAAAAAAAAAAAAAAAA",
            "type": "string",
            "name": "partner key",
            "errors": ["stale"],
            "data": {"string": {"value": "canary-key-3"}, "none": {}, "oauth2Token": None},
        },
    }
    tree = one(entry)
    tree["connections"][0].update(
        {
            "createdAt": "2025-01-31T12:00:00Z",
            "updatedAt": "2025-02-01T12:00:00Z",
            "systemId": "01HZX3G9C6M6Z8Q3V5T1R2S4PA",
        }
    )
    [compiled] = build_runtime(tree, {}).connections
    assert compiled.model.created_at == "2025-01-31T12:00:00Z"
    assert compiled.model.system_id == "01HZX3G9C6M6Z8Q3V5T1R2S4PA"
    assert compiled.schemes[0].credential_id == "01HZX3G9C6M6Z8Q3V5T1R2S4P8"
    api_key = compiled.model.credentials[0].auth_scheme_config.api_key
    assert api_key.description == "as exported"
    assert api_key.validation_messages is None  # the platform's output: dropped on input
    assert compiled.model.credentials[0].credential.errors is None


@pytest.mark.parametrize(
    ("where", "sibling"),
    [
        ("authSchemeConfig", "hmac"),
        ("credential.data", "basicAuth"),
        ("authSchemeConfig.oauth2.grant", "password"),
    ],
)
def test_a_filled_unselected_object_is_an_error_naming_it(where: str, sibling: str) -> None:
    entry = token_entry({"accessToken": "a"})
    target: dict[str, Any] = entry
    for part in where.split("."):
        target = target[part]
    target[sibling] = {"name": "X-Sig", "username": "u", "clientId": "c"}
    [message] = problems(one(entry))
    assert message == (
        f"{CRED}.{where}.{sibling}: only the object named by `type` is read: "
        "this one must be {} or null"
    )


def test_scopes_is_the_catalogue_and_default_scopes_are_requested() -> None:
    catalogue = [{"name": "read", "description": "Read"}, {"name": "write"}]
    [compiled] = build_runtime(
        one(token_entry({"accessToken": "a"}, scopes=catalogue, defaultScopes=["read"])), {}
    ).connections
    scheme = compiled.schemes[0]
    assert isinstance(scheme, OAuth2Scheme)
    assert scheme.settings.scopes == ("read",)
    # A plain string is the old reading of `scopes`: an error that says where scopes go.
    [message] = problems(one(token_entry({"accessToken": "a"}, scopes=["read"])))
    assert message.startswith(f"{CRED}.authSchemeConfig.oauth2.scopes[0]: ")
    assert "defaultScopes" in message and "must be a string" not in message


def test_url_encoded_token_params_merge_with_the_credentials_own() -> None:
    entry: dict[str, Any] = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {
                "tokenUrl": "https://auth.example.com/token",
                "additionalTokenParams": "audience=https%3A%2F%2Fapi.example&resource=a+b",
                "grant": {"type": "clientCredentials", "clientCredentials": {}},
            },
        },
        "credential": {
            "type": "oauth2-client",
            "data": {
                "oauth2Client": {
                    "clientId": "cid",
                    "clientSecret": "canary-cs-4",
                    "additionalParams": "resource=mine&tenant=t1",
                }
            },
        },
    }
    [compiled] = build_runtime(one(entry), {}).connections
    scheme = compiled.schemes[0]
    assert isinstance(scheme, OAuth2Scheme)
    assert dict(scheme.settings.additional_params) == {
        "audience": "https://api.example",
        "resource": "mine",  # the credential's own wins
        "tenant": "t1",
    }
    bad = dict(entry["credential"]["data"]["oauth2Client"], additionalParams="grant_type=x")
    entry["credential"]["data"]["oauth2Client"] = bad
    [message] = problems(one(entry))
    assert message.startswith(
        f"{CRED}.credential.data.oauth2Client.additionalParams.grant_type: is set by the proxy"
    )
    broken = token_entry({"accessToken": "a"}, additionalTokenParams="=x")
    [message] = problems(one(broken))
    assert message.startswith(f"{CRED}.authSchemeConfig.oauth2.additionalTokenParams: ")


@pytest.mark.parametrize("spelling", ["mtlsCredentialId", "mTLSCredentialId"])
def test_mtls_credential_id_must_name_a_certificate_credential(spelling: str) -> None:
    entry = token_entry({"accessToken": "a"}, **{spelling: "01HZX3G9C6M6Z8Q3V5T1R2S4PB"})
    [message] = problems(one(entry))
    assert message == (
        f"{CRED}.authSchemeConfig.oauth2.mtlsCredentialId: "
        "names no 'certificate' credential of this connection"
    )


@pytest.mark.parametrize(("given", "read"), [("HMAC-SHA1", "sha1"), ("sha256", "sha256")])
def test_oauth1_signature_method_spellings(given: str, read: str) -> None:
    entry = {
        "authSchemeConfig": {
            "type": "oauth1",
            "oauth1": {
                "consumerKey": "ck",
                "consumerSecret": "canary-cs-5",
                "signatureMethod": given,
                "tokenAuth": True,
                "credentialId": "",
            },
        },
        "credential": {
            "type": "oauth1-token",
            "data": {"oauth1Token": {"token": "t", "tokenSecret": "canary-ts-6"}},
        },
    }
    [compiled] = build_runtime(one(entry), {}).connections
    assert compiled.schemes[0].describe()["signatureMethod"].lower() == f"hmac-{read}"


async def test_a_credential_past_its_expires_at_is_never_sent(
    echo_server: TestServer, make_proxy: MakeProxy
) -> None:
    def keyed(expires_at: str) -> dict[str, Any]:
        entry = {
            "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}},
            "credential": {
                "type": "string",
                "expiresAt": expires_at,
                "data": {"string": {"value": "canary-key-7"}},
            },
        }
        return one(entry, str(echo_server.make_url("/up")))

    # Seed: expiresAt "denotes the time this credential should be automatically deleted".
    proxy = await make_proxy(keyed("2001-01-01T00:00:00Z"))
    response = await proxy.get("/api/x")
    assert response.status == 502
    body = await response.json()
    assert body["code"] == "credential_expired" and "canary" not in str(body)
    proxy = await make_proxy(keyed("2999-01-01T00:00:00+01:00"))
    assert (await proxy.get("/api/x")).status == 200
    [message] = problems(keyed("tomorrow"))
    assert message.startswith(f"{CRED}.credential.expiresAt: must be an RFC 3339 time")


@pytest.mark.parametrize(
    "kind",
    [
        "none",
        "api-key",
        "basic-auth",
        "oauth2",
        "hmac",
        "jwt-bearer",
        "certificate",
        "oauth1",
        "secret",
    ],
)
def test_every_seed_scheme_type_is_implemented(kind: str) -> None:
    # Seed 001 `AuthSchemeType`: each is a scheme here. Given without its settings, the file is
    # refused for what is missing, never for the type itself.
    entry = {
        "authSchemeConfig": {"type": kind},
        "credential": {"type": "string", "data": {"string": {"value": "k"}}},
    }
    try:
        found = problems(one(entry))
    except pytest.fail.Exception:
        found = []  # (a type that needs nothing more: it loads)
    assert not any(f"{CRED}.authSchemeConfig.type:" in message for message in found)
