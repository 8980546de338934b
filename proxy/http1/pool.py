"""Keep-alive connection pool: idle HTTP/1.1 connections per (origin, TLS context).

A connection is reused only when its last round trip ended cleanly (see `connection.py`), and an
idle connection the upstream has closed meanwhile (its FIN arrived while it sat in the pool) is
skipped. Idle connections are kept for `idle_timeout` seconds, most recently used first (so a
burst's spare connections age out instead of being kept warm round-robin).

TLS uses the event loop's SSL with contexts built once: the caller's (a `certificate`
credential's mTLS context, so each client identity has its own pool) or the pool's default
context, made on first use. Hostname verification stays on (`server_hostname`).
Connect failures map to the RFC 9209 error types of docs/errors.md.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from ..errors import UpstreamUnavailable
from .connection import DEFAULT_MAX_HEAD, H1Connection, WaitClock
from .wire import Origin

PoolKey = tuple[str, str, int, ssl.SSLContext | None]


class Pool:
    def __init__(
        self,
        *,
        connect_timeout: float,
        idle_timeout: float = 15.0,
        max_idle_per_key: int = 256,
        max_head_bytes: int = DEFAULT_MAX_HEAD,
    ) -> None:
        self._max_head = max_head_bytes
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle_per_key
        self._idle: dict[PoolKey, list[H1Connection]] = {}
        self._all: set[H1Connection] = set()
        self._default_tls: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._clock: WaitClock | None = None  # the read timeouts of all its connections
        self._closed = False

    def configure(self, *, connect_timeout: float, max_head_bytes: int) -> None:
        self._connect_timeout = connect_timeout
        self._max_head = max_head_bytes
        for h1 in self._all:
            h1.max_head_bytes = max_head_bytes

    def tls_for(self, origin: Origin, tls: ssl.SSLContext | None) -> ssl.SSLContext | None:
        if not origin.tls:
            return None
        if tls is not None:
            return tls
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    def take_idle(self, origin: Origin, tls: ssl.SSLContext | None) -> H1Connection | None:
        """An idle connection still open, or None; no coroutine, for the hot path."""
        idle = self._idle.get((origin.scheme, origin.host, origin.port, tls))
        while idle:
            h1 = idle.pop()
            if not h1.closed:
                return h1
            self._all.discard(h1)
        return None

    def release(self, origin: Origin, tls: ssl.SSLContext | None, h1: H1Connection) -> None:
        """Hand a connection back after a round trip: pooled when reusable, else closed."""
        if not h1.end() or self._closed:
            self.discard(h1)
            return
        key = (origin.scheme, origin.host, origin.port, tls)
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            self.discard(h1)
            return
        loop = h1.loop
        h1.idle_since = loop.time()
        idle.append(h1)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep, loop)

    def hand_off(self, h1: H1Connection) -> None:
        """`h1` leaves the pool for good, open (its upstream switched protocols: a tunnel
        owns it now, and it never carries another request)."""
        self._all.discard(h1)

    def discard(self, h1: H1Connection) -> None:
        h1.end()
        h1.abort()
        self._all.discard(h1)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._clock is not None:
            self._clock.close()
        for h1 in list(self._all):
            h1.abort()
        self._all.clear()
        self._idle.clear()

    def idle_count(self) -> int:
        """Idle connections still open (the upstream has not closed them)."""
        return sum(not h1.closed for idle in self._idle.values() for h1 in idle)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper = None
        deadline = loop.time() - self._idle_timeout
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and c.idle_since > deadline]
            for h1 in idle:
                if h1 not in keep:
                    self.discard(h1)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if self._idle:
            self._sweeper = loop.call_later(self._idle_timeout / 2, self._sweep, loop)

    async def connect(self, origin: Origin, tls: ssl.SSLContext | None) -> H1Connection:
        loop = asyncio.get_running_loop()
        max_head = self._max_head
        clock = self._clock
        if clock is None or clock.loop is not loop:
            clock = self._clock = WaitClock(loop)
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, h1 = await loop.create_connection(
                    lambda: H1Connection(loop, max_head),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamUnavailable(
                "connect timed out", proxy_status="connection_timeout"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or "certificate rejected"
            raise UpstreamUnavailable(
                f"TLS certificate: {reason}", proxy_status="tls_certificate_error"
            ) from None
        except ssl.SSLError:
            raise UpstreamUnavailable(
                "TLS handshake failed", proxy_status="tls_protocol_error"
            ) from None
        except socket.gaierror:
            raise UpstreamUnavailable("DNS lookup failed", proxy_status="dns_error") from None
        except OSError:
            raise UpstreamUnavailable(
                "connection refused", proxy_status="connection_refused"
            ) from None
        h1.clock = clock
        self._all.add(h1)
        return h1
