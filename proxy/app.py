"""Wiring: build the data-plane aiohttp application from a checked `Runtime`."""

from __future__ import annotations

from aiohttp import web

from .config.load import Runtime
from .forward import Forwarder, RouteTarget, TokenProvider
from .middleware import proxy_middleware
from .routing import Router
from .templates import Templates
from .upstream import AiohttpUpstream, Upstream

FORWARDER = web.AppKey("forwarder", Forwarder)
# The live template routes (SPEC §9); the admin app adds API-created connections to them.
TEMPLATES = web.AppKey("templates", Templates)


def build_router(runtime: Runtime, templates: Templates | None = None) -> Router[RouteTarget]:
    router: Router[RouteTarget] = Router((c.route, c) for c in runtime.connections)
    for route in (templates.routes.values() if templates is not None else ()):
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
) -> web.Application:
    """The data plane: `/healthz`, and every other path forwarded by route.

    Args:
        templates: the live template routes to share with the admin app (built when None).
    """
    config = runtime.config
    if templates is None:
        templates = Templates(runtime.templates)
    if upstream is None:
        upstream = AiohttpUpstream(
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
    app = web.Application(
        middlewares=[proxy_middleware], handler_args={"auto_decompress": False}
    )
    app[FORWARDER] = forwarder
    app[TEMPLATES] = templates
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", forwarder.handle)

    async def close_upstream(_: web.Application) -> None:
        await forwarder.upstream.close()

    app.on_cleanup.append(close_upstream)
    return app
