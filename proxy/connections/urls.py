"""Upstream URLs: parse a `baseUrl`, join the route tail byte for byte, refuse path escapes,
and rewrite response URLs under `baseUrl` back to the proxy route (docs/request-path.md).

Everything here works on raw (still percent-encoded) text: the tail of the client's path is never
decoded and re-encoded, so `%2F`, `%28` or `%20` reach the upstream exactly as the client sent them.
Decoding happens only to *inspect* a segment for `.`/`..` tricks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class BadUrl(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BaseUrl:
    """A connection's `baseUrl`, split into `origin` (`scheme://host[:port]`) and raw `path`."""

    scheme: str
    host: str
    port: int
    path: str  # raw, as written; "" when the URL has no path

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def path_prefix(self) -> str:
        """The base path without its trailing `/`, to which a tail `/x` is appended."""
        return self.path.rstrip("/")


def parse_base_url(text: str) -> BaseUrl:
    """Parse and check a `baseUrl`: http(s), a host, no credentials, query or fragment."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        # urllib's message quotes the offending text (`... as 'abc'`), which may be a secret.
        raise BadUrl("not a valid URL (check the brackets and the port)") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BadUrl("must be an http:// or https:// URL")
    if not parts.hostname:
        raise BadUrl("must name a host")
    if parts.username is not None or parts.password is not None:
        raise BadUrl("must not carry user:password (use a basic-auth credential)")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise BadUrl("must not have a query or fragment")
    return BaseUrl(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme], parts.path)


def join_path(base: BaseUrl, tail: str) -> str:
    """`baseUrl` path + route tail with exactly one `/` between them.

    An empty tail (the request was for the route itself) gives the base path as written.
    """
    if not tail:
        return base.path or "/"
    return base.path_prefix + tail


# A segment is refused when its decoded form is `.`/`..` or hides a traversal behind an
# encoded separator (`..%2F`, `%2E%2E%5C`). Backslashes count: some servers treat them as `/`;
# so does `;`, because Tomcat and Spring read `/..;/` (a path parameter) as `/../`.
_TRAVERSAL = re.compile(r"(^|[/\\;])\.\.?($|[/\\;])")


def is_escaping(tail: str) -> bool:
    """True when any segment of `tail` could move the request out of the `baseUrl` path."""
    for segment in tail.split("/"):
        if "." not in segment and "%" not in segment:
            continue
        # Decode repeatedly: an upstream or a framework in front of it may decode twice.
        decoded, previous = segment, None
        while decoded != previous:
            previous, decoded = decoded, unquote(decoded)
        if _TRAVERSAL.search(decoded):
            return True
    return False


def same_place(url: str, base: BaseUrl) -> str | None:
    """If `url` lies under `base`, return the remainder after the base path (raw); else None.

    `url` may be absolute (`https://host/base/x?y`) or an absolute path (`/base/x`), which a
    client resolves against the upstream origin.
    """
    if url.startswith("/") and not url.startswith("//"):
        rest = url
    else:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        # `//host/x` (a network-path reference) takes the scheme of the response's URL.
        scheme = parts.scheme.lower() or (base.scheme if url.startswith("//") else "")
        if scheme != base.scheme or (parts.hostname or "").lower() != base.host:
            return None
        if (port or DEFAULT_PORTS.get(scheme)) != base.port:
            return None
        # Keep the raw remainder: the text after the authority; an empty path is "/".
        after = url.index("//") + 2
        ends = [i for i in (url.find(c, after) for c in "/?#") if i >= 0]
        rest = url[min(ends) :] if ends else ""
        if not rest.startswith("/"):
            rest = "/" + rest
    prefix = base.path_prefix
    if not prefix:
        return rest
    if rest == prefix or rest.startswith((prefix + "/", prefix + "?", prefix + "#")):
        return rest[len(prefix) :]
    return None


_LINK_URI = re.compile(r"<([^>]*)>")


def rewrite_location(value: str, base: BaseUrl, proxy_prefix: str) -> str:
    """Rewrite a `Location`/`Content-Location` value under `base` to `proxy_prefix` + rest."""
    rest = same_place(value.strip(), base)
    if rest is None:
        return value
    if rest and rest[0] not in "/?#":
        rest = "/" + rest
    return proxy_prefix + (rest or "")


def rewrite_link(value: str, base: BaseUrl, proxy_prefix: str) -> str:
    """Rewrite every `<uri>` of an RFC 8288 `Link` header that lies under `base`."""
    return _LINK_URI.sub(lambda m: f"<{rewrite_location(m.group(1), base, proxy_prefix)}>", value)
