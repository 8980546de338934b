"""The data plane: inbound request → `OutboundRequest` → credential chain → upstream → stream back.

`Forwarder.start` is where a request's route, connection, client and policy are decided, without
waiting on anything; then one of three ways serves it: the task-free lean round trip
(`lean_round_trip.py`: constant-header credentials, the body in hand, a pooled connection), the
lean path in a coroutine (the same head, built from the client's bytes by `lean.py`), or the
general path below, where the credentials sign an `OutboundRequest` in order.

`run_chain()` is the one driver that owns I/O for the schemes. Each credential's `auth_flow`
yields commands; a `Send` passes through the credentials after it (so "apply in order" holds and
a retry re-signs later schemes with a fresh nonce), a `Refresh` is answered by the token
provider. The loop is bounded, per the aiohttp cookbook's warning about retry loops.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from ..config.models import Limits
from ..connections.access import Access, Presented
from ..connections.compiled import CompiledConnection
from ..connections.headers import (
    FORWARDED,
    FRAMING,
    HOP_BY_HOP,
    REQUEST_ONLY,
    end_to_end,
    is_underscore_alias,
)
from ..connections.lean import build_head
from ..connections.placeholders import PlaceholderGuard
from ..connections.policy import form_method_overrides, is_form
from ..connections.templates import UnknownConnection
from ..connections.urls import BaseUrl, is_escaping, join_path
from ..errors import CredentialError, InvalidRequest, NotFound, ProxyError
from ..http1 import Http1Upstream
from ..http1.client import EncodedRequest
from ..http1.inbound import InboundRequest
from ..http1.upstream import Upstream, UpstreamBody, UpstreamReply
from ..http1.wire import Framing
from ..messages import AuthFlow, BodyFilter, OutboundRequest, Refresh, Send, TokenSet
from ..schemes.base import DEFAULT_CONTEXT, Scheme, SigningContext
from .body import BufferedBody, read_body
from .lean_round_trip import Settle, send_lean
from .relay import relay
from .routing import Router
from .websocket import is_handshake, relay_handshake, upgrade_request

MAX_FLOW_STEPS = 8
_NO_CARRIERS: frozenset[bytes] = frozenset()
# From this size a body is hashed in a worker thread: SHA-256 over 256 KiB is ~0.2 ms, several
# times a thread hop, and hashlib runs it without the GIL.
OFF_LOOP_BODY_BYTES = 256 * 1024


def _spare_cpu() -> bool:
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:  # (not on Linux)
        return (os.cpu_count() or 1) > 1


# ... but only when the process may run on another CPU meanwhile (`taskset`, a cpuset): on one,
# the thread hop is all cost (bench/run.py, HMAC POST).
HASH_IN_THREAD = _spare_cpu()


class TokenProvider(Protocol):
    """Supplies OAuth 2.0 tokens to schemes with `needs_token` (implemented by
    `tokens/manager.py`)."""

    async def current(self, scheme: Scheme) -> TokenSet: ...

    async def refresh(self, scheme: Scheme, stale: TokenSet) -> TokenSet: ...


class RouteTarget(Protocol):
    """What a route resolves to: a connection, or a template route that picks one per request."""

    def select(self, request: InboundRequest) -> CompiledConnection: ...


SendUpstream = Callable[[OutboundRequest], Awaitable[UpstreamReply]]


async def run_chain(
    schemes: Sequence[Scheme],
    request: OutboundRequest,
    send: SendUpstream,
    tokens: TokenProvider | None,
) -> UpstreamReply:
    """Apply `schemes` in order around `send`; return the reply that goes to the client."""
    if not schemes:
        return await send(request)
    first, rest = schemes[0], schemes[1:]
    if type(first).auth_flow is Scheme.auth_flow and not first.needs_token:
        # A one-step scheme (sign, then send): the generator round trip of `auth_flow` does
        # exactly this, at several times the cost on the hot path.
        if _signs_off_loop(first, request):
            signed = await asyncio.to_thread(first.signed, request, DEFAULT_CONTEXT)
        else:
            signed = first.signed(request, DEFAULT_CONTEXT)
        if not rest:
            return await send(signed)
        return await run_chain(rest, signed, send, tokens)
    ctx = DEFAULT_CONTEXT
    if first.needs_token:
        if tokens is None:
            raise ProxyError(
                "credential_unavailable", "no token provider is configured", status=502
            )
        ctx = SigningContext(token=await tokens.current(first))
    flow = first.auth_flow(request, ctx)
    command = await _first_command(first, request, flow)
    reply: UpstreamReply | None = None
    for _ in range(MAX_FLOW_STEPS):
        result: object
        if isinstance(command, Send):
            if reply is not None:
                await reply.discard()  # superseded by a retry
            result = reply = await run_chain(rest, command.request, send, tokens)
            result = reply.head
        else:
            assert isinstance(command, Refresh) and tokens is not None
            result = await tokens.refresh(first, command.stale)
        try:
            command = flow.send(result)
        except StopIteration:
            if reply is None:
                raise ProxyError(
                    "auth_flow_empty", "credential flow sent nothing", status=502
                ) from None
            return reply
    raise ProxyError("auth_flow_loop", "credential flow did not finish", status=502)


async def _first_command(
    scheme: Scheme, request: OutboundRequest, flow: AuthFlow
) -> Send | Refresh:
    """Start a flow; a signer hashing a large body does it in a worker thread.

    The MAC's message may start with the URL, which is final only after the earlier credentials
    have run, so the body cannot always be hashed while it is read: a spilled body gets one
    more sequential pass over its file, off the event loop. A large in-memory body is hashed
    in a worker thread too: hashlib releases the GIL, so other requests go on meanwhile (on
    another core); small bodies are hashed in place, cheaper than a thread hop.
    """
    if _signs_off_loop(scheme, request):
        return await asyncio.to_thread(next, flow)
    return next(flow)


def _signs_off_loop(scheme: Scheme, request: OutboundRequest) -> bool:
    body = request.body
    if not isinstance(body, BufferedBody):
        return False
    if body.in_memory is not None and (body.size < OFF_LOOP_BODY_BYTES or not HASH_IN_THREAD):
        return False  # (a spilled body is always read off the loop: file reads block)
    return scheme.reads_body(request)


@dataclass(frozen=True, slots=True)
class Forwarder:
    """The data-plane request handler."""

    router: Router[RouteTarget]
    upstream: Upstream
    limits: Limits
    tokens: TokenProvider | None = None
    forwarded_headers: bool = False
    access: Access | None = None  # clients and policy; None when the config has neither
    websocket_idle: float = 300.0  # `timeouts.websocketIdle` (websocket.py)
    # Where `secret` placeholders may go; None (nothing to check) when no connection has one.
    placeholders: PlaceholderGuard | None = None

    def start(
        self, request: InboundRequest, settle: Settle | None = None, start: float = 0.0
    ) -> Coroutine[Any, Any, None] | None:
        """Begin serving `request`: the coroutine that serves it, or None when it went out on
        the task-free lean round trip (`lean_round_trip.py`), which ends it through `settle`
        (`start`: when it came in, for the access line). A refusal (no route, a client or
        policy denial, a bad path) raises here, before anything is read or sent."""
        access = self.access
        # Clients and policy (access.py): who is asking before routing, then whether they may
        # make this request once the connection is known; no body read, nothing sent yet.
        caller = access.authenticate(request.raw_headers) if access is not None else None
        # The one place a request's route and connection are resolved.
        target, tail, query = route_target(self.router, request.target)
        try:
            connection = target.select(request)
        except UnknownConnection as miss:
            # Perhaps created a moment ago through another worker's management API (sync.py).
            return self._after_lookup(request, miss, caller, tail, query)
        return self._begin(request, connection, caller, tail, query, settle, start)

    def start_bound(
        self,
        request: InboundRequest,
        connection: CompiledConnection,
        caller: Presented | None,
        settle: Settle | None,
        start: float,
    ) -> Coroutine[Any, Any, None] | None:
        """`start` for a request whose connection is known already (forward-proxy mode,
        `connect.py`: a tunnel's or an absolute-form request's), its client too: the path is
        the upstream path itself, under the connection's baseUrl path."""
        raw_path, _, query = request.target.partition("?")
        prefix = connection.base.path_prefix
        if prefix and raw_path != prefix and not raw_path.startswith(prefix + "/"):
            raise NotFound("route_not_found", "the path is outside the connection's baseUrl path")
        return self._begin(
            request, connection, caller, raw_path[len(prefix) :], query, settle, start
        )

    async def _after_lookup(
        self,
        request: InboundRequest,
        miss: UnknownConnection,
        caller: Presented | None,
        tail: str,
        query: str,
    ) -> None:
        connection = await miss.route.select_latest(request)
        work = self._begin(request, connection, caller, tail, query, None, 0.0)
        if work is not None:
            await work

    def _begin(
        self,
        request: InboundRequest,
        connection: CompiledConnection,
        caller: Presented | None,
        tail: str,
        query: str,
        settle: Settle | None,
        start: float,
    ) -> Coroutine[Any, Any, None] | None:
        request.connection = connection
        if self.placeholders is not None:
            self.placeholders.check(connection.id, request.target, request.raw_headers)
        if connection.expires_at is not None:
            check_not_expired(connection.expires_at)
        check_tail(tail)
        if self.access is not None:
            self.access.authorize(
                caller, connection, request.method, tail, request.raw_headers, query
            )
        if caller is not None:
            request.client = caller.name
        # A form body may name another method in `_method` (policy.py): under a method policy
        # it is read, and checked, before anything is sent.
        form_type = None
        if request.has_body and self.access is not None:
            if self.access.restricts_methods(connection):
                content_type = request.header("Content-Type")
                if is_form(content_type):
                    form_type = content_type
        if request.upgrade and is_handshake(request):
            return self._forward(request, connection, caller, tail, query, websocket=True)
        lean = connection.lean
        upstream = self.upstream
        if (
            lean is not None
            and form_type is None
            and not self.forwarded_headers
            and isinstance(upstream, Http1Upstream)
        ):
            # Constant credential headers only; the headers that carried a client key are left
            # out. No head when a `Connection` header names others: the general path drops them.
            skip = caller.carriers_raw if caller is not None else _NO_CARRIERS
            framing, length, line = _lean_framing(request)
            method = request.method
            head = build_head(lean, method, tail, query, request.raw_headers, line, skip)
            if head is not None:
                origin = lean.origin
                tls = upstream.pool.tls_for(origin, connection.tls)
                encoded = EncodedRequest(origin, tls, method, head, None, None, framing, length)
                return _start_lean(upstream, request, connection, encoded, settle, start)
        return self._forward(request, connection, caller, tail, query, form_type)

    async def _forward(
        self,
        request: InboundRequest,
        connection: CompiledConnection,
        caller: Presented | None,
        tail: str,
        query: str,
        form_type: str | None = None,
        *,
        websocket: bool = False,
    ) -> None:
        """The general path: the credential chain over an `OutboundRequest` (a WebSocket
        handshake too: `websocket`)."""
        headers = request.headers
        if caller is not None:
            headers = caller.without_key(headers)
        outbound = outbound_request(
            connection,
            request.method,
            tail,
            query,
            headers,
            _forwarded(request) if self.forwarded_headers else (),
        )
        if websocket:
            outbound = upgrade_request(outbound)
        # Asked per request: OAuth 1 reads only form bodies, known from the Content-Type.
        reads_body = form_type is not None
        for scheme in connection.schemes:
            if scheme.reads_body(outbound):
                reads_body = True
                break
        buffered: BufferedBody | None = None
        stream: AsyncIterator[bytes] | None = None
        if request.has_body or reads_body or connection.wants_replayable_body:
            buffered, stream = await self._prepare_body(request, connection, reads_body)
        try:
            if form_type is not None and buffered is not None and self.access is not None:
                named = await _form_methods(buffered, form_type)
                self.access.authorize_methods(connection, named, tail)
            if buffered is not None:
                outbound = with_body(outbound, buffered)
            send = _Sender(self.upstream, stream, connection.tls, upgrade=websocket)
            reply = await run_chain(connection.schemes, outbound, send, self.tokens)
            if websocket:
                await relay_handshake(request, connection, reply, self.websocket_idle)
            else:
                await relay(request, connection, reply)
        finally:
            if buffered is not None:
                buffered.close()

    async def _prepare_body(
        self, request: InboundRequest, connection: CompiledConnection, reads_body: bool
    ) -> tuple[BufferedBody | None, AsyncIterator[bytes] | None]:
        """Buffer the body when a scheme reads it or may replay it; otherwise stream it."""
        if not request.has_body:
            return (
                BufferedBody() if reads_body or connection.wants_replayable_body else None
            ), None
        limits = self.limits
        if reads_body:
            body, _ = await read_body(
                request.body,
                memory_limit=limits.memory_body_bytes,
                max_bytes=limits.max_body_bytes,
            )
            return body, None
        if connection.wants_replayable_body:
            body, overflow = await read_body(
                request.body,
                memory_limit=limits.replay_body_bytes,
                max_bytes=limits.max_body_bytes,
                stop_after=limits.replay_body_bytes,
            )
            if overflow is None:
                return body, None
            # Too big to keep for a retry: stream what was read, then the rest.
            return None, _chain(body.read_all(), overflow, request.body.iter_any())
        return None, request.body.iter_any()


