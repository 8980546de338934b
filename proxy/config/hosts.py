"""The hosts a connection answers in forward-proxy mode (docs/forward-proxy.md): pure, no I/O.

A connection's `hosts` entries are an exact host (`api.github.com`), a wildcard of one or more
labels under a domain (`*.example.com`: `a.example.com`, `a.b.example.com`, never `example.com`
itself) or an IP literal (`127.0.0.1`, `[::1]`), each with an optional `:port`. Without a port
an entry answers the port of the connection's `baseUrl` only: the credentials go to that origin
and no other unless the operator names another port. Without `hosts` a connection answers its
`baseUrl`'s host and port.

Names are compared lowercase, without a trailing dot. An IP literal never matches a wildcard: a
client reaching a bound host by address gets nothing unless the address itself is listed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# RFC 1123 labels, as `listenHosts` takes them.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One `hosts` entry: `name` lowercase (for a wildcard, the domain after `*.`), `port`."""

    name: str
    port: int
    wildcard: bool = False
    is_ip: bool = False

    def matches(self, host: str, port: int) -> bool:
        """Whether `host` (normalised by `normal_host`) and `port` fall under this entry."""
        if port != self.port:
            return False
        if self.wildcard:
            return host.endswith("." + self.name) and not is_ip_literal(host)
        return host == self.name

    def __str__(self) -> str:
        name = f"[{self.name}]" if ":" in self.name else self.name
        return f"{'*.' if self.wildcard else ''}{name}:{self.port}"


def normal_host(host: str) -> str:
    """Lowercase, no trailing dot, no IPv6 brackets; an IP literal in its canonical form."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_host_pattern(text: str, default_port: int) -> HostPattern:
    """Parse one `hosts` entry (`default_port`: the baseUrl's port).

    Raises:
        ValueError: with a message naming what is wrong (never anything but the entry's form).
    """
    raw = text.strip()
    port = default_port
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError("an IPv6 address must be in brackets, for example [::1]:443")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected HOST, *.DOMAIN or either with :PORT")
            port = _port(rest[1:])
        if not is_ip_literal(host):
            raise ValueError("brackets hold an IPv6 address only")
        return HostPattern(normal_host(host), port, is_ip=True)
    if raw.count(":") > 1:
        if is_ip_literal(raw):
            raise ValueError("an IPv6 address must be in brackets, for example [::1]:443")
        raise ValueError("expected HOST, *.DOMAIN or either with :PORT")
    host, sep, port_text = raw.partition(":")
    if sep:
        port = _port(port_text)
    if is_ip_literal(host):
        return HostPattern(normal_host(host), port, is_ip=True)
    wildcard = host.startswith("*.")
    name = normal_host(host[2:] if wildcard else host)
    if "*" in name or not _NAME.fullmatch(name):
        raise ValueError(
            "must be a host name, '*.' and a domain, or an IP address, with an optional :PORT"
        )
    if wildcard and "." not in name:
        raise ValueError("a wildcard needs a domain of at least two labels (*.example.com)")
    return HostPattern(name, port, wildcard=wildcard)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 65535:
        raise ValueError("the port must be a number between 1 and 65535")
    return int(text)


def base_url_pattern(base_url: str) -> HostPattern | None:
    """The default entry: the `baseUrl`'s host and port (None when it does not parse: the
    `baseUrl` field reports that)."""
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not host or scheme not in DEFAULT_PORTS:
        return None
    host = normal_host(host)
    return HostPattern(host, port or DEFAULT_PORTS[scheme], is_ip=is_ip_literal(host))


def default_port(base_url: str) -> int:
    pattern = base_url_pattern(base_url)
    return pattern.port if pattern is not None else 443


def connection_hosts(base_url: str, hosts: list[str] | None) -> tuple[HostPattern, ...]:
    """A connection's bound hosts: its `hosts` entries, else its `baseUrl`'s host. Entries
    that do not parse are left out (the config check reports them)."""
    if hosts is None:
        pattern = base_url_pattern(base_url)
        return (pattern,) if pattern is not None else ()
    port = default_port(base_url)
    found: list[HostPattern] = []
    for entry in hosts:
        try:
            found.append(parse_host_pattern(entry, port))
        except ValueError:
            continue
    return tuple(found)


def split_authority(authority: str) -> tuple[str, int] | None:
    """`host:port` of a CONNECT request-target (RFC 9110 §9.3.6: authority-form, the port
    required) as `(normal host, port)`; None when it is not that form."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0 or authority[end + 1 : end + 2] != ":":
            return None
        host, port_text = authority[1:end], authority[end + 2 :]
        if not is_ip_literal(host):
            return None
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep or not host or ":" in host:
            return None
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        return None
    host = normal_host(host)
    if not is_ip_literal(host) and not _NAME.fullmatch(host):
        return None
    return host, int(port_text)


def check_host_pattern(text: str) -> str:
    """Pydantic validator of a `hosts` entry: keep the text as written once it parses."""
    parse_host_pattern(text, 443)
    return text
