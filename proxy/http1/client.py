"""`Http1Upstream`: the data plane's upstream hop on our own HTTP/1.1 client (docs/request-path.md).

It implements the `Upstream` protocol of `upstream.py`: a faithful hop, not a browser. The
request goes out as built (no `User-Agent`, no `Accept-Encoding`, no cookies, no redirects
followed, no decompression), and network failures map to RFC 9209 error types
(docs/errors.md).

Retry: a request on a *reused* connection that fails before any byte of the response arrived
most likely met an idle connection the upstream had just closed. It is sent once more on a
fresh connection only when that is safe: the method is idempotent (RFC 9110 §9.2.2) and the
body is still in hand (none, or buffered). Anything else gets the 502.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Coroutine
from typing import Any

from ..errors import ProxyError
from ..messages import OutboundRequest, UpstreamResponse
from .connection import DEFAULT_MAX_HEAD, ConnectionLost, H1Connection, terminated
from .pool import Pool
from .tunnel import TunnelEnd
from .upstream import UpstreamBody, UpstreamBroken, UpstreamReply
from .wire import (
    CHUNKED_END,
    IDEMPOTENT_METHODS,
    Framing,
    Origin,
    chunk_frame,
    encode_head,
    parse_origin,
    plan_framing,
)

log = logging.getLogger("signing_proxy.upstream")

# `_send`'s tries: is each on a new connection? A pooled one first, then (see above) a new one.
_REUSE_THEN_FRESH = (False, True)
_FRESH = (True,)


class BodyStreamFailed(ProxyError):
    """The client's request body could not be read while it was being sent upstream."""

    status = 502

    def __init__(self) -> None:
        super().__init__(
            "upstream_unavailable",
            "the request body could not be forwarded",
            proxy_status="destination_unavailable",
            details="request body stream failed",
        )


class EncodedRequest:
    """One request as it goes on the wire, passed down the send path whole (not as nine
    arguments): where to (`origin`, and `tls`: the pool's context for it, `Pool.tls_for`),
    its `method` and encoded `head`, and its body, whole in `data` or streamed from `stream`
    (framed as `framing` says, `length` bytes when known; unused for a whole body); `upgrade`:
    it asks to switch protocols."""

    __slots__ = (
        "origin",
        "tls",
        "method",
        "head",
        "data",
        "stream",
        "framing",
        "length",
        "upgrade",
    )

    def __init__(
        self,
        origin: Origin,
        tls: ssl.SSLContext | None,
        method: str,
        head: bytes,
        data: bytes | None = None,
        stream: AsyncIterable[bytes] | None = None,
        framing: Framing = Framing.NONE,
        length: int | None = None,
        upgrade: bool = False,
    ) -> None:
        self.origin = origin
        self.tls = tls
        self.method = method
        self.head = head
        self.data = data
        self.stream = stream
        self.framing = framing
        self.length = length
        self.upgrade = upgrade


class Http1Reply:
    """An upstream answer whose body is read from the connection as the consumer asks for it."""

    __slots__ = ("head", "reason", "_upstream", "_origin", "_tls", "_h1", "_writer")

    def __init__(
        self,
        upstream: Http1Upstream,
        origin: Origin,
        tls: ssl.SSLContext | None,
        h1: H1Connection,
        head: UpstreamResponse,
        writer: asyncio.Task[None] | None,
    ) -> None:
        self.head = head
        self.reason = h1.reason
        self._upstream = upstream
        self._origin = origin
        self._tls = tls
        self._h1: H1Connection | None = h1
        self._writer = writer

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        h1 = self._h1
        if h1 is None:
            return
        timeout = self._upstream.read_timeout
        try:
            while chunk := await h1.read(timeout):
                yield chunk
        except ProxyError as exc:  # the head is out already: only a cut connection can tell
            raise UpstreamBroken(exc.message) from None
        self._release()

    def take_whole_body(self) -> bytes | None:
        """The whole body when all of it has arrived (the connection goes back to the pool
        at once), else None: the relay then sends head, body and end in one write."""
        h1 = self._h1
        if h1 is None or not h1.done:
            return None
        body = h1.take_buffered()
        self._release()
        return body

    async def discard(self) -> None:
        # A superseded answer (a 401 before a retry): keep the connection only when the whole
        # body is already here; otherwise reading it could take long, so close instead.
        h1 = self._h1
        if h1 is not None and not h1.done:
            h1.abort()
        self._release()

    def close(self) -> None:
        h1 = self._h1
        if h1 is not None and not h1.done:
            h1.abort()
        self._release()

    def switched(self) -> TunnelEnd | None:
        """After a 101 to an `Upgrade` request: the connection, out of the pool for good, for
        a tunnel to take over; else None."""
        h1 = self._h1
        if h1 is None or not h1.upgraded:
            return None
        self._h1 = None
        self._upstream.pool.hand_off(h1)
        return h1

    def _release(self) -> None:
        h1, self._h1 = self._h1, None
        if h1 is None:
            return
        writer = self._writer
        if writer is not None and not writer.done():
            # The upstream answered before taking the whole request body: stop sending, and the
            # connection cannot be reused (request_sent stays False).
            writer.cancel()
        self._upstream.pool.release(self._origin, self._tls, h1)