async def _form_methods(body: BufferedBody, content_type: str) -> set[str]:
    if body.in_memory is not None:
        return form_method_overrides((body.in_memory,), content_type)
    # A spilled body is read from its file, off the event loop.
    return await asyncio.to_thread(form_method_overrides, body.iter_bytes(), content_type)


def _lean_framing(request: InboundRequest) -> tuple[Framing, int | None, bytes]:
    """How the client's body goes up: framing, length, and the framing header line to add."""
    if not request.has_body:
        return Framing.NONE, 0, b""
    if request.chunked:
        return Framing.CHUNKED, None, b"Transfer-Encoding: chunked\r\n"
    return Framing.LENGTH, request.content_length, b""


def _start_lean(
    upstream: Http1Upstream,
    request: InboundRequest,
    connection: CompiledConnection,
    encoded: EncodedRequest,
    settle: Settle | None,
    start: float,
) -> Coroutine[Any, Any, None] | None:
    """Send on the lean path (`lean.py`: `encoded` holds the head `build_head` made with
    `_lean_framing`'s line, and that framing): None when the task-free round trip took the
    request, else the coroutine that serves it."""
    body = request.body
    # The whole body, when it came with the head (and is not chunked-coded).
    whole = encoded.data = body.take_whole() if encoded.framing is Framing.LENGTH else None
    if whole is None and request.has_body:
        encoded.stream = body.iter_any()
        return _relay_when_sent(request, connection, upstream.send_encoded(encoded))
    if settle is not None and send_lean(upstream, encoded, request, connection, settle, start):
        return None
    return _relay_when_sent(request, connection, upstream.send_encoded(encoded))


