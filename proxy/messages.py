"""Values that flow between the driver and the schemes; frozen, no I/O, no aiohttp.

`OutboundRequest` is the request exactly as it will go on the wire to the upstream. Schemes never
mutate it: a pure `sign()` returns a `RequestPatch`, and `OutboundRequest.patched()` applies it.
Schemes that need a round trip (OAuth 2.0 refresh) are generators of `Send` / `Refresh` commands,
the shape of httpx's `auth_flow` and mitmproxy's command generators; the driver in
`dataplane/forward.py` owns the I/O and answers each command.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import quote

EMPTY: Mapping[str, str] = MappingProxyType({})


class Body(Protocol):
    """A request body read in full (in memory or spilled to a file); readable many times."""

    @property
    def size(self) -> int: ...

    def iter_bytes(self) -> Iterator[bytes]: ...

    def read_all(self) -> bytes: ...


class BodyFilter(Protocol):
    """Rewrites a request body as it streams to the upstream (aws-chunked re-signing); one
    instance per sending, made by the scheme that signed the request."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> None: ...


def encode_query_component(text: str) -> str:
    """Percent-encode all but RFC 3986 unreserved characters; space becomes `%20`
    (docs/request-path.md)."""
    return quote(text, safe="-._~")


@dataclass(frozen=True, slots=True)
class RequestPatch:
    """What a signer changes: headers set (replacing), query parameters appended, cookies set."""

    headers: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    query: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    cookies: Mapping[str, str] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """The upstream request as it goes on the wire.

    `origin` is `scheme://host[:port]` (default port left out), `path` and `query` are the raw,
    already-encoded bytes as text (forwarded byte for byte), `body` is None while it streams.
    """

    method: str
    origin: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: Body | None = None
    # Applied to the body bytes as they are sent (the body itself stays as the client sent it).
    body_filter: BodyFilter | None = None

    @property
    def url(self) -> str:
        return f"{self.origin}{self.path}?{self.query}" if self.query else self.origin + self.path

    @property
    def target(self) -> str:
        """The request-target of the request line: path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def replayable(self) -> bool:
        return self.body is not None

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def patched(self, patch: RequestPatch) -> OutboundRequest:
        headers = self.headers
        if patch.headers:
            replaced = {name.lower() for name in patch.headers}
            headers = (
                *[pair for pair in headers if pair[0].lower() not in replaced],
                *patch.headers.items(),
            )
        if patch.cookies:
            headers = _merge_cookies(headers, patch.cookies)
        query = self.query
        if patch.query:
            query = _append_query(query, patch.query)
        # The constructor, not dataclasses.replace(): this runs on every request, and replace()
        # costs several times as much.
        return OutboundRequest(
            self.method, self.origin, self.path, query, headers, self.body, self.body_filter
        )


def _append_query(query: str, params: Mapping[str, str]) -> str:
    # A client-sent parameter of the same name is removed: the credential's value wins.
    encoded_names = {encode_query_component(name) for name in params}
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] not in encoded_names]
    kept += [f"{encode_query_component(k)}={encode_query_component(v)}" for k, v in params.items()]
    return "&".join(kept)


def _merge_cookies(
    headers: tuple[tuple[str, str], ...], cookies: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    # RFC 6265 §5.4: one Cookie header, pairs joined with "; ". Client cookies of the same name go.
    pairs: list[str] = []
    rest: list[tuple[str, str]] = []
    for key, value in headers:
        if key.lower() == "cookie":
            for pair in value.split(";"):
                pair = pair.strip()
                if pair and pair.split("=", 1)[0].strip() not in cookies:
                    pairs.append(pair)
        else:
            rest.append((key, value))
    pairs += [f"{name}={value}" for name, value in cookies.items()]
    return (*rest, ("Cookie", "; ".join(pairs)))


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """Status and headers of an upstream answer; the body stays with the driver.

    The header fields stay the bytes the upstream sent (`raw`): the relay passes them through
    as they are and decodes only the few it reads (framing, the URL rewrite)."""

    status: int
    raw: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The header fields as text (latin-1, RFC 9110 §5.5); decoded on each call."""
        return tuple((key.decode("latin-1"), value.decode("latin-1")) for key, value in self.raw)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """An OAuth 2.0 token as the proxy holds it (RFC 6749 §5.1); secrets stay out of `repr()`."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # unix seconds; None = unknown, used until a 401
    scope: str | None = None
    # Seconds from issue to expiry (the provider's `expires_in`); None when not known (a
    # token from the file). The refresh skew is kept well inside it (tokens/manager.py).
    lifetime: float | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Command: send this request on (credentials after this one still sign it)."""

    request: OutboundRequest


@dataclass(frozen=True, slots=True)
class Refresh:
    """Command: give me a token newer than `stale`."""

    stale: TokenSet


AuthFlow = Generator[Send | Refresh, Any, None]
