"""Data-plane middleware: proxy errors as docs/errors.md JSON with `Proxy-Status`, and the access
log.

One access-log line per request: method, connection, path (query values that a credential adds
never appear: the log shows the client's request, never the outbound one), status, bytes and
duration. Unexpected exceptions are logged by type and traceback only; their text can quote
a URL or header and so a secret.
"""

from __future__ import annotations

import logging
import time
import traceback

from aiohttp import web
from aiohttp.typedefs import Handler

from .connection import CompiledConnection
from .errors import ProxyError

access_log = logging.getLogger("signing_proxy.access")
error_log = logging.getLogger("signing_proxy.error")

# Per-request facts the handler leaves for the access log.
CONNECTION = web.RequestKey("connection", CompiledConnection)
UPSTREAM_BROKEN = web.RequestKey("upstream_broken", bool)
BODY_BYTES = web.RequestKey("body_bytes", int)  # response body bytes relayed to the client


def log_path(request: web.Request) -> str:
    """The raw path: still percent-encoded, so `%0A` cannot start a forged log line; no
    query, which may carry the client's own secrets."""
    return request.raw_path.partition("?")[0]


def error_response(error: ProxyError) -> web.Response:
    return web.Response(
        status=error.status,
        body=error.body_bytes(),
        content_type="application/json",
        headers={"Proxy-Status": error.proxy_status_header(), "Cache-Control": "no-store"},
    )


@web.middleware
async def proxy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.monotonic()
    status, size = 0, 0
    try:
        response = await handler(request)
        status = response.status
        # Body bytes only (headers and chunk framing are not the message's size).
        relayed = request.get(BODY_BYTES)
        size = relayed if relayed is not None else response.content_length or 0
        return response
    except ProxyError as error:
        response = error_response(error)
        status, size = response.status, len(error.body_bytes())
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception as exc:
        error_log.error(
            "unexpected %s while serving %s %s\n%s",
            type(exc).__name__,
            request.method,
            log_path(request),
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        internal = ProxyError("proxy_internal_error", "the proxy failed to handle the request")
        status, size = internal.status, len(internal.body_bytes())
        return error_response(internal)
    finally:
        if access_log.isEnabledFor(logging.INFO):  # the line's arguments are not free either
            _log_access(request, status, size, start)


def _log_access(request: web.Request, status: int, size: int, start: float) -> None:
    connection = request.get(CONNECTION)
    access_log.info(
        "%s %s connection=%s status=%s bytes=%d duration_ms=%.1f%s",
        request.method,
        log_path(request),
        connection.name if connection is not None else "-",
        status or "-",
        size,
        (time.monotonic() - start) * 1000,
        " upstream_broken" if request.get(UPSTREAM_BROKEN) else "",
    )
