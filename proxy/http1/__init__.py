"""The data plane's own HTTP/1.1 upstream client (RFC 9112) on asyncio protocols and httptools.

`wire` encodes requests (pure), `connection` parses one connection's responses with strict
framing, `pool` keeps idle connections per (origin, TLS context), and `client` is the `Upstream`
implementation (`upstream.py`) the request path uses; `server` and `inbound` serve the data
plane's listener; `tunnel` (with `pipe` and `tls`) relays the bytes of a switched protocol or a
CONNECT; `flow_control` is the flow control every connection of these keeps, both ways.

May import `errors` and `messages` only: the rest of the proxy is built on it, never the
other way round.
"""

from __future__ import annotations

from .client import Http1Upstream

__all__ = ["Http1Upstream"]
