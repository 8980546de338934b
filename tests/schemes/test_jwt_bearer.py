"""`jwt-bearer` and `clientAuth: private_key_jwt` configuration: `check` names the field of each
problem, and the private key never shows — not in `check`, `explain`, `repr()` or the logs
(canaries: the key's own base64 lines; API reads: tests/admin/test_jwt_bearer_reads.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import main
from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.schemes.jwt_bearer import JwtBearerScheme
from tests.builders import connection, jwt_bearer, oauth2_client
from tests.jwt_provider import private_pem

RSA_PEM = private_pem("rsa")
EC_PEM = private_pem("ec")
CANARIES = [RSA_PEM.splitlines()[2], EC_PEM.splitlines()[2]]
CRED = "connections[0].credentials[0]"
HERE = f"{CRED}.authSchemeConfig.jwtBearer"


def entry(key: str = RSA_PEM, **kwargs: Any) -> dict[str, Any]:
    return jwt_bearer(key, **kwargs)


RFC7523: dict[str, Any] = {
    "flavor": "rfc7523",
    "tokenUrl": "https://as.example/token",
    "issuer": "svc",
}
GITHUB: dict[str, Any] = {"flavor": "github-app", "issuer": "123", "subject": "456"}


def problems(credential: dict[str, Any]) -> list[str]:
    tree = {"connections": [connection("api", "https://api.example.com", credential)]}
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    found = [f"{p.field}: {p.message}" for p in caught.value.problems]
    assert not any(canary in text for canary in CANARIES for text in found)
    return found


def service_account(**fields: Any) -> str:
    account = {
        "type": "service_account",
        "client_email": "robot@demo.iam.gserviceaccount.com",
        "private_key": RSA_PEM,
        "private_key_id": "kid-1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    account.update(fields)
    return json.dumps({k: v for k, v in account.items() if v is not None})


@pytest.mark.parametrize(
    ("credential", "expected"),
    [
        (
            entry(issuer="svc"),
            f"{HERE}.flavor: required: one of rfc7523, github-app, google-service-account",
        ),
        (
            entry(**{**RFC7523, "algorithm": "HS256"}),
            f"{HERE}.algorithm: Input should be 'RS256', 'ES256' or 'EdDSA'",
        ),
        (
            entry(**{**RFC7523, "issuer": None}),
            f"{HERE}.issuer: required: the JWT's `iss` (RFC 7523 §3)",
        ),
        (
            entry(**{**RFC7523, "tokenUrl": None}),
            f"{HERE}.tokenUrl: required for flavor 'rfc7523'",
        ),
        (
            entry(**{**RFC7523, "tokenUrl": "as.example/token"}),
            f"{HERE}.tokenUrl: must be an absolute http(s) URL",
        ),
        (
            entry(**{**RFC7523, "lifetime": 3601}),
            f"{HERE}.lifetime: Input should be less than or equal to 3600",
        ),
        (
            entry(**{**RFC7523, "lifetime": "300"}),
            f"{HERE}.lifetime: must be an integer (a number, not a string)",
        ),
        (
            entry(EC_PEM, **{**RFC7523, "algorithm": "RS256"}),
            f"{HERE}.algorithm: does not fit the credential's key, which is a key for ES256, "
            "not RS256",
        ),
        (
            entry("canary-not-a-key", **RFC7523),
            f"{CRED}.credential.data.string.value: is not a PEM private key",
        ),
        (
            entry("%%%", kind="binary", **RFC7523)
            | {"credential": {"type": "binary", "data": {"binary": {"valueBase64": "!!"}}}},
            f"{CRED}.credential.data.binary.valueBase64: is not base64 (RFC 4648 §4) of a UTF-8 "
            "PEM or JSON",
        ),
        (
            entry(kind="basic-auth", **RFC7523),
            f"{CRED}.credential.type: scheme 'jwt-bearer' needs a credential of type 'binary' or "
            "'string'",
        ),
        (entry(**{**GITHUB, "subject": None}), f"{HERE}.subject: required: the installation id"),
        (
            entry(**{**GITHUB, "issuer": None}),
            f"{HERE}.issuer: required: the GitHub App's id (or client id)",
        ),
        (
            entry(**{**GITHUB, "lifetime": 601}),
            f"{HERE}.lifetime: at most 600 s: GitHub refuses longer app JWTs",
        ),
        (entry(**{**GITHUB, "algorithm": "ES256"}), f"{HERE}.algorithm: GitHub App JWTs are RS256"),
        (
            entry(EC_PEM, **GITHUB),
            f"{CRED}.credential.data.string.value: GitHub App JWTs are RS256: give the app's RSA "
            "key",
        ),
        (
            entry(**{**GITHUB, "scopes": ["repo"]}),
            f"{HERE}.scopes: not used by flavor 'github-app': the app's installation has its "
            "permissions",
        ),
        (
            entry(service_account(), flavor="google-service-account"),
            f"{HERE}.scopes: required: the OAuth scopes to request",
        ),
        (
            entry(service_account(private_key=None), flavor="google-service-account", scopes=["s"]),
            f"{CRED}.credential.data.string.value: the service-account JSON has no 'private_key'",
        ),
        (
            entry(RSA_PEM, flavor="google-service-account", scopes=["s"]),
            f"{CRED}.credential.data.string.value: is not a Google service-account key (JSON) file",
        ),
    ],
)
def test_problems_name_their_field(credential: dict[str, Any], expected: str) -> None:
    assert problems(credential) == [expected]


def test_private_key_jwt_needs_a_key_in_the_client_secret() -> None:
    credential = oauth2_client(
        "https://as.example/token",
        "c",
        "canary-not-a-key",
        clientAuth="private_key_jwt",
        clientAssertion={"algorithm": "ES256"},
    )
    assert problems(credential) == [
        f"{CRED}.credential.data.oauth2Client.clientSecret: is not a PEM private key "
        "(clientAuth private_key_jwt)"
    ]
    credential["credential"]["data"]["oauth2Client"]["clientSecret"] = RSA_PEM
    assert problems(credential) == [
        f"{CRED}.credential.data.oauth2Client.clientSecret: is a key for RS256, not ES256 "
        "(clientAuth private_key_jwt)"
    ]


def test_valid_flavors_build_and_keep_the_key_out_of_repr() -> None:
    tree = {
        "connections": [
            connection("a", "https://api.example.com", entry(**RFC7523)),
            connection("g", "https://api.github.com/", entry(**GITHUB)),
            connection(
                "s",
                "https://storage.googleapis.com",
                entry(
                    service_account(), kind="binary", flavor="google-service-account", scopes=["s"]
                ),
            ),
        ]
    }
    runtime = build_runtime(tree, {})
    schemes = [c.schemes[0] for c in runtime.connections]
    assert all(isinstance(s, JwtBearerScheme) for s in schemes)
    github = schemes[1]
    assert isinstance(github, JwtBearerScheme)
    assert github.settings.token_url == "https://api.github.com/app/installations/456/access_tokens"
    google = schemes[2].describe()
    assert google["issuer"] == "robot@demo.iam.gserviceaccount.com"
    assert google["keyId"] == "kid-1" and google["algorithm"] == "RS256"
    assert google["tokenUrl"] == google["audience"] == "https://oauth2.googleapis.com/token"
    for scheme in schemes:
        assert not any(canary in repr(scheme) for canary in CANARIES)
        assert not any(canary in str(scheme.describe()) for canary in CANARIES)


def write_config(tmp_path: Path, credential: dict[str, Any]) -> str:
    path = tmp_path / "proxy.yaml"
    tree = {"connections": [connection("api", "https://api.example.com", credential)]}
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_check_and_explain_never_print_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_config(tmp_path, entry(**{**RFC7523, "keyId": "k-7"}))
    assert main(["check", "--config", config]) == 0
    assert main(["explain", "--config", config, "GET", "/api/things"]) == 0
    out, err = capsys.readouterr()
    assert "Authorization: Bearer <oauth2-access-token: fetched at run time>" in out
    assert "jwt-bearer" in out and "k-7" in out
    text = out + err + caplog.text
    assert not any(canary in text for canary in CANARIES)
    bad = write_config(tmp_path, entry("canary-not-a-key", **RFC7523))
    assert main(["check", "--config", bad]) == 2
    err = capsys.readouterr().err
    assert "credential.data.string.value: is not a PEM private key" in err
    assert "canary" not in err


def test_go_zero_values_are_unset_and_other_sub_objects_empty() -> None:
    """What a Go exporter writes for the fields it leaves unset, and the sub-objects `type` does
    not select (docs/configuration.md)."""
    credential = entry(
        **RFC7523, lifetime=0, keyId="", audience=None, subject="", scopes=None, algorithm=""
    )
    credential["authSchemeConfig"].update(apiKey=None, oauth2={}, hmac={"name": ""})
    runtime = build_runtime(
        {"connections": [connection("api", "https://api.example.com", credential)]}, {}
    )
    [scheme] = runtime.connections[0].schemes
    assert scheme.describe() == {
        "type": "jwt-bearer",
        "flavor": "rfc7523",
        "tokenUrl": "https://as.example/token",
        "issuer": "svc",
        "subject": "svc",
        "audience": "https://as.example/token",
        "scopes": [],
        "algorithm": "RS256",
        "keyId": None,
        "lifetime": 300,
    }
    # A filled sibling is never silently dropped.
    credential["authSchemeConfig"]["hmac"] = {"name": "X-Sig"}
    assert problems(credential) == [
        f"{CRED}.authSchemeConfig.hmac: only the object named by `type` is read: this one must "
        "be {} or null"
    ]
