"""The forward proxy's root CA: generated (ECDSA P-256) or read from PEM; pure, no I/O.

The root is what clients trust (`signing-proxy ca` prints it). It signs nothing but the
name-constrained intermediate (`issuer.py`), whose constraints every client enforces on the
leaves below it, so the key that signs leaves at run time can impersonate only bound hosts.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

ROOT_LIFETIME = dt.timedelta(days=3650)
# A root generated with a clock a little behind a client's still verifies at once.
BACKDATE = dt.timedelta(minutes=5)

SigningKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | (ed448.Ed448PrivateKey)
)


class CAError(ValueError):
    """A CA given in the config that cannot sign (the message never holds key material)."""


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA certificate and its private key."""

    cert: x509.Certificate
    key: SigningKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def to_bytes(self) -> bytes:
        """Certificate and key as one JSON document (sealed in the store, never logged)."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return json.dumps({"cert": self.cert_pem, "key": key.decode("ascii")}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Authority:
        document = json.loads(data)
        return from_pem(document["cert"], document["key"])

    def hash_algorithm(self) -> hashes.SHA256 | None:
        return signing_hash(self.key)

    def __repr__(self) -> str:
        return f"Authority({self.cert.subject.rfc4514_string()!r})"


def signing_hash(key: SigningKey) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign without a separate hash.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def generate_root(now: dt.datetime | None = None) -> Authority:
    """A new root: ECDSA P-256, ten years, may sign one level of CA below it (pathlen 1)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "signing-proxy"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"signing-proxy forward-proxy CA {secrets.token_hex(4)}"
            ),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def from_pem(cert_pem: str | bytes, key_pem: str | bytes) -> Authority:
    """A CA from PEM text; `CAError` when it is not a CA certificate with its key."""
    cert_data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    key_data = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
    try:
        cert = x509.load_pem_x509_certificate(cert_data)
    except ValueError:
        raise CAError("cert: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        raise CAError("key: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) and not isinstance(
        key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
    ):
        raise CAError("key: must be an ECDSA, RSA or EdDSA key")
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CAError("key: does not belong to the certificate")
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise CAError("cert: not a CA certificate (basicConstraints CA:TRUE)")
    if basic.path_length == 0:
        raise CAError("cert: its pathlen 0 forbids the intermediate the proxy issues below it")
    return Authority(cert, key)
