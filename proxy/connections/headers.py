"""Header hygiene at both edges of the proxy (docs/request-path.md, RFC 9110 §7.6.1).

Hop-by-hop headers describe one connection, not the message, so they never cross the proxy in
either direction; `Connection` may name more of them. On the way out, headers the connection's
credentials own (and `Host`, which becomes the upstream's) are dropped too.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)

# Never forwarded upstream: the proxy sets Host itself, and X-Connection-Id only picks a
# connection of a template route (docs/request-path.md).
REQUEST_ONLY = frozenset({"host", "x-connection-id"})

# Client copies never go upstream (these requests go to third parties, and the values name
# internal hosts); with `forwardedHeaders` on the proxy writes its own X-Forwarded-* instead.
FORWARDED = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"})


@lru_cache(maxsize=1024)
def _tokens(value: str) -> frozenset[str]:
    # Cached: nearly every message carries the same `keep-alive` or `close`.
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


@lru_cache(maxsize=4096)
def _dropped(drop: frozenset[str]) -> frozenset[str]:
    # Per connection, not per request: `drop` is built from the connection's constant names.
    return HOP_BY_HOP | drop


def end_to_end(
    headers: Iterable[tuple[str, str]], drop: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """Headers minus hop-by-hop ones, those named by `Connection`, and `drop` (lowercase)."""
    dropped = _dropped(drop)
    kept: list[tuple[str, str]] = []
    extra: frozenset[str] = frozenset()
    for pair in headers:
        low = pair[0].lower()  # once per header: this runs on every request and response
        if low not in dropped:
            kept.append(pair)
        elif low == "connection":
            extra |= _tokens(pair[1]) - dropped
    if extra:
        # Usually `Connection` says only `keep-alive` or `close`: a second pass is rare.
        kept = [pair for pair in kept if pair[0].lower() not in extra]
    return kept


HOP_BY_HOP_RAW = frozenset(name.encode("ascii") for name in HOP_BY_HOP)

# The request's framing, which the proxy writes itself (from the body it forwards).
FRAMING = frozenset({"content-length", "transfer-encoding"})


def is_underscore_alias(low: str, managed: frozenset[str]) -> bool:
    """`low` (a lowercase name) spells a header in `managed` with `_` for `-`.

    CGI and WSGI servers (and the frameworks on them) turn both `Content-Length` and
    `Content_Length` into one `CONTENT_LENGTH` variable, so a client's `Transfer_Encoding` or
    `X_Api_Key` beside the proxy's own framing or credential header could be the one the
    upstream reads. Such aliases of the headers the proxy drops or sets are dropped too."""
    return "_" in low and low.replace("_", "-") in managed


@lru_cache(maxsize=1024)
def raw_connection_tokens(value: bytes) -> frozenset[bytes]:
    """The lowercase names a `Connection` field value (as received) lists, hop-by-hop ones
    excepted."""
    tokens = (token.strip().lower() for token in value.split(b","))
    return frozenset(token for token in tokens if token) - HOP_BY_HOP_RAW
