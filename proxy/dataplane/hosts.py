"""Which `Host` a listener answers (docs/security.md "DNS rebinding"): pure, no I/O.

DNS rebinding lets a web page reach a loopback listener: the page's own name is made to resolve
to 127.0.0.1, and the browser then sends it requests with `Host: <that name>`, reading the
answers as same-origin. What the page cannot choose is the `Host` of a name it does not control,
so a listener that answers only the names it is known by is out of its reach:

- `localhost` (browsers resolve it to loopback themselves, RFC 6761 §6.3; it is never
  rebound),
- an IP literal naming the listener's address (any address when it listens on a wildcard:
  the machine's addresses are not known here). An IP literal is no name at all, so no one can
  rebind it,
- the names the configuration lists (`admin.publicUrl`'s host, `admin.allowedHosts`; for the
  data plane `listenHosts`).

A request without `Host` (HTTP/1.0) comes from no browser and is answered. Ports are not
compared: the listener's port is whatever it was bound to, and a rebinding page cannot change
the name part.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import PROXY_INTERNAL_RESPONSE, ProxyError

_WILDCARDS = frozenset({ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")})
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class HostCheck:
    """The `Host` values one listener answers: `names` (lowercase, no trailing dot),
    `localhost`, and IP literals equal to `address` (any IP literal when `address` is None)."""

    names: frozenset[str]
    address: Address | None

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:
            return True
        host = _host_part(host_header)
        if host is None:
            return False
        if host == "localhost" or host in self.names:
            return True
        ip = _ip(host)
        if ip is None:
            return False
        return self.address is None or ip == self.address


def listener_check(listen_host: str, names: Iterable[str]) -> HostCheck:
    """The check for a listener bound to `listen_host` (as in `HOST:PORT`), also answering
    `names` (host names, IP literals or URLs, whose host is taken)."""
    listed = frozenset(
        _normal(host) for host in (_url_host(name) for name in names) if host is not None
    )
    if listen_host.lower() == "localhost":
        return HostCheck(listed | {"127.0.0.1", "::1"}, ipaddress.ip_address("127.0.0.1"))
    ip = _ip(listen_host)
    if ip is None:  # a host name: it names the listener
        return HostCheck(listed | {_normal(listen_host)}, None)
    return HostCheck(listed, None if ip in _WILDCARDS else ip)


def named_hosts(names: Iterable[str]) -> HostCheck:
    """The data plane's check with `listenHosts`: those names, `localhost`, any IP literal (it
    may be reached on any of the machine's addresses, and `--listen` may move it)."""
    return HostCheck(frozenset(_normal(name) for name in names), None)


def _url_host(text: str) -> str | None:
    if "://" not in text:
        return text
    return urlsplit(text).hostname


def _normal(host: str) -> str:
    host = host.lower().rstrip(".")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_part(header: str) -> str | None:
    """The host of a `Host` field value (RFC 9110 §7.2: uri-host [":" port]), lowercase."""
    value = header.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        return value[1:end].lower()
    host, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return _normal(host) if host else None


def _ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def misdirected() -> ProxyError:
    """421: the `Host` names no host this listener answers (RFC 9110 §15.5.20)."""
    return ProxyError(
        "misdirected_request",
        "this listener does not answer for the host named in the Host header",
        status=421,
        proxy_status=PROXY_INTERNAL_RESPONSE,
    )
