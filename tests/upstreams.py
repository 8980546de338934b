"""Mock upstreams the tests share: one handler answering every method on every path, the shape of
almost every fake API, recorder and echo the tests point a connection at."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def catch_all(handler: Handler, **app_options: Any) -> web.Application:
    """An aiohttp app where `handler` answers every method on every path (`app_options`, such
    as `client_max_size`, go to `web.Application`)."""
    app = web.Application(**app_options)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app
