"""The management API's aiohttp server, made to refuse malformed requests in the proxy's own voice.

aiohttp answers a request its parser refuses (a line over 8190 bytes, a bare LF, a bad header
byte, `Content-Length` with `Transfer-Encoding`) before any middleware runs: with a text/plain
body that quotes the offending bytes, and an ERROR log line whose traceback quotes them again —
the admin token of an `Authorization` line, or the `code` and `state` of a long OAuth callback
URL. `AdminRunner` serves an application with a request handler whose `handle_error` answers
the docs/errors.md JSON with `Proxy-Status` instead, and logs one WARNING line naming the
refusal's kind: never the exception's text, which is where aiohttp puts the raw bytes.
"""

from __future__ import annotations

import logging
import traceback

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..dataplane.middleware import error_response
from ..errors import InvalidRequest, ProxyError

log = logging.getLogger("signing_proxy.admin")

# What each parser refusal is called in the answer and the log (the exception's own text is
# never used: it quotes the request).
_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header field is too long"),
    (http_exceptions.BadHttpMethod, "malformed request method"),
    (http_exceptions.BadStatusLine, "malformed request line"),
    (http_exceptions.InvalidHeader, "malformed header field"),
    (http_exceptions.InvalidURLError, "malformed request target"),
    (http_exceptions.TransferEncodingError, "malformed chunked body"),
    (http_exceptions.ContentLengthError, "malformed Content-Length"),
    (http_exceptions.BadHttpMessage, "malformed request"),
)


def refusal(status: int, exc: BaseException | None) -> ProxyError:
    """The error answered for a request aiohttp refused with `status` because of `exc`."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return InvalidRequest(
            "headers_too_large",
            "a request line or header field exceeds the limit of 8190 bytes",
            status=431,
        )
    if isinstance(exc, http_exceptions.HttpProcessingError) or 400 <= status < 500:
        return InvalidRequest("bad_request", "the request is malformed", details=_kind(exc))
    return ProxyError("proxy_internal_error", "the proxy failed to handle the request")


def _kind(exc: BaseException | None) -> str:
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return "malformed request"


class _OwnVoiceHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        error = refusal(status, exc)
        if error.status >= 500:
            # Type and traceback only, as the app's middleware logs: the text may quote secrets.
            log.error(
                "unexpected %s on the admin listener\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)) if exc is not None else "",
            )
        else:
            log.warning(
                "admin listener refused a request from %s: %s",
                request.remote,
                error.details or error.message,
                extra={"event": "request_refused", "error": error.code},
            )
        if request.writer.output_size > 0:
            raise ConnectionError("the response was begun: the connection is cut instead")
        response = error_response(error)
        response.force_close()
        return response


class _OwnVoiceServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _OwnVoiceHandler(self, loop=self._loop, **self._kwargs)


class AdminRunner(web.AppRunner):
    """`web.AppRunner` whose connections refuse malformed requests as `_OwnVoiceHandler` does."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Same state, one method different: the handler each new connection gets.
        server.__class__ = _OwnVoiceServer
        return server