async def _relay_when_sent(
    request: InboundRequest,
    connection: CompiledConnection,
    sending: Coroutine[Any, Any, UpstreamReply],
) -> None:
    await relay(request, connection, await sending)


class _Sender:
    """Sends requests upstream; a streamed client body can be sent once only."""

    def __init__(
        self,
        upstream: Upstream,
        stream: AsyncIterator[bytes] | None,
        tls: ssl.SSLContext | None,
        *,
        upgrade: bool = False,
    ) -> None:
        self._upstream = upstream
        self._stream = stream
        self._tls = tls
        self._upgrade = upgrade

    def __call__(self, request: OutboundRequest) -> Awaitable[UpstreamReply]:
        body: UpstreamBody
        if isinstance(request.body, BufferedBody):
            memory = request.body.in_memory
            body = memory if memory is not None else request.body.aiter_bytes()
        else:
            body, self._stream = self._stream, None
        if request.body_filter is not None:
            body = _filtered(body, request.body_filter)
        if self._upgrade:
            return self._upstream.send(request, body, self._tls, upgrade=True)
        return self._upstream.send(request, body, self._tls)


def check_not_expired(expires_at: float) -> None:
    """A credential past its seed `expiresAt` is deleted on the platform: it is never sent."""
    if time.time() >= expires_at:
        raise CredentialError(
            "credential_expired",
            "a credential of this connection is past its expiresAt; replace it to go on",
        )


