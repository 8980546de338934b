"""`hmac`: an HMAC (RFC 2104) over the request URL and/or body, sent in a header, query
parameter or cookie (docs/request-path.md).

The message is the concatenation of the `digestInputs` in their configured order:

- `url`: the absolute upstream URL exactly as it goes on the wire (`OutboundRequest.url`:
  `scheme://host[:port]/path?query`, default port left out, raw path and query bytes), taken
  *before* this scheme's own query parameter is appended — so with `in: query` the signed URL is
  the wire URL minus the last parameter, which is how a verifier strips it;
- `body`: the exact body bytes sent (empty when there is none).

Earlier credentials have already changed the request when this one signs (a query API key added
before it is covered). The body is fed to the MAC chunk by chunk, so a body spilled to a temporary
file is never held in memory whole.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from ..messages import OutboundRequest, RequestPatch, encode_query_component
from .base import Scheme, SchemeConfigError, SigningContext

Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64", "base64url"]
DigestInput = Literal["url", "body"]
Placement = Literal["header", "query", "cookie"]

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def decode_binary_key(value_base64: str) -> bytes:
    """A `binary` credential's key: standard base64 (RFC 4648 §4), strictly checked."""
    try:
        # validate=True: a stray character is an error, not silently skipped (a truncated or
        # mangled key would otherwise sign every request wrongly).
        key = base64.b64decode(value_base64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SchemeConfigError(
            "credential.data.binary.valueBase64", "is not valid base64 (RFC 4648 §4)"
        ) from None
    if not key:
        raise SchemeConfigError("credential.data.binary.valueBase64", "must not be empty")
    return key


def encode_digest(digest: bytes, encoding: Encoding) -> str:
    """docs/request-path.md: `hex` lowercase, `base64` RFC 4648 §4 padded, `base64url` §5 without
    padding."""
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def url_bytes(url: str) -> bytes:
    # The request-target is text that came off the wire; surrogateescape gives back its bytes.
    return url.encode("utf-8", "surrogateescape")


def without_query_param(query: str, encoded_name: str) -> str:
    """`query` minus every `name=...` pair of that (encoded) name, as `_append_query` drops it."""
    return "&".join(p for p in query.split("&") if p and p.split("=", 1)[0] != encoded_name)


class HmacScheme(Scheme):
    type_name = "hmac"

    def __init__(
        self,
        credential_id: str,
        key: bytes,
        *,
        name: str,
        where: Placement,
        algorithm: Algorithm,
        digest_inputs: Sequence[DigestInput],
        encoding: Encoding,
    ) -> None:
        if not key:
            raise SchemeConfigError("credential.data.string.value", "must not be empty")
        self.credential_id = credential_id
        self._key = key
        self.name = name
        self.where = where
        self.algorithm = algorithm
        self.digest_inputs = tuple(digest_inputs)
        self.encoding = encoding
        # Only a body in the message makes the driver read (and maybe spill) the body first;
        # a URL-only signature keeps the zero-copy streaming path.
        self.requires_body = "body" in self.digest_inputs
        self.sets_headers = frozenset({name.lower()}) if where == "header" else frozenset()

    def __repr__(self) -> str:
        return f"HmacScheme({self.algorithm}, {self.digest_inputs}, {self.where}:{self.name})"

    def signed_url(self, request: OutboundRequest) -> str:
        """The URL as signed: the wire URL before this scheme's own parameter is appended.

        A client-sent parameter of the signature's name is removed from the wire URL when the
        signature is appended (the credential's value wins), so it is left out here too.
        """
        if self.where != "query":
            return request.url
        query = without_query_param(request.query, encode_query_component(self.name))
        return f"{request.origin}{request.path}?{query}" if query else request.origin + request.path

    def message_parts(self, request: OutboundRequest) -> Iterator[tuple[str, Iterable[bytes]]]:
        """(input name, its bytes in chunks) in `digestInputs` order."""
        for part in self.digest_inputs:
            if part == "url":
                yield part, (url_bytes(self.signed_url(request)),)
            elif request.body is None:
                # The driver buffers the body for schemes with requires_body; reaching this is a
                # bug, and signing an empty body instead would send a wrong signature quietly.
                raise RuntimeError("hmac over the body, but the body was not read")
            else:
                yield part, request.body.iter_bytes()

    def signature(self, request: OutboundRequest) -> str:
        mac = hmac.new(self._key, digestmod=_DIGESTS[self.algorithm])
        for _, chunks in self.message_parts(request):
            for chunk in chunks:
                mac.update(chunk)
        return encode_digest(mac.digest(), self.encoding)

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        pair = {self.name: self.signature(request)}
        if self.where == "header":
            return RequestPatch(headers=pair)
        if self.where == "query":
            return RequestPatch(query=pair)
        return RequestPatch(cookies=pair)

    def signed_parts(
        self, request: OutboundRequest, ctx: SigningContext
    ) -> list[tuple[str, bytes]]:
        """What `explain` shows: each input's exact bytes, in the order they are MACed."""
        return [(name, b"".join(chunks)) for name, chunks in self.message_parts(request)]

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "name": self.name,
            "in": self.where,
            "algorithm": self.algorithm,
            "digestInputs": list(self.digest_inputs),
            "encoding": self.encoding,
        }
