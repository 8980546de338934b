"""The access-log line of one request, formatted from parts prepared once.

Text (`log.format: text`) and JSON (`json`) lines say what the `logging` line of the same request
said, field for field and byte for byte: the text line is `logs.py`'s format (`asctime`, level,
logger, `pid=` with `--workers`, the message), the JSON line `JsonFormatter`'s object with the
request's fields (docs/operations.md#logs). What a `LogRecord`, a formatter and `json.dumps` of a
dict cost per request is replaced by one f-string: the constant parts are prepared here, the
timestamp is re-rendered once a second, and only the variable strings are JSON-escaped (by the
C escaper `json.dumps` itself uses). Every line ends with a newline and is one line: the path is
the raw, still percent-encoded one (the server refuses control characters in a request-target),
and the JSON escaper escapes everything else. No I/O here (`access_log.py` writes the lines).
"""

from __future__ import annotations

import json.encoder
import time
from collections.abc import Callable
from typing import Protocol

from ..http1.inbound import InboundRequest
from ..logs import rfc3339

ACCESS_LOGGER = "signing_proxy.access"

# The C string escaper behind `json.dumps(..., ensure_ascii=True)`: the quoted, escaped string.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


class AccessLine(Protocol):
    def __call__(
        self, request: InboundRequest, status: int, duration_ms: float, now: float
    ) -> str: ...


def message(request: InboundRequest, status: int, duration_ms: str) -> str:
    """The human part, the same in both formats: `GET /path connection=c status=200 ...`."""
    connection = request.connection
    client = request.client
    return (
        f"{request.method} {request.path} "  # raw: still percent-encoded, no query
        f"connection={connection.name if connection is not None else '-'} "
        f"status={status or '-'} bytes={request.body_bytes} duration_ms={duration_ms}"
        f"{' upstream_broken' if request.upstream_broken else ''}"
        f"{_ending(request)}"
        f"{'' if client is None else ' client=' + client}"
    )


def _ending(request: InboundRequest) -> str:
    if request.cut_by_shutdown:
        return " cut_by_shutdown"
    return " client_disconnected" if request.client_gone else ""


def route_relative(path: str, route: str | None) -> str:
    """The path after the connection's route (still percent-encoded, no query)."""
    if route and path.startswith(route):
        return path[len(route) :] or "/"
    return path


class TextLine:
    """`2026-12-07 13:14:22,123 INFO signing_proxy.access GET /a connection=c status=200 ...`:
    `logging.Formatter`'s `asctime` (local time, milliseconds after a comma), as `proxy/logs.py`
    writes every other line."""

    def __init__(self, *, pid: int | None = None) -> None:
        self._middle = f" INFO {ACCESS_LOGGER}{f' pid={pid}' if pid is not None else ''} "
        self._second = -1
        self._stamp = ""

    def __call__(self, request: InboundRequest, status: int, duration_ms: float, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        millis = int((now - second) * 1000)
        text = message(request, status, f"{duration_ms:.1f}")
        return f"{self._stamp},{millis:03d}{self._middle}{text}\n"


class JsonLine:
    """`JsonFormatter`'s object for the request: the common fields, then the request's own, in
    the order and spacing of `json.dumps`."""

    def __init__(self, *, pid: int) -> None:
        self._head = (
            f'", "level": "info", "event": "request", "logger": "{ACCESS_LOGGER}", '
            f'"pid": {pid}, "message": '
        )
        self._second = -1
        self._stamp = ""

    def __call__(self, request: InboundRequest, status: int, duration_ms: float, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._stamp = rfc3339(second)[:-5]  # without ".000Z": the milliseconds follow
            self._second = second
        millis = int((now - second) * 1000)
        connection = request.connection
        client = request.client
        upstream_status = request.upstream_status
        error = request.error_code
        if request.upstream_broken:
            error = error or "upstream_broken"
        path = route_relative(request.path, connection.route if connection is not None else None)
        # `.1f` is what `round(duration_ms, 1)` printed (both round the binary value correctly;
        # `repr` differs only from 1e16 ms on), at a tenth of the cost.
        duration = f"{duration_ms:.1f}"
        return (
            f'{{"ts": "{self._stamp}.{millis:03d}Z{self._head}'
            f"{_quote(message(request, status, duration))}, "
            f'"request_id": {_quote(request.request_id)}, '
            f'"client": {"null" if client is None else _quote(client)}, '
            f'"connection": {"null" if connection is None else _quote(connection.name)}, '
            f'"method": {_quote(request.method)}, "path": {_quote(path)}, '
            f'"status": {status or "null"}, '
            f'"upstream_status": {"null" if upstream_status is None else upstream_status}, '
            f'"duration_ms": {duration}, '
            f'"bytes_in": {request.body.received}, "bytes_out": {request.body_bytes}, '
            f'"error": {"null" if error is None else _quote(error)}}}\n'
        )
