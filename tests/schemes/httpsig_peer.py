"""An upstream that verifies RFC 9421 signatures with an independent implementation (PyPI
`http-message-signatures`), recording what it found; and fresh keys for each algorithm."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import HTTPMessageVerifier, InvalidSignature
from http_message_signatures.algorithms import (
    ECDSA_P256_SHA256,
    ED25519,
    HMAC_SHA256,
    RSA_PSS_SHA512,
)
from http_message_signatures.resolvers import MappingKeyResolver

from tests.upstreams import catch_all

PEER_ALGORITHMS: dict[str, Any] = {
    "ed25519": ED25519,
    "ecdsa-p256-sha256": ECDSA_P256_SHA256,
    "rsa-pss-sha512": RSA_PSS_SHA512,
    "hmac-sha256": HMAC_SHA256,
}


@dataclass
class KeyPair:
    """`credential` is what the proxy is given (PEM text, or the HMAC secret's base64);
    `verify_key` what the peer verifies with."""

    credential: dict[str, Any]
    verify_key: Any
    secret_text: str  # the distinctive part of the private material, for canary checks


def new_key(algorithm: str) -> KeyPair:
    if algorithm == "hmac-sha256":
        secret = b"canary-httpsig-hmac-" + bytes(range(32))
        encoded = base64.b64encode(secret).decode()
        return KeyPair(
            {"type": "binary", "data": {"binary": {"valueBase64": encoded}}}, secret, encoded
        )
    private: Any
    if algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ecdsa-p256-sha256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body = "".join(pem.strip().splitlines()[1:-1])
    return KeyPair(
        {"type": "string", "data": {"string": {"value": pem}}}, private.public_key(), body[:40]
    )


@dataclass
class _Message:
    """What the peer's resolver reads: method, absolute URL, header field lines."""

    method: str
    url: str
    headers: Any


@dataclass
class VerifyingUpstream:
    """Answers 200 after a signature verifies, 401 with the peer's reason otherwise."""

    algorithm: str
    key_id: str
    verify_key: Any
    expect_tag: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = _Message(
            request.method, f"http://{request.host}{request.raw_path}", request.headers
        )
        verifier = HTTPMessageVerifier(
            signature_algorithm=PEER_ALGORITHMS[self.algorithm],
            key_resolver=MappingKeyResolver(
                public_keys={self.key_id: self.verify_key}, private_keys={}
            ),
        )
        try:
            [result] = verifier.verify(
                message,
                expect_tag=self.expect_tag,
                max_age=datetime.timedelta(minutes=5),
                body=body if "Content-Digest" in request.headers else None,
            )
        except InvalidSignature as exc:
            self.failures.append(str(exc))
            return web.Response(status=401, text="signature refused")
        self.results.append(
            {
                "covered": dict(result.covered_components),
                "parameters": dict(result.parameters),
                "body": body,
                "headers": dict(request.headers),
            }
        )
        return web.Response(text="verified")

    def app(self) -> web.Application:
        return catch_all(self.handle, client_max_size=64 * 1024 * 1024)