class Http1Upstream:
    """The `Upstream` of the data plane."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        idle_timeout: float = 15.0,
        max_head_bytes: int = DEFAULT_MAX_HEAD,
    ) -> None:
        self.read_timeout = read_timeout
        self.pool = Pool(
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
            max_head_bytes=max_head_bytes,
        )

    def configure(
        self, *, connect_timeout: float, read_timeout: float, max_head_bytes: int
    ) -> None:
        """New timeouts and head limit (a config reload): for every round trip from now on, on
        pooled connections too. The pool itself, with its idle connections, stays."""
        self.read_timeout = read_timeout
        self.pool.configure(connect_timeout=connect_timeout, max_head_bytes=max_head_bytes)

    async def send(
        self,
        request: OutboundRequest,
        body: UpstreamBody,
        tls: ssl.SSLContext | None,
        *,
        upgrade: bool = False,
    ) -> UpstreamReply:
        origin = parse_origin(request.origin)
        context = self.pool.tls_for(origin, tls)
        method = request.method
        data: bytes | None = None
        stream: AsyncIterable[bytes] | None = None
        if isinstance(body, bytes | bytearray | memoryview):
            data = body if type(body) is bytes else bytes(body)
        elif body is not None:
            stream = body
        framing, length, extra = plan_framing(
            request.headers, None if data is None else len(data), stream is not None
        )
        head = encode_head(method, request.target, origin.authority, request.headers, extra)
        return await self._send(
            EncodedRequest(origin, context, method, head, data, stream, framing, length, upgrade)
        )

    def send_encoded(
        self, request: EncodedRequest, *, fresh: bool = False
    ) -> Coroutine[Any, Any, UpstreamReply]:
        """Send a request whose head is already encoded (the lean path, `lean.py`); `fresh`: on
        a new connection only (the retry of `lean_round_trip.py`, whose pooled one failed).

        A plain function handing back `_send`'s coroutine: one coroutine layer fewer between
        the inbound request and the upstream write."""
        return self._send(request, _FRESH if fresh else _REUSE_THEN_FRESH)

    async def _send(
        self, request: EncodedRequest, tries: tuple[bool, ...] = _REUSE_THEN_FRESH
    ) -> UpstreamReply:
        origin, context = request.origin, request.tls
        replayable = request.stream is None and request.method in IDEMPOTENT_METHODS
        for fresh in tries:
            h1 = None if fresh else self.pool.take_idle(origin, context)
            reused = h1 is not None
            if h1 is None:
                h1 = await self.pool.connect(origin, context)
            try:
                return await self._round_trip(request, h1)
            except ConnectionLost:
                if not (reused and replayable):
                    break
                # The idle connection had been closed under us: one more try, on a new one.
        raise terminated()

    async def _round_trip(self, request: EncodedRequest, h1: H1Connection) -> Http1Reply:
        h1.begin(request.method, upgrade=request.upgrade)
        writer: asyncio.Task[None] | None = None
        stream = request.stream
        try:
            if stream is None:
                h1.send_whole(request.head, request.data)
                response = await h1.wait_head(self.read_timeout)
            else:
                h1.write(request.head)
                writer = asyncio.create_task(
                    _send_stream(h1, stream, request.framing, request.length)
                )
                writer.add_done_callback(_observe)
                response = await _wait_head_while_sending(h1, writer, self.read_timeout)
        except BaseException:
            if writer is not None and not writer.done():
                writer.cancel()
            self.pool.discard(h1)
            raise
        return Http1Reply(self, request.origin, request.tls, h1, response, writer)

    async def close(self) -> None:
        await self.pool.close()


def _observe(task: asyncio.Future[Any]) -> None:
    # A helper task's failure is reported through the response side (or the client is gone);
    # retrieving it here keeps asyncio from logging it as never retrieved.
    if not task.cancelled():
        task.exception()


async def _wait_head_while_sending(
    h1: H1Connection, writer: asyncio.Task[None], read_timeout: float
) -> UpstreamResponse:
    """The response head of a streamed upload. The read timeout only starts once the body is
    sent (a slow client is not the upstream's fault); an early answer (413, 401) is taken as
    soon as it comes."""
    head_wait = asyncio.ensure_future(h1.wait_head(None))
    head_wait.add_done_callback(_observe)  # it may fail after the writer's failure was raised
    try:
        await asyncio.wait((head_wait, writer), return_when=asyncio.FIRST_COMPLETED)
        if writer.done() and not writer.cancelled():
            failure = writer.exception()
            if isinstance(failure, ProxyError):
                raise failure
        if head_wait.done():
            return head_wait.result()
    finally:
        if not head_wait.done():
            head_wait.cancel()
    return await h1.wait_head(read_timeout)


async def _send_stream(
    h1: H1Connection, stream: AsyncIterable[bytes], framing: Framing, length: int | None
) -> None:
    """Send a streamed body, waiting on the socket's write buffer between chunks."""
    sent = 0
    iterator = aiter(stream)
    while True:
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            break
        except asyncio.CancelledError:
            raise
        except ProxyError as refused:
            # The inbound server refused the rest of the body (malformed, too slow): its error
            # is the client's answer. The upstream must not take a truncated body for a whole.
            h1.abort()
            log.warning(
                "upstream round trip aborted after %d body bytes: "
                "the client's body was refused (%s)",
                sent,
                refused.code,
                extra={"event": "upstream_aborted", "error": refused.code},
            )
            raise
        except Exception:
            h1.abort()  # the upstream must not take a truncated body for a whole one
            raise BodyStreamFailed() from None
        if not chunk:
            continue
        sent += len(chunk)
        if framing is Framing.CHUNKED:
            h1.writelines([chunk_frame(len(chunk)), chunk, b"\r\n"])
        else:
            if length is not None and sent > length:
                h1.abort()
                raise BodyStreamFailed()
            h1.write(chunk)
        try:
            await h1.drain()
        except ConnectionError:
            return  # the upstream went away; the response side reports it
    if framing is Framing.CHUNKED:
        h1.write(CHUNKED_END)
    elif length is not None and sent != length:
        h1.abort()
        raise BodyStreamFailed()
    h1.request_sent = True
