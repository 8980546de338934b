"""`http-signature` configuration: every mistake is a field error at its path (`check` prints
it, `run` refuses to start), the key material is never repeated in a message, `explain` shows the
signature base with the key masked, and Go zero values read as unset (docs/http-signature.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from proxy.cli import main
from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.schemes.http_signature import HttpSignatureScheme

PREFIX = "connections[0].credentials[0]"
CANARY = "canary-httpsig-not-a-key-4f1e"


def pem(key: Any) -> str:
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data.decode()


ED_PEM = pem(ed25519.Ed25519PrivateKey.generate())
EC_PEM = pem(ec.generate_private_key(ec.SECP256R1()))
EC_P384_PEM = pem(ec.generate_private_key(ec.SECP384R1()))


def tree(params: dict[str, Any], credential: dict[str, Any] | None = None) -> dict[str, Any]:
    credential = credential or {"type": "string", "data": {"string": {"value": ED_PEM}}}
    entry = {
        "authSchemeConfig": {"type": "http-signature", "httpSignature": params},
        "credential": credential,
    }
    return {
        "connections": [{"name": "p", "baseUrl": "https://api.example", "credentials": [entry]}]
    }


def problems(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(config, {})
    return "\n".join(str(p) for p in caught.value.problems)


GOOD = {"keyId": "k1", "algorithm": "ed25519"}


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"keyId": "k1"}, "algorithm", "is required: one of ed25519"),
        ({"algorithm": "ed25519"}, "keyId", "is required"),
        ({**GOOD, "algorithm": "rsa-sha1"}, "algorithm", "Input should be"),
        ({**GOOD, "components": ["@status"]}, "components[0]", "unknown derived component"),
        ({**GOOD, "components": ["@method", "Content-Type"]}, "components[1]", "lowercase token"),
        ({**GOOD, "components": ["host"]}, "components[0]", "cover @authority instead"),
        ({**GOOD, "components": ["date", "date"]}, "components[1]", "is covered twice"),
        ({**GOOD, "components": [""]}, "components[0]", "at least 1 character"),
        ({**GOOD, "label": "Sig 1"}, "label", "structured-field key"),
        ({**GOOD, "expiresIn": -5}, "expiresIn", "greater than 0"),
        ({**GOOD, "expiresIn": "60"}, "expiresIn", "must be an integer"),
        ({**GOOD, "contentDigest": "md5"}, "contentDigest", "Input should be"),
        ({**GOOD, "profile": "cavage"}, "profile", "Input should be"),
        ({**GOOD, "nonce": True}, "nonce", "unknown key"),
    ],
)
def test_field_errors_name_their_path(params: dict[str, Any], field: str, message: str) -> None:
    text = problems(tree(params))
    assert f"{PREFIX}.authSchemeConfig.httpSignature.{field}: " in text, text
    assert message in text


@pytest.mark.parametrize(
    ("algorithm", "material", "message"),
    [
        ("ed25519", EC_PEM, "algorithm ed25519 needs an Ed25519 key"),
        ("ecdsa-p256-sha256", EC_P384_PEM, "needs an EC key on P-256"),
        ("rsa-pss-sha512", ED_PEM, "needs an RSA key"),
        ("ed25519", f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n",
         "is not an unencrypted private key"),
        ("ecdsa-p256-sha256", CANARY, "is not an unencrypted private key"),
        ("hmac-sha256", "", "must not be empty"),
    ],
)  # fmt: skip
def test_key_problems_are_at_the_credential_and_never_quote_it(
    algorithm: str, material: str, message: str
) -> None:
    text = problems(
        tree(
            {"keyId": "k", "algorithm": algorithm},
            {"type": "string", "data": {"string": {"value": material}}},
        )
    )
    assert f"{PREFIX}.credential.data.string.value: " in text and message in text
    assert CANARY not in text
    body = "".join(material.strip().splitlines()[1:-1])
    assert not body or body[:30] not in text


def test_binary_credential_errors_at_value_base64() -> None:
    bad = {"type": "binary", "data": {"binary": {"valueBase64": CANARY + "!"}}}
    text = problems(tree({"keyId": "k", "algorithm": "hmac-sha256"}, bad))
    assert f"{PREFIX}.credential.data.binary.valueBase64: is not valid base64" in text
    assert CANARY not in text


def test_wrong_credential_type_is_an_error() -> None:
    basic = {"type": "basic-auth", "data": {"basicAuth": {"username": "u", "password": "p"}}}
    assert f"{PREFIX}.credential.type: " in problems(tree(GOOD, basic))


def test_go_zero_values_are_unset() -> None:
    params = {"profile": "web-bot-auth", "keyId": "", "expiresIn": 0, "components": None}
    [connection] = build_runtime(tree(params), {}).connections
    [scheme] = connection.schemes
    assert isinstance(scheme, HttpSignatureScheme)
    assert scheme.expires_in == 60 and scheme.components == ("@authority",)
    assert len(scheme.key_id) == 43  # the SHA-256 thumbprint, base64url


def test_check_prints_the_field_and_never_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "bot.pem"
    key_file.write_text(EC_PEM)  # an EC key where ed25519 is configured
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "connections:\n"
        "  - name: p\n"
        "    baseUrl: https://api.example\n"
        "    credentials:\n"
        "      - authSchemeConfig:\n"
        "          type: http-signature\n"
        "          httpSignature: {keyId: k, algorithm: ed25519, components: ['@Method']}\n"
        "        credential:\n"
        f"          {{type: string, data: {{string: {{value: '${{file:{key_file}}}'}}}}}}\n"
    )
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{PREFIX}.authSchemeConfig.httpSignature.components[0]: unknown derived" in err
    body = "".join(EC_PEM.strip().splitlines()[1:-1])
    assert body[:30] not in err


def test_explain_shows_the_base_and_masks_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "canary-httpsig-hmac-secret-77c2"
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "connections:\n"
        "  - name: p\n"
        "    baseUrl: https://api.example/v1\n"
        "    credentials:\n"
        "      - authSchemeConfig:\n"
        "          type: http-signature\n"
        "          httpSignature: {keyId: k, algorithm: hmac-sha256, contentDigest: sha-512}\n"
        f"        credential: {{type: string, data: {{string: {{value: {secret}}}}}}}\n"
    )
    args = ["explain", "--config", str(config), "POST", "/p/orders?a=1", "-d", "{}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"@target-uri": https://api.example/v1/orders?a=1' in out
    assert 'Signature-Input: sig1=("@method" "@target-uri" "content-digest");created=' in out
    assert "Content-Digest: sha-512=:" in out
    assert secret not in out


def test_unselected_http_signature_object_follows_the_seed_rule() -> None:
    """Docs/configuration.md: a sibling object `type` does not select is ignored when empty
    and named as an error when filled (a signature put under the wrong type is never dropped)."""
    hmac_entry = {
        "authSchemeConfig": {
            "type": "hmac",
            "hmac": {"name": "X-Sig", "in": "header", "algorithm": "sha256", "encoding": "hex"},
            "httpSignature": {},
        },
        "credential": {"type": "string", "data": {"string": {"value": "s"}}},
    }
    config = {
        "connections": [{"name": "p", "baseUrl": "https://a.example", "credentials": [hmac_entry]}]
    }
    build_runtime(config, {})  # `{}` is ignored
    hmac_entry["authSchemeConfig"]["httpSignature"] = {"keyId": "k"}
    text = problems(config)
    assert f"{PREFIX}.authSchemeConfig.httpSignature: only the object named by `type`" in text
