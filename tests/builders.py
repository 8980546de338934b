"""Config-tree builders for tests: a connection entry and its credentials as proxy.yaml dicts, and
`config_problems`, what the loader says about a tree it refuses."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest
import trustme

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime


def connection(
    name: str, base_url: str, *credentials: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A connection entry of proxy.yaml as a dict."""
    return {"name": name, "baseUrl": base_url, "credentials": list(credentials), **extra}


def bearer(token: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"string": {"value": token}}},
    }


def api_key(name: str, where: str, value: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "api-key", "apiKey": {"name": name, "in": where}},
        "credential": {"type": "string", "data": {"string": {"value": value}}},
    }


def hmac_credential(key: str, **params: Any) -> dict[str, Any]:
    """An `hmac` credential: SHA-256, hex, in header `X-Signature`, unless `params` say otherwise
    (`digestInputs`, `name`, `in`, `algorithm`, `encoding`)."""
    config = {"name": "X-Signature", "in": "header", "algorithm": "sha256", "encoding": "hex"}
    config.update(params)
    return {
        "authSchemeConfig": {"type": "hmac", "hmac": config},
        "credential": {"type": "string", "data": {"string": {"value": key}}},
    }


def hmac_sha256(key: str, *inputs: str) -> dict[str, Any]:
    """An `hmac` credential: SHA-256 over `inputs` (url, body), hex, in header `X-Sig`."""
    return hmac_credential(key, name="X-Sig", digestInputs=list(inputs))


def oauth2_client(
    token_url: str, client_id: str, client_secret: str, **oauth2: Any
) -> dict[str, Any]:
    """An `oauth2` clientCredentials credential (RFC 6749 §4.4) of the client `client_id`;
    `oauth2` adds settings beside `tokenUrl` and `grant`."""
    return {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": token_url, "grant": {"type": "clientCredentials"}, **oauth2},
        },
        "credential": {
            "type": "oauth2-client",
            "data": {"oauth2Client": {"clientId": client_id, "clientSecret": client_secret}},
        },
    }


def oauth2_token(
    token_url: str,
    client_id: str,
    client_secret: str,
    token: Mapping[str, Any],
    expires_at: str | None = None,
    **oauth2: Any,
) -> dict[str, Any]:
    """An `oauth2` authorizationCode credential seeded with `token` (an RFC 6749 §5.1 answer; its
    refresh token when it has one); `oauth2` adds settings beside `tokenUrl` and `grant`."""
    value = {"accessToken": token["access_token"]}
    if "refresh_token" in token:
        value["refreshToken"] = token["refresh_token"]
    if expires_at is not None:
        value["expiresAt"] = expires_at
    grant = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": client_id, "clientSecret": client_secret},
    }
    return {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": token_url, "grant": grant, **oauth2},
        },
        "credential": {"type": "oauth2-token", "data": {"oauth2Token": value}},
    }


def jwt_bearer(key: str, *, kind: str = "string", **params: Any) -> dict[str, Any]:
    """A `jwt-bearer` credential signing with the PEM `key`, held as a `string` or `binary`
    credential (`kind`; `basic-auth` makes the mismatch the loader refuses); `params` are the
    `jwtBearer` settings (flavor, issuer, tokenUrl, ...)."""
    if kind == "binary":
        data: dict[str, Any] = {"binary": {"valueBase64": base64.b64encode(key.encode()).decode()}}
    else:
        data = {kind: {"value": key}} if kind == "string" else {"basicAuth": {"username": "u"}}
    return {
        "authSchemeConfig": {"type": "jwt-bearer", "jwtBearer": params},
        "credential": {"type": kind, "data": data},
    }


def basic(username: str, password: str) -> dict[str, Any]:
    return {
        "authSchemeConfig": {"type": "basic-auth"},
        "credential": {
            "type": "basic-auth",
            "data": {"basicAuth": {"username": username, "password": password}},
        },
    }


def on_path(tree: dict[str, Any], path: str) -> dict[str, Any]:
    """`tree` with its requests on the request path named `path`: `lean` (the bytes-level path of
    constant-header schemes, as written) or `general` (the same credentials on the general path:
    `forwardedHeaders` sends them there)."""
    if path == "general":
        tree["forwardedHeaders"] = True
    return tree


def config_problems(tree: Any, env: Mapping[str, str] | None = None) -> list[str]:
    """The problems `build_runtime` refuses `tree` for (it must refuse it), one
    `field.path: message` line each, as `check` prints them."""
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, dict(env or {}))
    return [str(p) for p in caught.value.problems]


def certificate_credential(client: trustme.LeafCert, ca_pem: str | None) -> dict[str, Any]:
    """A `certificate` (mTLS) credential presenting `client`, trusting `ca_pem` for the upstream
    when given."""
    value: dict[str, Any] = {
        "certificate": client.cert_chain_pems[0].bytes().decode(),
        "key": client.private_key_pem.bytes().decode(),
    }
    if ca_pem is not None:
        value["ca"] = ca_pem
    return {
        "authSchemeConfig": {"type": "certificate"},
        "credential": {"type": "certificate", "data": {"certificate": value}},
    }
