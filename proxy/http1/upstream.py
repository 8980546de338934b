"""The upstream hop as the data plane sees it: send an `OutboundRequest`, get the status and
headers, stream the body.

`Upstream` is the seam between the request path and the HTTP client; `Http1Upstream`
(`client.py`) implements it. Network failures become `ProxyError`s carrying the RFC 9209 error
type (docs/errors.md); a failure after the response head was relayed is `UpstreamBroken`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from ..messages import OutboundRequest, UpstreamResponse

UpstreamBody = bytes | AsyncIterable[bytes] | None


class UpstreamReply(Protocol):
    """An upstream answer whose body has not been read yet."""

    head: UpstreamResponse
    reason: str

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def discard(self) -> None: ...

    def close(self) -> None: ...


class Upstream(Protocol):
    async def send(
        self, request: OutboundRequest, body: UpstreamBody, tls: ssl.SSLContext | None
    ) -> UpstreamReply: ...

    async def close(self) -> None: ...


class UpstreamBroken(Exception):
    """The upstream failed after the response head was relayed; the client connection is cut."""
