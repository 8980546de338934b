"""One HTTP/1.1 client connection to an upstream: an `asyncio.Protocol` over httptools (llhttp).

It owns the response side of one round trip at a time — the head, the body chunks, and the rules
that decide whether the connection may carry another request:

- Framing is llhttp's (RFC 9112 §6.3): Content-Length, chunked, or close-delimited; responses to
  HEAD and 1xx/204/304 responses have no body. llhttp refuses a response with both
  Content-Length and Transfer-Encoding, a bad or duplicated Content-Length, and bad chunks.
- Any doubt about where the response ended closes the connection instead of reusing it: a parser
  error, bytes after the end of the message (a body longer than its Content-Length must never be
  read as the next response), a body not read to its end, `Connection: close`, HTTP/1.0,
  a close-delimited body, a request not fully sent, or bytes arriving while the connection idles.
- Bounded heads (a hostile upstream must not run the proxy out of memory or CPU): the bytes
  before the final response head is complete (1xx heads included) may not exceed
  `max_head_bytes`, nor its fields `MAX_HEADER_FIELDS`; a trailer section is held to the same
  byte limit and dropped. Crossing either fails the round trip at once with 502
  `upstream_bad_response` (`http_response_header_section_size`), before httptools buffers more
  (its Python layer joins a header value by concatenation: quadratic in an endless value).
  Time is bounded by the caller's read timeout, which runs from the request to the whole head.
- Flow control both ways (`flow_control.py`): reading pauses while more than `HIGH_WATER` bytes wait
  for the consumer (a slow client slows the upstream down, memory stays flat), and `drain()`
  waits while the socket's write buffer is over its limit (a slow upstream slows the client's
  upload down).

A fresh llhttp parser is used for each round trip, so nothing of one response's parse state (a HEAD
response's announced length, say) carries over into the next.

A round trip is followed in one of two ways: a coroutine awaits `wait_head()` and `read()` (a
future per wait), or a `notify` callback is set and called after every read that may have
moved the round trip on, and when it fails or times out (the task-free lean round trip of
`proxy/dataplane/lean_round_trip.py`); the callback looks at `head`, `done` and `error` itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools

from ..errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnavailable
from ..messages import UpstreamResponse
from .flow_control import FlowControl
from .tunnel import TunnelHalf
from .upstream import UpstreamBroken

DEFAULT_MAX_HEAD = 64 * 1024  # `limits.maxHeaderBytes`
COALESCE_LIMIT = 64 * 1024  # request bodies up to this go out in one write with the head
# Header fields in one response head. Node.js caps at 2000; a real API sends a few dozen, and the
# byte limit alone would let 64 KiB of `a:b` lines become ~10,000 Python objects.
MAX_HEADER_FIELDS = 1000
_FRAMING_NAMES = (b"content-length", b"transfer-encoding")


class ConnectionLost(Exception):
    """The upstream closed the connection before any byte of the response arrived."""


def terminated() -> UpstreamUnavailable:
    # RFC 9209 §2.3.9 `connection_terminated`: closed before the response was complete.
    return UpstreamUnavailable(
        "upstream closed the connection", proxy_status="connection_terminated"
    )


def head_too_large(what: str) -> UpstreamBadResponse:
    # RFC 9209 §2.3.12 `http_response_header_section_size`.
    return UpstreamBadResponse(what, proxy_status="http_response_header_section_size")


def protocol_error() -> UpstreamUnavailable:
    return UpstreamUnavailable(
        "upstream sent an invalid response", proxy_status="http_protocol_error"
    )


class WaitClock:
    """The read timeouts of a pool's connections, kept by one sweep instead of a timer per wait.

    A wait records its deadline and joins `waiting` (a set insert, not a timer allocation and
    a heap push and pop); the sweep runs every eighth of the shortest timeout seen (at most
    every second) while anything waits, so a timeout fires at most ~1/8 late."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: set[H1Connection] = set()
        self._tick = 1.0
        self._shortest = 0.0  # the shortest timeout armed since the sweep started
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, h1: H1Connection, timeout: float) -> None:
        h1.deadline = self.loop.time() + timeout
        self.waiting.add(h1)
        if self._handle is not None and timeout >= self._shortest:
            return  # the sweep runs often enough already (every wait but the first, usually)
        tick = max(0.01, min(1.0, timeout / 8))
        if self._handle is not None:
            self._handle.cancel()
            tick = min(tick, self._tick)
            timeout = min(timeout, self._shortest)
        self._tick, self._shortest = tick, timeout
        self._handle = self.loop.call_later(tick, self._sweep)

    def disarm(self, h1: H1Connection) -> None:
        self.waiting.discard(h1)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        self._handle = None
        now = self.loop.time()
        for h1 in [c for c in self.waiting if now >= c.deadline]:
            self.waiting.discard(h1)
            h1.deadline_passed()
        if self.waiting:
            self._handle = self.loop.call_later(self._tick, self._sweep)


