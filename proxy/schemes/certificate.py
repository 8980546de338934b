"""`certificate`: mutual TLS with a PEM client certificate and key (docs/request-path.md).

The scheme changes nothing in the request: it contributes an `ssl.SSLContext`, built once here
when the connection is compiled, never per request. `CompiledConnection.tls` hands it to the
upstream hop; its pool (`http1/pool.py`) keys connections by that context object, so each client
identity gets its own pool and a connection opened with one identity is never reused for another.

The material is checked with `cryptography` first so that `signing-proxy check` reports each
problem with its field (a bad PEM, a key that does not belong to the certificate, an unreadable
`ca`) and an expired or not-yet-valid certificate as a warning, instead of a failure at request
time. No message ever quotes the PEM text.

The server certificate is verified against `ca` when given (and only against it), else against
the system store (which honours `SSL_CERT_FILE`); hostname verification stays on either way.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ..messages import OutboundRequest, RequestPatch
from .base import Scheme, SchemeConfigError, SigningContext

FIELD = "credential.data.certificate"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_certificates(pem: str, field: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise SchemeConfigError(field, "is not a valid PEM certificate") from None
    return certificates


def load_private_key(pem: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        # cryptography raises TypeError for an encrypted key given no password.
        raise SchemeConfigError(
            f"{FIELD}.key", "is an encrypted private key; give it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SchemeConfigError(f"{FIELD}.key", "is not a valid PEM private key") from None


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def validity_warnings(
    chain: list[x509.Certificate], now: datetime.datetime
) -> tuple[tuple[str, str], ...]:
    """An expired (or not yet valid) certificate is a warning, not an error: the upstream may
    still accept it, and a config must not stop loading because a date passed overnight."""
    warnings = []
    for index, cert in enumerate(chain):
        which = "the certificate" if index == 0 else f"certificate {index} of the chain"
        if cert.not_valid_after_utc < now:
            warnings.append(
                (f"{FIELD}.certificate", f"{which} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
            )
        elif cert.not_valid_before_utc > now:
            warnings.append(
                (
                    f"{FIELD}.certificate",
                    f"{which} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
                )
            )
    return tuple(warnings)


def build_ssl_context(certificate: str, key: str, ca: str | None) -> ssl.SSLContext:
    """A client context presenting `certificate`/`key`, trusting `ca` (or the system store).

    `SSLContext.load_cert_chain` reads only from files, so the PEMs are written to a private
    temporary directory (mode 0700, files 0600) and removed as soon as they are loaded.
    """
    try:
        context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    except ssl.SSLError:
        raise SchemeConfigError(f"{FIELD}.ca", "could not be used as a trust anchor") from None
    with tempfile.TemporaryDirectory(prefix="signing-proxy-tls-") as directory:
        cert_path = _write_private(Path(directory) / "cert.pem", certificate)
        key_path = _write_private(Path(directory) / "key.pem", key)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            # `reason` is OpenSSL's short code (KEY_VALUES_MISMATCH, ...), never the material.
            raise SchemeConfigError(
                f"{FIELD}.key", f"rejected by OpenSSL ({exc.reason or 'unknown reason'})"
            ) from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _write_private(path: Path, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(text)
    return str(path)


class CertificateScheme(Scheme):
    type_name = "certificate"

    def __init__(
        self,
        credential_id: str,
        certificate: str,
        key: str,
        ca: str | None = None,
        *,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.credential_id = credential_id
        chain = load_certificates(certificate, f"{FIELD}.certificate")
        private_key = load_private_key(key)
        if _public_der(chain[0].public_key()) != _public_der(private_key.public_key()):
            raise SchemeConfigError(f"{FIELD}.key", "does not match the certificate")
        if ca:
            load_certificates(ca, f"{FIELD}.ca")
        self.warnings = validity_warnings(chain, now())
        self.subject = chain[0].subject.rfc4514_string()
        self.not_after = chain[0].not_valid_after_utc
        self.fingerprint = chain[0].fingerprint(hashes.SHA256()).hex()
        self.custom_ca = bool(ca)
        self.ssl_context = build_ssl_context(certificate, key, ca)

    def __repr__(self) -> str:
        return f"CertificateScheme(subject={self.subject!r})"

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        return RequestPatch()  # the identity is on the TLS connection, not in the request

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "subject": self.subject,
            "notAfter": self.not_after.isoformat(),
            "sha256Fingerprint": self.fingerprint,
            "trust": "ca from the credential" if self.custom_ca else "system store",
        }
