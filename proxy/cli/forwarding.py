"""What `run -- CMD` and `env` need of forward-proxy mode: whether it is on, the hosts bound to
connections, and the proxy CA certificate (docs/https-proxy.md)."""

from __future__ import annotations

from ..connections.runtime import Runtime
from ..store import Store
from .wrap import CaSource, WrapError


def forward_proxy_refusal(runtime: Runtime) -> str | None:
    """Why a command cannot use this config's proxy as its HTTPS proxy, or None."""
    del runtime
    return "forwardProxy: forward-proxy mode is not in this build yet"


def bound_hosts(runtime: Runtime) -> list[str]:
    """The host names connections bind (the ones that must not be in NO_PROXY)."""
    del runtime
    return []


def proxy_ca_source(runtime: Runtime, store: Store) -> CaSource:
    """The proxy CA certificate (PEM) of this config, from the config or the store."""
    del runtime, store

    async def read() -> bytes:
        raise WrapError("forwardProxy: forward-proxy mode is not in this build yet")

    return read