class H1Connection(asyncio.Protocol):
    """Client side of one upstream connection; `begin()` starts each round trip."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_head_bytes: int = DEFAULT_MAX_HEAD
    ) -> None:
        self.loop = loop
        self.max_head_bytes = max_head_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # Round-trip state, reset by begin().
        self._parser: httptools.HttpResponseParser | None = None
        self._parser_clean = False
        self._active = False
        self._is_head = False
        self._interim = False
        self._ignore = False
        self._doubt = False
        self._keep_alive = False
        self._close_delimited = False
        self._head_bytes = 0  # bytes received before the final head was complete
        self._trailer_bytes = 0  # bytes received while inside a trailer section
        self._chunk_open = False  # a chunk size line was parsed and no data followed yet
        self.received_any = False
        self.request_sent = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []  # raw; decoded once the head is complete
        self.head: UpstreamResponse | None = None
        self.reason = ""
        self.done = False
        self._error: Exception | None = None
        self._chunks: deque[bytes] = deque()
        # Response bytes in `_chunks` pause reading from the upstream past its high water.
        self._flow = FlowControl()
        self._waiter: asyncio.Future[None] | None = None
        self.clock: WaitClock | None = None  # set by the pool; None: a timer per wait
        self.deadline = 0.0  # loop time the current wait times out at (with `clock`)
        self._deadline_head = False
        # Set for a round trip followed by a callback instead of waits; cleared by `end()`.
        self.notify: Callable[[], None] | None = None
        # An `Upgrade` request's round trip (`begin(upgrade=True)`): once the upstream switched
        # protocols (`upgraded`), the bytes after its 101 are held, then go to the tunnel.
        self._upgrade = False
        self.upgraded = False
        self._upgrade_tail = bytearray()
        self._half: TunnelHalf | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCPTransport is not an asyncio.Transport
        # subclass, yet has the same methods.
        self.transport = self._flow.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._receive(data)
        notify = self.notify
        if notify is not None:
            notify()

    def _receive(self, data: bytes) -> None:
        if not self._active or self.done:
            if self.upgraded:  # the protocol the upstream switched to: the tunnel's
                if self._half is not None:
                    self._half.received(data)
                else:
                    self._hold(data)
                return
            # Bytes nobody asked for: the previous response was longer than it said, or the
            # upstream is talking out of turn. Either way this connection cannot be trusted.
            self._doubt = True
            self.abort()
            return
        self.received_any = True
        if self.head is None:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._feed_head_capped(data)
                return
        elif self._chunk_open:
            # No chunk data since the last size line, so far: maybe the last chunk's trailer
            # section (dropped, but httptools holds a field until it ends). It is one when
            # no chunk data came in the reads after it either.
            self._trailer_bytes += len(data)
            self._feed(data)
            if self._chunk_open and self._trailer_bytes > self.max_head_bytes:
                self._fail(UpstreamBroken("upstream trailer section too large"))
                self.abort()
            return
        # The hot path: one feed, no further call (the head usually completes in this read).
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._switched(data[cast(int, upgrade.args[0]) :])
            return
        except httptools.HttpParserError:
            self._parse_failed()
            return
        if self.head is None and len(self._headers) > MAX_HEADER_FIELDS and not self._ignore:
            self._too_many_fields()

    def _feed(self, data: bytes) -> None:
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._switched(data[cast(int, upgrade.args[0]) :])
        except httptools.HttpParserError:
            self._parse_failed()

    def _switched(self, tail: bytes) -> None:
        """llhttp stopped after a head that switches protocols: the answer to an `Upgrade`
        request, or a protocol error (a 101 nobody asked for)."""
        head = self.head
        if not self._upgrade or head is None or head.status != 101:
            self._parse_failed()
            return
        self.upgraded = True
        self._hold(tail)
        if not self.done:
            self._complete()

    def _hold(self, data: bytes) -> None:
        self._upgrade_tail += data
        self._flow.hold(len(self._upgrade_tail))  # until the tunnel takes the connection over

    def _parse_failed(self) -> None:
        self._doubt = True
        if not self.done:
            self._fail(self._body_or_head_error(protocol_error()))
        self.abort()

    def _too_many_fields(self) -> None:
        # Counted per read and at the end of the head, not per field (the tiny-GET path stays
        # as it was); the byte limit bounds what one read can add meanwhile.
        self._ignore = True
        self._fail(head_too_large(f"response head over {MAX_HEADER_FIELDS} fields"))
        self.abort()

    def _feed_head_capped(self, data: bytes) -> None:
        # Only the bytes up to the limit are parsed; the head must be complete within them.
        room = self.max_head_bytes - (self._head_bytes - len(data))
        self._feed(data[:room])
        if self.closed:
            return
        if self.upgraded:
            self._hold(data[room:])
            return
        if self.head is None:
            if not self._ignore:  # (else it failed on the field count already)
                self._fail(head_too_large(f"response head over {self.max_head_bytes} bytes"))
            self.abort()
            return
        self._feed(data[room:])

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._half is not None:
            self._half.ended()
            return
        if self._active and not self.done:
            if self.head is not None and self._close_delimited and exc is None:
                self._complete()  # RFC 9112 §6.3 rule 8: the body ends at close
            elif self.head is None and not self.received_any:
                self._fail(ConnectionLost())
            else:
                self._fail(self._body_or_head_error(terminated()))
        self._flow.lost(ConnectionResetError("upstream connection lost"))
        notify = self.notify
        if notify is not None:
            notify()

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done or self.head is not None:
            # A second message in the same round trip: bytes past the end of the response.
            # Everything from here on is ignored, and the connection is closed after it.
            self._ignore = self._doubt = True

    def on_status(self, status: bytes) -> None:
        if not self._ignore:
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailer fields land here too, after the head was decoded: never read (RFC 9110 §6.5.1
        # lets a recipient discard them), and bounded by the trailer byte count.
        if not self._ignore:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._ignore:
            return
        if len(self._headers) > MAX_HEADER_FIELDS:
            self._too_many_fields()
            return
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status == 101 and self._upgrade:
            if not self._parser.should_upgrade():  # (no `Upgrade`, `Connection: upgrade`)
                self._ignore = True
                self._fail(protocol_error())
                self.abort()
                return
        elif 100 <= status < 200:
            # Interim responses (100 Continue, 103 Early Hints) are not relayed; the final
            # response follows on the same connection. A 101 (to a request that asked for
            # none) raises HttpParserUpgrade instead.
            self._interim = True
            self._reason, self._headers = b"", []
            return
        self._keep_alive = self._parser.should_keep_alive()
        no_body = self._is_head or status in (101, 204, 304)
        # The fields stay bytes (the relay copies them as they are); only the framing names
        # are looked at here, and the length test spares a lower() for nearly every one.
        has_framing = False
        for name, _ in self._headers:
            if len(name) in (14, 17) and name.lower() in _FRAMING_NAMES:
                has_framing = True
                break
        self._close_delimited = not no_body and not has_framing
        self.reason = self._reason.decode("latin-1").strip()
        self.head = UpstreamResponse(status, tuple(self._headers))
        if self._is_head:
            self._complete()  # llhttp does not know the method: the head is the whole message
        else:
            self._wake()

    def on_chunk_header(self) -> None:
        self._chunk_open = True
        self._trailer_bytes = 0

    def on_chunk_complete(self) -> None:
        self._chunk_open = False

    def on_body(self, body: bytes) -> None:
        self._chunk_open = False
        if self.done or self._ignore:
            self._doubt = True  # a body after a HEAD response
            return
        self._chunks.append(body)
        self._flow.buffer(len(body))
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._ignore:
            self._parser_clean = True
            if not self.done:
                self._complete()

    # -- round-trip API --------------------------------------------------------------------------

    def begin(self, method: str, *, upgrade: bool = False) -> None:
        """Start a round trip on an idle connection; `upgrade`: its request asks to switch
        protocols, so whatever the answer the connection is never reused."""
        if not self._parser_clean:
            # llhttp resets itself after a complete message; anything else (a HEAD response
            # whose announced body never came, the first round trip) gets a fresh parser.
            self._parser = httptools.HttpResponseParser(self)
        self._parser_clean = False
        self._active = True
        self._is_head = method == "HEAD"
        if upgrade:
            self._upgrade = self._doubt = True
        self._interim = self._ignore = self._keep_alive = False
        self._close_delimited = self._chunk_open = False
        self._head_bytes = self._trailer_bytes = 0
        self.received_any = self.request_sent = self.done = False
        self._reason = b""
        self._headers = []
        self.head = None
        self.reason = ""
        self._error = None

    @property
    def error(self) -> Exception | None:
        """Why the round trip failed, once it has (a `ProxyError`, `UpstreamBroken` or
        `ConnectionLost`)."""
        return self._error

    def follow(self, notify: Callable[[], None], timeout: float) -> None:
        """Follow the round trip by `notify` instead of waits; the head must come within
        `timeout` seconds (kept by the pool's `WaitClock`, as a wait's is)."""
        self.notify = notify
        clock = self.clock
        if clock is None:  # a connection made outside a pool keeps its own
            clock = self.clock = WaitClock(self.loop)
        clock.arm(self, timeout)

    def unfollow(self) -> None:
        """Back to waits (or to the pool): no more calls to `notify`, no deadline."""
        self.notify = None
        if self.clock is not None:
            self.clock.disarm(self)

    def end(self) -> bool:
        """Finish the round trip; True when the connection may carry another request."""
        self._active = False
        if self.notify is not None:
            self.unfollow()
        reusable = (
            self.done
            and self.request_sent
            and self._keep_alive
            and not self._close_delimited
            and not self._doubt
            and not self.closed
        )
        self._chunks.clear()
        self._flow.clear()
        if reusable:
            self._flow.resume_reading()
        return reusable

    async def wait_head(self, timeout: float | None) -> UpstreamResponse:
        while self.head is None:
            await self._wait(timeout, head=True)
        return self.head

    async def read(self, timeout: float) -> bytes:
        """The next body bytes (everything buffered, joined); b"" at the end of the body."""
        while True:
            if self._chunks:
                return self.take_buffered()
            if self.done:
                return b""
            await self._wait(timeout, head=False)

    def take_buffered(self) -> bytes:
        """Every body byte received and not yet taken, joined (b"" when none)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._flow.clear()
        self._flow.resume_reading()
        return data

    def send_whole(self, head: bytes, body: bytes | None) -> None:
        """Send a request whose body is all in hand (or that has none)."""
        assert self.transport is not None
        if not body:
            self.transport.write(head)
        elif len(body) <= COALESCE_LIMIT:
            self.transport.write(head + body)
        else:
            self.transport.writelines([head, body])
        self.request_sent = True

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream connection lost")
        if self._flow.writing_paused:
            await self._flow.drained()

    def abort(self) -> None:
        self._doubt = True
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def hand_over(self, half: TunnelHalf) -> tuple[asyncio.Transport, bytes]:
        """After a 101: the connection as a tunnel's end (tunnel.py), with the bytes the
        upstream sent past its head."""
        assert self.upgraded and self.transport is not None
        tail = bytes(self._upgrade_tail)
        self._upgrade_tail = bytearray()
        self._half = half
        self._flow.hand_over(half)
        return self.transport, tail

    # -- internals ------------------------------------------------------------------------------

    async def _wait(self, timeout: float | None, *, head: bool) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self.loop.create_future()
        clock = self.clock
        timer = None
        if timeout is not None:
            if clock is not None:
                self._deadline_head = head
                clock.arm(self, timeout)
            else:
                timer = self.loop.call_later(timeout, self._timed_out, waiter, head)
        try:
            await waiter
        finally:
            # A cancelled waiter's cleanup runs late: never clear a newer waiter's slot (nor
            # its deadline).
            if self._waiter is waiter:
                self._waiter = None
                if clock is not None and timeout is not None:
                    clock.disarm(self)
            if timer is not None:
                timer.cancel()

    def deadline_passed(self) -> None:
        """Called by the `WaitClock` sweep once the current wait's deadline has passed."""
        waiter = self._waiter
        if waiter is not None:
            self._timed_out(waiter, self._deadline_head)
            return
        notify = self.notify
        if notify is not None and self._active and not self.done and self._error is None:
            self._fail(
                UpstreamTimeout("no response within the read timeout")
                if self.head is None
                else UpstreamBroken("upstream body read timed out")
            )
            notify()

    def _timed_out(self, waiter: asyncio.Future[None], head: bool) -> None:
        if waiter.done():
            return
        self._doubt = True
        if head:
            waiter.set_exception(UpstreamTimeout("no response within the read timeout"))
        else:
            waiter.set_exception(UpstreamBroken("upstream body read timed out"))

    def _body_or_head_error(self, error: Exception) -> Exception:
        if self.head is None:
            return error
        return UpstreamBroken("upstream response body was cut short")

    def _complete(self) -> None:
        self.done = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        self._doubt = True
        self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
