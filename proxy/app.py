"""Wiring: build the data-plane aiohttp application from a checked `Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .config.load import Runtime
from .forward import Forwarder, RouteTarget, TokenProvider
from .http1 import Http1Upstream
from .middleware import proxy_middleware
from .routing import Router
from .store import Store
from .store.memory import MemoryStore
from .sync import SYNC_INTERVAL, ConnectionSync
from .templates import Templates
from .tokens import TokenManager
from .upstream import Upstream

FORWARDER = web.AppKey("forwarder", Forwarder)
# The live template routes (docs/admin-api.md); the admin app adds API-created connections to them.
TEMPLATES = web.AppKey("templates", Templates)
# OAuth 2.0 tokens (docs/request-path.md), shared with the admin app.
TOKENS = web.AppKey("tokens", TokenManager)


def build_router(runtime: Runtime, templates: Templates | None = None) -> Router[RouteTarget]:
    router: Router[RouteTarget] = Router((c.route, c) for c in runtime.connections)
    for route in templates.routes.values() if templates is not None else ():
        router.add(route.template.route, route)
    return router


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(
    runtime: Runtime,
    *,
    upstream: Upstream | None = None,
    tokens: TokenProvider | None = None,
    templates: Templates | None = None,
    store: Store | None = None,
    close_shared: bool = True,
    sync_interval: float = SYNC_INTERVAL,
) -> web.Application:
    """The data plane: `/healthz`, and every other path forwarded by route.

    Args:
        templates: the live template routes to share with the admin app (built when None).
        tokens: OAuth 2.0 token provider; a `TokenManager` on `store` when None.
        store: durable state. None = a memory store (tests, demos).
        close_shared: close the token manager and `store` with this app. False when another
            listener shares them: the caller closes them after both have drained
            (`server.serve(close_after=...)`, as `signing-proxy run` does).
        sync_interval: seconds between checks for connections changed in the store by another
            process (`sync.py`).
    """
    config = runtime.config
    if tokens is None:
        tokens = TokenManager(store if store is not None else MemoryStore())
    if templates is None:
        templates = Templates(runtime.templates)
    if upstream is None:
        # Our own HTTP/1.1 hop (issue 6): a fraction of aiohttp ClientSession's per-request
        # cost; `AiohttpUpstream` stays available to pass in (the bench compares the two).
        upstream = Http1Upstream(
            connect_timeout=config.timeouts.connect, read_timeout=config.timeouts.read
        )
    forwarder = Forwarder(
        router=build_router(runtime, templates),
        upstream=upstream,
        limits=config.limits,
        tokens=tokens,
        forwarded_headers=config.forwarded_headers,
    )
    # auto_decompress off: a gzip request body must reach the upstream as the client sent it
    # (aiohttp's server otherwise inflates it and forwards it under the client's headers).
    app = web.Application(middlewares=[proxy_middleware], handler_args={"auto_decompress": False})
    app[FORWARDER] = forwarder
    app[TEMPLATES] = templates
    app.router.add_get("/healthz", healthz)
    # `[\s\S]`, not `.`: the router matches the decoded path, and `%0A` must not fall out
    # to aiohttp's plain-text 404 (the forwarder decides, on the raw path).
    app.router.add_route("*", r"/{tail:[\s\S]*}", forwarder.handle)

    async def close_upstream(_: web.Application) -> None:
        await forwarder.upstream.close()

    app.on_cleanup.append(close_upstream)
    if isinstance(tokens, TokenManager):
        app[TOKENS] = tokens
        sync = ConnectionSync(tokens.store, templates, tokens, interval=sync_interval)
        app.cleanup_ctx.append(_token_lifecycle(runtime, tokens, store, sync, close_shared))
    return app


def _token_lifecycle(
    runtime: Runtime,
    tokens: TokenManager,
    store: Store | None,
    sync: ConnectionSync,
    close_shared: bool,
) -> Callable[[web.Application], AsyncIterator[None]]:
    # Seed every file connection's OAuth 2.0 state before serving (the file wins only when its
    # token changed, docs/request-path.md); close the token client and `store` (if given) after
    # the last request, when this app is their only user.
    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        for connection in runtime.connections:
            await tokens.adopt_connection(connection)
        # Connections created through the management API come back from the store, and follow
        # it while serving: another worker's admin API may change them (docs/admin-api.md).
        await sync.start()
        yield
        await sync.stop()
        if close_shared:
            await tokens.close()
            if store is not None:
                await store.close()

    return lifecycle
