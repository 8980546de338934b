"""The data plane's own HTTP/1.1 upstream client (RFC 9112) on asyncio protocols and httptools.

`wire` encodes requests (pure), `connection` parses one connection's responses with strict
framing and flow control, `pool` keeps idle connections per (origin, TLS context), and `client`
is the `Upstream` implementation the request path uses.
"""

from __future__ import annotations

from .client import Http1Upstream

__all__ = ["Http1Upstream"]
