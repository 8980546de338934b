"""`http-signature` against RFC 9421 Appendix B: every signature base reproduced byte for byte,
the deterministic signatures (HMAC B.2.5, Ed25519 B.2.6) reproduced exactly by the scheme, and
the randomized ones (RSA-PSS B.2.1-B.2.3 and §3.2, ECDSA B.3) verified with the RFC's public
keys. Keys and the test request are in `tests/schemes/rfc9421.py`; each expected value below is
copied from the section named beside it (https://www.rfc-editor.org/rfc/rfc9421)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from proxy.dataplane.body import BufferedBody
from proxy.messages import OutboundRequest
from proxy.schemes.base import SigningContext
from proxy.schemes.http_signature import (
    HttpSignatureScheme,
    component_value,
    content_digest,
    load_key,
    signature_base,
)
from proxy.schemes.structured_fields import BareItem, InnerList, Item
from tests.schemes import rfc9421

Params = list[tuple[str, BareItem]]
CTX = SigningContext(now=lambda: rfc9421.CREATED, nonce=lambda: "unused")


def b2_request(origin: str = "https://example.com") -> OutboundRequest:
    """The B.2 test request as the proxy holds it on its way upstream."""
    return OutboundRequest(
        "POST", origin, "/foo", "param=Value&Pet=dog", rfc9421.HEADERS, BufferedBody(rfc9421.BODY)
    )


def base_for(request: OutboundRequest, names: list[str], params: Params) -> str:
    covered: list[tuple[Item, str]] = []
    for name in names:
        value = component_value(name, request)
        assert value is not None, name
        covered.append((Item(name), value))
    return signature_base(covered, InnerList([i for i, _ in covered], params))


def sig_bytes(header_value: str) -> bytes:
    """The Byte Sequence of a one-member `Signature` dictionary (`label=:...:`)."""
    return base64.b64decode(header_value.split("=", 1)[1].strip(":"))


def verify_rsa_pss(base: str, signature: bytes) -> None:
    public = serialization.load_pem_public_key(rfc9421.RSA_PSS_PUBLIC.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    # RFC 9421 §3.3.1: RSASSA-PSS, SHA-512, MGF1 with SHA-512, 64-byte salt.
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
    public.verify(signature, base.encode(), pss, hashes.SHA512())


# B.2.1 Minimal Signature Using rsa-pss-sha512
B21_BASE = (
    '"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss"'
    ';nonce="b3k2pp5k7z-50gnwp.yemd"'
)
B21_SIGNATURE = (
    "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGx"
    "btRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2"
    "VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH"
    "1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:"
)


def test_b21_minimal_base_and_rfc_signature() -> None:
    params: Params = [
        ("created", 1618884473),
        ("keyid", "test-key-rsa-pss"),
        ("nonce", "b3k2pp5k7z-50gnwp.yemd"),
    ]
    base = base_for(b2_request(), [], params)
    assert base == B21_BASE
    verify_rsa_pss(base, sig_bytes(B21_SIGNATURE))


# B.2.2 Selective Covered Components Using rsa-pss-sha512
B22_BASE = "\n".join(
    [
        '"@authority": example.com',
        '"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiY'
        "llu7BNNyealdVLvRwEmTHWXvJwew==:",
        '"@query-param";name="Pet": dog',
        '"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet")'
        ';created=1618884473;keyid="test-key-rsa-pss";tag="header-example"',
    ]
)
B22_SIGNATURE = (
    "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvu"
    "JyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SAR"
    "YhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2D"
    "SBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:"
)


def test_b22_selective_base_and_rfc_signature() -> None:
    request = b2_request()
    # `@query-param` is not a component the scheme offers; its value comes from the RFC's
    # message, the rest from the request.
    query_param = Item("@query-param", (("name", "Pet"),))
    covered = [
        (Item("@authority"), component_value("@authority", request) or ""),
        (Item("content-digest"), component_value("content-digest", request) or ""),
        (query_param, "dog"),
    ]
    params: Params = [
        ("created", 1618884473),
        ("keyid", "test-key-rsa-pss"),
        ("tag", "header-example"),
    ]
    base = signature_base(covered, InnerList([i for i, _ in covered], params))
    assert base == B22_BASE
    verify_rsa_pss(base, sig_bytes(B22_SIGNATURE))


# B.2.3 Full Coverage Using rsa-pss-sha512
B23_NAMES = [
    "date", "@method", "@path", "@query", "@authority", "content-type", "content-digest",
    "content-length",
]  # fmt: skip
B23_BASE = "\n".join(
    [
        '"date": Tue, 20 Apr 2021 02:07:55 GMT',
        '"@method": POST',
        '"@path": /foo',
        '"@query": ?param=Value&Pet=dog',
        '"@authority": example.com',
        '"content-type": application/json',
        '"content-digest": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiY'
        "llu7BNNyealdVLvRwEmTHWXvJwew==:",
        '"content-length": 18',
        '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" '
        '"content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"',
    ]
)
B23_SIGNATURE = (
    "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+"
    "qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pF"
    "kh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH89"
    "6+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:"
)


def test_b23_full_coverage_base_and_rfc_signature() -> None:
    params: Params = [("created", 1618884473), ("keyid", "test-key-rsa-pss")]
    base = base_for(b2_request(), B23_NAMES, params)
    assert base == B23_BASE
    verify_rsa_pss(base, sig_bytes(B23_SIGNATURE))


# §3.2 (with §2.5's Figure 1 base): the worked example, rsa-pss-sha512.
S32_SIGNATURE = (
    "sig1=:HIbjHC5rS0BYaa9v4QfD4193TORw7u9edguPh0AW3dMq9WImrlFrCGUDih47vAxi4L2YRZ3XMJc1uOKk/J0ZmZ+w"
    "cta4nKIgBkKq0rM9hs3CQyxXGxHLMCy8uqK488o+9jrptQ+xFPHK7a9sRL1IXNaagCNN3ZxJsYapFj+JXbmaI5rtAdSfSv"
    "zPuBCh+ARHBmWuNo1UzVVdHXrl8ePL4cccqlazIJdC4QEjrF+Sn4IxBQzTZsL9y9TP5FsZYzHvDqbInkTNigBcE9cKOYNF"
    "Cn4D/WM7F6TNuZO9EgtzepLWcjTymlHzK7aXq6Am6sfOrpIC49yXjj3ae6HRalVc/g==:"
)


def test_section_3_2_example_verifies() -> None:
    names = ["@method", "@authority", "@path", "content-digest", "content-length", "content-type"]
    base = base_for(b2_request(), names, [("created", 1618884473), ("keyid", "test-key-rsa-pss")])
    assert base.splitlines()[0] == '"@method": POST'
    assert base.endswith(
        '"@signature-params": ("@method" "@authority" "@path" "content-digest" "content-length" '
        '"content-type");created=1618884473;keyid="test-key-rsa-pss"'
    )
    verify_rsa_pss(base, sig_bytes(S32_SIGNATURE))


# B.2.5 Signing a Request Using hmac-sha256 (deterministic: reproduced by the scheme)
B25_INPUT = (
    'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
)
B25_SIGNATURE = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"

# B.2.6 Signing a Request Using ed25519 (deterministic: reproduced by the scheme)
B26_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPp"
    "BKRCw==:"
)


@pytest.mark.parametrize(
    ("label", "algorithm", "material", "key_id", "names", "want_input", "want_signature"),
    [
        (
            "sig-b25", "hmac-sha256", base64.b64decode(rfc9421.SHARED_SECRET_BASE64),
            "test-shared-secret", ["date", "@authority", "content-type"], B25_INPUT, B25_SIGNATURE,
        ),
        (
            "sig-b26", "ed25519", rfc9421.ED25519_PRIVATE.encode(), "test-key-ed25519",
            ["date", "@method", "@path", "@authority", "content-type", "content-length"],
            B26_INPUT, B26_SIGNATURE,
        ),
    ],
)  # fmt: skip
def test_deterministic_vectors_reproduced_by_the_scheme(
    label: str,
    algorithm: str,
    material: bytes,
    key_id: str,
    names: list[str],
    want_input: str,
    want_signature: str,
) -> None:
    key = load_key(algorithm, material, "credential")  # type: ignore[arg-type]
    scheme = HttpSignatureScheme(
        "c1", key, algorithm=algorithm, key_id=key_id, components=names,  # type: ignore[arg-type]
        label=label, tag=None, expires_in=None, digest=None,
    )  # fmt: skip
    patch = scheme.sign(b2_request(), CTX)
    assert patch.headers == {"Signature-Input": want_input, "Signature": want_signature}


def test_b26_signature_verifies_with_the_rfc_public_key() -> None:
    public = serialization.load_pem_public_key(rfc9421.ED25519_PUBLIC.encode())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    base = base_for(
        b2_request(),
        ["date", "@method", "@path", "@authority", "content-type", "content-length"],
        [("created", 1618884473), ("keyid", "test-key-ed25519")],
    )
    public.verify(sig_bytes(B26_SIGNATURE), base.encode())


# B.3 Proxy example (a TLS-terminating reverse proxy signs with ecdsa-p256-sha256).
B3_CLIENT_CERT = (
    ":MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkx"
    "BIEludGVybWVkaWF0ZSBDQTAeFw0yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKo"
    "ZIzj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be5F/3YC8OthxM4+k1M6aEAEFcGz"
    "kJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgNVHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8E"
    "BAMCBsAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0g"
    "AMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/kHSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yh"
    "k=:"
)
B3_SIGNATURE = (
    "ttrp=:xVMHVpawaAC/0SbHrKRs9i8I3eOs5RtTMGCWXm/9nvZzoHsIg6Mce9315T6xoklyy0yzhD9ah4JHRwMLOgm"
    "izw==:"
)


def test_b3_ecdsa_base_and_rfc_signature() -> None:
    headers = (
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        ("Content-Length", "18"),
        ("Client-Cert", B3_CLIENT_CERT),
    )
    request = OutboundRequest(
        "POST", "https://service.internal.example", "/foo", "param=Value&Pet=dog", headers
    )
    names = ["@path", "@query", "@method", "@authority", "client-cert"]
    base = base_for(request, names, [("created", 1618884473), ("keyid", "test-key-ecc-p256")])
    assert base == "\n".join(
        [
            '"@path": /foo',
            '"@query": ?param=Value&Pet=dog',
            '"@method": POST',
            '"@authority": service.internal.example',
            f'"client-cert": {B3_CLIENT_CERT}',
            '"@signature-params": ("@path" "@query" "@method" "@authority" "client-cert")'
            ';created=1618884473;keyid="test-key-ecc-p256"',
        ]
    )
    raw = sig_bytes(B3_SIGNATURE)
    assert len(raw) == 64  # §3.3.4: r || s, 32 bytes each
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = serialization.load_pem_public_key(rfc9421.ECC_P256_PUBLIC.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, base.encode(), ec.ECDSA(hashes.SHA256()))


def test_b2_content_digest_is_the_rfcs() -> None:
    """RFC 9530 `Content-Digest` of the B.2 body, as the B.2 message carries it."""
    assert content_digest("sha-512", [rfc9421.BODY]) == dict(rfc9421.HEADERS)["Content-Digest"]
    # Fed in pieces (a spilled body is read in chunks), the same.
    assert content_digest("sha-512", [rfc9421.BODY[:5], rfc9421.BODY[5:]]) == content_digest(
        "sha-512", [rfc9421.BODY]
    )


def test_randomized_algorithms_sign_what_the_rfc_keys_verify() -> None:
    """The scheme's own rsa-pss and ecdsa signatures (random each time) over B.2.3's
    components verify with the RFC public keys."""
    request = b2_request()
    for algorithm, private, public_pem in [
        ("rsa-pss-sha512", rfc9421.RSA_PSS_PRIVATE, rfc9421.RSA_PSS_PUBLIC),
        ("ecdsa-p256-sha256", rfc9421.ECC_P256_PRIVATE, rfc9421.ECC_P256_PUBLIC),
    ]:
        key = load_key(algorithm, private.encode(), "credential")  # type: ignore[arg-type]
        scheme = HttpSignatureScheme(
            "c1", key, algorithm=algorithm, key_id="k", components=B23_NAMES,  # type: ignore[arg-type]
            label="sig1", tag=None, expires_in=None, digest=None,
        )  # fmt: skip
        signed = scheme.build(request, CTX)
        raw = sig_bytes(signed.signature)
        public = serialization.load_pem_public_key(public_pem.encode())
        if isinstance(public, rsa.RSAPublicKey):
            verify_rsa_pss(signed.base, raw)
        else:
            assert isinstance(public, ec.EllipticCurvePublicKey)
            der = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            public.verify(der, signed.base.encode(), ec.ECDSA(hashes.SHA256()))
        assert signed.base.replace("test-key-rsa-pss", "k") == B23_BASE.replace(
            "test-key-rsa-pss", "k"
        )
