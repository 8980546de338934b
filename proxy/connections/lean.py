"""The lean request path: connections whose credentials only add constant headers.

Bearer, basic and api-key-in-a-header credentials (and `none`) add the same header to every
request and change nothing else, so for a connection made only of those the upstream request
head is built straight from the bytes the client sent: the client's header lines minus the ones
that never cross (hop-by-hop, `Host`, `X-Connection-Id`, client `X-Forwarded-*`, the names the
credentials own, and any of those or the framing headers spelt with `_`), then the credential
lines worked out once, here, when the connection is compiled. No `OutboundRequest`, patch or
decoded header list is made per request; the result is byte for byte what the general path
(`forward.outbound_request` + `run_chain`) sends, which `tests/dataplane/test_lean_path.py`
checks side by side.

Signing schemes (HMAC, OAuth 1.0a), OAuth 2.0 (its token changes and it may retry), api keys in
the query or a cookie, `forwardedHeaders: true` and a `Connection` header naming further
headers all take the general path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..http1.wire import Origin, parse_origin
from ..schemes import Scheme
from .headers import FORWARDED, FRAMING, HOP_BY_HOP, REQUEST_ONLY
from .urls import BaseUrl

# `Connection` values that name no other header: anything else sends the request the general
# way, which drops the headers it names.
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"keep-alive, close", b""})


@dataclass(frozen=True, slots=True)
class LeanPlan:
    origin: Origin
    base_path: str  # the baseUrl path as written ("/" when empty)
    path_prefix: str  # what a non-empty route tail is appended to
    drop: frozenset[bytes]  # lowercase header names never forwarded
    aliased: frozenset[bytes]  # ... and these, spelt with `_` (headers.is_underscore_alias)
    host_line: bytes  # b"Host: <authority>\r\n"
    added: bytes  # the credentials' header lines, in credential order


def lean_plan(base: BaseUrl, schemes: Sequence[Scheme], owned: frozenset[str]) -> LeanPlan | None:
    """The plan for a connection of `schemes`, or None when it needs the general path."""
    headers: dict[str, tuple[str, str]] = {}  # lowercase name -> (name, value); later wins
    for scheme in schemes:
        constant = scheme.constant_headers()
        if constant is None:
            return None
        for name, value in constant.items():
            headers.pop(name.lower(), None)  # as `OutboundRequest.patched`: replaced, re-added
            headers[name.lower()] = (name, value)
    added = "".join(f"{name}: {value}\r\n" for name, value in headers.values())
    try:
        added_bytes = added.encode("latin-1")
    except UnicodeEncodeError:
        added_bytes = added.encode("utf-8")  # as `wire.encode_head` sends such a value
    origin = parse_origin(base.origin)
    drop = HOP_BY_HOP | REQUEST_ONLY | FORWARDED | owned
    return LeanPlan(
        origin=origin,
        base_path=base.path or "/",
        path_prefix=base.path_prefix,
        drop=frozenset(name.encode("latin-1") for name in drop),
        aliased=frozenset(name.encode("latin-1") for name in drop | FRAMING),
        host_line=f"Host: {origin.authority}\r\n".encode("latin-1"),
        added=added_bytes,
    )


def build_head(
    plan: LeanPlan,
    method: str,
    tail: str,
    query: str,
    raw_headers: Sequence[tuple[bytes, bytes]],
    framing: bytes,
    skip: frozenset[bytes] = frozenset(),
) -> bytes | None:
    """The upstream request head (ending with the blank line), or None when a `Connection`
    header names other headers (the general path drops those too).

    `tail` and `query` are the raw request-target's (latin-1 text); `framing` is a header line
    to add for the body (chunked) or b"". `skip` holds the lowercase names of more headers to
    leave out: those that carried a client key (access.py). The client's bytes were checked
    by llhttp (no CR, LF or NUL in them) and the credential lines when the config was loaded."""
    path = plan.path_prefix + tail if tail else plan.base_path
    target = f"{path}?{query}" if query else path
    parts = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), plan.host_line]
    drop = plan.drop
    for name, value in raw_headers:
        low = name.lower()
        if low in drop:
            if low == b"connection" and value.strip().lower() not in _PLAIN_CONNECTION:
                return None
            continue
        if low in skip:
            continue
        if b"_" in low and low.replace(b"_", b"-") in plan.aliased:
            continue  # (headers.is_underscore_alias)
        parts += (name, b": ", value, b"\r\n")
    parts += (plan.added, framing, b"\r\n")
    return b"".join(parts)
