"""AWS Signature Version 4: the canonical request, the string to sign, the signing key and the
chunk signatures, as pure functions over text (docs/aws-sigv4.md).

Every rule is botocore's `SigV4Auth` (`botocore/auth.py`), which is what the AWS SDKs and the
services agree on, rather than a reading of the prose:

- canonical URI: for S3 the path exactly as sent; for every other service the path with dot
  segments and empty segments removed, then percent-encoded once more (`%2F` → `%252F`: those
  services compare against the path encoded twice);
- canonical query: the query's `name=value` pairs as sent, sorted (`&`-split, never decoded);
- canonical headers: every header but a few that proxies and tracers change on the way
  (`UNSIGNED_HEADERS`), names lowercased and sorted, each value with its runs of white space
  folded to one space, repeated headers joined with `,`, and `host` from the URL when not sent.

No I/O and no request type: `aws_sigv4.py` feeds these from an `OutboundRequest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TERMINATOR = "aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# `x-amz-content-sha256` values that say how the body is covered.
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

# botocore's SIGNED_HEADERS_BLACKLIST: hop-by-hop headers and those that tracers and proxies add
# or rewrite between the signer and AWS.
UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

# Services whose canonical URI is the path as sent (botocore's S3SigV4Auth and its presigner);
# they also want `x-amz-content-sha256` on every header-signed request.
S3_SERVICES = frozenset({"s3", "s3-object-lambda", "s3-outposts"})

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")


def is_hex_sha256(text: str) -> bool:
    return _HEX_SHA256.fullmatch(text) is not None


def amz_date(now: float) -> str:
    """`X-Amz-Date`: ISO 8601 basic format, UTC, to the second."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


@dataclass(frozen=True, slots=True)
class Scope:
    """A credential scope: `date/region/service/aws4_request`."""

    date: str  # YYYYMMDD
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True, slots=True)
class ClientScope:
    """Region and service read from a client's own signature (its credential scope)."""

    region: str
    service: str


def client_scope(credential: str) -> ClientScope | None:
    """`AKID/20150830/us-east-1/iam/aws4_request` (an `Authorization` header's `Credential=`,
    or a presigned URL's `X-Amz-Credential`, already decoded) → its region and service."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != TERMINATOR or not parts[2] or not parts[3]:
        return None
    return ClientScope(parts[2], parts[3])


def scope_in_authorization(value: str) -> ClientScope | None:
    if not value.startswith(ALGORITHM + " "):
        return None
    found = _CREDENTIAL.search(value)
    return client_scope(found.group(1)) if found else None


def scope_in_query_value(value: str) -> ClientScope | None:
    return client_scope(unquote(value))


def signing_key(secret_access_key: str, scope: Scope) -> bytes:
    """HMAC chain `AWS4<secret>` → date → region → service → `aws4_request`."""
    key = _mac(("AWS4" + secret_access_key).encode("utf-8"), scope.date)
    for part in (scope.region, scope.service, TERMINATOR):
        key = _mac(key, part)
    return key


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signature(key: bytes, string_to_sign: str) -> str:
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_uri(path: str, service: str) -> str:
    if service in S3_SERVICES:
        return path or "/"
    return quote(_remove_dot_segments(path or "/"), safe="/~")


def _remove_dot_segments(path: str) -> str:
    # botocore.utils.remove_dot_segments: RFC 3986 §5.2.4, and empty segments go too.
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def canonical_query(query: str) -> str:
    """Each name and value URI-encoded as AWS recomputes them (decoded, then every byte but the
    unreserved ones percent-encoded), sorted by name then value. botocore builds strictly encoded
    URLs and can skip the decoding; a client of the proxy may send `prefix=photos/2024/` or
    `%7e`, which AWS canonicalises as `prefix=photos%2F2024%2F` and `~`."""
    if not query:
        return ""
    pairs = sorted(
        (_aws_encode(name), _aws_encode(value))
        for name, _, value in (pair.partition("=") for pair in query.split("&"))
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def _aws_encode(text: str) -> str:
    # `unquote`, not `unquote_plus`: AWS reads a `+` in a query as itself, not as a space.
    return quote(unquote(text, errors="surrogateescape"), safe="-_.~", errors="surrogateescape")


def headers_to_sign(headers: Iterable[tuple[str, str]], host: str) -> dict[str, list[str]]:
    """Lowercase name → its values in order, `UNSIGNED_HEADERS` left out, `host` added."""
    signed: dict[str, list[str]] = {}
    for name, value in headers:
        low = name.lower()
        if low not in UNSIGNED_HEADERS:
            signed.setdefault(low, []).append(value)
    signed.setdefault("host", [host])
    return signed


def signed_header_names(signed: dict[str, list[str]]) -> str:
    return ";".join(sorted(signed))


def canonical_request(
    method: str,
    uri: str,
    query: str,
    signed: dict[str, list[str]],
    payload_hash: str,
) -> str:
    lines = [
        f"{name}:{','.join(' '.join(value.split()) for value in signed[name])}"
        for name in sorted(signed)
    ]
    return "\n".join(
        (
            method.upper(),
            uri,
            query,
            "\n".join(lines) + "\n",
            signed_header_names(signed),
            payload_hash,
        )
    )


def string_to_sign(timestamp: str, scope: Scope, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def chunk_string_to_sign(timestamp: str, scope: Scope, previous: str, chunk_sha256: str) -> str:
    """A `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` chunk's string to sign: the previous signature
    (the request's own for the first chunk) chains the chunks in order."""
    return f"{CHUNK_ALGORITHM}\n{timestamp}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{chunk_sha256}"


def authorization(access_key_id: str, scope: Scope, signed_names: str, sig: str) -> str:
    return (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={sig}"
    )


def presign_params(
    access_key_id: str,
    scope: Scope,
    timestamp: str,
    expires: int,
    signed_names: str,
    session_token: str | None,
) -> Sequence[tuple[str, str]]:
    """The query parameters of a presigned request, in botocore's order, `X-Amz-Signature`
    excepted (it is appended last, after signing)."""
    params = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key_id}/{scope}"),
        ("X-Amz-Date", timestamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", signed_names),
    ]
    if session_token is not None:
        params.append(("X-Amz-Security-Token", session_token))
    return params


def encode_query_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    # botocore.utils.percent_encode: everything but RFC 3986 unreserved characters.
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
