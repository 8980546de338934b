"""The token-endpoint client: the one place a token call goes over HTTP.

- `post_form`: one POST of a form to a token URL, shared by OAuth 2.0 (RFC 6749 §3.2) and the
  OAuth 1.0a endpoints (RFC 5849 §2): no redirects, no environment proxies, the session's
  timeout, a bounded read, and every transport failure mapped to a `TokenEndpointError` whose
  code names the kind of failure, never the URL or a secret.
- `TokenEndpoint`: the OAuth 2.0 token call of every grant — refresh, client credentials,
  password, authorization code (the admin connect flow's exchange too), `jwt-bearer` — with the
  client authentication, the TLS of `mtlsEnabled`, and the RFC 6749 §5.1/§5.2 answer parsed into
  a `TokenSet` or a `TokenEndpointError`. It remembers which client authentication worked per
  (token URL, client id).

Token endpoint calls go through a `ClientSession` of their own: no proxy logic (no recursion
through the pipeline being authenticated), no redirects, no environment proxies, own timeout.

TLS towards the token endpoint: with `mtlsEnabled`, the connection's `certificate` context — its
client certificate, and its `ca` as the only trust anchor when given, else the system store (one
PKI for the API and its token endpoint, as mTLS providers run it). Without it, the system store;
both honour `SSL_CERT_FILE`/`SSL_CERT_DIR` (read when the context is made).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping

import aiohttp

from ..messages import TokenSet
from ..schemes.base import new_nonce
from ..schemes.jwt_bearer import assertion_token_request, parse_assertion_response
from ..schemes.oauth2 import (
    ClientAuth,
    OAuth2Settings,
    TokenEndpointError,
    TokenRequest,
    build_token_request,
    parse_token_response,
)

MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024


def endpoint_session(timeout: float) -> aiohttp.ClientSession:
    """A session for token calls only, with `timeout` s in total per call."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        trust_env=False,  # no environment proxies for credentials
        auto_decompress=True,
    )


async def post_form(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tls: ssl.SSLContext | bool = True,
    limit: int,
) -> tuple[int, bytes]:
    """POST `body` to `url`; the status and at most `limit + 1` bytes of the answer (the caller
    tells an answer over `limit` by its length).

    Raises:
        TokenEndpointError: no answer (`token_endpoint_timeout`, `token_endpoint_tls_error`,
            `token_endpoint_unreachable:<kind>`), status 0.
    """
    try:
        async with session.post(
            url, data=body, headers=dict(headers), allow_redirects=False, ssl=tls
        ) as response:
            return response.status, await response.content.read(limit + 1)
    except TimeoutError:
        raise TokenEndpointError("token_endpoint_timeout") from None
    except aiohttp.ClientSSLError:
        # Certificate not trusted, or the handshake refused (our client certificate, or
        # none, not accepted). OpenSSL's text names hosts; the kind is enough.
        raise TokenEndpointError("token_endpoint_tls_error") from None
    except aiohttp.ClientError as exc:
        # The exception text can hold the URL only; the kind is enough for the client.
        raise TokenEndpointError(f"token_endpoint_unreachable:{type(exc).__name__}") from None


class TokenEndpoint:
    """OAuth 2.0 token calls over one session of their own.

    Args:
        timeout: total seconds for one token endpoint call.
        clock: unix time; tests pass a fake.
    """

    def __init__(self, *, timeout: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self.clock = clock
        # (token URL, client id) → the client authentication that worked last: the connect
        # flow's code exchange and a credential new to the store start with it.
        self._client_auth: dict[tuple[str, str], ClientAuth] = {}
        self._session: aiohttp.ClientSession | None = None
        self._system_tls: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"TokenEndpoint(timeout={self.timeout})"

    def known_auth(self, settings: OAuth2Settings) -> ClientAuth | None:
        """The client authentication that worked last for this token URL and client."""
        return self._client_auth.get(_client_key(settings))

    async def request_token(
        self,
        settings: OAuth2Settings,
        params: list[tuple[str, str]],
        tls: ssl.SSLContext | None,
        known_style: ClientAuth | None,
        previous: TokenSet | None,
    ) -> tuple[TokenSet, ClientAuth]:
        """One token from the endpoint for the grant `params`, and the client auth that worked.

        HTTP Basic first, unless form is known to work or there is no secret; form when the
        provider rejects Basic (docs/request-path.md).
        """
        if settings.token_url is None:
            raise TokenEndpointError("token_url_missing")
        if not settings.mtls:
            tls = self._system()
        elif tls is None:
            raise TokenEndpointError("mtls_certificate_missing")
        if settings.assertion is not None:
            # `jwt-bearer`: a JWT signed now is the grant (and the only authentication).
            now = self.clock()
            jwt_request = assertion_token_request(settings, now=now, jti=new_nonce())
            status, body = await self._post(jwt_request, tls)
            return parse_assertion_response(settings, status, body, now=self.clock()), "form"
        key = _client_key(settings)
        known_style = known_style or self._client_auth.get(key)
        styles = _client_auth_styles(settings, known_style)
        for style in styles:
            assertion = settings.client_assertion
            request = build_token_request(
                settings.token_url,
                params,
                client_id=settings.client_id,
                # With `private_key_jwt` the secret field holds the key: never sent.
                client_secret="" if assertion is not None else settings.client_secret,
                client_auth=style,
                additional=settings.additional_params,
                client_assertion=None
                if assertion is None
                else assertion.sign(self.clock(), new_nonce()),
            )
            status, body = await self._post(request, tls)
            try:
                token = parse_token_response(
                    status,
                    body,
                    now=self.clock(),
                    previous=previous,
                    requested_scope=settings.scope,
                )
            except TokenEndpointError as exc:
                if exc.rejects_client and style == "basic" and len(styles) > 1:
                    # docs/request-path.md: a provider that rejects Basic gets the form style
                    continue
                raise
            self._client_auth[key] = style
            return token, style
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the session; idempotent."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _system(self) -> ssl.SSLContext:
        # Made on first use, not at import (as aiohttp's default is): SSL_CERT_FILE and
        # SSL_CERT_DIR are read when the context is made.
        if self._system_tls is None:
            self._system_tls = ssl.create_default_context()
        return self._system_tls

    async def _post(self, request: TokenRequest, tls: ssl.SSLContext) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            session = self._session = endpoint_session(self.timeout)
        status, body = await post_form(
            session,
            request.url,
            request.body(),
            dict(request.headers),
            tls=tls,
            limit=MAX_TOKEN_RESPONSE_BYTES,
        )
        if len(body) > MAX_TOKEN_RESPONSE_BYTES:
            raise TokenEndpointError("token_response_too_large", status)
        return status, body


def _client_auth_styles(settings: OAuth2Settings, known: ClientAuth | None) -> list[ClientAuth]:
    """The client authentications to try in order: the one `clientAuth` names, else Basic and
    then form (form alone when it worked before or there is no secret)."""
    if settings.client_auth == "client_secret_basic":
        return ["basic"]
    if settings.client_auth is not None:  # `client_secret_post`, `private_key_jwt` (in the form)
        return ["form"]
    if known == "form" or not settings.client_secret:
        return ["form"]
    return ["basic", "form"]


def _client_key(settings: OAuth2Settings) -> tuple[str, str]:
    return (settings.token_url or "", settings.client_id)
