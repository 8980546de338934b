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
from .tunnel import TunnelEnd

UpstreamBody = bytes | AsyncIterable[bytes] | None


class UpstreamReply(Protocol):
    """An upstream answer whose body has not been read yet."""

    head: UpstreamResponse
    reason: str

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def discard(self) -> None: ...

    def close(self) -> None: ...

    def switched(self) -> TunnelEnd | None:
        """The upstream connection after a 101 answer to an `Upgrade` request, else None."""
        ...


class Upstream(Protocol):
    async def send(
        self,
        request: OutboundRequest,
        body: UpstreamBody,
        tls: ssl.SSLContext | None,
        *,
        upgrade: bool = False,
    ) -> UpstreamReply:
        """Send `request`; `upgrade`: it asks to switch protocols (its connection is never
        reused, and a 101 answer is the reply's `switched()`)."""
        ...

    async def close(self) -> None: ...


class UpstreamBroken(Exception):
    """The upstream failed after the response head was relayed; the client connection is cut."""
