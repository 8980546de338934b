"""The data plane's inbound HTTP/1.1 server (RFC 9112) on asyncio protocols and httptools (llhttp).

`HttpServer` owns the listening sockets, the set of client connections, their limits and the
graceful drain; `ServerConnection` is one client connection:

- Parsing is llhttp's, strict (no leniency flags): it refuses Content-Length together with
  Transfer-Encoding, a bad or repeated Content-Length, a transfer coding that does not end in
  chunked, bare LF, control bytes in names and values, bad chunk sizes. On top of it this module
  refuses what llhttp lets through: versions other than HTTP/1.0 and 1.1, `CONNECT`, an HTTP/1.1
  request without exactly one `Host` (RFC 9112 §3.2), an `Expect` other than `100-continue`.
- Limits: a request head of more than `max_head_bytes` or `max_headers` fields gets 431, at once
  (llhttp buffers a field value whole, so the count is of bytes received, not parsed); a head
  must be complete within `head_timeout` (408 when bytes arrived, else a silent close); an idle
  keep-alive connection is closed after `idle_timeout`; beyond `max_connections` a new
  connection gets 503 and is closed. The timeouts are checked by one sweep for all connections,
  so no timer is allocated per request.
- A request body must make progress: each `body_timeout` window brings at least
  `BODY_PROGRESS_BYTES` of its data (or its end), else the request ends with 408 (a byte now and
  then would otherwise hold a connection slot, and an upstream connection, forever). Trailer
  fields (RFC 9112 §7.1.2) are bounded like a head: bytes, field count, and `head_timeout`
  from the last chunk on. A body refused while its request still waits for its handler is
  answered in its place (nothing goes upstream); one refused while its handler runs fails the
  handler's read of the body with the error, which the handler answers once.
- Requests run one at a time per connection, in order: a pipelined request waits its turn with
  its body buffered, and reading pauses while too much waits (flow control, `flow_control.py`,
  as for a body the handler reads slower than the client sends it). Writes wait while the
  socket's buffer is full.
- A request's handler starts once the bytes just received are parsed (never from inside
  llhttp's callbacks), so a bodyless request is whole when its handler sees it. The dispatcher
  hands back a coroutine, run in a task, or takes the request on by callbacks (`InboundRequest.
  complete`) with no task at all.
- A refused request is answered in turn, by the handler (`Dispatcher.dispatch` sees
  `request.rejection`), in the proxy's own JSON voice; no raw request byte is ever logged here.
- A client that goes away cancels its request's task at once, so the upstream round trip stops.
- An `Upgrade` request is the connection's last: nothing after its head is parsed. What the
  client sends behind it is held (reading pauses past `HIGH_WATER`) until the handler either
  answers it like any request, or switches protocols and hands the connection to a tunnel
  (`hand_over`, `tunnel.py`), which then gets every byte read, the held ones first.
- After a response whose request body was not read to its end, the connection is closed, after a
  short linger that lets the client read the response (instead of a reset that could lose it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools

from ..errors import InvalidRequest, ProxyError
from .flow_control import FlowControl
from .inbound import BodyReader, InboundRequest
from .pipe import Pipe
from .tls import ServerTLS, TLSClosed
from .tunnel import CLIENT_CLOSED, SHUTDOWN, Tunnel, TunnelHalf

MAX_PIPELINED = 16  # requests waiting their turn that pause reading
LINGER = 2.0  # seconds a closing connection keeps reading (and dropping) what the client sends
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# What a `body_timeout` window must bring of a request body (or its end): a client dripping a
# byte now and then makes no real progress (Apache's mod_reqtimeout `MinRate` has the same aim).
BODY_PROGRESS_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The inbound limits and timeouts (proxy.yaml `limits` and `timeouts`)."""

    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_connections: int = 4096
    head_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 30.0


