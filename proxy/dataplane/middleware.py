"""Proxy errors as JSON with `Proxy-Status` (docs/errors.md), and the end of every request.

One access-log line per request, queued by `log_access` (called where a request ends in
`DataPlane`: `dispatch`, `serve` or `settle`, once per request; formatted by `access_line.py`,
written by `access_log.py`): method, connection, path (query values that a credential adds never
appear: the log shows the client's request, never the outbound one; and no query at all, which
may carry the client's own secrets), status, bytes and duration. A request the server refused (a
malformed head, a limit) is logged with `-` for method and path: nothing of its raw bytes is ever
written. Unexpected exceptions are logged by type and traceback only, through `logging`; their
text can quote a URL or header and so a secret.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus

from aiohttp import web

from .. import metrics
from ..errors import ProxyError
from ..http1.inbound import InboundRequest
from .access_log import AccessLog

error_log = logging.getLogger("signing_proxy.error")

# nginx's code for "the client closed the connection before the response was complete".
CLIENT_CLOSED = 499
# A request `timeouts.shutdownGrace` cut before its response head went out: the proxy was not
# available to finish it. (Cut after its head: the status sent.)
CUT_BY_SHUTDOWN = 503
CUT_BY_SHUTDOWN_CODE = "cut_by_shutdown"


def error_response(error: ProxyError) -> web.Response:
    """An error of the management API (an aiohttp application)."""
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


def log_access(request: InboundRequest, start: float, access_log: AccessLog | None) -> None:
    """The end of every request: its metrics, and its line when the access log is on."""
    if request.cut_by_shutdown:
        status = request.status if request.started else CUT_BY_SHUTDOWN
        request.error_code = request.error_code or CUT_BY_SHUTDOWN_CODE
    elif request.client_gone:
        status = CLIENT_CLOSED
    else:
        status = request.status
    metrics.request_done(request, start, status)
    if access_log is not None:
        access_log.request(request, status, (time.monotonic() - start) * 1000)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