def route_target(router: Router[RouteTarget], raw_target: str) -> tuple[RouteTarget, str, str]:
    """Split a request-target and find its route: `(target, raw tail, raw query)`."""
    raw_path, _, query = raw_target.partition("?")
    if not raw_path.startswith("/"):
        raise InvalidRequest("bad_path", "the request target must be a path")
    resolved = router.resolve(raw_path)
    if resolved is None:
        raise NotFound("route_not_found", "no connection serves this path")
    target, tail = resolved
    return target, tail, query


def check_tail(tail: str) -> None:
    if is_escaping(tail):
        raise InvalidRequest("bad_path", "the path may not leave the connection's baseUrl")


def outbound_request(
    connection: CompiledConnection,
    method: str,
    tail: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    forwarded: Sequence[tuple[str, str]] = (),
) -> OutboundRequest:
    """The upstream request before any credential signs it (used by `handle` and `explain`)."""
    # The client's forwarding headers never pass as sent: off, internal addresses stay
    # inside; on, the proxy writes its own (extending the client's X-Forwarded-For chain).
    drop = _request_drop(connection.owned_headers)
    kept = end_to_end(headers, drop)
    aliased = _aliased(drop)
    kept = [pair for pair in kept if not is_underscore_alias(pair[0].lower(), aliased)]
    return OutboundRequest(
        method,
        _origin(connection.base),
        join_path(connection.base, tail),
        query,
        (*kept, *forwarded) if forwarded else tuple(kept),
    )


