"""`certificate`: the mTLS context is built once from checked PEM material; `check` names each
bad field and warns (exit 0) about an expired certificate; key material never appears."""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme

from proxy.cli import main
from proxy.connections.runtime import build_runtime
from proxy.messages import OutboundRequest
from proxy.schemes.base import DEFAULT_CONTEXT
from proxy.schemes.certificate import CertificateScheme
from tests.builders import config_problems

FIELD = "connections[0].credentials[0].credential.data.certificate"


def pems(leaf: trustme.LeafCert) -> tuple[str, str]:
    return leaf.cert_chain_pems[0].bytes().decode(), leaf.private_key_pem.bytes().decode()


def tree(cert: str, key: str, ca: str | None = None) -> dict[str, Any]:
    value = {"certificate": cert, "key": key, **({"ca": ca} if ca is not None else {})}
    return {
        "connections": [
            {
                "name": "m",
                "baseUrl": "https://mtls.example.com",
                "credentials": [
                    {
                        "authSchemeConfig": {"type": "certificate"},
                        "credential": {"type": "certificate", "data": {"certificate": value}},
                    }
                ],
            }
        ]
    }


def test_context_verifies_server_and_presents_client(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cert, key = pems(ca.issue_cert("client@example", common_name="client"))
    scheme = CertificateScheme("c", cert, key, ca.cert_pem.bytes().decode())
    context = scheme.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()]  # the given ca, loaded as the anchor
    assert list(tmp_path.iterdir()) == []  # the temporary PEM files are gone
    assert scheme.warnings == ()
    assert "client" in scheme.subject
    request = OutboundRequest("GET", "https://x", "/", "", ())
    assert scheme.sign(request, DEFAULT_CONTEXT).headers == {}
    assert key.splitlines()[1] not in repr(scheme) + str(scheme.describe())


def test_without_ca_uses_the_system_store(ca: trustme.CA) -> None:
    cert, key = pems(ca.issue_cert("client@example"))
    scheme = CertificateScheme("c", cert, key)
    assert scheme.describe()["trust"] == "system store"
    assert scheme.ssl_context.check_hostname


def test_bad_pem_certificate(ca: trustme.CA) -> None:
    _, key = pems(ca.issue_cert("client@example"))
    [problem] = config_problems(tree("-----BEGIN CERTIFICATE-----\ncanary\n", key))
    assert problem == f"{FIELD}.certificate: is not a valid PEM certificate"


def test_bad_pem_key(ca: trustme.CA) -> None:
    cert, _ = pems(ca.issue_cert("client@example"))
    bad_key = "-----BEGIN PRIVATE KEY-----\ncanaryKEYmaterial\n-----END PRIVATE KEY-----\n"
    [problem] = config_problems(tree(cert, bad_key))
    assert problem == f"{FIELD}.key: is not a valid PEM private key"


def test_key_not_matching_certificate(ca: trustme.CA) -> None:
    cert, _ = pems(ca.issue_cert("a@example"))
    _, other_key = pems(ca.issue_cert("b@example"))
    [problem] = config_problems(tree(cert, other_key))
    assert problem == f"{FIELD}.key: does not match the certificate"
    assert other_key.splitlines()[1] not in problem


def test_bad_ca(ca: trustme.CA) -> None:
    cert, key = pems(ca.issue_cert("a@example"))
    [problem] = config_problems(tree(cert, key, ca="not a certificate"))
    assert problem == f"{FIELD}.ca: is not a valid PEM certificate"


def test_expired_certificate_is_a_warning(ca: trustme.CA) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    leaf = ca.issue_cert("old@example", not_before=past, not_after=past + datetime.timedelta(1))
    runtime = build_runtime(tree(*pems(leaf)), {})
    [warning] = runtime.warnings
    assert str(warning) == f"{FIELD}.certificate: the certificate expired on 2020-01-02"


def write_config(folder: Path, cert: str, key: str) -> Path:
    (folder / "client.pem").write_text(cert)
    (folder / "client.key").write_text(key)
    config = folder / "proxy.yaml"
    config.write_text(
        "connections:\n"
        "  - name: m\n"
        "    baseUrl: https://mtls.example.com\n"
        "    credentials:\n"
        "      - authSchemeConfig: {type: certificate}\n"
        "        credential:\n"
        "          type: certificate\n"
        "          data:\n"
        "            certificate:\n"
        f"              certificate: '${{file:{folder}/client.pem}}'\n"
        f"              key: '${{file:{folder}/client.key}}'\n"
    )
    return config


def test_check_prints_warning_and_exits_0(
    ca: trustme.CA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    past = datetime.datetime(2021, 6, 1, tzinfo=datetime.UTC)
    leaf = ca.issue_cert("old@example", not_before=past, not_after=past + datetime.timedelta(30))
    cert, key = pems(leaf)
    assert main(["check", "--config", str(write_config(tmp_path, cert, key))]) == 0
    out = capsys.readouterr()
    assert f"warning: {FIELD}.certificate: the certificate expired on 2021-07-01" in out.err
    assert key.splitlines()[1] not in out.out + out.err


def test_check_names_the_field_of_a_mismatched_key_and_exits_2(
    ca: trustme.CA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, _ = pems(ca.issue_cert("a@example"))
    _, other_key = pems(ca.issue_cert("b@example"))
    assert main(["check", "--config", str(write_config(tmp_path, cert, other_key))]) == 2
    out = capsys.readouterr()
    assert f"{FIELD}.key: does not match the certificate" in out.err
    assert other_key.splitlines()[1] not in out.out + out.err