class Dispatcher(Protocol):
    """The application: answers every request (a refused one too: `request.rejection`)."""

    def dispatch(self, request: InboundRequest) -> Coroutine[Any, Any, None] | None:
        """The coroutine that serves `request` (run in a task), or None when the dispatcher
        serves it by callbacks and calls `request.complete()` when done (perhaps already)."""
        ...


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in `_rejection`."""


def bad_request(details: str) -> ProxyError:
    return InvalidRequest("bad_request", "the request is malformed", details=details)


def headers_too_large(limit: int) -> ProxyError:
    return InvalidRequest(
        "headers_too_large",
        f"the request head exceeds the limit of {limit} bytes or the header count limit",
        status=431,
    )


def trailers_too_large(limit: int) -> ProxyError:
    return InvalidRequest(
        "headers_too_large",
        f"the request trailers exceed the limit of {limit} bytes or the header count limit",
        status=431,
    )


def request_timeout(what: str) -> ProxyError:
    return ProxyError(
        "request_timeout",
        f"the request {what} did not arrive in time",
        status=408,
        proxy_status="proxy_internal_response",
    )


class HttpServer:
    """Client connections of the data plane, with their limits, sweep and drain."""

    def __init__(self, dispatcher: Dispatcher, limits: ServerLimits) -> None:
        self.dispatcher = dispatcher
        self.limits = limits
        self.connections: set[ServerConnection] = set()
        self.draining = False
        self._listeners: list[asyncio.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle: asyncio.Event | None = None
        # The sweep runs often enough for the shorter timeout to be kept to within a quarter.
        shortest = min(limits.head_timeout, limits.idle_timeout, limits.body_timeout)
        self._sweep_every = max(0.05, min(1.0, shortest / 4))

    async def listen(self, address: tuple[str, int] | socket.socket) -> tuple[str, int]:
        """Start serving on `(host, port)` or an already listening socket; the bound address."""
        loop = asyncio.get_running_loop()
        if isinstance(address, socket.socket):
            server = await loop.create_server(self._connection, sock=address)
        else:
            host, port = address
            server = await loop.create_server(
                self._connection, host, port, backlog=1024, reuse_address=True
            )
        self._listeners.append(server)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._sweep_every, self._sweep, loop)
        sockname = server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def drain(self, grace: float) -> None:
        """Stop accepting; close idle connections now, busy ones after their response; after
        `grace` seconds, cut what is left."""
        self.draining = True
        for server in self._listeners:
            server.close()
        for client in list(self.connections):
            client.shutdown()
        if self.connections:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                for client in list(self.connections):
                    client.cut_by_shutdown()
        for server in self._listeners:
            await server.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    @property
    def serves_connect(self) -> bool:
        """CONNECT goes to the dispatcher (forward-proxy mode) rather than a 405 here."""
        return bool(getattr(self.dispatcher, "serves_connect", False))

    def forget(self, client: ServerConnection) -> None:
        self.connections.discard(client)
        if self._idle is not None and not self.connections:
            self._idle.set()

    def _connection(self) -> ServerConnection:
        return ServerConnection(self)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for client in list(self.connections):
            deadline = client.deadline
            if deadline and now >= deadline:
                client.timed_out()
        self._sweeper = loop.call_later(self._sweep_every, self._sweep, loop)


class ServerConnection(asyncio.Protocol):
    """One client connection: parse, queue, run and answer its requests in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.closed = False
        self.deadline = 0.0  # loop time when the current wait times out (0: none)
        self._idle = False  # between requests, waiting for the next (keep-alive)
        self._closing = False  # close after the current response
        self._linger = False  # closing: drop what still arrives
        self._parser = httptools.HttpRequestParser(self)
        self._parser_dead = False  # after a refused or upgraded request, nothing more is parsed
        # The request head being parsed.
        self._in_head = True
        self._head_pending = 0  # bytes received since the last head completed (a bound, see above)
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._content_length: int | None = None
        self._chunked = False
        self._hosts = 0
        self._expect: str | None = None
        self._rejection: ProxyError | None = None
        # The body being received (`_receiving`): progress, and the trailer section.
        self._body_timed = False  # its `body_timeout` window runs (`deadline`)
        # Body bytes (chunk data, not framing: an endless chunk extension is no progress)
        # received in the current window.
        self._body_progress = 0
        self._chunk_opened = False  # a chunk header came, and no data or chunk end since
        self._feed_moved = False  # ... or one of those came during the current read
        self._trailer_bytes = 0  # bytes received inside the trailer section
        self._trailer_size = 0  # trailer fields parsed: their bytes and count
        self._trailer_fields = 0
        self._trailer_deadline = 0.0  # loop time the trailer section must end by (0: none yet)
        # Requests.
        self._receiving: InboundRequest | None = None  # whose body the parser is feeding
        self._current: InboundRequest | None = None  # whose handler runs
        self._task: asyncio.Task[None] | None = None
        self._queue: deque[InboundRequest] = deque()
        self._starting = False  # `_start_next` is running its loop
        self._again = False  # ... and a request done meanwhile asked for the next
        # Body bytes fed and not yet read by a handler, and the bytes held behind an `Upgrade` or
        # CONNECT head, pause reading past their high water; writes wait for the socket's buffer.
        self._flow = FlowControl()
        # After an `Upgrade` request: the bytes that follow its head, held until the upstream
        # has answered; and once it switched protocols, the tunnel they go to (tunnel.py).
        self._upgrade_tail: bytearray | None = None
        self._half: TunnelHalf | None = None
        # CONNECT (forward-proxy mode): what the requests inside an intercepted tunnel carry as
        # `InboundRequest.tunnel`; bytes received after a CONNECT head before the tunnel is
        # set up; the upstream of a blind tunnel.
        self.tunnel: object | None = None
        self._connect_pending = False
        self._early = b""
        self._tls: ServerTLS | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCPTransport is not an asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        server = self.server
        if server.draining:
            self.transport.abort()
            self.closed = True
            return
        self._flow.transport = self.transport
        server.connections.add(self)
        if len(server.connections) > self.limits.max_connections:
            error = ProxyError(
                "too_many_connections",
                "the proxy serves no more client connections now",
                status=503,
                proxy_status="proxy_internal_response",
            )
            self._refuse_now(error)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.deadline = self.loop.time() + self.limits.head_timeout

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            data = self._decrypted(data)
            if not data:
                return
        if self._parser_dead:
            # Lingering, or past a request the connection cannot continue after: dropped,
            # unless they follow an `Upgrade` request (kept for the tunnel, if there is one).
            if self._half is not None:
                self._half.received(data)
            elif self._upgrade_tail is not None:
                self._hold_upgrade_tail(data)
            elif self._connect_pending:
                self._early += data  # after a CONNECT head, while the tunnel is set up
                if self._flow.hold(len(self._early)):  # until `intercept` or `splice` takes them
                    self._stopped_reading()
            return
        if self._idle:
            self._idle = False
            self.deadline = self.loop.time() + self.limits.head_timeout
        if self._in_head:
            self._head_pending += len(data)
        self._feed_moved = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            rejection = self._rejection or bad_request("the request could not be parsed")
            self._refuse(rejection)
            return
        except httptools.HttpParserUpgrade as upgrade:
            # `Upgrade` (the request itself is queued) or CONNECT: nothing after this head is
            # parsed as HTTP/1.1 here. A CONNECT's dispatcher may go on with the bytes after it
            # (`intercept`, `splice`); else the connection closes after the answer.
            if self._rejection is not None:
                self._refuse(self._rejection)
                return
            self._parser_dead = True
            if self._connect_pending:
                offset = upgrade.args[0] if upgrade.args else len(data)
                self._early = data[offset:]
                self._start_next()
                return
            self._closing = True
            self._upgrade_tail = bytearray()
            self._hold_upgrade_tail(data[cast(int, upgrade.args[0]) :])
            self._start_next()
            return
        except httptools.HttpParserError as exc:
            # llhttp's own reason ("Invalid header token"), never the offending bytes.
            self._refuse(bad_request(str(exc) or "malformed request"))
            return
        if self._in_head and self._head_pending > self.limits.max_head_bytes:
            self._refuse(headers_too_large(self.limits.max_head_bytes))
            return
        if self._receiving is not None and self._body_progressed(len(data)):
            return
        if self._current is None and self._queue:
            self._start_next()
        if self._queue_full():
            self._pause_reading()

    def _body_progressed(self, size: int) -> bool:
        """Account a read of `size` bytes to the body being received; True when it was refused."""
        if self._chunk_opened and not self._feed_moved:
            # A whole read went by after the last chunk's header with no chunk data: it was
            # trailer bytes (llhttp buffers a field value whole, so they are counted here).
            if not self._trailer_deadline:
                # From here the rest must come as fast as a head would.
                due = self._trailer_deadline = self.loop.time() + self.limits.head_timeout
                if self._body_timed and not self._flow.reading_paused:
                    self.deadline = min(self.deadline or due, due)
            self._trailer_bytes += size
            if self._trailer_bytes > self.limits.max_head_bytes:
                self._refuse(trailers_too_large(self.limits.max_head_bytes))
                return True
        if self._body_timed and self._body_progress >= BODY_PROGRESS_BYTES:
            self._body_progress = 0
            self._start_body_window()
        return False

    def _start_body_window(self) -> None:
        deadline = self.loop.time() + self.limits.body_timeout
        if self._trailer_deadline:
            deadline = min(deadline, self._trailer_deadline)
        self.deadline = deadline

    def eof_received(self) -> bool | None:
        # A FIN cannot be told from a client that has gone: like nginx (which answers 499 to
        # an EOF while it waits on the upstream), the connection closes and the round trip in
        # flight is cancelled. A half-closing client (`nc -N`) gets no answer.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = 0.0
        self.server.forget(self)
        gone = ConnectionResetError("the client closed the connection")
        if self._receiving is not None:
            self._receiving.body.fail(gone)
        for request in self._queue:
            request.body.fail(gone)
        self._queue.clear()
        self._flow.lost(gone)
        self._flow.transport = None  # closed: nothing to pause or resume any more
        if self._half is not None:
            # A tunnel's client closing is its normal end: the tunnel ends, and its request
            # with it (not cancelled: the client did not go away in the middle of anything).
            self._half.ended()
            return
        task = self._task
        current = self._current
        if task is not None and not task.done():
            # The client went away mid-request: stop the upstream round trip at once.
            assert current is not None
            current.client_gone = True
            task.cancel()
        elif current is not None and current.on_cancel is not None:
            current.client_gone = True
            current.on_cancel()  # the same, for a request served by callbacks

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()

    # -- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = []
        self._headers = []
        self._head_size = 0
        self._content_length = None
        self._chunked = False
        self._hosts = 0
        self._expect = None
        self._chunk_opened = False
        self._trailer_bytes = self._trailer_size = self._trailer_fields = 0
        self._trailer_deadline = 0.0
        if self._idle:
            self._idle = False
            self.deadline = self.loop.time() + self.limits.head_timeout

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            # A trailer field (RFC 9112 §7.1.2): dropped, never forwarded; bounded as a head.
            self._trailer_fields += 1
            self._trailer_size += len(name) + len(value) + 4
            limits = self.limits
            if (
                self._trailer_fields > limits.max_headers
                or self._trailer_size > limits.max_head_bytes
            ):
                self._rejection = trailers_too_large(limits.max_head_bytes)
                raise _Refused
            return
        headers = self._headers
        self._head_size += len(name) + len(value) + 4
        if len(headers) >= self.limits.max_headers:
            self._rejection = headers_too_large(self.limits.max_head_bytes)
            raise _Refused
        headers.append((name, value))  # kept as bytes: decoded only when someone asks
        size = len(name)
        if size == 4 and name.lower() == b"host":
            self._hosts += 1
        elif size == 14 and name.lower() == b"content-length":
            self._content_length = int(value)  # llhttp let only digits (and one of it) through
        elif size == 17 and name.lower() == b"transfer-encoding":
            # llhttp refuses a coding list that does not end in chunked; one that does but holds
            # more (`gzip, chunked`) would reach the upstream still coded and unlabelled.
            if value.strip(b" 	").lower() != b"chunked":
                self._rejection = ProxyError(
                    "not_implemented",
                    "the only transfer coding served is chunked",
                    status=501,
                    proxy_status="proxy_internal_response",
                )
                raise _Refused
            self._chunked = True
        elif size == 6 and name.lower() == b"expect":
            self._expect = value.decode("latin-1").strip().lower()

    def on_headers_complete(self) -> None:
        parser = self._parser
        limits = self.limits
        self._in_head = False
        self._head_pending = 0
        self.deadline = 0.0
        if self._head_size > limits.max_head_bytes:
            self._rejection = headers_too_large(limits.max_head_bytes)
            raise _Refused
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._rejection = ProxyError(
                "http_version_not_supported",
                "only HTTP/1.1 and HTTP/1.0 are served",
                status=505,
                proxy_status="proxy_internal_response",
            )
            raise _Refused
        method = parser.get_method().decode("ascii")
        if method == "CONNECT" and self.server.serves_connect and self.tunnel is None:
            self._connect_head(version)
            return
        if method == "CONNECT":
            self._rejection = ProxyError(
                "method_not_allowed",
                "the proxy does not tunnel (CONNECT)",
                status=405,
                proxy_status="proxy_internal_response",
            )
            raise _Refused
        if self._chunked and version == "1.0":
            # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            self._rejection = bad_request("Transfer-Encoding in an HTTP/1.0 request")
            raise _Refused
        if self._hosts > 1 or (self._hosts == 0 and version == "1.1"):
            self._rejection = bad_request("a request needs exactly one Host header")
            raise _Refused
        expect_continue = False
        if self._expect is not None and version == "1.1":
            if self._expect != "100-continue":
                self._rejection = ProxyError(
                    "expectation_failed",
                    "the only expectation served is 100-continue",
                    status=417,
                    proxy_status="proxy_internal_response",
                )
                raise _Refused
            expect_continue = True
        url = self._url
        target = (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1")
        request = InboundRequest(
            self,
            method,
            target,
            self._headers,
            version,
            parser.should_keep_alive() and not self._closing,
            self.peer,
            self._chunked or bool(self._content_length),
            expect_continue,
        )
        request.chunked = self._chunked
        request.content_length = self._content_length
        if parser.should_upgrade():
            request.upgrade = True  # `Connection: upgrade` with an `Upgrade` (RFC 9110 §7.8)
        if self.tunnel is not None:
            request.tunnel = self.tunnel
        self._receiving = request
        self._queue.append(request)  # started after this read is parsed (`data_received`)
        self._body_progress = 0
        # The body's window starts now, unless the client waits for `100 Continue` first
        # (`want_body`); on_message_complete ends it at once for a bodyless request.
        self._body_timed = not expect_continue
        if self._body_timed:
            self._start_body_window()

    def _connect_head(self, version: str) -> None:
        """A CONNECT for the dispatcher: `host:port` in the target, no body, no `Host` needed
        (the authority is the target; `requests` sends HTTP/1.0 without one)."""
        url = self._url
        target = (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1")
        # Not kept alive unless established: nothing after a CONNECT head is parsed as HTTP/1.1
        # here, so a refusal (a 407 the client answers with its key) says `Connection: close`
        # and the client asks again on a new connection, as curl, git and Java do.
        request = InboundRequest(
            self, "CONNECT", target, self._headers, version, False, self.peer, False, False
        )
        self._connect_pending = True
        self._receiving = request
        self._queue.append(request)
        self._body_timed = False

    def on_chunk_header(self) -> None:
        self._chunk_opened = self._feed_moved = True

    def on_chunk_complete(self) -> None:
        self._chunk_opened = False
        self._feed_moved = True

    def on_body(self, body: bytes) -> None:
        self._chunk_opened = False
        self._feed_moved = True
        self._body_progress += len(body)
        request = self._receiving
        if request is None:
            return
        request.body.feed(body)
        if self._flow.buffer(len(body)):
            self._stopped_reading()

    def on_message_complete(self) -> None:
        request = self._receiving
        if request is not None:
            request.body.feed_eof()
            self._receiving = None
        self._feed_moved = True
        self._chunk_opened = False
        if self._body_timed:
            self._body_timed = False
            self.deadline = 0.0
        self._in_head = True

    # -- Downstream (what a request needs of its client connection) --------------------------------

    def send(self, data: bytes) -> None:
        if not self.closed:
            assert self.transport is not None
            self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        if self._flow.writing_paused:
            await self._flow.drained()

    def want_body(self, body: BodyReader) -> None:
        # RFC 9110 §10.1.1: `100 Continue` only once the body is really wanted, so a request
        # refused before that never has its body sent (nor one whose turn is over).
        request = self._current
        if request is None or request.body is not body:
            return
        if request.expect_continue and not body.complete and not request.started:
            request.expect_continue = False
            self.send(CONTINUE)
            if request is self._receiving and not self._body_timed:
                self._body_timed = True  # the client was waiting: its body's window starts
                self._body_progress = 0
                self._start_body_window()

    def body_consumed(self, size: int) -> None:
        flow = self._flow
        flow.consumed(size)
        if flow.reading_paused and flow.below_low_water and not self._queue_full():
            self._resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- CONNECT ---------------------------------------------------------------------------------

    def _established(self, request: InboundRequest) -> None:
        # RFC 9110 §9.3.6: any 2xx ends the CONNECT's head; no body, no framing header.
        self.send(b"HTTP/%s 200 Connection established\r\n\r\n" % request.version.encode())
        request.started = request.finished = True
        request.status = 200
        request.keep_alive = True

    def intercept(self, request: InboundRequest, context: ssl.SSLContext, tunnel: object) -> None:
        """Answer the CONNECT `request` with 200, then terminate TLS with `context` (`tls.py`)
        and serve the requests inside on this connection, each carrying `tunnel`
        (`InboundRequest.tunnel`). The handshake runs as the client's bytes arrive, within
        `head_timeout`; a failed one is answered with its alert and the connection closed."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self._established(request)
        self._tls = ServerTLS(transport, context)
        self.transport = cast(asyncio.Transport, self._tls)
        self._flow.transport = self.transport
        self.tunnel = tunnel
        # A fresh HTTP/1.1 stream inside the TLS session.
        early, self._early = self._early, b""
        self._connect_pending = False
        self._parser = httptools.HttpRequestParser(self)
        self._parser_dead = False
        self._closing = False
        self._in_head = True
        self._head_pending = 0
        self.deadline = self.loop.time() + self.limits.head_timeout
        if early:
            self.loop.call_soon(self._replay, early)  # once the CONNECT is done with
        self._resume_reading()

    def _replay(self, data: bytes) -> None:
        if not self.closed:
            self.data_received(data)

    def _decrypted(self, data: bytes) -> bytes:
        tls = self._tls
        assert tls is not None
        try:
            return tls.feed(data)
        except TLSClosed:
            self._parser_dead = True
            self._close_after_response(linger=False)
        except ssl.SSLError:
            # The alert went out with it (`unrecognized_name` for an SNI naming another host).
            self._parser_dead = True
            tls.abort_quietly()
        return b""

    async def splice(self, request: InboundRequest, pipe: Pipe) -> str:
        """Answer the CONNECT `request` with 200, then relay bytes blind between the client and
        `pipe` (`tunnel.py`) until either side closes or both are idle for `idle_timeout`;
        returns the reason it ended."""
        if self.transport is None or self.closed:
            pipe.close()
            return CLIENT_CLOSED
        self._established(request)
        request.keep_alive = False
        self._closing = True
        self._connect_pending = False
        self._upgrade_tail = bytearray(self._early)  # what `hand_over` gives the tunnel first
        self._early = b""
        tunnel = Tunnel(self.loop, self.limits.idle_timeout)
        tunnel.join(self, pipe)
        try:
            return await tunnel.closed
        finally:
            request.body_bytes = tunnel.to_client
            tunnel.close(SHUTDOWN)

    def hand_over(self, half: TunnelHalf) -> tuple[asyncio.Transport, bytes]:
        # The current request's upstream switched protocols (tunnel.py): from now on every
        # byte read goes to the tunnel, beginning with those that came after the head.
        assert self.transport is not None and self._upgrade_tail is not None
        tail = bytes(self._upgrade_tail)
        self._upgrade_tail = None
        self._half = half
        self._resume_reading()  # (`_flow.hand_over` would too, without its effect on timeouts)
        self._flow.hand_over(half)
        return self.transport, tail

    def cut_by_shutdown(self) -> None:
        """The drain's grace is over: abort, the request in flight marked as cut by the proxy
        (its log line and metrics say so, not "client disconnected")."""
        if self._current is not None and not self.closed:
            self._current.cut_by_shutdown = True
        if self._half is not None:
            self._half.shut_down()
        self.abort()

    def run_task(self, request: InboundRequest, work: Coroutine[Any, Any, None]) -> None:
        if request is not self._current:
            work.close()  # (never: a request goes on only while it is the current one)
            return
        task = self._task = self.loop.create_task(work)
        task.add_done_callback(self._task_done)

    def request_done(self, request: InboundRequest) -> None:
        """The current request's handler is done: on to the next request, or close."""
        if request is not self._current:
            return
        self._current = self._task = None
        if self.closed:
            return
        if not request.finished:
            self.abort()  # the response could not be completed: the client must see a cut
            return
        body = request.body
        if not request.keep_alive or self._closing or not body.complete:
            self._close_after_response(linger=not body.complete)
            return
        pending = body.pending()
        if pending:
            self.body_consumed(pending)  # an unread body is dropped
        if self._queue:
            if len(self._queue) <= MAX_PIPELINED and self._flow.below_low_water:
                self._resume_reading()
            self._start_next()
            return
        if self._head_pending:  # the next head has begun: it must complete in time
            self.deadline = self.loop.time() + self.limits.head_timeout
        else:
            self._idle = True
            self.deadline = self.loop.time() + self.limits.idle_timeout

    # -- requests in turn ---------------------------------------------------------------------

    def _queue_full(self) -> bool:
        return len(self._queue) >= MAX_PIPELINED

    def _start_next(self) -> None:
        if self._current is not None or not self._queue:
            return
        if self._starting:
            # A request answered at once (a 404, /healthz) asks for the next from inside
            # `_run`: the loop below takes it, so a read of a thousand pipelined requests
            # is a loop, not a recursion a thousand deep.
            self._again = True
            return
        self._starting = True
        try:
            while True:
                self._again = False
                self._run(self._queue.popleft())
                if not self._again or self._current is not None or not self._queue:
                    break
        finally:
            self._starting = False

    def _run(self, request: InboundRequest) -> None:
        self._current = request
        if self._closing:
            request.keep_alive = False
        work = self.server.dispatcher.dispatch(request)
        if work is not None:
            self.run_task(request, work)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # the dispatcher logs its own failures; never "never retrieved"
        if task is self._task:
            assert self._current is not None
            self.request_done(self._current)

    # -- closing --------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Drain: close now when no request is in flight, else after its response."""
        self._closing = True
        if self._current is None:
            self._close_after_response(linger=False)
        elif not self._current.started:
            self._current.keep_alive = False

    def timed_out(self) -> None:
        self.deadline = 0.0
        if self._linger or self._idle or (self._in_head and self._head_pending == 0):
            self._close_after_response(linger=False)
            return
        if self._body_timed and self._receiving is not None:
            self._body_timed = False
            what = "trailers" if self._trailer_deadline else "body"
            self._refuse(request_timeout(what))
            return
        if self._current is None and self._in_head:
            self._refuse(request_timeout("head"))

    def _refuse(self, error: ProxyError) -> None:
        """Answer `error` after the requests already queued, then close.

        A request whose body is refused is answered with `error` itself: in its place when its
        handler has not started (nothing of it goes upstream), else by its handler, whose read
        of the body fails with `error`."""
        self._parser_dead = True
        self._in_head = False
        self._body_timed = False
        self.deadline = 0.0
        self._closing = True
        receiving = self._receiving
        if receiving is not None:
            self._receiving = None
            receiving.body.fail(error)
            if receiving is self._current:
                return  # its handler answers (or cuts the response it has started)
            self._queue.remove(receiving)
            self._flow.consumed(receiving.body.pending())
        request = InboundRequest(self, "-", "-", [], "1.1", False, self.peer, False, False)
        request.rejection = error
        self._closing = True
        self._queue.append(request)
        self._start_next()

    def _refuse_now(self, error: ProxyError) -> None:
        # No request yet: the answer is all the connection gets.
        request = InboundRequest(self, "-", "-", [], "1.1", False, self.peer, False, False)
        request.rejection = error
        self._parser_dead = True
        self._closing = True
        self._run(request)

    def _hold_upgrade_tail(self, data: bytes) -> None:
        tail = self._upgrade_tail
        assert tail is not None
        tail += data
        if self._flow.hold(len(tail)):  # until the upstream answers the handshake
            self._stopped_reading()

    def _close_after_response(self, *, linger: bool) -> None:
        self._upgrade_tail = None  # no tunnel: what follows the head is dropped
        self._connect_pending, self._early = False, b""  # a refused CONNECT's, likewise
        transport = self.transport
        if transport is None or self.closed:
            return
        if not linger:
            transport.close()
            return
        # Half-close and keep reading a moment: closing with unread bytes in the socket would
        # reset the connection, and the client could lose the response it was just sent.
        self._linger = self._parser_dead = True
        self._resume_reading()
        try:
            transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        self.deadline = self.loop.time() + LINGER

    def _pause_reading(self) -> None:
        if self._flow.pause_reading():
            self._stopped_reading()

    def _stopped_reading(self) -> None:
        if self._body_timed:
            self.deadline = 0.0  # the proxy stopped reading: the client is not late

    def _resume_reading(self) -> None:
        if self._flow.resume_reading() and self._body_timed and self._receiving is not None:
            self._body_progress = 0
            self._start_body_window()
