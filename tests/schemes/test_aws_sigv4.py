"""`aws-sigv4`: AWS's published examples reproduced exactly, botocore signing the same requests,
the client's own placeholder signature replaced, and the body modes.

The chunk chain is checked by `tests/aws_chunks.py`, written from the AWS document, not from
the proxy's code.
"""

from __future__ import annotations

import calendar
import datetime
import hashlib
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.dataplane.body import BufferedBody
from proxy.errors import InvalidRequest
from proxy.messages import OutboundRequest
from proxy.schemes.aws_chunked import AwsChunkedError, ChunkResigner
from proxy.schemes.aws_signing import Scope, signing_key
from proxy.schemes.aws_sigv4 import AwsSigV4Scheme
from proxy.schemes.base import SigningContext
from tests.aws_chunks import aws_chunk_signatures, aws_chunked

# The keys of the S3 examples (https://docs.aws.amazon.com/AmazonS3/latest/API/
# sig-v4-header-based-auth.html, sigv4-query-string-auth.html, sigv4-streaming.html).
S3_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3_EXAMPLE_TIME = calendar.timegm((2013, 5, 24, 0, 0, 0))
CANARY_SECRET = "canary-aws-secret-7f3e1b"
CANARY_TOKEN = "canary-aws-session-token-91cd"


def at(moment: float) -> SigningContext:
    return SigningContext(now=lambda: moment)


def scheme(
    *,
    key_id: str = S3_KEY_ID,
    secret: str = S3_SECRET,
    token: str | None = None,
    region: str | None = "us-east-1",
    service: str | None = "s3",
    where: str = "header",
    expires: int = 3600,
) -> AwsSigV4Scheme:
    return AwsSigV4Scheme(
        "cred",
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=token,
        region=region,
        service=service,
        where=where,
        expires=expires,
    )


def request(
    method: str,
    origin: str,
    path: str,
    query: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes | None = b"",
) -> OutboundRequest:
    buffered = BufferedBody(body) if body is not None else None
    return OutboundRequest(method, origin, path, query, headers, buffered)


# --- AWS's published examples ------------------------------------------------------------------


