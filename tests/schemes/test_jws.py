"""JWS signing (proxy/schemes/jws.py) checked by two independent libraries, PyJWT and joserfc,
and the assertion claims of each flavor (proxy/schemes/jwt_assertion.py)."""

from __future__ import annotations

import warnings
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from proxy.schemes.jws import KeyProblem, algorithm_for, load_signing_key, sign_jwt
from proxy.schemes.jwt_assertion import JwtAssertion
from tests.jwt_provider import private_pem, public_pem

KEYS = {"RS256": private_pem("rsa"), "ES256": private_pem("ec"), "EdDSA": private_pem("ed25519")}
JOSE_KEYS: dict[str, Any] = {"RS256": RSAKey, "ES256": ECKey, "EdDSA": OKPKey}
CLAIMS: dict[str, Any] = {
    "iss": "me",
    "sub": "you",
    "aud": "https://as.example/token",
    "iat": 1,
    "exp": 2,
}


@pytest.mark.parametrize("algorithm", sorted(KEYS))
def test_signed_jwt_verifies_with_pyjwt_and_joserfc(algorithm: str) -> None:
    key = load_signing_key(KEYS[algorithm])
    assert algorithm_for(key) == algorithm
    token = sign_jwt(CLAIMS, key, algorithm_for(key), key_id="kid-1")
    public = public_pem(KEYS[algorithm])
    assert pyjwt.get_unverified_header(token) == {"alg": algorithm, "typ": "JWT", "kid": "kid-1"}
    decoded = pyjwt.decode(
        token,
        public,
        algorithms=[algorithm],
        audience=CLAIMS["aud"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == CLAIMS
    with warnings.catch_warnings():
        # joserfc warns that RFC 9864 deprecates "EdDSA" (for "Ed25519"); it still verifies.
        warnings.simplefilter("ignore", SecurityWarning)
        verified = jose_jwt.decode(token, JOSE_KEYS[algorithm].import_key(public), [algorithm])
    assert verified.claims == CLAIMS
    # A signature by another key of the same type does not verify.
    other = public_pem(private_pem({"RS256": "rsa", "ES256": "ec", "EdDSA": "ed25519"}[algorithm]))
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, other, algorithms=[algorithm], options={"verify_aud": False})


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("canary-not-a-pem", "is not a PEM private key"),
        (
            _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024), None),
            "is an RSA key of 1024 bits; at least 2048 are needed",
        ),
        (
            _pem(ec.generate_private_key(ec.SECP384R1()), None),
            "is an EC key on secp384r1; ES256 needs P-256 (secp256r1)",
        ),
        (
            _pem(ec.generate_private_key(ec.SECP256R1()), b"canary-pass"),
            "is an encrypted PEM private key; give it unencrypted",
        ),
    ],
)
def test_unusable_keys_are_named_without_their_text(pem: str, message: str) -> None:
    with pytest.raises(KeyProblem) as caught:
        load_signing_key(pem)
    assert str(caught.value) == message


def test_a_key_signs_only_with_its_own_algorithm() -> None:
    key = load_signing_key(KEYS["ES256"])
    with pytest.raises(KeyProblem, match="is a key for ES256, not RS256"):
        sign_jwt(CLAIMS, key, "RS256")


def _assertion(flavor: str, **fields: object) -> JwtAssertion:
    values: dict[str, object] = {
        "flavor": flavor,
        "private_key": KEYS["RS256"],
        "algorithm": "RS256",
        "issuer": "iss-1",
        "subject": "sub-1",
        "audience": "https://as.example/token",
        "lifetime": 300,
    }
    values.update(fields)
    return JwtAssertion(**values)  # type: ignore[arg-type]


def test_rfc7523_claims() -> None:
    # RFC 7523 §3: iss, sub, aud, exp; iat and jti as the spec of this proxy asks.
    claims = _assertion("rfc7523").claims(1_700_000_000.7, "jti-1")
    assert claims == {
        "iss": "iss-1",
        "sub": "sub-1",
        "aud": "https://as.example/token",
        "iat": 1_700_000_000,
        "exp": 1_700_000_300,
        "jti": "jti-1",
    }


def test_github_app_claims_are_backdated_and_minimal() -> None:
    claims = _assertion("github-app", subject="42", audience=None, lifetime=600).claims(1000, "j")
    assert claims == {"iat": 940, "exp": 1540, "iss": "iss-1"}


def test_google_claims_carry_the_scope() -> None:
    assertion = _assertion("google-service-account", subject=None, scope_claim="a b")
    claims = assertion.claims(0, "j")
    assert claims["scope"] == "a b" and "sub" not in claims


def test_the_key_stays_out_of_repr() -> None:
    assertion = _assertion("rfc7523")
    body = KEYS["RS256"].splitlines()[1]
    assert body not in repr(assertion)
