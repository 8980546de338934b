"""Forward-proxy mode (docs/forward-proxy.md): CONNECT, the requests inside an intercepted
tunnel, and absolute-form `http://` requests.

`ForwardMode` is built per loaded config when `forwardProxy.enabled` (the data plane holds None
otherwise, and a reverse-mode request never reaches this module). What it decides:

- a CONNECT presents its client key in `Proxy-Authorization` (Basic with the key as user or
  password, or Bearer) when `clients` are configured, else 407 with `Proxy-Authenticate`;
- a target bound to a connection (`HostBinding`) gets `200`, TLS with the host's leaf
  (`intercept/issuer.py`), and then each request inside goes through `Forwarder.start_bound`
  with that connection aimed at the CONNECT target: the same chain, policy, rate limits,
  refresh and replay, metrics, access line and JSON errors as the reverse mode;
- an inner `Host` naming another host than the CONNECT target is 421 `misdirected_request`;
- an unbound target (an IP literal is unbound unless a connection names it) is 403
  `host_not_allowed`, or with `unmatched: tunnel` a blind tunnel, which reaches only public
  addresses (`tunnel_address`): never loopback, private, link-local (cloud metadata) or
  otherwise special ones;
- absolute-form `http://` to a bound host is served as a request to that connection;
  `https://` in absolute form is 400 (the proxy never downgrades TLS: use CONNECT).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config.hosts import is_ip_literal, normal_host, split_authority
from ..connections.access import Access, AccessDenied, Presented, client_forbidden
from ..connections.binding import HostBinding
from ..connections.compiled import CompiledConnection
from ..connections.lean import lean_plan
from ..connections.urls import BaseUrl
from ..errors import PROXY_INTERNAL_RESPONSE, InvalidRequest, ProxyError
from ..http1.inbound import InboundRequest
from ..http1.pipe import open_pipe
from ..intercept.authority import Authority
from ..intercept.issuer import Issuer
from .forward import Forwarder
from .lean_round_trip import Settle

PROXY_REALM = 'Basic realm="signing-proxy"'
# Connections aimed at a CONNECT target, kept per (connection, host, port); bounded.
_AIMED_CACHE = 4096


def host_not_allowed() -> ProxyError:
    return ProxyError(
        "host_not_allowed",
        "no connection is bound to this host (forward-proxy mode)",
        status=403,
        proxy_status=PROXY_INTERNAL_RESPONSE,
    )


def proxy_unauthorized() -> ProxyError:
    return ProxyError(
        "client_unauthorized",
        "a client key is required in Proxy-Authorization (Basic with the key as user or "
        "password, or Bearer)",
        status=407,
        proxy_status=PROXY_INTERNAL_RESPONSE,
        headers=(("Proxy-Authenticate", PROXY_REALM),),
    )


def misdirected_in_tunnel() -> ProxyError:
    return ProxyError(
        "misdirected_request",
        "the Host header names another host than the CONNECT target",
        status=421,
        proxy_status=PROXY_INTERNAL_RESPONSE,
    )


def tunnel_failed(kind: str) -> ProxyError:
    return ProxyError(
        "upstream_unavailable",
        "the tunnel's destination could not be reached",
        status=502,
        proxy_status=kind,
    )


@dataclass(frozen=True, slots=True)
class Tunnel:
    """An intercepted CONNECT: where its requests go, and who opened it."""

    host: str  # `normal_host` form
    port: int
    connection: CompiledConnection  # aimed at host:port (`ForwardMode.aimed`)
    caller: Presented | None
    # The mode (one loaded config) that let it in, and the client key it showed: after a reload
    # its requests are let in again by the new config, not by what the old one said.
    mode: ForwardMode | None = field(default=None, repr=False, compare=False)
    proxy_authorization: list[bytes] = field(default_factory=list, repr=False, compare=False)


class ForwardMode:
    """Forward-proxy mode for one loaded config (see the module docstring)."""

    def __init__(
        self,
        binding: HostBinding,
        issuer: Issuer,
        *,
        unmatched: str,
        access: Access | None,
        connect_timeout: float,
        tunnel_private: bool = False,
    ) -> None:
        self.binding = binding
        self.tunnel_private = tunnel_private
        self.issuer = issuer
        self.tunnel_unmatched = unmatched == "tunnel"
        self.access = access
        self.connect_timeout = connect_timeout
        self._aimed: dict[tuple[str, str, int], CompiledConnection] = {}

    # -- who is asking ---------------------------------------------------------------------------

    def proxy_caller(self, request: InboundRequest) -> Presented | None:
        """The client whose key `Proxy-Authorization` carries; None without `clients`.

        Raises:
            ProxyError: 407 `client_unauthorized` with `Proxy-Authenticate`."""
        values = [v for k, v in request.raw_headers if k.lower() == b"proxy-authorization"]
        return self._caller_of(values)

    def _caller_of(self, values: list[bytes]) -> Presented | None:
        access = self.access
        if access is None or not access.clients_required:
            return None
        if len(values) != 1:
            raise proxy_unauthorized()
        # Read as an Authorization value (Basic user or password, or Bearer), then recorded as
        # carried by Proxy-Authorization, which never goes upstream anyway.
        try:
            presented = access.authenticate([(b"authorization", values[0])])
        except AccessDenied:
            raise proxy_unauthorized() from None
        if presented is None:  # not an assert: this check must survive `python -O`
            raise proxy_unauthorized()
        return Presented(presented.caller, "proxy-authorization")

    # -- CONNECT ---------------------------------------------------------------------------------

    async def connect(self, request: InboundRequest) -> None:
        """Serve a CONNECT: intercept a bound host, refuse or blind-tunnel another."""
        caller = self.proxy_caller(request)
        target = split_authority(request.target)
        if target is None:
            raise InvalidRequest("bad_request", "CONNECT needs a host:port target")
        host, port = target
        connection = self.binding.lookup(host, port)
        if connection is None:
            if not self.tunnel_unmatched:
                raise host_not_allowed()
            if caller is not None:
                request.client = caller.name
            await self._blind(request, host, port)
            return
        request.connection = connection
        if caller is not None:
            request.client = caller.name
            # Whether this client may use the connection at all: asked before any TLS.
            if self.access is not None and not self.access.may_use(caller, connection):
                raise client_forbidden()
        context = self.issuer.context_for(host)
        shown = [v for k, v in request.raw_headers if k.lower() == b"proxy-authorization"]
        tunnel = Tunnel(host, port, self.aimed(connection, host, port), caller, self, shown)
        request.intercept(context, tunnel)

    async def _blind(self, request: InboundRequest, host: str, port: int) -> None:
        address = await tunnel_address(host, port, private=self.tunnel_private)
        try:
            pipe = await open_pipe(address, self.connect_timeout)
        except TimeoutError:
            raise tunnel_failed("connection_timeout") from None
        except OSError:
            raise tunnel_failed("connection_refused") from None
        await request.splice(pipe)

    # -- requests inside a tunnel, absolute-form requests -----------------------------------------

    def start_inner(
        self,
        request: InboundRequest,
        tunnel: Tunnel,
        forwarder: Forwarder,
        settle: Settle,
        start: float,
    ) -> Coroutine[Any, Any, None] | None:
        """A request from inside an intercepted tunnel, to the CONNECT target only."""
        host = request.header("Host")
        if host is None or not _names(host, tunnel.host, tunnel.port):
            raise misdirected_in_tunnel()
        if not request.target.startswith("/"):
            raise InvalidRequest(
                "bad_path", "inside a tunnel the request target must be a path (origin-form)"
            )
        connection, caller = tunnel.connection, tunnel.caller
        if tunnel.mode is not self:
            # The config was reloaded since the CONNECT: the host must still be bound, the client
            # key still valid and allowed, and the credentials are the new config's.
            bound = self.binding.lookup(tunnel.host, tunnel.port)
            if bound is None:
                raise host_not_allowed()
            caller = self._caller_of(tunnel.proxy_authorization)
            if caller is not None and self.access is not None:
                request.client = caller.name
                if not self.access.may_use(caller, bound):
                    raise client_forbidden()
            connection = self.aimed(bound, tunnel.host, tunnel.port)
        return forwarder.start_bound(request, connection, caller, settle, start)

    def start_absolute(
        self, request: InboundRequest, forwarder: Forwarder, settle: Settle, start: float
    ) -> Coroutine[Any, Any, None] | None:
        """An absolute-form request (`GET http://host/path`): served when its host is bound."""
        target = request.target
        scheme = target.partition(":")[0].lower()
        if scheme == "https":
            raise InvalidRequest(
                "bad_request",
                "absolute-form https:// is not served: the proxy never downgrades TLS "
                "(send CONNECT, as HTTPS_PROXY clients do)",
            )
        if scheme != "http":
            raise InvalidRequest("bad_path", "the request target must be a path or an http:// URL")
        try:
            parts = urlsplit(target)
            host, port = parts.hostname, parts.port or 80
        except ValueError:
            raise InvalidRequest("bad_request", "the request target is not a valid URL") from None
        if not host or parts.username is not None or parts.password is not None:
            raise InvalidRequest("bad_request", "the request target is not a valid URL")
        host = normal_host(host)
        caller = self.proxy_caller(request)
        connection = self.binding.lookup(host, port)
        if connection is None:
            raise host_not_allowed()
        header = request.header("Host")
        if header is not None and not _names(header, host, port, default=80):
            raise misdirected_in_tunnel()
        # The target's path and query, as sent (urlsplit keeps percent-escapes as they are).
        rest = target[len(parts.scheme) + 3 + len(parts.netloc) :]
        request.target = rest if rest.startswith("/") else "/" + rest
        aimed = self.aimed(connection, host, port)
        return forwarder.start_bound(request, aimed, caller, settle, start)

    def aimed(self, connection: CompiledConnection, host: str, port: int) -> CompiledConnection:
        """`connection` sending to `host:port` (its baseUrl's scheme and path), with no route
        and no response URL rewrite: the client already uses the real URLs."""
        key = (connection.id, host, port)
        found = self._aimed.get(key)
        if found is not None and found.schemes is connection.schemes:
            return found
        base = BaseUrl(connection.base.scheme, host, port, connection.base.path)
        lean = lean_plan(base, connection.schemes, connection.owned_headers)
        aimed = dataclasses.replace(
            connection,
            route="",
            base=base,
            rewrite_response_urls=False,
            lean=lean if connection.lean is not None else None,
        )
        if len(self._aimed) >= _AIMED_CACHE:
            self._aimed.clear()
        self._aimed[key] = aimed
        return aimed


def _names(header: str, host: str, port: int, default: int = 443) -> bool:
    """Whether a `Host` value names `host:port` (the port may be left out when default)."""
    value = header.strip()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[1:end], value[end + 1 :]
    else:
        name, _, port_text = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        rest = ":" + port_text if port_text else ""
        if not name:
            name = value
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit():
            return False
        given = int(rest[1:])
    else:
        given = default
    return normal_host(name) == host and given == port


async def tunnel_address(host: str, port: int, *, private: bool = False) -> tuple[str, int]:
    """The address a blind tunnel to `host:port` connects to: resolved here once, and only a
    public (globally routable) one unless `private` (`forwardProxy.tunnelPrivateAddresses`),
    so no client reaches the proxy's own network through it.

    Raises:
        ProxyError: 403 `host_not_allowed` (a special address), 502 (no such name)."""
    if is_ip_literal(host):
        candidates = [host]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise tunnel_failed("dns_error") from None
        candidates = [str(info[4][0]) for info in infos]
    for candidate in candidates:
        address = ipaddress.ip_address(candidate)
        if private and not (address.is_multicast or address.is_unspecified):
            continue
        inner = embedded_ipv4(address)
        if not address.is_global or address.is_multicast or (inner and not inner.is_global):
            raise host_not_allowed()  # any special address among them: none is used
    if not candidates:
        raise tunnel_failed("dns_error")
    return candidates[0], port


# RFC 6052 (NAT64), RFC 3056 (6to4), RFC 4380 (Teredo), RFC 4291 §2.5.5 (IPv4-compatible and
# -mapped): IPv6 forms that reach an IPv4 address, which `is_global` judges by the IPv6 prefix.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (a metadata or private address behind NAT64,
    say), else None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def build_forward_mode(
    binding: HostBinding,
    root: Authority,
    previous: ForwardMode | None,
    *,
    unmatched: str,
    access: Access | None,
    connect_timeout: float,
    tunnel_private: bool = False,
) -> ForwardMode:
    """The mode for a (re)loaded config: a new intermediate only when the bound hosts or the
    root changed (its leaves stay cached otherwise)."""
    patterns = binding.patterns()
    issuer = previous.issuer if previous is not None else None
    if issuer is None or issuer.root is not root or issuer.patterns != patterns:
        issuer = Issuer(root, patterns)
    return ForwardMode(
        binding,
        issuer,
        unmatched=unmatched,
        access=access,
        connect_timeout=connect_timeout,
        tunnel_private=tunnel_private,
    )