def test_aws_iam_list_users_example() -> None:
    # AWS General Reference, "Signature Version 4 signing process", the worked IAM ListUsers
    # example (tasks 1-4: https://docs.aws.amazon.com/general/latest/gr/sigv4-create-canonical-
    # request.html ... sigv4-calculate-signature.html).
    iam = scheme(
        key_id="AKIDEXAMPLE",
        secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        service="iam",
    )
    sent = request(
        "GET",
        "https://iam.amazonaws.com",
        "/",
        "Action=ListUsers&Version=2010-05-08",
        (("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),),
    )
    done = iam.signing(sent, at(calendar.timegm((2015, 8, 30, 12, 36, 0))))
    assert done.canonical_request == (
        "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
        "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "content-type;host;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert done.string_to_sign == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )
    assert done.request.header("Authorization") == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


def test_aws_s3_get_object_header_example() -> None:
    # https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html,
    # "Example: GET Object" (the first 10 bytes of test.txt from examplebucket).
    sent = request(
        "GET",
        "https://examplebucket.s3.amazonaws.com",
        "/test.txt",
        headers=(
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", hashlib.sha256(b"").hexdigest()),
        ),
    )
    done = scheme().signing(sent, at(S3_EXAMPLE_TIME))
    assert done.string_to_sign.endswith(
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )
    assert done.request.header("Authorization") == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_aws_s3_presigned_url_example() -> None:
    # https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html, the example
    # presigned GET of test.txt valid for 86400 seconds.
    presign = scheme(where="query", expires=86400)
    sent = request("GET", "https://examplebucket.s3.amazonaws.com", "/test.txt", body=None)
    assert not presign.reads_body(sent)  # a presigned S3 URL covers no body
    done = presign.signed(sent, at(S3_EXAMPLE_TIME))
    assert done.url == (
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    assert done.header("Authorization") is None and done.header("X-Amz-Date") is None


CHUNKED_EXAMPLE_SIGNATURES = [
    # https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html, "Example: PUT
    # Object": 66560 bytes of "a" in chunks of 65536, 1024 and 0 bytes.
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]


def chunked_example() -> OutboundRequest:
    return request(
        "PUT",
        "https://s3.amazonaws.com",
        "/examplebucket/chunkObject.txt",
        headers=(
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ),
        body=None,
    )


def test_aws_s3_chunked_upload_example() -> None:
    s3 = scheme()
    sent = chunked_example()
    assert not s3.reads_body(sent)  # streamed, never read first
    done = s3.signed(sent, at(S3_EXAMPLE_TIME))
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    assert done.header("Authorization") == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        f"x-amz-decoded-content-length;x-amz-storage-class, Signature={seed}"
    )
    body = aws_chunked([65536, 1024])
    assert len(body) == 66824
    resigner = done.body_filter
    assert resigner is not None
    out = b"".join(resigner.feed(piece) for piece in pieces(body, 1000))
    resigner.finish()
    assert len(out) == len(body)
    assert re.findall(rb"chunk-signature=([0-9a-f]{64})", out) == [
        s.encode() for s in CHUNKED_EXAMPLE_SIGNATURES
    ]
    assert out == aws_chunked_signed([65536, 1024], CHUNKED_EXAMPLE_SIGNATURES)


def aws_chunked_signed(sizes: list[int], signatures: list[str]) -> bytes:
    out = b""
    for size, signature in zip([*sizes, 0], signatures, strict=True):
        out += f"{size:x};chunk-signature={signature}\r\n".encode() + b"a" * size + b"\r\n"
    return out


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# --- the chunk chain, independently -------------------------------------------------------------


@pytest.mark.parametrize("feed", [1, 7, 64, 4096, 70000])
def test_chunk_resigner_keeps_sizes_and_chains_each_chunk(feed: int) -> None:
    sizes = [8192, 3, 100000, 17]
    body = aws_chunked(sizes, fill=b"z", signature="f" * 64)
    scope = Scope("20261207", "eu-west-1", "s3")
    key = signing_key(CANARY_SECRET, scope)
    resigner = ChunkResigner(key, "20261207T120000Z", scope, "1" * 64)
    out = b"".join(resigner.feed(piece) for piece in pieces(body, feed))
    resigner.finish()
    assert len(out) == len(body)
    got = re.findall(rb"chunk-signature=([0-9a-f]{64})", out)
    chunks = [b"z" * size for size in [*sizes, 0]]
    expected = aws_chunk_signatures(CANARY_SECRET, "20261207T120000Z", str(scope), "1" * 64, chunks)
    assert [g.decode() for g in got] == expected
    assert out.replace(b"chunk-signature=", b"").count(b"z") == sum(sizes)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"10000;chunk-signature=abc\r\n", "chunk line"),
        (b"zz;chunk-signature=" + b"0" * 64 + b"\r\n", "chunk line"),
        (b"3;chunk-signature=" + b"0" * 64 + b"\r\nabcd\r\n", "longer than its size"),
        (b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n", "ended before its final chunk"),
        (aws_chunked([2]) + b"x", "follow the final"),
        (b"2000000;chunk-signature=" + b"0" * 64 + b"\r\n", "larger than"),
        (b"1" * 200, "chunk line"),
    ],
)
def test_chunk_resigner_refuses_what_is_not_aws_chunked(body: bytes, message: str) -> None:
    scope = Scope("20261207", "us-east-1", "s3")
    resigner = ChunkResigner(b"k" * 32, "20261207T120000Z", scope, "0" * 64)
    with pytest.raises(AwsChunkedError, match=message) as caught:
        resigner.feed(body)
        resigner.finish()
    assert caught.value.status == 400 and caught.value.code == "bad_aws_chunked"


# --- botocore signing the same request ----------------------------------------------------------

FIXED = calendar.timegm((2026, 12, 7, 9, 30, 15))


