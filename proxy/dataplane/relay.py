"""The upstream's answer on its way back to the client: its head filtered and rewritten, its
body whole in one write when it is all here, else streamed with back-pressure.

`response_head` is shared by both ways a request is served: the coroutine path (`relay`, used by
`forward.py`) and the callback-driven lean round trip (`lean_round_trip.py`), so both send the same
bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..connections.compiled import CompiledConnection
from ..connections.headers import HOP_BY_HOP_RAW, raw_connection_tokens
from ..connections.urls import rewrite_link, rewrite_location
from ..http1.inbound import InboundRequest
from ..http1.upstream import UpstreamBroken, UpstreamReply

RESPONSE_URL_HEADERS = {
    b"location": rewrite_location,
    b"content-location": rewrite_location,
    b"link": rewrite_link,
}


async def relay(
    request: InboundRequest, connection: CompiledConnection, reply: UpstreamReply
) -> None:
    """Send `reply` to the client of `request`; the reply is closed unless read to its end."""
    completed = False
    try:
        head = reply.head
        request.upstream_status = head.status
        block, has_length = response_head(request, connection, head.raw)
        take_whole = getattr(reply, "take_whole_body", None)
        whole = take_whole() if take_whole is not None else None
        if whole is not None:
            # The whole body is here already (most small responses): head and body in one
            # write, without the chunk loop.
            request.respond_block(head.status, reply.reason, block, has_length, whole)
            completed = True
            return
        request.start_block(head.status, reply.reason, block, has_length)
        try:
            async for chunk in reply.iter_chunks():
                await request.write(chunk)
        except UpstreamBroken:
            # Headers are gone already; cut the client connection so the truncation shows
            # (a clean end of message would pass a partial body off as complete).
            request.upstream_broken = True
            request.abort()
            return
        except ConnectionResetError:
            # The client went away mid-response: not a proxy failure, nothing left to tell it.
            request.client_gone = True
            return
        completed = True
        request.finish()
    finally:
        if not completed:
            reply.close()


def response_head(
    request: InboundRequest, connection: CompiledConnection, raw: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes, bool]:
    """The upstream's header lines minus hop-by-hop ones and those its `Connection` names
    (RFC 9110 §7.6.1), with the docs/request-path.md URL rewrite applied, and whether they hold
    a `Content-Length`.

    Fields pass as the bytes received; only the URL headers are decoded, and only when the
    connection rewrites them."""
    rewrite_urls = connection.rewrite_response_urls
    prefix = None
    has_length = False
    named: frozenset[bytes] = frozenset()  # what `Connection` fields name: hop-by-hop too
    parts: list[bytes] = []
    for key, value in raw:
        low = key.lower()
        if low in HOP_BY_HOP_RAW:
            if low == b"connection":
                named |= raw_connection_tokens(value)
            continue
        if low == b"content-length":
            has_length = True
        elif rewrite_urls:
            rewrite = RESPONSE_URL_HEADERS.get(low)
            if rewrite is not None:
                if prefix is None:  # built only when needed
                    prefix = f"{request.scheme}://{request.host}{connection.route}"
                text = rewrite(value.decode("latin-1"), connection.base, prefix)
                try:
                    value = text.encode("latin-1")
                except UnicodeEncodeError:  # a client's UTF-8 Host in the prefix
                    value = text.encode("utf-8")
        parts += (key, b": ", value, b"\r\n")
    if named:
        # Rare: `Connection` names more than keep-alive/close. Once more, without those.
        kept = [(k, v) for k, v in raw if k.lower() not in named and k.lower() != b"connection"]
        return response_head(request, connection, kept)
    return b"".join(parts), has_length
