"""The signing examples: NetSuite OAuth 1.0a and webhook HMAC (also covered by the generic
examples test), and the mTLS example, which needs real PEM files to pass `check`."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
import trustme

from proxy.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def test_mtls_example_passes_check_with_real_pems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("client@example")
    (tmp_path / "client.pem").write_bytes(client.cert_chain_pems[0].bytes())
    (tmp_path / "client.key").write_bytes(client.private_key_pem.bytes())
    (tmp_path / "bank-ca.pem").write_bytes(ca.cert_pem.bytes())
    text = (EXAMPLES / "mtls" / "proxy.yaml").read_text()
    config = tmp_path / "proxy.yaml"
    config.write_text(text.replace("/run/secrets/", f"{tmp_path}/"))
    assert main(["check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.endswith(": ok, 1 connection(s)\n") and err == ""
    # With dummy text in the files it is refused, naming the field.
    (tmp_path / "client.key").write_text("canary-not-a-key\n")
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "credentials[0].credential.data.certificate.key: is not a valid PEM private key" in err
    assert "canary" not in err


def test_webhook_example_signs_the_body(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", "canary-webhook-secret")
    body = '{"event":"paid"}'
    config = str(EXAMPLES / "webhook-hmac.yaml")
    assert main(["explain", "--config", config, "POST", "/webhooks/events", "-d", body]) == 0
    out = capsys.readouterr().out
    expected = hmac.new(b"canary-webhook-secret", body.encode(), hashlib.sha256).hexdigest()
    assert f"X-Signature-256: {expected}" in out and "canary" not in out


def test_netsuite_example_sends_realm_and_hmac_sha256(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ["CONSUMER_KEY", "CONSUMER_SECRET", "TOKEN_ID", "TOKEN_SECRET"]:
        monkeypatch.setenv(f"NETSUITE_{name}", f"canary-{name.lower()}")
    config = str(EXAMPLES / "netsuite-oauth1.yaml")
    assert main(["explain", "--config", config, "GET", "/netsuite/record/v1/customer"]) == 0
    out = capsys.readouterr().out
    # The consumer key is configuration (seed 001), shown; the secrets are masked.
    shown = 'Authorization: OAuth realm="1234567_SB1", oauth_consumer_key="canary-consumer_key"'
    assert shown in out
    assert 'oauth_signature_method="HMAC-SHA256"' in out
    assert "canary" not in out.replace("canary-consumer_key", "")
    assert "GET&https%3A%2F%2F1234567-sb1.suitetalk.api.netsuite.com%2Fservices%2Frest" in out


def test_aws_example_signs_with_the_real_key_in_the_sdks_scope(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_PROXY_ACCESS_KEY_ID", "AKIDEXAMPLEPROXY")
    monkeypatch.setenv("AWS_PROXY_SECRET_ACCESS_KEY", "canary-aws-secret")
    config = str(EXAMPLES / "aws.yaml")
    # The SDK's placeholder signature names the region and service the config leaves out.
    placeholder = (
        "Authorization: AWS4-HMAC-SHA256 Credential=placeholder/20200101/us-east-2/sts/"
        "aws4_request, SignedHeaders=host, Signature=" + "9" * 64
    )
    args = ["explain", "--config", config, "POST", "/aws/sts/", "-H", placeholder,
            "-d", "Action=GetCallerIdentity&Version=2011-06-15"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Credential=AKIDEXAMPLEPROXY/" in out and "/us-east-2/sts/aws4_request" in out
    assert "placeholder" not in out.split("credentials, in the order")[0]
    assert "canary" not in out
    args = ["explain", "--config", config, "GET", "/s3-presigned/bucket/report.pdf"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=" in out
    assert "Authorization" not in out and "canary" not in out
