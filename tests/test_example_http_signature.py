"""`examples/http-signature/proxy.yaml`: with real keys it passes `check`, `explain` shows what
each connection signs (and a signature the key's public half verifies), and with a non-key in a
key file `check` names the field without repeating the file's text."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from proxy.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "http-signature" / "proxy.yaml"


def _write_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", "canary-example-admin-token")
    copy = tmp_path / "proxy.yaml"
    copy.write_text(EXAMPLE.read_text().replace("/run/secrets/", f"{tmp_path}/"))
    return copy


def test_example_checks_and_explains(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partner = _write_key(tmp_path / "partner-signing.pem")
    _write_key(tmp_path / "agent-signing.pem")
    assert main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().out.endswith(": ok, 2 connection(s)\n")

    args = ["explain", "--config", str(config), "POST", "/partner/orders"]
    assert main([*args, "-H", "Content-Type: application/json", "-d", '{"sku": "A-1"}']) == 0
    out = capsys.readouterr().out
    [signature_input] = [line for line in out.splitlines() if line.startswith("Signature-Input:")]
    assert signature_input.startswith(
        'Signature-Input: sig1=("@method" "@target-uri" "content-type" "content-digest");created='
    )
    assert ';keyid="acme-proxy-2026";tag="partner-api"' in signature_input
    # The base explain prints is what the signature beside it signs.
    [signature] = [line for line in out.splitlines() if line.startswith("Signature:")]
    [base_line] = [line for line in out.splitlines() if "signature base (" in line]
    base = base_line.split("): ", 1)[1]
    raw = base.encode("latin-1").decode("unicode_escape").encode("latin-1")[2:-1]  # b'...'
    partner.public_key().verify(base64.b64decode(signature.split("=:", 1)[1][:-1]), raw)
    assert "canary" not in out

    assert main(["explain", "--config", str(config), "GET", "/agent/pricing"]) == 0
    out = capsys.readouterr().out
    assert 'Signature-Input: sig1=("@authority");created=' in out and 'tag="web-bot-auth"' in out


def test_example_with_a_non_key_names_the_field(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_key(tmp_path / "partner-signing.pem")
    (tmp_path / "agent-signing.pem").write_text("canary-agent-not-a-key\n")
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "connections[1].credentials[0].credential.data.string.value: is not an" in err
    assert "canary" not in err
