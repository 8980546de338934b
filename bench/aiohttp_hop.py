"""The proxy with the previous upstream hop (`AiohttpUpstream`, aiohttp's ClientSession), for
comparison in `bench/run.py --aiohttp-hop`. Run: `python bench/aiohttp_hop.py CONFIG`."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import hdrs
from yarl import URL

from proxy.cli.command import load_or_report, setup_logging
from proxy.cli.server import serve
from proxy.dataplane.plane import create_app
from proxy.errors import ProxyError, UpstreamTimeout, UpstreamUnavailable
from proxy.http1.upstream import UpstreamBody, UpstreamBroken, UpstreamReply
from proxy.messages import OutboundRequest, UpstreamResponse

# A faithful hop, not a browser: no redirects followed, no cookie jar (one user's cookies must
# never reach another's request), no automatic `User-Agent`/`Accept-Encoding`, no decompression,
# and the request-target sent exactly as built (`encoded=True`).


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


def main(path: str) -> int:
    runtime = load_or_report(path)
    if runtime is None:
        return 2
    config = runtime.config
    setup_logging(config.log.level, config.log.format)
    upstream = AiohttpUpstream(
        connect_timeout=config.timeouts.connect, read_timeout=config.timeouts.read
    )
    app = create_app(runtime, upstream=upstream)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve([(app, config.listen)], shutdown_grace=1))
    else:
        uvloop.run(serve([(app, config.listen)], shutdown_grace=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
