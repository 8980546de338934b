"""`hmac` scheme: the primitive against published vectors, and the url/body composition against
messages built here from literal bytes (docs/request-path.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import pytest

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.dataplane.body import BufferedBody, read_body
from proxy.messages import OutboundRequest
from proxy.schemes.base import DEFAULT_CONTEXT
from proxy.schemes.hmac import HmacScheme
from tests.builders import connection, hmac_sha256

# (key, data, algorithm, expected hex). Sources:
#  - RFC 4231 §4.2 (test case 1), §4.3 (test case 2), §4.7 (test case 6: key longer than a block)
#  - RFC 2202 §3 (HMAC-SHA-1 test cases 1 and 2)
VECTORS = [
    (b"\x0b" * 20, b"Hi There", "sha256",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"\x0b" * 20, b"Hi There", "sha512",
     "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
     "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
    (b"Jefe", b"what do ya want for nothing?", "sha256",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"Jefe", b"what do ya want for nothing?", "sha512",
     "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
     "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First", "sha256",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\x0b" * 20, b"Hi There", "sha1", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe", b"what do ya want for nothing?", "sha1",
     "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
]  # fmt: skip

ORIGIN = "https://api.example.com:8443"
PATH = "/v1/files/a%2Fb%20c"
QUERY = "z=1&a=%C3%A9&flag"
BODY = b'{"amount": 100, "note": "caf\xc3\xa9"}\n'
KEY = b"canary-hmac-key-\x00\xff-91c2"


def request(body: bytes | None = BODY, query: str = QUERY) -> OutboundRequest:
    return OutboundRequest(
        "POST",
        ORIGIN,
        PATH,
        query,
        (("Content-Type", "application/json"),),
        BufferedBody(body) if body is not None else None,
    )


def scheme(key: bytes = KEY, **kw: Any) -> HmacScheme:
    params: dict[str, Any] = {
        "name": "X-Sig",
        "where": "header",
        "algorithm": "sha256",
        "digest_inputs": ["body"],
        "encoding": "hex",
    }
    params.update(kw)
    return HmacScheme("cred", key, **params)


@pytest.mark.parametrize(("key", "data", "algorithm", "expected"), VECTORS)
def test_primitive_matches_published_vectors(
    key: bytes, data: bytes, algorithm: str, expected: str
) -> None:
    signer = HmacScheme(
        "c", key, name="S", where="header", algorithm=algorithm,  # type: ignore[arg-type]
        digest_inputs=["body"], encoding="hex",
    )  # fmt: skip
    patch = signer.sign(request(body=data), DEFAULT_CONTEXT)
    assert patch.headers == {"S": expected}


def literal_encoding(digest: bytes, encoding: str) -> str:
    # Written out from RFC 4648 rather than calling the code under test.
    if encoding == "hex":
        return "".join(f"{b:02x}" for b in digest)
    if encoding == "base64":
        return base64.b64encode(digest).decode()
    return base64.b64encode(digest).decode().replace("+", "-").replace("/", "_").rstrip("=")


WIRE_URL = b"https://api.example.com:8443/v1/files/a%2Fb%20c?z=1&a=%C3%A9&flag"
ORDERS = [["url"], ["body"], ["url", "body"], ["body", "url"]]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64", "base64url"])
@pytest.mark.parametrize("where", ["header", "query", "cookie"])
@pytest.mark.parametrize("order", ORDERS, ids="+".join)
def test_every_combination(algorithm: str, encoding: str, where: str, order: list[str]) -> None:
    signer = scheme(algorithm=algorithm, encoding=encoding, where=where, digest_inputs=order)
    parts = {"url": WIRE_URL, "body": BODY}
    message = b"".join(parts[p] for p in order)
    expected = literal_encoding(hmac.new(KEY, message, algorithm).digest(), encoding)
    signed = request().patched(signer.sign(request(), DEFAULT_CONTEXT))
    if where == "header":
        assert signed.header("X-Sig") == expected
    elif where == "query":
        # Appended last; the URL that was signed is the wire URL without it.
        escaped = expected.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        assert signed.query == f"{QUERY}&X-Sig={escaped}"
    else:
        assert signed.header("Cookie") == f"X-Sig={expected}"
    assert signer.requires_body == ("body" in order)


def test_encodings_are_exact() -> None:
    digest = hmac.new(KEY, BODY, hashlib.sha512).digest()  # 64 bytes: base64 has padding
    for encoding, value in [
        ("hex", digest.hex()),
        ("base64", base64.b64encode(digest).decode()),
        ("base64url", base64.urlsafe_b64encode(digest).decode().rstrip("=")),
    ]:
        signer = scheme(algorithm="sha512", encoding=encoding)
        assert signer.sign(request(), DEFAULT_CONTEXT).headers["X-Sig"] == value
    assert base64.b64encode(digest).decode().endswith("==")


def test_url_without_query_has_no_question_mark() -> None:
    signer = scheme(digest_inputs=["url"])
    expected = hmac.new(KEY, b"https://api.example.com:8443/v1/files/a%2Fb%20c", "sha256")
    assert signer.sign(request(query=""), DEFAULT_CONTEXT).headers["X-Sig"] == expected.hexdigest()


def test_query_signature_replaces_client_parameter_of_that_name() -> None:
    signer = scheme(where="query", digest_inputs=["url"], name="sig")
    sent = request(query="a=1&sig=forged&b=2")
    expected = hmac.new(KEY, b"https://api.example.com:8443/v1/files/a%2Fb%20c?a=1&b=2", "sha256")
    signed = sent.patched(signer.sign(sent, DEFAULT_CONTEXT))
    assert signed.query == f"a=1&b=2&sig={expected.hexdigest()}"


def test_no_body_signs_empty_bytes() -> None:
    signer = scheme(digest_inputs=["url", "body"])
    sent = request(body=b"", query="")
    expected = hmac.new(KEY, b"https://api.example.com:8443/v1/files/a%2Fb%20c", "sha256")
    assert signer.sign(sent, DEFAULT_CONTEXT).headers["X-Sig"] == expected.hexdigest()


def test_unread_body_is_a_bug_not_an_empty_signature() -> None:
    with pytest.raises(RuntimeError):
        scheme().sign(request(body=None), DEFAULT_CONTEXT)


class Chunks:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


async def test_spilled_body_is_signed_chunk_by_chunk() -> None:
    data = [os.urandom(100_000) for _ in range(4)]
    body, _ = await read_body(Chunks(list(data)), memory_limit=1000, max_bytes=10**7)
    try:
        assert body.in_memory is None
        sent = OutboundRequest("PUT", ORIGIN, "/x", "", (), body)
        signer = scheme(digest_inputs=["body", "url"])
        expected = hmac.new(KEY, b"".join(data) + ORIGIN.encode() + b"/x", "sha256").hexdigest()
        assert signer.sign(sent, DEFAULT_CONTEXT).headers["X-Sig"] == expected
    finally:
        body.close()


def credential_tree(credential: dict[str, Any]) -> dict[str, Any]:
    """An SHA-256 body signature in `X-Sig` whose key is `credential`."""
    entry = {**hmac_sha256("", "body"), "credential": credential}
    return {"connections": [connection("hooks", "https://hooks.example.com", entry)]}


def test_binary_key_is_base64_decoded() -> None:
    raw = bytes(range(256))
    tree = credential_tree(
        {"type": "binary", "data": {"binary": {"valueBase64": base64.b64encode(raw).decode()}}}
    )
    [connection] = build_runtime(tree, {}).connections
    expected = hmac.new(raw, BODY, "sha256").hexdigest()
    assert connection.schemes[0].sign(request(), DEFAULT_CONTEXT).headers["X-Sig"] == expected


@pytest.mark.parametrize("bad", ["canary-not*base64!", "YWJj=ZGVm", "YWJjZA", ""])
def test_invalid_base64_is_a_field_error_without_the_value(bad: str) -> None:
    tree = credential_tree({"type": "binary", "data": {"binary": {"valueBase64": bad}}})
    with pytest.raises(ConfigInvalid) as caught:
        build_runtime(tree, {})
    [problem] = caught.value.problems
    assert problem.field == "connections[0].credentials[0].credential.data.binary.valueBase64"
    assert bad not in problem.message or not bad


def test_repr_holds_no_key() -> None:
    signer = scheme(key=b"canary-repr-key")
    assert "canary" not in repr(signer) and "canary" not in str(signer.describe())
