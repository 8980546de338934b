"""One inbound request as the data plane's handler sees it, and the way its answer goes out.

`InboundRequest` is built by the server (`server.py`) when a request head is complete. It holds
the request exactly as it arrived — method, raw request-target, header pairs in order and case
(latin-1 text: bytes map 1:1) — its body as a `BodyReader`, and the response side: the handler
answers with `respond()` (a whole response in one write) or `start()` / `write()` / `finish()`
(streamed). The framing of the answer (Content-Length, chunked, or close-delimited for an
HTTP/1.0 client) is decided here from the status, the method and the headers, by the rules in
`wire.py` that the upstream client follows too.

An answer may also switch protocols (`switch_protocols`, a WebSocket's 101): the connection
is then a tunnel's end (`hand_over`, `tunnel.py`).

A handler is either a coroutine, run in a task by the server (done when it returns), or
callback-driven (`lean_round_trip.py`): it then says when it is done with `complete()`, may go on
in a task with `continue_in()`, and sets `on_cancel` to hear that the client went away.

It also carries the per-request facts the access log reports (`status`, `body_bytes`,
`connection`, ...): the handler fills them in, the data plane logs them once per request.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ProxyError
from .tunnel import TunnelHalf
from .wire import (
    CHUNKED_END,
    chunk_frame,
    encode_response_head,
    header_block,
    response_has_body,
)

if TYPE_CHECKING:
    from .pipe import Pipe

_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
# X-Request-Id values taken from the client as they are: a short token, nothing a log line or a
# header could be forged with (docs/operations.md: otherwise the proxy makes its own).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


class ServedBy(Protocol):
    """What the access log and the metrics read of the connection that served a request (the
    data plane's compiled connection; this package knows nothing more of it)."""

    @property
    def name(self) -> str: ...

    @property
    def route(self) -> str: ...


class Downstream(Protocol):
    """What a request needs of its client connection (implemented by `server.ServerConnection`)."""

    def send(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def want_body(self, body: BodyReader) -> None: ...

    def body_consumed(self, size: int) -> None: ...

    def abort(self) -> None: ...

    def request_done(self, request: InboundRequest) -> None: ...

    def run_task(self, request: InboundRequest, work: Coroutine[Any, Any, None]) -> None: ...

    def hand_over(self, half: TunnelHalf) -> tuple[asyncio.Transport, bytes]: ...
    def intercept(
        self, request: InboundRequest, context: ssl.SSLContext, tunnel: object
    ) -> None: ...

    async def splice(self, request: InboundRequest, pipe: Pipe) -> str: ...


class BodyReader:
    """The request body as it arrives: fed by the parser, read by the handler.

    Flow control is the connection's: it pauses reading from the socket while too many body bytes
    wait here (`Downstream.body_consumed` tells it when they are taken)."""

    __slots__ = (
        "_downstream",
        "_chunks",
        "_eof",
        "_waiter",
        "_failed",
        "received",
        "_asked",
    )

    # No reference back to its request: the two would make a reference cycle, left for the
    # garbage collector by every request (its passes were the c=1 p99, bench/run.py).
    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream
        self._chunks: deque[bytes] = deque()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._failed: BaseException | None = None
        self._asked = False
        self.received = 0

    @property
    def complete(self) -> bool:
        """All of the body arrived (it may not all have been read)."""
        return self._eof

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.received += len(data)
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The client went away (or sent a malformed body) before the end of the body."""
        self._failed = error
        self._wake()

    def pending(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def take_whole(self) -> bytes | None:
        """The whole body, when all of it has arrived and none of it was read; else None."""
        if not self._eof or self._asked or self._failed is not None:
            return None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._asked = True  # read: `readany` now finds the end
        self._downstream.body_consumed(len(data))
        return data

    async def readany(self) -> bytes:
        """The next bytes of the body (all that are buffered, joined); b"" at its end."""
        while not self._chunks:
            if self._eof:
                return b""
            if self._failed is not None:
                raise self._failed
            if not self._asked:
                self._asked = True
                self._downstream.want_body(self)  # `Expect: 100-continue` is answered now
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._downstream.body_consumed(len(data))
        return data

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class InboundRequest:
    """A client's request and its response (one per request; pipelined ones wait their turn)."""

    __slots__ = (
        "method",
        "target",
        "raw_headers",
        "_headers",
        "version",
        "keep_alive",
        "peer",
        "body",
        "has_body",
        "chunked",
        "content_length",
        "expect_continue",
        "_downstream",
        "_chunked",
        "_request_id",
        "started",
        "finished",
        "status",
        "body_bytes",
        "connection",
        "client",
        "upstream_broken",
        "client_gone",
        "cut_by_shutdown",
        "error_code",
        "error_type",
        "upstream_status",
        "head_at",
        "rejection",
        "on_cancel",
        "upgrade",
        "tunnel",
    )

    def __init__(
        self,
        downstream: Downstream,
        method: str,
        target: str,
        raw_headers: list[tuple[bytes, bytes]],
        version: str,
        keep_alive: bool,
        peer: str,
        has_body: bool,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.target = target  # the raw request-target, byte for byte (latin-1 text)
        self.raw_headers = raw_headers  # as received: names and values, bytes
        self._headers: list[tuple[str, str]] | None = None
        self.version = version  # "1.1" or "1.0"
        self.keep_alive = keep_alive
        self.peer = peer
        self.has_body = has_body
        self.chunked = False  # the body comes in chunked coding
        self.content_length: int | None = None  # as the client declared it
        self.expect_continue = expect_continue
        self.body = BodyReader(downstream)
        self._downstream = downstream
        self._chunked = False
        self._request_id: str | None = None
        self.started = False  # the response head is out
        self.finished = False
        # Facts for the access log.
        self.status = 0
        self.body_bytes = 0  # response body bytes sent (not counting framing)
        self.connection: ServedBy | None = None
        self.client: str | None = None  # the client's name (`clients`), never its key
        self.upstream_broken = False
        self.client_gone = False
        # `timeouts.shutdownGrace` ran out before it finished: the proxy cut it, not the client.
        self.cut_by_shutdown = False
        self.error_code: str | None = None
        self.error_type: str | None = None  # its RFC 9209 Proxy-Status type (metrics)
        self.upstream_status: int | None = None  # the upstream's status, when one answered
        self.head_at = 0.0  # time.monotonic() when the response head went out (metrics)
        # Set when the server refused the request itself (a malformed head, a limit): the
        # handler answers with this error, in turn, and the connection closes.
        self.rejection: ProxyError | None = None
        # A callback-driven handler's way to hear that the client went away (the server
        # cancels a task-run handler instead).
        self.on_cancel: Callable[[], None] | None = None
        # It asks to switch protocols (`Connection: upgrade` and `Upgrade`, RFC 9110 §7.8):
        # the connection carries no request after it, whatever the answer.
        self.upgrade = False
        # Inside an intercepted CONNECT tunnel: what the data plane set up for it
        # (`ServerConnection.intercept`); None for every other request.
        self.tunnel: object | None = None

    # -- the request ----------------------------------------------------------------------------

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The header pairs in order and case, as latin-1 text (decoded on first use: the lean
        path in `lean.py` forwards the bytes without ever decoding them)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers
            ]
        return headers

    @property
    def path(self) -> str:
        """The raw path (still percent-encoded), without the query."""
        return self.target.partition("?")[0]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive)."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    @property
    def host(self) -> str:
        return self.header("Host") or ""

    @property
    def scheme(self) -> str:
        return "http" if self.tunnel is None else "https"

    @property
    def request_id(self) -> str:
        """The client's `X-Request-Id` when it is a sane token, else one made here (once)."""
        if self._request_id is None:
            # Found among the raw bytes: the lean path never decodes the request's headers.
            given = next(
                (v for k, v in self.raw_headers if len(k) == 12 and k.lower() == b"x-request-id"),
                None,
            )
            text = given.decode("latin-1") if given is not None else None
            if text is not None and _SANE_REQUEST_ID.fullmatch(text):
                self._request_id = text
            else:
                # An id for correlating lines, not a secret: the module's generator (reseeded in
                # each forked worker) at a tenth of the cost of a getrandom(2) per request.
                self._request_id = f"{random.getrandbits(96):024x}"
        return self._request_id

    # -- a callback-driven handler ---------------------------------------------------------------

    def complete(self) -> None:
        """The handler is done with this request (a coroutine handler is done when it returns)."""
        self.on_cancel = None
        self._downstream.request_done(self)

    def continue_in(self, work: Coroutine[Any, Any, None]) -> None:
        """Serve the rest of this request in a task running `work` (done when it returns)."""
        self.on_cancel = None
        self._downstream.run_task(self, work)

    # -- CONNECT (forward-proxy mode) -------------------------------------------------------------

    def intercept(self, context: ssl.SSLContext, tunnel: object) -> None:
        """Answer this CONNECT with 200 and terminate TLS with `context`; the connection's next
        requests come from inside the tunnel, carrying `tunnel` (`server.ServerConnection`)."""
        self._downstream.intercept(self, context, tunnel)

    async def splice(self, pipe: Pipe) -> str:
        """Answer this CONNECT with 200 and relay bytes blind to `pipe` until either closes
        (the reason it ended: `tunnel.CLIENT_CLOSED`, ...)."""
        return await self._downstream.splice(self, pipe)

    # -- the response ---------------------------------------------------------------------------

    def respond(
        self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes = b""
    ) -> None:
        """The whole response in one write; `Content-Length` is added unless given (or no body
        is allowed, as for HEAD, 1xx, 204 and 304)."""
        self.respond_block(status, reason, header_block(headers), _has_length(headers), body)

    def respond_block(
        self, status: int, reason: str, block: bytes, has_length: bool, body: bytes = b""
    ) -> None:
        """`respond` with the header lines encoded already (`wire.encode_response_head`)."""
        allowed = response_has_body(self.method, status)
        if allowed and not has_length:
            block += b"Content-Length: %d\r\n" % len(body)
        head = encode_response_head(
            self.version, status, reason, block, None, self._connection_header()
        )
        self.started = self.finished = True
        self.status = status
        self.head_at = time.monotonic()
        if allowed and body:
            self.body_bytes = len(body)
            self._downstream.send(head + body)
        else:
            self._downstream.send(head)

    def start(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        """Send the head of a streamed response: the upstream's `Content-Length` when it gave
        one, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0)."""
        self.start_block(status, reason, header_block(headers), _has_length(headers))

    def start_block(self, status: int, reason: str, block: bytes, has_length: bool) -> None:
        """`start` with the header lines encoded already (`wire.encode_response_head`)."""
        extra = None
        if response_has_body(self.method, status) and not has_length:
            if self.version == "1.1":
                self._chunked = True
                extra = _CHUNKED_LINE
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        head = encode_response_head(
            self.version, status, reason, block, extra, self._connection_header()
        )
        self.started = True
        self.status = status
        self.head_at = time.monotonic()
        self._downstream.send(head)

    async def write(self, data: bytes) -> None:
        """Body bytes; waits while the client's socket buffer is full (back-pressure)."""
        if not data:
            return
        self.body_bytes += len(data)
        if self._chunked:
            self._downstream.send(chunk_frame(len(data)) + data + b"\r\n")
        else:
            self._downstream.send(data)
        await self._downstream.drain()

    def finish(self) -> None:
        if self._chunked:
            self._downstream.send(CHUNKED_END)
        self.finished = True

    def switch_protocols(self, reason: str, block: bytes, protocol: bytes) -> None:
        """Send `101 Switching Protocols` to `protocol` (an `Upgrade` request's answer, RFC 9110
        §15.2.2) with the header lines of `block`; the connection is then `hand_over`'s."""
        head = encode_response_head(
            self.version,
            101,
            reason,
            block,
            b"Connection: Upgrade\r\nUpgrade: " + protocol + b"\r\n",
            None,
        )
        self.started = True
        self.status = 101
        self.head_at = time.monotonic()
        self._downstream.send(head)

    def hand_over(self, half: TunnelHalf) -> tuple[asyncio.Transport, bytes]:
        """The client connection, after `switch_protocols`, as a tunnel's end (tunnel.py)."""
        return self._downstream.hand_over(half)

    def abort(self) -> None:
        """Cut the client connection: a truncated body must not pass for a complete one."""
        self.keep_alive = False
        self._downstream.abort()

    def _connection_header(self) -> bytes | None:
        if not self.keep_alive:
            return b"Connection: close\r\n"
        if self.version == "1.0":
            return b"Connection: keep-alive\r\n"
        return None


def _has_length(headers: list[tuple[str, str]]) -> bool:
    for key, _ in headers:
        if len(key) == 14 and key.lower() == "content-length":
            return True
    return False
