"""Prometheus metrics (docs/operations.md#metrics): what is counted, and `/metrics`' text.

The data plane calls `request_started()` when a request comes in and `request_done()` from the
access-log point, and reports each WebSocket it relays (opened, bytes each way, closed and why);
the token manager reports refreshes and token expiries; connections report their client
certificates' expiry when they are taken into service; the access-log writer counts the lines it
had to drop. Labels are names only (connection, credential id, client, method, status code,
RFC 9209 error type, a WebSocket's direction and close reason): never a value a client or a
file supplied as a secret.

With `run --workers N` the figures are the sum over the workers: prometheus-client's
multiprocess mode, each worker writing its own files under `$PROMETHEUS_MULTIPROC_DIR` (a
private directory the supervisor makes before the first fork) and `/metrics` reading them all.
The metric objects are made on first use, never at import: the mode is fixed when
prometheus-client is first imported, which must happen after that variable is set.

May import (for types only) `connections/` and `http1/`; the tokens, the data plane, admin and
the process import it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connections.compiled import CompiledConnection
    from .http1.inbound import InboundRequest

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Time to the response head: a proxy adds milliseconds, an upstream seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# credential id → connection name, for the token and certificate series.
_owners: dict[str, str] = {}


@dataclass(frozen=True)
class _Metrics:
    requests: Any
    duration: Any
    upstream_errors: Any
    token_refreshes: Any
    token_expiry: Any
    certificate_expiry: Any
    client_requests: Any
    inflight: Any
    access_log_dropped: Any
    cut_by_shutdown: Any
    websockets_open: Any
    websocket_bytes: Any
    websocket_closes: Any


@functools.cache
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    return _Metrics(
        requests=Counter(
            "signing_proxy_requests_total",
            "Requests answered by the data plane.",
            ["connection", "method", "code"],
        ),
        duration=Histogram(
            "signing_proxy_request_duration_seconds",
            "Time from the request head to the response head.",
            ["connection"],
            buckets=BUCKETS,
        ),
        upstream_errors=Counter(
            "signing_proxy_upstream_errors_total",
            "Upstream failures by RFC 9209 error type.",
            ["connection", "error"],
        ),
        token_refreshes=Counter(
            "signing_proxy_token_refreshes_total",
            "OAuth 2.0 token requests by result (success, or the error code).",
            ["connection", "result"],
        ),
        token_expiry=Gauge(
            "signing_proxy_token_expiry_timestamp_seconds",
            "When the current OAuth 2.0 access token expires (Unix time).",
            ["connection", "credential"],
            multiprocess_mode="max",
        ),
        certificate_expiry=Gauge(
            "signing_proxy_certificate_expiry_timestamp_seconds",
            "When the client certificate expires (Unix time).",
            ["connection", "credential"],
            multiprocess_mode="max",
        ),
        client_requests=Counter(
            "signing_proxy_client_requests_total",
            "Requests per client (`clients`), by status code.",
            ["client", "code"],
        ),
        inflight=Gauge(
            "signing_proxy_inflight_requests",
            "Requests being served now.",
            multiprocess_mode="livesum",
        ),
        access_log_dropped=Counter(
            "signing_proxy_access_log_dropped_lines_total",
            "Access-log lines dropped because the log destination was full, slow or failing.",
        ),
        cut_by_shutdown=Counter(
            "signing_proxy_requests_cut_by_shutdown_total",
            "Requests still in flight when timeouts.shutdownGrace ran out, cut by the proxy.",
            ["connection"],
        ),
        websockets_open=Gauge(
            "signing_proxy_websockets_open",
            "WebSockets relayed now (their handshake answered with 101).",
            ["connection"],
            multiprocess_mode="livesum",
        ),
        websocket_bytes=Counter(
            "signing_proxy_websocket_bytes_total",
            "Bytes relayed through WebSockets, by direction (to_upstream, to_client).",
            ["connection", "direction"],
        ),
        websocket_closes=Counter(
            "signing_proxy_websocket_closes_total",
            "WebSockets ended, by reason (client_closed, upstream_closed, idle_timeout, shutdown).",
            ["connection", "reason"],
        ),
    )


# --- the data plane -------------------------------------------------------------------------


def request_started() -> None:
    _metrics().inflight.inc()


# The labelled series of the per-request metrics, found once: prometheus-client's `labels()`
# checks and joins its arguments on every call, several times the cost of the `inc()` itself.
# Bounded: connection names × the methods llhttp parses × status codes.
@functools.lru_cache(maxsize=8192)
def _requests_series(connection: str, method: str, code: int) -> Any:
    return _metrics().requests.labels(connection, method, str(code))


@functools.lru_cache(maxsize=4096)
def _duration_series(connection: str) -> Any:
    return _metrics().duration.labels(connection)


def request_done(request: InboundRequest, start: float, status: int) -> None:
    """Count one finished request (called once, from the access-log point)."""
    m = _metrics()
    m.inflight.dec()
    connection = request.connection
    name = connection.name if connection is not None else ""
    method = request.method if connection is not None else ""
    _requests_series(name, method, status).inc()
    if request.head_at:
        _duration_series(name).observe(max(request.head_at - start, 0.0))
    if request.error_type is not None and request.error_code in UPSTREAM_CODES:
        m.upstream_errors.labels(name, request.error_type).inc()
    if request.client is not None:
        m.client_requests.labels(request.client, str(status)).inc()
    if request.cut_by_shutdown:
        m.cut_by_shutdown.labels(name).inc()


def websocket_opened(connection: str) -> None:
    _metrics().websockets_open.labels(connection).inc()


@functools.lru_cache(maxsize=4096)
def _websocket_bytes_series(connection: str, to_upstream: bool) -> Any:
    direction = "to_upstream" if to_upstream else "to_client"
    return _metrics().websocket_bytes.labels(connection, direction)


def websocket_relayed(connection: str, to_upstream: bool, size: int) -> None:
    """`size` bytes went through a WebSocket of `connection` (counted as they go: a WebSocket
    may stay open for hours)."""
    _websocket_bytes_series(connection, to_upstream).inc(size)


def websocket_closed(connection: str, reason: str) -> None:
    m = _metrics()
    m.websockets_open.labels(connection).dec()
    m.websocket_closes.labels(connection, reason).inc()


def access_log_dropped(lines: int) -> None:
    """`lines` access-log lines were dropped (dataplane/access_log.py): never a stall of the
    loop."""
    _metrics().access_log_dropped.inc(lines)


# The codes of docs/errors.md that mean the upstream failed (not the caller, not a credential).
UPSTREAM_CODES = frozenset({"upstream_unavailable", "upstream_timeout", "upstream_bad_response"})


# --- credentials ----------------------------------------------------------------------------


def connection_in_service(connection: CompiledConnection) -> None:
    """Name the connection's credentials, and report its client certificates' expiry."""
    for scheme in connection.schemes:
        credential_id = getattr(scheme, "credential_id", None)
        if credential_id is None:
            continue
        _owners[credential_id] = connection.name
        not_after = getattr(scheme, "not_after", None)
        if not_after is not None:
            gauge = _metrics().certificate_expiry.labels(connection.name, credential_id)
            gauge.set(not_after.timestamp())


def token_refreshed(credential_id: str, result: str) -> None:
    _metrics().token_refreshes.labels(_owners.get(credential_id, ""), result).inc()


def token_expires(credential_id: str, expires_at: float | None) -> None:
    if expires_at is not None:
        gauge = _metrics().token_expiry.labels(_owners.get(credential_id, ""), credential_id)
        gauge.set(expires_at)


# --- /metrics -------------------------------------------------------------------------------


def exposition() -> tuple[bytes, str]:
    """The text format of every series (summed over the workers), and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    _metrics()  # the series exist (at zero) before the first request
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_gone(pid: int) -> None:
    """A worker exited: its in-flight gauge no longer counts (its counters still do)."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
