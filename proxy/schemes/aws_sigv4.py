"""`aws-sigv4`: AWS Signature Version 4 with an `aws` credential (docs/aws-sigv4.md).

Signs the request as the connection's other credentials left it (it is applied last), exactly as
botocore's `SigV4Auth` would sign that request (`aws_signing.py` has the canonicalisation), in an
`Authorization` header or, with `in: query`, as a presigned URL.

The body is covered the way the client's `x-amz-content-sha256` asks:

- a hex SHA-256 or nothing: the SHA-256 of the body as sent (the driver reads it first, spilling
  to a file past the memory limit, as for `hmac`), and the header is set to it;
- `UNSIGNED-PAYLOAD`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: headers only, the body streams;
- `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: headers now, and every chunk signature re-signed as the
  body streams (`aws_chunked.ChunkResigner`, handed to the driver as the request's body filter).

A client's own SigV4 (an SDK given a placeholder key) is replaced: its `Authorization`,
`X-Amz-Date`, `X-Amz-Security-Token` and presigned `X-Amz-*` query parameters go; its credential
scope supplies the region and service the configuration leaves out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from ..errors import InvalidRequest
from ..messages import OutboundRequest, RequestPatch
from . import aws_signing as sig
from .aws_chunked import ChunkResigner
from .base import Scheme, SchemeConfigError, SigningContext

# The query parameters of a presigned request (lowercase): a client's are removed.
_PRESIGN_PARAMS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-security-token",
        "x-amz-signature",
    }
)
# Headers this scheme sets, or removes for good: a client's copies never reach the signature.
_REPLACED_HEADERS = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)
_HEADER_ONLY_MODES = frozenset({sig.UNSIGNED_PAYLOAD, sig.STREAMING_UNSIGNED_TRAILER})
# An access key id goes into the credential scope between `/`s and into a header.
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9_.+=@-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Signing:
    """One signature: the request as sent, and what was signed (for `explain`)."""

    request: OutboundRequest
    canonical_request: str
    string_to_sign: str


class AwsSigV4Scheme(Scheme):
    type_name = "aws-sigv4"
    signs_last = True
    owns_client_authorization = True
    explain_heading = (
        "signed (the canonical request's SHA-256 is the string to sign's last line; the "
        "signing key MACs the string to sign), line by line:"
    )
    # Whatever the mode, a client's date and session token never go up beside the proxy's.
    sets_headers = frozenset({"x-amz-date", "x-amz-security-token"})

    def __init__(
        self,
        credential_id: str,
        *,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None,
        region: str | None,
        service: str | None,
        where: str,
        expires: int,
    ) -> None:
        if not _ACCESS_KEY_ID.fullmatch(access_key_id):
            raise SchemeConfigError(
                "credential.data.aws.accessKeyId",
                "must be an access key id (letters and digits, such as AKIAIOSFODNN7EXAMPLE)",
            )
        if not secret_access_key:
            raise SchemeConfigError("credential.data.aws.secretAccessKey", "must not be empty")
        if session_token is not None:
            bad = _CONTROL.search(session_token)
            if bad is not None:
                raise SchemeConfigError(
                    "credential.data.aws.sessionToken",
                    f"contains a control character at position {bad.start()}, which cannot be"
                    " sent (a trailing newline from a file or a paste?)",
                )
        self.credential_id = credential_id
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self._session_token = session_token or None
        self.region = region
        self.service = service
        self.where = where
        self.expires = expires

    def __repr__(self) -> str:
        return f"AwsSigV4Scheme({self.region}, {self.service}, {self.where})"

    # --- what the driver asks -------------------------------------------------------------

    def reads_body(self, request: OutboundRequest) -> bool:
        declared = request.header("x-amz-content-sha256")
        if declared is None:
            # A presigned S3 URL never covers the body (botocore's S3 presigner).
            if self.where == "query":
                scope = self._client_scope(request)
                service = self.service or (scope.service if scope else None)
                return service not in sig.S3_SERVICES
            return True
        return sig.is_hex_sha256(declared)

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        # More than a patch: a client's presigned parameters and Authorization are removed.
        raise NotImplementedError("aws-sigv4 rewrites the request: use signed()")

    def signed(self, request: OutboundRequest, ctx: SigningContext) -> OutboundRequest:
        return self.signing(request, ctx).request

    def signed_parts(
        self, request: OutboundRequest, ctx: SigningContext
    ) -> list[tuple[str, bytes]]:
        """What `explain` shows: the canonical request, whose SHA-256 is in the string to
        sign, and the string to sign, which the signing key MACs."""
        done = self.signing(request, ctx)
        return [
            ("canonical request", done.canonical_request.encode("utf-8")),
            ("string to sign", done.string_to_sign.encode("utf-8")),
        ]

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "type": self.type_name,
            "accessKeyId": self.access_key_id,
            "region": self.region or "(from the client's credential scope)",
            "service": self.service or "(from the client's credential scope)",
            "in": self.where,
        }
        if self.where == "query":
            facts["expires"] = self.expires
        return facts

    # --- signing --------------------------------------------------------------------------

    def signing(self, request: OutboundRequest, ctx: SigningContext) -> Signing:
        """Sign `request`; pure (the clock comes from `ctx`).

        Raises:
            InvalidRequest: no region/service to sign for, or an `x-amz-content-sha256` this
                proxy cannot honour.
        """
        region, service = self._region_and_service(request)
        now = ctx.now()
        timestamp = sig.amz_date(now)
        scope = sig.Scope(timestamp[:8], region, service)
        key = sig.signing_key(self._secret, scope)
        declared = request.header("x-amz-content-sha256")
        payload = self._payload_hash(request, declared, service)
        headers = [(k, v) for k, v in request.headers if k.lower() not in _REPLACED_HEADERS]
        query = _without_presign_params(request.query)
        uri = sig.canonical_uri(request.path, service)
        host = request.origin.partition("://")[2].lower()
        token = self._session_token
        if declared is not None or (self.where == "header" and service in sig.S3_SERVICES):
            headers.append(("X-Amz-Content-SHA256", payload))
        if self.where == "header":
            headers = _dated(headers, timestamp, now)
            if token is not None:
                headers.append(("X-Amz-Security-Token", token))
            signed = sig.headers_to_sign(headers, host)
            names = sig.signed_header_names(signed)
            canonical = sig.canonical_request(
                request.method, uri, sig.canonical_query(query), signed, payload
            )
            to_sign = sig.string_to_sign(timestamp, scope, canonical)
            signature = sig.signature(key, to_sign)
            headers.append(
                ("Authorization", sig.authorization(self.access_key_id, scope, names, signature))
            )
        else:
            signed = sig.headers_to_sign(headers, host)
            names = sig.signed_header_names(signed)
            params = sig.presign_params(
                self.access_key_id, scope, timestamp, self.expires, names, token
            )
            auth_query = sig.encode_query_pairs(params)
            query = f"{query}&{auth_query}" if query else auth_query
            canonical = sig.canonical_request(
                request.method, uri, sig.canonical_query(query), signed, payload
            )
            to_sign = sig.string_to_sign(timestamp, scope, canonical)
            signature = sig.signature(key, to_sign)
            query += f"&X-Amz-Signature={signature}"
        body_filter = None
        if payload == sig.STREAMING_SIGNED:
            body_filter = ChunkResigner(key, timestamp, scope, signature)
        out = OutboundRequest(
            request.method,
            request.origin,
            request.path,
            query,
            tuple(headers),
            request.body,
            body_filter,
        )
        return Signing(out, canonical, to_sign)

    def _payload_hash(self, request: OutboundRequest, declared: str | None, service: str) -> str:
        if declared is None:
            if self.where == "query" and service in sig.S3_SERVICES:
                return sig.UNSIGNED_PAYLOAD
            return _body_sha256(request)
        if declared in _HEADER_ONLY_MODES or declared == sig.STREAMING_SIGNED:
            return declared
        if sig.is_hex_sha256(declared):
            # The hash of what is actually sent: the header is set to it.
            return _body_sha256(request)
        raise InvalidRequest(
            "aws_payload_mode_unsupported",
            "x-amz-content-sha256 must be a hex SHA-256, UNSIGNED-PAYLOAD, "
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        )

    def _region_and_service(self, request: OutboundRequest) -> tuple[str, str]:
        if self.region is not None and self.service is not None:
            return self.region, self.service
        scope = self._client_scope(request)
        region = self.region or (scope.region if scope else None)
        service = self.service or (scope.service if scope else None)
        if region is None or service is None:
            raise InvalidRequest(
                "aws_scope_unknown",
                "the connection's awsSigV4 leaves out the region or service, and the request "
                "carries no AWS signature to read them from",
            )
        return region, service

    def _client_scope(self, request: OutboundRequest) -> sig.ClientScope | None:
        authorization = request.header("authorization")
        if authorization is not None:
            found = sig.scope_in_authorization(authorization)
            if found is not None:
                return found
        for pair in request.query.split("&"):
            name, _, value = pair.partition("=")
            if name.lower() == "x-amz-credential":
                return sig.scope_in_query_value(value)
        return None


def _body_sha256(request: OutboundRequest) -> str:
    if request.body is None:
        # The driver reads the body for `reads_body`; signing an empty one instead would send
        # a wrong signature quietly.
        raise RuntimeError("aws-sigv4 over the body, but the body was not read")
    digest = hashlib.sha256()
    for chunk in request.body.iter_bytes():
        digest.update(chunk)
    return digest.hexdigest()


def _dated(headers: list[tuple[str, str]], timestamp: str, now: float) -> list[tuple[str, str]]:
    """botocore's choice: a request with a `Date` header is dated there (set to now), any
    other gets `X-Amz-Date`."""
    if any(k.lower() == "date" for k, _ in headers):
        kept = [(k, v) for k, v in headers if k.lower() != "date"]
        return [*kept, ("Date", formatdate(int(now)))]
    return [*headers, ("X-Amz-Date", timestamp)]


def _without_presign_params(query: str) -> str:
    if not query:
        return query
    return "&".join(
        pair
        for pair in query.split("&")
        if unquote(pair.partition("=")[0]).lower() not in _PRESIGN_PARAMS
    )
