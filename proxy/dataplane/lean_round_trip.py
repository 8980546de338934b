"""The lean path with no task: a request whose body is all in hand, on a pooled connection.

What a proxy of API calls serves most — a request with no body (a GET) or a small one that came
with its head (a JSON POST), for a connection whose credentials only add constant headers
(`lean.py`), an idle keep-alive connection to its upstream in the pool, a response that arrives
whole — needs no coroutine: the head goes upstream from the
inbound connection's read callback, and the upstream connection's read callback answers the
client (`H1Connection.follow`). No task, no future, no timer: the pool's `WaitClock` keeps the
read timeout. Each step that needs to wait on more than one read leaves this path for a task, at
the point where it needs one, by the code the coroutine path runs:

- the head came without the whole body: the body is streamed by `relay.relay`;
- a pooled connection was closed under the request before any byte of the response came (a
  keep-alive connection the upstream had just dropped): an idempotent request goes once more
  on a new connection, as `Http1Upstream` does for the coroutine path;
- the client went away: the upstream connection is dropped at once (it cannot be reused with
  a response in flight), as the task's cancellation does on the coroutine path.

(No idle connection in the pool, or a body still arriving, takes the coroutine path from the
start: see `Forwarder.start`.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol

from ..connections.compiled import CompiledConnection
from ..http1 import Http1Upstream
from ..http1.client import EncodedRequest, Http1Reply
from ..http1.connection import ConnectionLost, H1Connection, terminated
from ..http1.inbound import InboundRequest
from ..http1.upstream import UpstreamReply
from ..http1.wire import IDEMPOTENT_METHODS
from .relay import relay, response_head


class Settle(Protocol):
    """How a request ends (implemented by the data plane, `app.DataPlane`)."""

    def settle(self, request: InboundRequest, start: float, error: Exception | None) -> None:
        """Answer `error` (if any: a `ProxyError`, else logged as the proxy's own failure),
        write the access line, and complete the request."""
        ...

    def serve(
        self, request: InboundRequest, start: float, work: Awaitable[None]
    ) -> Coroutine[Any, Any, None]:
        """The coroutine that finishes `request` by `work`, as a task-run request ends."""
        ...


def send_lean(
    upstream: Http1Upstream,
    encoded: EncodedRequest,
    request: InboundRequest,
    connection: CompiledConnection,
    settle: Settle,
    start: float,
) -> bool:
    """Send `request` as `encoded` (its upstream head built by `lean.build_head`, its whole
    body in `data`) on an idle pooled connection and answer it by callbacks; False when the
    pool has none (nothing sent)."""
    h1 = upstream.pool.take_idle(encoded.origin, encoded.tls)
    if h1 is None:
        return False
    LeanRoundTrip(upstream, encoded, request, connection, settle, start).send(h1)
    return True


class LeanRoundTrip:
    """One request, its body in hand, on one pooled upstream connection, followed by its
    callbacks."""

    __slots__ = ("upstream", "encoded", "request", "connection", "settle", "start", "h1")

    def __init__(
        self,
        upstream: Http1Upstream,
        encoded: EncodedRequest,
        request: InboundRequest,
        connection: CompiledConnection,
        settle: Settle,
        start: float,
    ) -> None:
        self.upstream = upstream
        self.encoded = encoded
        self.request = request
        self.connection = connection
        self.settle = settle
        self.start = start
        # The pooled HTTP/1.1 connection the request went out on (`connection` is the configured
        # connection it serves), until the round trip has left this path.
        self.h1: H1Connection | None = None

    def send(self, h1: H1Connection) -> None:
        self.h1 = h1
        self.request.on_cancel = self._client_gone
        h1.begin(self.request.method)
        h1.follow(self._progress, self.upstream.read_timeout)
        try:
            h1.send_whole(self.encoded.head, self.encoded.data)
        except Exception:
            # (A transport already closed under us raises.) Nothing went out: the caller
            # answers the failure, and this round trip must not answer a second time.
            self.h1 = self.request.on_cancel = None
            self.upstream.pool.discard(h1)
            raise

    def _progress(self) -> None:
        """Called after each upstream read, and when the round trip fails or times out."""
        h1 = self.h1
        if h1 is None:
            return
        try:
            head = h1.head
            if head is None:
                error = h1.error
                if error is not None:
                    self._failed(h1, error)
                return  # (the head is still to come)
            if not h1.done:
                # The rest of the body is to come: stream it, from a task.
                h1.unfollow()
                self.h1 = None
                encoded = self.encoded
                reply = Http1Reply(self.upstream, encoded.origin, encoded.tls, h1, head, None)
                self._leave(relay(self.request, self.connection, reply))
                return
            self.h1 = None
            body = h1.take_buffered()
            self.upstream.pool.release(self.encoded.origin, self.encoded.tls, h1)
            request = self.request
            request.upstream_status = head.status
            block, has_length = response_head(request, self.connection, head.raw)
            request.respond_block(head.status, h1.reason, block, has_length, body)
        except Exception as exc:  # a bug here must not become uvloop's "fatal error" on the socket
            h1, self.h1 = self.h1, None
            if h1 is not None:
                self.upstream.pool.discard(h1)
            self.settle.settle(self.request, self.start, exc)
            return
        self.settle.settle(request, self.start, None)

    def _failed(self, h1: H1Connection, error: Exception) -> None:
        self.h1 = None
        self.upstream.pool.discard(h1)
        request = self.request
        if isinstance(error, ConnectionLost):
            if request.method in IDEMPOTENT_METHODS:
                # A keep-alive connection the upstream had closed meanwhile: once more, on a new
                # connection (the retry rule of `Http1Upstream`).
                self._leave(self._resend())
                return
            error = terminated()
        self.settle.settle(request, self.start, error)

    async def _resend(self) -> None:
        reply: UpstreamReply = await self.upstream.send_encoded(self.encoded, fresh=True)
        await relay(self.request, self.connection, reply)

    def _leave(self, work: Coroutine[Any, Any, None]) -> None:
        request = self.request
        request.continue_in(self.settle.serve(request, self.start, work))

    def _client_gone(self) -> None:
        h1 = self.h1
        if h1 is None:
            return
        self.h1 = None
        self.upstream.pool.discard(h1)  # a response in flight: the connection is done for
        self.settle.settle(self.request, self.start, None)
