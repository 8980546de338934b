"""`oauth1`: RFC 5849 OAuth 1.0a request signing with HMAC-SHA1 or HMAC-SHA256
(docs/request-path.md).

Pure functions follow the RFC's sections: parameter encoding (§3.6), the base string URI
(§3.4.1.2), parameter collection and normalisation (§3.4.1.3), the base string (§3.4.1.1), the
HMAC signature (§3.4.2) and the `Authorization` header (§3.5.1). `OAuth1Scheme` puts them
together with a fresh nonce and timestamp from the `SigningContext` per request.

HMAC-SHA256 is not in RFC 5849 itself; it is the same construction with SHA-256, as NetSuite's
token-based authentication and oauthlib's `HMAC-SHA256` do it.

Parameters are handled as bytes end to end: a query or form parameter is percent-decoded to its
raw bytes (W3C form decoding: `+` is a space) and re-encoded per §3.6, so the base string is
exactly what a verifier derives from the bytes on the wire, whatever their charset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any, Literal
from urllib.parse import quote_from_bytes, unquote_to_bytes

from ..messages import OutboundRequest, RequestPatch, encode_query_component
from .base import Scheme, SchemeConfigError, SigningContext

SignatureMethod = Literal["sha1", "sha256"]
METHOD_NAMES = {"sha1": "HMAC-SHA1", "sha256": "HMAC-SHA256"}
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
FORM_TYPE = "application/x-www-form-urlencoded"

Params = list[tuple[bytes, bytes]]


def encode(value: str | bytes) -> str:
    """§3.6: UTF-8, then percent-encode all but the unreserved set (ALPHA DIGIT - . _ ~)."""
    if isinstance(value, str):
        return encode_query_component(value)
    return quote_from_bytes(value, safe="-._~")


def form_params(data: bytes) -> Params:
    """§3.4.1.3.1: split an `application/x-www-form-urlencoded` string into decoded pairs.

    A name without `=` has an empty value (`c2` in §3.4.1.1's body `c2&a3=2+q`); empty pieces
    (`a=1&&b=2`) are skipped. Decoded to raw bytes, not text: `urllib.parse.parse_qsl` would
    replace bytes that are not UTF-8, and the signature would no longer match the wire.
    """
    pairs: Params = []
    for piece in data.split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((_form_decode(name), _form_decode(value)))
    return pairs


def _form_decode(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def is_form(content_type: str | None) -> bool:
    """True when the body takes part in the signature (§3.4.1.3.1, third bullet)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == FORM_TYPE


def base_string_uri(origin: str, path: str) -> str:
    """§3.4.1.2: scheme and host lowercase, default port left out, path as sent, no query.

    `OutboundRequest.origin` is already normalised that way (see `urls.BaseUrl.origin`).
    """
    scheme, _, authority = origin.partition("://")
    return f"{scheme.lower()}://{authority.lower()}{path or '/'}"


def normalize_parameters(params: Iterable[tuple[bytes | str, bytes | str]]) -> str:
    """§3.4.1.3.2: encode names and values, sort by name then value, join as `n=v&...`."""
    encoded = sorted((encode(name), encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def signature_base_string(method: str, uri: str, normalized_params: str) -> str:
    """§3.4.1.1: `METHOD&encode(base string URI)&encode(normalized parameters)`."""
    return "&".join((method.upper(), encode(uri), encode(normalized_params)))


def hmac_signature(
    base_string: str, consumer_secret: str, token_secret: str, method: SignatureMethod
) -> str:
    """§3.4.2: base64 of HMAC(key = encode(consumer secret) & encode(token secret))."""
    key = f"{encode(consumer_secret)}&{encode(token_secret)}".encode("ascii")
    digest = hmac.new(key, base_string.encode("ascii"), _DIGESTS[method]).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization_header(realm: str | None, params: Sequence[tuple[str, str]]) -> str:
    """§3.5.1: `OAuth realm="...", name="value", ...` with names and values §3.6-encoded.

    `realm` is an RFC 2617 quoted-string, not a protocol parameter: it is quoted, not encoded.
    """
    parts = [f'{encode(name)}="{encode(value)}"' for name, value in params]
    if realm is not None:
        quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
        parts.insert(0, f'realm="{quoted}"')
    return "OAuth " + ", ".join(parts)


def _raw(text: str) -> bytes:
    # The path and query are text that came off the wire; surrogateescape gives their bytes back.
    return text.encode("utf-8", "surrogateescape")


class OAuth1Scheme(Scheme):
    type_name = "oauth1"
    sets_headers = frozenset({"authorization"})
    # The body takes part only for form-encoded requests, which the driver can tell from the
    # Content-Type before reading anything: `reads_body()` answers per request, so a JSON or
    # binary upload through an OAuth 1 connection still streams without being buffered.
    requires_body = False

    def __init__(
        self,
        credential_id: str,
        *,
        consumer_key: str,
        consumer_secret: str,
        token: str,
        token_secret: str,
        signature_method: SignatureMethod,
        additional_params: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.credential_id = credential_id
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self._token = token
        self._token_secret = token_secret
        self.signature_method = signature_method
        self.realm: str | None = None
        self._extra: list[tuple[str, str]] = []
        for index, (name, value) in enumerate(additional_params):
            if name == "realm":
                # §3.4.1.3.1: realm is excluded from the signature; it only goes in the header.
                self.realm = value
            elif name.startswith("oauth_") and name != "oauth_callback":
                raise SchemeConfigError(
                    f"credential.data.oauth1Token.additionalParams[{index}].name",
                    f"{name!r} is set by the proxy itself",
                )
            else:
                self._extra.append((name, value))

    def __repr__(self) -> str:
        return f"OAuth1Scheme({METHOD_NAMES[self.signature_method]})"

    def reads_body(self, request: OutboundRequest) -> bool:
        return is_form(request.header("Content-Type"))

    def protocol_params(self, ctx: SigningContext) -> list[tuple[str, str]]:
        """The §3.1 `oauth_*` parameters (and signed additional ones), without the signature."""
        params = [
            ("oauth_consumer_key", self._consumer_key),
            ("oauth_nonce", ctx.nonce()),
            ("oauth_signature_method", METHOD_NAMES[self.signature_method]),
            ("oauth_timestamp", str(int(ctx.now()))),
        ]
        if self._token:
            # §3.1: omitted when the request is not tied to a resource owner (two-legged).
            params.append(("oauth_token", self._token))
        params.append(("oauth_version", "1.0"))
        return params + self._extra

    def base_string(self, request: OutboundRequest, protocol: Sequence[tuple[str, str]]) -> str:
        """§3.4.1: the signature base string of `request` with these protocol parameters."""
        params: list[tuple[bytes | str, bytes | str]] = list(protocol)
        params += form_params(_raw(request.query))
        if self.reads_body(request):
            if request.body is None:
                raise RuntimeError("oauth1 over a form body, but the body was not read")
            params += form_params(request.body.read_all())
        uri = base_string_uri(request.origin, request.path)
        return signature_base_string(request.method, uri, normalize_parameters(params))

    def _signed(self, request: OutboundRequest, ctx: SigningContext) -> tuple[str, str]:
        protocol = self.protocol_params(ctx)
        base = self.base_string(request, protocol)
        signature = hmac_signature(
            base, self._consumer_secret, self._token_secret, self.signature_method
        )
        header = authorization_header(self.realm, [*protocol, ("oauth_signature", signature)])
        return base, header

    def sign(self, request: OutboundRequest, ctx: SigningContext) -> RequestPatch:
        _, header = self._signed(request, ctx)
        return RequestPatch(headers={"Authorization": header})

    def signed_parts(
        self, request: OutboundRequest, ctx: SigningContext
    ) -> list[tuple[str, bytes]]:
        """What `explain` shows: the §3.4.1 base string (ctx must repeat the same nonce/time)."""
        base, _ = self._signed(request, ctx)
        return [("signature base string", base.encode("ascii"))]

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "signatureMethod": METHOD_NAMES[self.signature_method],
            "realm": self.realm,
            "additionalParams": [name for name, _ in self._extra],
        }
