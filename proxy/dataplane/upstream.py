"""The upstream hop: send an `OutboundRequest`, get the status and headers, stream the body.

`Upstream` is the seam between the request path and the HTTP client. `AiohttpUpstream` is the
first implementation, on one shared `ClientSession` (keep-alive pool per origin and TLS context).
It is configured to be a faithful hop, not a browser: no redirects followed, no cookie jar (one
user's cookies must never reach another's request), no automatic `User-Agent`/`Accept-Encoding`,
no decompression, and the request-target sent exactly as built (`encoded=True`).

Network failures become `ProxyError`s carrying the RFC 9209 error type (docs/errors.md).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from ..errors import ProxyError, UpstreamTimeout, UpstreamUnavailable
from ..messages import OutboundRequest, UpstreamResponse

UpstreamBody = bytes | AsyncIterable[bytes] | None
READ_CHUNK = 64 * 1024


class UpstreamReply(Protocol):
    """An upstream answer whose body has not been read yet."""

    head: UpstreamResponse
    reason: str

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def discard(self) -> None: ...

    def close(self) -> None: ...


class Upstream(Protocol):
    async def send(
        self, request: OutboundRequest, body: UpstreamBody, tls: ssl.SSLContext | None
    ) -> UpstreamReply: ...

    async def close(self) -> None: ...


class _AiohttpReply:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.reason = response.reason or ""
        # raw_headers keeps repeated headers (Set-Cookie) and their order as received.
        self.head = UpstreamResponse(response.status, tuple(response.raw_headers))

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamBroken("upstream response body was cut short") from exc
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamBroken(f"upstream body read failed: {type(exc).__name__}") from exc

    async def discard(self) -> None:
        # A superseded response (401 before a retry): release it so the connection can be
        # reused if the body was small, otherwise close it.
        self._response.release()

    def close(self) -> None:
        self._response.close()


class UpstreamBroken(Exception):
    """The upstream failed after the response head was relayed; the client connection is cut."""


class AiohttpUpstream:
    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=(
                    hdrs.USER_AGENT,
                    hdrs.ACCEPT,
                    hdrs.ACCEPT_ENCODING,
                    hdrs.CONTENT_TYPE,
                ),
                timeout=self._timeout,
            )
        return self._session

    async def send(
        self, request: OutboundRequest, body: UpstreamBody, tls: ssl.SSLContext | None
    ) -> UpstreamReply:
        session = self._get_session()
        try:
            response = await session.request(
                request.method,
                URL(request.url, encoded=True),
                headers=request.headers,
                data=body,
                allow_redirects=False,
                ssl=tls if tls is not None else True,
                compress=None,
            )
        except ProxyError:
            raise
        except Exception as exc:
            raise map_client_error(exc) from None
        return _AiohttpReply(response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def map_client_error(exc: BaseException) -> ProxyError:
    """aiohttp/OS failure → `ProxyError` with the RFC 9209 type; never the exception's text,
    which can quote the URL (and so a query API key)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamUnavailable("connect timed out", proxy_status="connection_timeout")
    if isinstance(exc, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return UpstreamTimeout("no response within the read timeout")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or "certificate rejected"
        return UpstreamUnavailable(
            f"TLS certificate: {reason}", proxy_status="tls_certificate_error"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return UpstreamUnavailable("TLS handshake failed", proxy_status="tls_protocol_error")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return UpstreamUnavailable("DNS lookup failed", proxy_status="dns_error")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable("connection refused", proxy_status="connection_refused")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        # RFC 9209 §2.3.9: closed (or reset) before any part of the response arrived.
        return UpstreamUnavailable(
            "upstream closed the connection", proxy_status="connection_terminated"
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamUnavailable(
            "upstream sent an invalid response", proxy_status="http_protocol_error"
        )
    return UpstreamUnavailable(f"upstream request failed: {type(exc).__name__}")
