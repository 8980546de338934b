"""A byte tunnel between two connections whose HTTP/1.1 round trip switched protocols (RFC 9110
§15.2.2 `101 Switching Protocols`, as a WebSocket handshake does: RFC 6455 §4).

`Tunnel` joins the client's connection (`server.ServerConnection`) and the upstream's
(`connection.H1Connection`) once both sides of the handshake are through. Each end hands over
its transport and the bytes that already arrived past the handshake (`TunnelEnd.hand_over`),
then reports its reads, its end and its write buffer to a `TunnelHalf`. From there the bytes are
relayed as they come, never parsed (WebSocket frames, extensions and compression pass untouched):

- Flow control both ways: while one end's socket buffer is full, the other end is not read, so
  memory stays bounded whatever one side sends and however slowly the other reads (each end's
  `flow_control.FlowControl` reports its write buffer to its `TunnelHalf` from `hand_over` on).
- Either end closing (a FIN or a reset) ends the tunnel: the other end is closed once what was
  written to it is flushed, and cut if it has not taken it within `CLOSE_LINGER` seconds.
- No byte either way for `idle_timeout` seconds ends it too (one timer per tunnel, re-armed
  lazily, not per read).

The reason the tunnel ended (`CLIENT_CLOSED`, `UPSTREAM_CLOSED`, `IDLE_TIMEOUT`, `SHUTDOWN`) is
the result of `closed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

CLIENT_CLOSED = "client_closed"
UPSTREAM_CLOSED = "upstream_closed"
IDLE_TIMEOUT = "idle_timeout"
SHUTDOWN = "shutdown"
CLOSE_LINGER = 5.0  # seconds a closing end may take to flush what was written to it


class TunnelEnd(Protocol):
    """A connection whose handshake is through, handed over to a tunnel."""

    def hand_over(self, half: TunnelHalf) -> tuple[asyncio.Transport, bytes]:
        """From now on report to `half`; returns the transport and the bytes received past the
        handshake (the peer may have sent them at once)."""
        ...


class TunnelHalf:
    """What one end reports to its tunnel: bytes read, its end, its write buffer's state."""

    __slots__ = ("_tunnel", "_upstream")

    def __init__(self, tunnel: Tunnel, upstream: bool) -> None:
        self._tunnel = tunnel
        self._upstream = upstream  # this is the upstream's end (else the client's)

    def received(self, data: bytes) -> None:
        self._tunnel.relay(self._upstream, data)

    def ended(self) -> None:
        """A FIN, a reset or a close: the tunnel ends."""
        self._tunnel.close(UPSTREAM_CLOSED if self._upstream else CLIENT_CLOSED)

    def writing_paused(self) -> None:
        self._tunnel.pause_source(self._upstream, paused=True)

    def writing_resumed(self) -> None:
        self._tunnel.pause_source(self._upstream, paused=False)

    def shut_down(self) -> None:
        """The proxy is stopping and its grace is over."""
        self._tunnel.close(SHUTDOWN)


class Tunnel:
    """Relays bytes both ways between a client and an upstream connection until one closes.

    Attributes:
        to_upstream, to_client: bytes relayed each way so far.
        closed: resolves to the reason the tunnel ended (`CLIENT_CLOSED`, ...).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        idle_timeout: float,
        counted: Callable[[bool, int], None] | None = None,
    ) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.to_upstream = 0
        self.to_client = 0
        self.closed: asyncio.Future[str] = loop.create_future()
        self._counted = counted  # (towards the upstream?, bytes): the metrics
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._last = loop.time()
        self._timer: asyncio.TimerHandle | None = None

    def join(self, client: TunnelEnd, upstream: TunnelEnd) -> None:
        """Take both ends over and relay what each had received past the handshake."""
        self._client, client_tail = client.hand_over(TunnelHalf(self, upstream=False))
        self._upstream, upstream_tail = upstream.hand_over(TunnelHalf(self, upstream=True))
        self._timer = self.loop.call_later(self.idle_timeout, self._check_idle)
        if upstream_tail:
            self.relay(True, upstream_tail)
        if client_tail:
            self.relay(False, client_tail)
        for transport in (self._client, self._upstream):
            if transport.is_closing() and not self.closed.done():
                # An end closed while the other side of the handshake was still on its way.
                self.close(UPSTREAM_CLOSED if transport is self._upstream else CLIENT_CLOSED)

    def relay(self, from_upstream: bool, data: bytes) -> None:
        if self.closed.done():
            return
        target = self._client if from_upstream else self._upstream
        if target is None:
            return
        target.write(data)
        self._last = self.loop.time()
        size = len(data)
        if from_upstream:
            self.to_client += size
        else:
            self.to_upstream += size
        if self._counted is not None:
            self._counted(not from_upstream, size)

    def pause_source(self, upstream_is_full: bool, *, paused: bool) -> None:
        """The end `upstream_is_full` names has a full (or drained) write buffer: stop (or go
        on) reading the other end."""
        source = self._client if upstream_is_full else self._upstream
        if source is None or self.closed.done() or source.is_closing():
            return
        if paused:
            source.pause_reading()
        else:
            source.resume_reading()

    def close(self, reason: str) -> None:
        """End the tunnel (once): both ends are closed after flushing what they were sent."""
        if self.closed.done():
            return
        self.closed.set_result(reason)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in (self._client, self._upstream):
            if transport is not None and not transport.is_closing():
                transport.close()
                self.loop.call_later(CLOSE_LINGER, transport.abort)
        # Each end's protocol holds its half, which holds this tunnel: no reference back.
        self._client = self._upstream = None

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed.done():
            return
        quiet = self.loop.time() - self._last
        if quiet >= self.idle_timeout:
            self.close(IDLE_TIMEOUT)
            return
        self._timer = self.loop.call_later(self.idle_timeout - quiet, self._check_idle)