@lru_cache(maxsize=4096)
def _request_drop(owned: frozenset[str]) -> frozenset[str]:
    return REQUEST_ONLY | owned | FORWARDED


@lru_cache(maxsize=4096)
def _aliased(drop: frozenset[str]) -> frozenset[str]:
    return drop | HOP_BY_HOP | FRAMING


@lru_cache(maxsize=4096)
def _origin(base: BaseUrl) -> str:
    return base.origin


def with_body(request: OutboundRequest, body: BufferedBody) -> OutboundRequest:
    """`request` carrying a read body, with `Content-Length` set to its size — unless the body
    is empty and the client sent no `Content-Length`: a bodyless request goes up without any
    framing header (bytes in = bytes out; a signing scheme buffers even an absent body)."""
    headers = tuple((k, v) for k, v in request.headers if k.lower() != "content-length")
    if body.size or len(headers) != len(request.headers):
        headers += (("Content-Length", str(body.size)),)
    return OutboundRequest(
        request.method, request.origin, request.path, request.query, headers, body
    )


def _forwarded(request: InboundRequest) -> list[tuple[str, str]]:
    # One X-Forwarded-For: the client's chain (all its headers, in order) plus this hop's peer.
    chain = [*request.header_values("X-Forwarded-For"), request.peer]
    return [
        ("X-Forwarded-For", ", ".join(part for part in chain if part)),
        ("X-Forwarded-Proto", request.scheme),
        ("X-Forwarded-Host", request.host),
    ]


def _filtered(body: UpstreamBody, body_filter: BodyFilter) -> UpstreamBody:
    """`body` rewritten by a signer's filter as it is sent (aws-chunked re-signing)."""
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        whole = body_filter.feed(bytes(body or b""))
        body_filter.finish()
        return whole
    return _filtered_stream(body, body_filter)


async def _filtered_stream(
    stream: AsyncIterable[bytes], body_filter: BodyFilter
) -> AsyncIterator[bytes]:
    async for chunk in stream:
        if out := body_filter.feed(chunk):
            yield out
    body_filter.finish()


async def _chain(first: bytes, second: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    yield second
    async for chunk in rest:
        yield chunk
