"""A tiny echo upstream: answers every request with what it received, as JSON.

Used by the README's first command (`signing-proxy run --with-echo`) to show a credential being
added end to end without internet or secrets, and by the tests as a real local upstream.
"""

from __future__ import annotations

import hashlib

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "target": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "bodyLength": len(body),
            "bodySha256": hashlib.sha256(body).hexdigest(),
        }
    )


def create_echo_app() -> web.Application:
    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app