@pytest.fixture
def botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's clock set to `FIXED` (the peer's clock, not the code under test)."""
    moment = datetime.datetime.fromtimestamp(FIXED, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment)


BOTOCORE_CASES: list[dict[str, Any]] = [
    # Non-S3: the path is normalised and encoded again; the query sorted as sent.
    {
        "service": "execute-api",
        "method": "POST",
        "path": "/prod/a%20b/./c//d/",
        "query": "b=2&a=1&a=0&empty=&flag",
        # botocore's presigner rebuilds the query from a dict (one value per name), so the
        # presigned comparison uses a query that survives that unchanged.
        "presign_query": "b=2&a=1&empty=&s=%2F%20",
        "headers": (
            ("Content-Type", "application/json"),
            ("X-Custom", "  spaced    out  value "),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("User-Agent", "not-signed/1.0"),
        ),
        "body": b'{"hello": "world"}',
    },
    {"service": "sts", "method": "POST", "path": "/", "body": b"Action=GetCallerIdentity"},
    # S3: the path as sent, `x-amz-content-sha256` added.
    {"service": "s3", "method": "PUT", "path": "/bucket/a%20key+x", "body": b"data" * 100},
    {"service": "s3", "method": "GET", "path": "/bucket", "query": "list-type=2&prefix=a%2Fb"},
    # With a session token, and dated by a `Date` header (botocore's other date).
    {
        "service": "secretsmanager",
        "method": "POST",
        "path": "/",
        "headers": (("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),),
        "token": CANARY_TOKEN,
        "body": b"{}",
    },
]


@pytest.mark.parametrize("case", BOTOCORE_CASES, ids=lambda c: f"{c['service']}-{c['method']}")
@pytest.mark.parametrize("where", ["header", "query"])
def test_botocore_signs_the_same_request(
    case: dict[str, Any], where: str, botocore_clock: None
) -> None:
    service, token = case["service"], case.get("token")
    query = case.get("presign_query" if where == "query" else "query", case.get("query", ""))
    headers = case.get("headers", ())
    # botocore's presigner moves a body's form parameters into the URL: no body there.
    body = case.get("body", b"") if where == "header" else b""
    origin = "https://api.example.amazonaws.com:8443"
    url = origin + case["path"] + (f"?{query}" if query else "")
    ours = scheme(
        key_id="AKIDBOTOCORE",
        secret=CANARY_SECRET,
        token=token,
        region="eu-central-1",
        service=service,
        where=where,
        expires=900,
    )
    sent = request(case["method"], origin, case["path"], query, headers, body)
    done = ours.signed(sent, at(FIXED))

    credentials = Credentials("AKIDBOTOCORE", CANARY_SECRET, token)
    theirs = AWSRequest(method=case["method"], url=url, data=body)
    for name, value in headers:
        theirs.headers[name] = value  # (an email.message.Message: a repeated name is added)
    s3 = service == "s3"
    if where == "header":
        signer: SigV4Auth = (S3SigV4Auth if s3 else SigV4Auth)(credentials, service, "eu-central-1")
        signer.add_auth(theirs)
        for name in (
            "Authorization",
            "X-Amz-Date",
            "Date",
            "X-Amz-Security-Token",
            "X-Amz-Content-SHA256",
        ):
            assert done.header(name) == theirs.headers.get(name), name
    else:
        presigner = (S3SigV4QueryAuth if s3 else SigV4QueryAuth)(
            credentials, service, "eu-central-1", expires=900
        )
        presigner.add_auth(theirs)
        assert done.url == theirs.url


# --- the client's own signature, and the scope it names ----------------------------------------


PLACEHOLDER_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDPLACEHOLDER/20200101/ap-south-1/sqs/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "9" * 64
)


def test_a_placeholder_signature_is_replaced_and_names_the_scope() -> None:
    ours = scheme(secret=CANARY_SECRET, token=CANARY_TOKEN, region=None, service=None)
    sent = request(
        "POST",
        "https://sqs.ap-south-1.amazonaws.com",
        "/",
        headers=(
            ("Authorization", PLACEHOLDER_AUTH),
            ("X-Amz-Date", "20200101T000000Z"),
            ("X-Amz-Security-Token", "placeholder-token"),
            ("Content-Type", "application/x-amz-json-1.0"),
        ),
        body=b"{}",
    )
    done = ours.signed(sent, at(FIXED))
    assert [k for k, _ in done.headers].count("Authorization") == 1
    authorization = done.header("Authorization") or ""
    assert "/20261207/ap-south-1/sqs/aws4_request" in authorization
    assert "placeholder" not in str(done.headers).lower()
    assert done.header("X-Amz-Date") == "20261207T093015Z"
    assert done.header("X-Amz-Security-Token") == CANARY_TOKEN
    # Configured parts win over the client's.
    fixed = scheme(secret=CANARY_SECRET, region="us-west-2", service=None).signed(sent, at(FIXED))
    assert "/us-west-2/sqs/aws4_request" in (fixed.header("Authorization") or "")


def test_a_client_presigned_url_is_replaced() -> None:
    client_query = (
        "Action=GetCallerIdentity&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDPLACEHOLDER%2F20200101%2Fus-east-2%2Fsts%2Faws4_request"
        "&X-Amz-Date=20200101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=placeholder&X-Amz-Signature=" + "9" * 64
    )
    sent = request("GET", "https://sts.amazonaws.com", "/", client_query, body=b"")
    for where in ("header", "query"):
        done = scheme(region=None, service=None, where=where).signed(sent, at(FIXED))
        assert "placeholder" not in done.url.lower()
        assert done.query.startswith("Action=GetCallerIdentity")
        assert "us-east-2%2Fsts" in done.query or "/us-east-2/sts/" in (
            done.header("Authorization") or ""
        )
        assert done.query.count("X-Amz-Signature") == (1 if where == "query" else 0)


def test_query_mode_removes_a_client_authorization_header() -> None:
    sent = request(
        "GET",
        "https://sts.amazonaws.com",
        "/",
        "Action=GetCallerIdentity",
        (("Authorization", PLACEHOLDER_AUTH),),
    )
    done = scheme(region=None, service="sts", where="query").signed(sent, at(FIXED))
    assert done.header("Authorization") is None
    assert "%2Fap-south-1%2Fsts%2F" in done.query


def test_no_region_anywhere_is_a_clear_400() -> None:
    sent = request("GET", "https://sts.amazonaws.com", "/", body=b"")
    with pytest.raises(InvalidRequest) as caught:
        scheme(region=None, service=None).signed(sent, at(FIXED))
    assert caught.value.code == "aws_scope_unknown" and caught.value.status == 400


# --- body modes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "reads", "signed_payload"),
    [
        (None, True, "body"),
        ("0" * 64, True, "body"),
        ("UNSIGNED-PAYLOAD", False, "UNSIGNED-PAYLOAD"),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", False, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", False, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ],
)
def test_the_body_mode_follows_x_amz_content_sha256(
    declared: str | None, reads: bool, signed_payload: str
) -> None:
    body = b"the body \x00\xff" * 1000
    headers = (("x-amz-content-sha256", declared),) if declared else ()
    s3 = scheme()
    sent = request("PUT", "https://b.s3.amazonaws.com", "/k", headers=headers, body=body)
    assert s3.reads_body(sent) is reads
    done = s3.signing(sent, at(FIXED))
    expected = hashlib.sha256(body).hexdigest() if signed_payload == "body" else signed_payload
    assert done.canonical_request.rsplit("\n", 1)[1] == expected
    assert done.request.header("x-amz-content-sha256") == expected
    assert (done.request.body_filter is not None) is (
        declared == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    )


def test_a_spilled_body_is_hashed_from_its_file() -> None:
    data = bytes(range(256)) * 5000
    file = tempfile.NamedTemporaryFile()  # what `read_body` spills to
    file.write(data)
    body = BufferedBody(file=file, size=len(data))  # type: ignore[arg-type]
    sent = OutboundRequest("PUT", "https://b.s3.amazonaws.com", "/k", "", (), body)
    try:
        done = scheme().signing(sent, at(FIXED))
    finally:
        body.close()
    assert body.in_memory is not None  # closed: the file is gone
    assert done.request.header("x-amz-content-sha256") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "declared", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "not-a-hash", "abc"]
)
def test_an_unknown_payload_mode_is_refused(declared: str) -> None:
    headers = (("x-amz-content-sha256", declared),)
    sent = request("PUT", "https://b.s3.amazonaws.com", "/k", headers=headers, body=None)
    assert not scheme().reads_body(sent)
    with pytest.raises(InvalidRequest) as caught:
        scheme().signed(sent, at(FIXED))
    assert caught.value.code == "aws_payload_mode_unsupported"


def test_the_secret_key_stays_out_of_repr_and_describe() -> None:
    ours = scheme(secret=CANARY_SECRET, token=CANARY_TOKEN)
    shown = repr(ours) + repr(ours.describe())
    assert CANARY_SECRET not in shown and CANARY_TOKEN not in shown
    sent = chunked_example()
    resigner = ours.signed(sent, at(FIXED)).body_filter
    assert CANARY_SECRET not in repr(resigner)


def test_a_loosely_encoded_query_is_canonicalised_as_aws_does() -> None:
    """AWS decodes each query name and value and encodes every byte but the unreserved ones
    (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html, "canonical query
    string"): a client's `prefix=photos/2024/` is signed as AWS will read it, and a query that is
    already strictly encoded is left as it is."""
    from proxy.schemes.aws_signing import canonical_query

    assert canonical_query("prefix=photos/2024/&b=%7e&a=x%20y") == (
        "a=x%20y&b=~&prefix=photos%2F2024%2F"
    )
    strict = "X-Amz-Credential=AKID%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&list-type=2"
    assert canonical_query(strict) == strict
    assert canonical_query("a+b=c+d&flag") == "a%2Bb=c%2Bd&flag="
