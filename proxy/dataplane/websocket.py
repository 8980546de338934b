"""WebSocket (RFC 6455) through the data plane: the handshake signed like any request, then a
byte tunnel (docs/request-path.md#websocket).

A client's handshake — `GET`, HTTP/1.1, `Connection: upgrade`, an `Upgrade` naming `websocket`
— goes through the connection's credential chain as any request does (API key, bearer, OAuth
2.0 with its 401→refresh→replay, HMAC over the handshake, ...), to the connection's upstream
only, with `Connection: Upgrade` and `Upgrade: websocket` put back after the hop-by-hop headers
were dropped. The upstream's `101 Switching Protocols` goes back to the client with its headers
(`Sec-WebSocket-Accept`, `-Protocol`, `-Extensions`) filtered as any response's, and from there
bytes are relayed both ways by `http1.tunnel.Tunnel`, never parsed, until either side closes or
nothing moves for `timeouts.websocketIdle`. Any other answer is relayed as a plain response.

Any other `Upgrade` (h2c, a `POST` or HTTP/1.0 asking for `websocket`) is ignored, as RFC 9110
§7.8 lets a server do: the request is served as plain HTTP/1.1, `Upgrade` dropped.
"""

from __future__ import annotations

import asyncio
import functools

from .. import metrics
from ..connections.compiled import CompiledConnection
from ..errors import UpstreamBadResponse
from ..http1.inbound import InboundRequest
from ..http1.tunnel import SHUTDOWN, Tunnel
from ..http1.upstream import UpstreamReply
from ..messages import OutboundRequest
from .relay import relay, response_head

PROTOCOL = b"websocket"
UPGRADE_HEADERS = (("Connection", "Upgrade"), ("Upgrade", "websocket"))


def is_handshake(request: InboundRequest) -> bool:
    """`request` opens a WebSocket (RFC 6455 §4.1); the server flagged its `Upgrade` already."""
    if not request.upgrade or request.method != "GET" or request.version != "1.1":
        return False
    if request.has_body:
        return False
    return any(_names_websocket(value) for value in request.header_values("Upgrade"))


def _names_websocket(value: str) -> bool:
    # `Upgrade: websocket` or a list holding it; a protocol may carry a version (`name/1`).
    return any(token.partition("/")[0].strip().lower() == "websocket" for token in value.split(","))


def upgrade_request(request: OutboundRequest) -> OutboundRequest:
    """The handshake as it goes upstream: asking for `websocket` only (the hop-by-hop
    `Connection` and `Upgrade` the client sent were dropped with the others)."""
    return OutboundRequest(
        request.method,
        request.origin,
        request.path,
        request.query,
        (*request.headers, *UPGRADE_HEADERS),
        request.body,
    )


async def relay_handshake(
    request: InboundRequest,
    connection: CompiledConnection,
    reply: UpstreamReply,
    idle_timeout: float,
) -> None:
    """Answer the client's handshake with `reply`: on a 101, relay the WebSocket until it ends;
    any other answer as a plain response."""
    head = reply.head
    if head.status != 101:
        await relay(request, connection, reply)
        return
    request.upstream_status = 101
    try:
        if not _switches_to_websocket(head.raw):
            raise UpstreamBadResponse(
                "101 to a protocol other than websocket", proxy_status="http_protocol_error"
            )
        upstream = reply.switched()
        assert upstream is not None  # (a 101 reaches here only as an answer to an `Upgrade`)
    except BaseException:
        reply.close()
        raise
    block, _ = response_head(request, connection, head.raw)
    request.switch_protocols(reply.reason or "Switching Protocols", block, PROTOCOL)
    name = connection.name
    tunnel = Tunnel(
        asyncio.get_running_loop(),
        idle_timeout,
        functools.partial(metrics.websocket_relayed, name),
    )
    metrics.websocket_opened(name)
    reason = SHUTDOWN
    try:
        tunnel.join(request, upstream)
        reason = await asyncio.shield(tunnel.closed)
    finally:
        tunnel.close(reason)  # (when the task was cancelled: the proxy is stopping)
        request.body_bytes = tunnel.to_client
        request.finished = True
        metrics.websocket_closed(name, tunnel.closed.result())


def _switches_to_websocket(raw: tuple[tuple[bytes, bytes], ...]) -> bool:
    # (llhttp let a 101 through only with `Connection: upgrade` and an `Upgrade`.)
    named = [value for key, value in raw if key.lower() == b"upgrade"]
    return len(named) == 1 and _names_websocket(named[0].decode("latin-1"))
