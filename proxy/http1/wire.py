"""Pure HTTP/1.1 request encoding (RFC 9112): the request line, headers and body framing.

No I/O here. The request goes out byte for byte as built: the request-target is the
`OutboundRequest.target` verbatim, headers keep their order and case, `Host` is the upstream's
authority, and nothing is added behind the caller's back except the framing the body needs
(RFC 9112 §6: `Content-Length` for a known length, `chunked` for a stream of unknown length).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from ..errors import ProxyError

# RFC 9110 §9.2.2: requests that may be repeated automatically.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNKED_END = b"0\r\n\r\n"


class Framing(Enum):
    """How the request body is delimited on the wire."""

    NONE = "none"  # no body at all
    LENGTH = "length"  # `Content-Length` bytes follow
    CHUNKED = "chunked"  # RFC 9112 §7.1 chunks, ended by a zero-size chunk


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request goes, an origin (RFC 6454 §4): the socket address and the `Host` value."""

    scheme: str
    host: str  # for the socket and TLS SNI: no brackets around an IPv6 literal
    port: int
    authority: str  # for `Host`: as in the origin (default port left out)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


@lru_cache(maxsize=1024)
def parse_origin(origin: str) -> Origin:
    """`scheme://host[:port]` (as `OutboundRequest.origin` holds it) → `Origin`; cached, as a
    proxy talks to few origins."""
    scheme, sep, authority = origin.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS or not authority or "/" in authority:
        raise ProxyError("bad_origin", "the upstream origin is not an http(s) origin")
    if authority.startswith("["):  # IPv6 literal, RFC 3986 §3.2.2
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    port = int(port_text) if port_text.isdigit() else DEFAULT_PORTS[scheme]
    return Origin(scheme, host, port, authority)


def content_length(headers: tuple[tuple[str, str], ...]) -> int | None:
    for key, value in headers:
        if len(key) == 14 and key.lower() == "content-length":
            text = value.strip()
            if not text.isdigit():
                raise ProxyError("bad_content_length", "the request Content-Length is invalid")
            return int(text)
    return None


def plan_framing(
    headers: tuple[tuple[str, str], ...], body_size: int | None, streamed: bool
) -> tuple[Framing, int | None, str | None]:
    """Decide the body framing: `(framing, expected length, header line to add or None)`.

    `body_size` is the length of an in-memory body, `streamed` says the body is an async stream.
    A declared `Content-Length` is kept as it is (the inbound server already enforced it on the
    client's body); a stream without one goes chunked.
    """
    declared = content_length(headers)
    if not body_size and not streamed:
        # No body (or an empty one): no framing header is added, whatever the method. A client
        # that sent none sent a request with no content (RFC 9112 §6.3 rule 7), and an upstream
        # reads the same from ours; its own `Content-Length: 0` goes up as it was.
        if declared:
            raise ProxyError("bad_content_length", "a Content-Length was given without a body")
        return Framing.NONE, 0, None
    if body_size is not None:
        if declared is None:
            return Framing.LENGTH, body_size, f"Content-Length: {body_size}"
        if declared != body_size:
            raise ProxyError("bad_content_length", "the Content-Length does not match the body")
        return Framing.LENGTH, body_size, None
    if declared is None:
        return Framing.CHUNKED, None, "Transfer-Encoding: chunked"
    return Framing.LENGTH, declared, None


def encode_head(
    method: str,
    target: str,
    authority: str,
    headers: tuple[tuple[str, str], ...],
    extra: str | None,
) -> bytes:
    """Request line and header block, ending with the blank line.

    A CR or LF inside any part would split the message (header injection, RFC 9112 §2.2), so
    the whole block is counted once: exactly one CRLF per line, and no NUL.
    """
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{key}: {value}" for key, value in headers]
    if extra is not None:
        lines.append(extra)
    text = "\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text:
        raise ProxyError("bad_header", "a request header contains a line break", status=400)
    try:
        # latin-1 maps the inbound header bytes (decoded as latin-1) back to the same bytes.
        return (text + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        # A configured value outside latin-1: UTF-8 is what aiohttp's client sent for it.
        return (text + "\r\n\r\n").encode("utf-8")


def chunk_frame(size: int) -> bytes:
    """The size line of one chunk (RFC 9112 §7.1); the data and a CRLF follow it."""
    return b"%x\r\n" % size


# -- responses (the inbound server's side) ---------------------------------------------------------

# RFC 9110 §6.4.1: a response to HEAD, and 1xx, 204 and 304 responses, never carry a body.
NO_BODY_STATUSES = frozenset({204, 304})


def response_has_body(method: str, status: int) -> bool:
    """Whether a response to `method` with `status` carries a body (and so framing)."""
    return method != "HEAD" and status >= 200 and status not in NO_BODY_STATUSES


@lru_cache(maxsize=256)
def status_line(version: str, status: int, reason: str) -> bytes:
    # Cached: a proxy sends the same few status lines over and over.
    return f"HTTP/{version} {status} {reason}\r\n".encode("latin-1", "replace")


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """`Name: value` lines for headers the proxy holds as text (its own answers, rewritten URLs).

    Latin-1 is the wire's text (RFC 9110 §5.5); a value outside it (a rewritten URL holding
    a client's UTF-8 Host) goes out as UTF-8 rather than failing the response."""
    text = "".join([f"{key}: {value}\r\n" for key, value in headers])
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def encode_response_head(
    version: str,
    status: int,
    reason: str,
    block: bytes,
    framing: bytes | None,
    connection: bytes | None,
) -> bytes:
    """Status line and header block, ending with the blank line.

    `block` holds the header lines: the upstream's as received (the parser let no CR or LF
    into them) or `header_block` of the proxy's own; `framing` and `connection` are header
    lines the server adds (chunked coding, `Connection: close`)."""
    parts = [status_line(version, status, reason), block]
    if framing is not None:
        parts.append(framing)
    if connection is not None:
        parts.append(connection)
    parts.append(b"\r\n")
    return b"".join(parts)
