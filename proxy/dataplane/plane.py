"""Wiring: the data plane (`DataPlane`) built from a checked `Runtime`.

`DataPlane.dispatch` is the one entry of every inbound request (the server in `http1/server.py`
calls it, in turn, for each request of a connection): `/healthz`, else the forwarder, whose
request runs in a task (`serve`) or, on the lean round trip, by callbacks (`settle` ends it);
errors are answered in the proxy's own voice (`middleware.send_error`), and the access-log line
is written once, at its end. Its lifecycle (`start`, `close`) seeds and follows OAuth 2.0 state
and the API-created connections, and closes the upstream pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import traceback
from collections.abc import Awaitable, Coroutine
from typing import Any

from .. import metrics
from ..connections.runtime import Runtime
from ..connections.templates import Templates
from ..errors import ProxyError
from ..http1 import Http1Upstream
from ..http1.inbound import InboundRequest
from ..http1.server import ServerLimits
from ..http1.upstream import Upstream
from ..intercept.ca import load_authority
from ..store import Store
from ..store.legacy_ids import carry_legacy_tokens
from ..store.memory import MemoryStore
from ..tokens.manager import TokenManager
from .access_log import AccessLog
from .connect import ForwardMode, Tunnel, build_forward_mode, host_not_allowed
from .forward import Forwarder, RouteTarget, TokenProvider
from .hosts import HostCheck, misdirected, named_hosts
from .middleware import error_log, log_access, send_error
from .routing import Router
from .sync import SYNC_INTERVAL, ConnectionSync

HEALTHZ_BODY = b'{"status": "ok"}'


def build_router(runtime: Runtime, templates: Templates | None = None) -> Router[RouteTarget]:
    router: Router[RouteTarget] = Router((c.route, c) for c in runtime.connections)
    for route in templates.routes.values() if templates is not None else ():
        router.add(route.template.route, route)
    return router


class DataPlane:
    """The data plane: `/healthz`, and every other path forwarded by route.

    Attributes:
        templates: the live template routes, shared with the admin app.
        tokens: the OAuth 2.0 token manager (None when a bare `TokenProvider` was given).
        access_log: where each request's line goes (None: the access log is off).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        upstream: Upstream | None = None,
        tokens: TokenProvider | None = None,
        templates: Templates | None = None,
        store: Store | None = None,
        close_shared: bool = True,
        sync_interval: float = SYNC_INTERVAL,
        access_log: AccessLog | None = None,
    ) -> None:
        config = runtime.config
        self.access_log = access_log
        self.runtime = runtime
        if tokens is None:
            tokens = TokenManager(
                store if store is not None else MemoryStore(),
                redirect_uri=runtime.oauth2_redirect_uri,
            )
        if templates is None:
            templates = Templates(runtime.templates)
        if upstream is None:
            upstream = Http1Upstream(
                connect_timeout=config.timeouts.connect,
                read_timeout=config.timeouts.read,
                max_head_bytes=config.limits.max_header_bytes,
            )
        self.templates = templates
        # The file's connections by id, kept current by `reload`: the admin app reads this dict.
        self.file_connections = {c.id: c for c in runtime.connections}
        self.tokens = tokens if isinstance(tokens, TokenManager) else None
        self.forwarder = Forwarder(
            router=build_router(runtime, templates),
            upstream=upstream,
            limits=config.limits,
            tokens=tokens,
            forwarded_headers=config.forwarded_headers,
            access=runtime.access,
            websocket_idle=config.timeouts.websocket_idle,
            placeholders=runtime.placeholders,
        )
        self.hosts = _host_check(runtime)
        self.limits = ServerLimits(
            max_head_bytes=config.limits.max_header_bytes,
            max_connections=config.limits.max_client_connections,
            head_timeout=config.timeouts.client_head,
            idle_timeout=config.timeouts.client_idle,
            body_timeout=config.timeouts.client_body,
        )
        self._store = store
        # Forward-proxy mode (connect.py): set up by `start` and `reload` (its CA may come from
        # the store); None while off.
        self.forward: ForwardMode | None = None
        self._ca_store = (
            store
            if store is not None
            else (self.tokens.store if self.tokens is not None else MemoryStore())
        )
        self._close_shared = close_shared
        self._sync = (
            ConnectionSync(self.tokens.store, templates, self.tokens, interval=sync_interval)
            if self.tokens is not None
            else None
        )
        self._started = False

    async def start(self) -> None:
        """Seed every file connection's OAuth 2.0 state before serving (the file wins only when
        its token changed, docs/request-path.md), then follow the store: another worker's
        management API may change connections (docs/admin-api.md)."""
        if self._started:
            return
        self._started = True
        await self._set_forward_mode(self.runtime)
        if self.tokens is not None:
            await carry_legacy_tokens(
                self.tokens.store, (c.model for c in self.runtime.connections)
            )
            for connection in self.runtime.connections:
                await self.tokens.adopt_connection(connection)
        if self._sync is not None:
            await self._sync.start()

    async def reload(self, runtime: Runtime) -> None:
        """Serve `runtime`'s connections from now on (reload.py).

        Its OAuth 2.0 credentials are adopted first (a stored token stays attached while the
        file's is unchanged), then one new forwarder replaces the old: a request in flight holds
        the old one and finishes on it. The upstream pool and the template routes carry over; the
        upstream timeouts and response-head limit follow the new file."""
        if self.tokens is not None:
            for connection in runtime.connections:
                await self.tokens.adopt_connection(connection)
        await self._set_forward_mode(runtime)
        config = runtime.config
        upstream = self.forwarder.upstream
        if isinstance(upstream, Http1Upstream):
            upstream.configure(
                connect_timeout=config.timeouts.connect,
                read_timeout=config.timeouts.read,
                max_head_bytes=config.limits.max_header_bytes,
            )
        if runtime.access is not None and self.forwarder.access is not None:
            # A reload must not refill every client's rate limit.
            runtime.access.keep_buckets(self.forwarder.access)
        self.forwarder = dataclasses.replace(
            self.forwarder,
            router=build_router(runtime, self.templates),
            limits=config.limits,
            forwarded_headers=config.forwarded_headers,
            access=runtime.access,
            websocket_idle=config.timeouts.websocket_idle,
            placeholders=runtime.placeholders,
        )
        self.runtime = runtime
        self.hosts = _host_check(runtime)
        self.file_connections.clear()
        self.file_connections.update((c.id, c) for c in runtime.connections)

    @property
    def serves_connect(self) -> bool:
        """CONNECT is for this plane (forward-proxy mode), not a 405 (`http1/server.py`)."""
        return self.forward is not None

    async def _set_forward_mode(self, runtime: Runtime) -> None:
        binding = runtime.binding
        if binding is None:
            self.forward = None
            return
        config = runtime.config
        root = await load_authority(config, self._ca_store)
        previous = self.forward
        if previous is not None and previous.issuer.root.cert == root.cert:
            root = previous.issuer.root  # the same CA: its intermediate may stay
        self.forward = build_forward_mode(
            binding,
            root,
            previous,
            unmatched=config.forward_proxy.unmatched,
            access=runtime.access,
            connect_timeout=config.timeouts.connect,
            tunnel_private=config.forward_proxy.tunnel_private_addresses,
        )

    def flush_access_log(self) -> None:
        """Have the access lines queued so far written now (SIGHUP); returns at once."""
        if self.access_log is not None:
            self.access_log.flush()

    async def close(self) -> None:
        """After the last request: write its access line (while SIGTERM is still handled: a
        second one must not end the process with lines queued), stop following the store,
        close the upstream pool, and the token manager and store when this plane is their
        only user (`close_shared`). The access log's owner stops its writer."""
        if self.access_log is not None:
            await asyncio.to_thread(self.access_log.wait_written)
        if self._sync is not None:
            await self._sync.stop()
        await self.forwarder.upstream.close()
        if self._close_shared and self.tokens is not None:
            await self.tokens.close()
            if self._store is not None:
                await self._store.close()

    def dispatch(self, request: InboundRequest) -> Coroutine[Any, Any, None] | None:
        """Serve `request` (the server's `Dispatcher`): the coroutine to run in a task, or None
        when it is answered already or goes on by callbacks (`lean_round_trip.py`)."""
        start = time.monotonic()
        metrics.request_started()
        try:
            if request.rejection is not None:
                send_error(request, request.rejection)
            elif request.tunnel is not None or (
                self.forward is not None
                and (request.method == "CONNECT" or request.target[:1] != "/")
            ):
                work = self._forward_mode(request, start)
                if work is not None:
                    return self.serve(request, start, work)
                return None
            elif self.hosts is not None and not self.hosts.allows(request.header("Host")):
                send_error(request, misdirected())  # `listenHosts` (hosts.py: DNS rebinding)
            elif request.target == "/healthz" and request.method in ("GET", "HEAD"):
                request.respond(200, "OK", [("Content-Type", "application/json")], HEALTHZ_BODY)
            else:
                work = self.forwarder.start(request, self, start)
                if work is not None:
                    return self.serve(request, start, work)
                return None
        except Exception as exc:
            self._failed(request, exc)
        log_access(request, start, self.access_log)
        request.complete()
        return None

    def _forward_mode(
        self, request: InboundRequest, start: float
    ) -> Coroutine[Any, Any, None] | None:
        """A CONNECT, a request from inside a tunnel, or an absolute-form request."""
        forward = self.forward
        if forward is None:
            raise host_not_allowed()  # a tunnel opened before a reload turned the mode off
        if request.method == "CONNECT":
            return forward.connect(request)
        tunnel = request.tunnel
        if isinstance(tunnel, Tunnel):
            return forward.start_inner(request, tunnel, self.forwarder, self, start)
        return forward.start_absolute(request, self.forwarder, self, start)

    async def serve(self, request: InboundRequest, start: float, work: Awaitable[None]) -> None:
        """`work` serving `request`, with its failures answered and its access line written."""
        try:
            await work
        except asyncio.CancelledError:
            if not request.client_gone:
                raise
            # The client went away: the upstream round trip was cancelled with this task. Not a
            # proxy or upstream failure; the access line says so, once.
        except Exception as exc:
            self._failed(request, exc)
        finally:
            log_access(request, start, self.access_log)

    def settle(self, request: InboundRequest, start: float, error: Exception | None) -> None:
        """End a request served by callbacks (`lean_round_trip.Settle`)."""
        if error is not None:
            self._failed(request, error)
        log_access(request, start, self.access_log)
        request.complete()

    def _failed(self, request: InboundRequest, exc: Exception) -> None:
        if isinstance(exc, ProxyError):
            self._fail(request, exc)
            return
        error_log.error(
            "unexpected %s while serving %s %s\n%s",
            type(exc).__name__,
            request.method,
            request.path,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        internal = ProxyError("proxy_internal_error", "the proxy failed to handle the request")
        self._fail(request, internal)

    @staticmethod
    def _fail(request: InboundRequest, error: ProxyError) -> None:
        if request.started:
            # The head is out already: only cutting the connection can tell the client.
            request.error_code = error.code
            request.error_type = error.proxy_status
            request.abort()
        else:
            send_error(request, error)


def _host_check(runtime: Runtime) -> HostCheck | None:
    names = runtime.config.listen_hosts
    return named_hosts(names) if names is not None else None


def create_app(
    runtime: Runtime,
    *,
    upstream: Upstream | None = None,
    tokens: TokenProvider | None = None,
    templates: Templates | None = None,
    store: Store | None = None,
    close_shared: bool = True,
    sync_interval: float = SYNC_INTERVAL,
    access_log: AccessLog | None = None,
) -> DataPlane:
    """The data plane of `runtime` (see `DataPlane`).

    Args:
        templates: the live template routes to share with the admin app (built when None).
        tokens: OAuth 2.0 token provider; a `TokenManager` on `store` when None.
        store: durable state. None = a memory store (tests, demos).
        close_shared: close the token manager and `store` with this plane. False when another
            listener shares them: the caller closes them after both have drained
            (`server.serve(close_after=...)`, as `signing-proxy run` does).
        sync_interval: seconds between checks for connections changed in the store by another
            process (`sync.py`).
        access_log: the access-log writer (`access_log.py`); None: no access lines. `close()`
            writes what it holds; its owner stops it.
    """
    return DataPlane(
        runtime,
        upstream=upstream,
        tokens=tokens,
        templates=templates,
        store=store,
        close_shared=close_shared,
        sync_interval=sync_interval,
        access_log=access_log,
    )
