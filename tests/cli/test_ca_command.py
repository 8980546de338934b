"""`signing-proxy ca` prints the forward proxy's root certificate (docs/forward-proxy.md): made
once and kept in the store, so every call (and the proxy itself) shows the same one."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.cli import main


def test_ca_prints_the_same_root_every_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(f"forwardProxy: {{enabled: true}}\nstore: {{path: {tmp_path / 's.db'}}}\n")
    assert main(["ca", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert main(["ca", "--config", str(config)]) == 0
    assert capsys.readouterr().out == first
    cert = x509.load_pem_x509_certificate(first.encode())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 1


def test_ca_with_an_unusable_config_ca_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "forwardProxy:\n  enabled: true\n  ca: {cert: /nonexistent/ca.pem, key: /nonexistent/k}\n"
    )
    assert main(["ca", "--config", str(config)]) == 2
    assert "forwardProxy.ca.cert" in capsys.readouterr().err
