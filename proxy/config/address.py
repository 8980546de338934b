"""`HOST:PORT` listen addresses (`listen`, `admin.listen`, `--listen`), checked at config time.

A bad address is a config error with its field path, reported by `check` and by `run` before any
port is bound, rather than an `OSError` from the socket layer after start-up has begun.
"""

from __future__ import annotations

import ipaddress
import re

# An RFC 1123 host name (labels of letters, digits and hyphens), as `allowedHosts` takes it.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def split_host_port(address: str) -> tuple[str, int]:
    """`"127.0.0.1:8080"` → `("127.0.0.1", 8080)`; IPv6 hosts in brackets: `"[::1]:8080"`.

    Raises:
        ValueError: not `HOST:PORT`, or the port is outside 0–65535 (0 = any free port).
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:8080")
    if int(port) > 65535:
        raise ValueError("port must be between 0 and 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host must be in brackets, for example [::1]:8080")
    if not host or any(ch.isspace() or ch in "[]/@" for ch in host):
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:8080")
    return host, int(port)


def check_host_port(address: str) -> str:
    """Pydantic validator: keep the text as written once it parses."""
    split_host_port(address)
    return address


def check_host_name(text: str) -> str:
    """Pydantic validator for a listed host (`admin.allowedHosts`, `listenHosts`): a host name
    or an IP address, without port or scheme."""
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        if not _HOST_NAME.fullmatch(text.lower()):
            raise ValueError(
                "must be a host name or an IP address, without port or scheme"
            ) from None
    return text
