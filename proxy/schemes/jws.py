"""Signed JWTs (RFC 7519) in JWS compact serialisation (RFC 7515 §7.1), with `cryptography`.

Three algorithms of RFC 7518 §3 and RFC 8037 §3.1, each tied to one key type so a key can never
be used with an algorithm it was not made for (RFC 8725 §3.1):

- `RS256`: RSASSA-PKCS1-v1_5 with SHA-256, an RSA key of at least 2048 bits (RFC 7518 §3.3);
- `ES256`: ECDSA on P-256 with SHA-256, the signature as the 64-byte `R || S` (RFC 7518 §3.4,
  not the DER that `cryptography` returns);
- `EdDSA`: Ed25519 (RFC 8037 §3.1).

Pure: no I/O, no clock, no randomness (claims come in whole). Keys are PEM (PKCS#8, or the
traditional `RSA PRIVATE KEY` / `EC PRIVATE KEY` forms). Nothing here repeats key material in
an error.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

JwsAlgorithm = Literal["RS256", "ES256", "EdDSA"]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

MIN_RSA_BITS = 2048  # RFC 7518 §3.3


class KeyProblem(ValueError):
    """A key that cannot sign (the message never holds key material)."""


def load_signing_key(pem: str | bytes) -> SigningKey:
    """The private key in `pem`.

    Raises:
        KeyProblem: not a PEM private key, encrypted, or of a type no algorithm here uses.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError for an encrypted key given no password.
        raise KeyProblem("is an encrypted PEM private key; give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyProblem("is not a PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyProblem(f"is an RSA key of {key.key_size} bits; at least 2048 are needed")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyProblem(f"is an EC key on {key.curve.name}; ES256 needs P-256 (secp256r1)")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise KeyProblem(
        "is a private key of a type JWTs are not signed with here (RSA, P-256, Ed25519)"
    )


def algorithm_for(key: SigningKey) -> JwsAlgorithm:
    """The one algorithm `key` signs with."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES256"
    return "EdDSA"


def check_algorithm(key: SigningKey, algorithm: JwsAlgorithm) -> None:
    """Raise `KeyProblem` unless `key` is the key type of `algorithm`."""
    fits = algorithm_for(key)
    if fits != algorithm:
        raise KeyProblem(f"is a key for {fits}, not {algorithm}")


def b64url(data: bytes) -> str:
    """RFC 7515 §2 base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sign_jwt(
    claims: Mapping[str, Any],
    key: SigningKey,
    algorithm: JwsAlgorithm,
    *,
    key_id: str | None = None,
) -> str:
    """`claims` as a JWS compact JWT signed with `key`: header `{"alg", "typ": "JWT"[, "kid"]}`.

    Raises:
        KeyProblem: `key` is not a key for `algorithm`.
    """
    check_algorithm(key, algorithm)
    header: dict[str, str] = {"alg": algorithm, "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64url(_signature(key, signing_input))}"


def _signature(key: SigningKey, message: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # RFC 7518 §3.4: the JWS signature is R and S as 32-byte big-endian integers.
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(message)
