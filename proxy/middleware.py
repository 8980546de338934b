"""Proxy errors as JSON with `Proxy-Status` (docs/errors.md), and the data plane's access log.

One access-log line per request, written by `log_access` (called where a request ends in
`DataPlane`: `dispatch`, `serve` or `settle`, once per request): method, connection, path (query
values that a credential adds never appear: the log shows the client's request, never the
outbound one; and no query at all, which may carry the client's own secrets), status, bytes and
duration. A request the server refused (a malformed head, a limit) is logged with `-` for method
and path: nothing of its raw bytes is ever written. Unexpected exceptions are logged by type and
traceback only; their text can quote a URL or header and so a secret.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus

from aiohttp import web

from . import metrics
from .errors import ProxyError
from .http1.inbound import InboundRequest

access_log = logging.getLogger("signing_proxy.access")
error_log = logging.getLogger("signing_proxy.error")

# nginx's code for "the client closed the connection before the response was complete".
CLIENT_CLOSED = 499


def error_response(error: ProxyError) -> web.Response:
    """An error of the admin API (an aiohttp application)."""
    return web.Response(
        status=error.status,
        body=error.body_bytes(),
        content_type="application/json",
        headers={
            "Proxy-Status": error.proxy_status_header(),
            "Cache-Control": "no-store",
            **dict(error.headers),
        },
    )


def send_error(request: InboundRequest, error: ProxyError) -> None:
    """Answer `request` with `error` in the proxy's own voice: JSON, `Proxy-Status`, request id."""
    request.error_code = error.code
    request.error_type = error.proxy_status
    request.respond(
        error.status,
        _reason(error.status),
        [
            ("Content-Type", "application/json"),
            ("Proxy-Status", error.proxy_status_header()),
            ("Cache-Control", "no-store"),
            ("X-Request-Id", request.request_id),
            *error.headers,
        ],
        error.body_bytes(),
    )


def log_access(request: InboundRequest, start: float) -> None:
    status = CLIENT_CLOSED if request.client_gone else request.status
    metrics.request_done(request, start, status)
    if not access_log.isEnabledFor(logging.INFO):  # the line's arguments are not free either
        return
    connection = request.connection
    duration_ms = round((time.monotonic() - start) * 1000, 1)
    # Structured fields for `log.format: json` (logs.py); the text line below says the same.
    fields = {
        "event": "request",
        "request_id": request.request_id,
        "client": request.client,
        "connection": connection.name if connection is not None else None,
        "method": request.method,
        "path": _route_relative(request.path, connection.route if connection else None),
        "status": status or None,
        "upstream_status": request.upstream_status,
        "duration_ms": duration_ms,
        "bytes_in": request.body.received,
        "bytes_out": request.body_bytes,
        "error": request.error_code,
    }
    if request.upstream_broken:
        fields["error"] = fields["error"] or "upstream_broken"
    access_log.info(
        "%s %s connection=%s status=%s bytes=%d duration_ms=%.1f%s%s%s",
        request.method,
        request.path,  # raw: still percent-encoded, so `%0A` cannot start a forged log line
        connection.name if connection is not None else "-",
        status or "-",
        request.body_bytes,
        (time.monotonic() - start) * 1000,
        " upstream_broken" if request.upstream_broken else "",
        " client_disconnected" if request.client_gone else "",
        f" client={request.client}" if request.client is not None else "",
        extra=fields,
    )


def _route_relative(path: str, route: str | None) -> str:
    """The path after the connection's route (still percent-encoded, no query)."""
    if route and path.startswith(route):
        return path[len(route) :] or "/"
    return path


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
