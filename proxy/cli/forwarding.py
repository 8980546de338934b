"""What `run -- CMD` and `env` need of forward-proxy mode: whether it is on, the host names
connections bind, and the proxy's CA certificate (docs/https-proxy.md)."""

from __future__ import annotations

from ..connections.runtime import Runtime
from ..intercept.authority import CAError
from ..intercept.ca import ca_certificate_pem
from ..store import SettingStore
from .wrap import CaSource, WrapError


def forward_proxy_refusal(runtime: Runtime) -> str | None:
    """Why a command cannot use this config's proxy as its HTTPS proxy, or None."""
    if not runtime.config.forward_proxy.enabled:
        return (
            "forwardProxy.enabled: the proxy answers CONNECT only with `forwardProxy: {enabled: "
            "true}` in the config (docs/https-proxy.md)"
        )
    return None


def bound_hosts(runtime: Runtime) -> list[str]:
    """The host names connections bind, wildcards aside (they must not be in NO_PROXY)."""
    return [
        pattern.name
        for connection in runtime.connections
        for pattern in connection.hosts
        if not pattern.wildcard
    ]


def proxy_ca_source(runtime: Runtime, store: SettingStore) -> CaSource:
    """The proxy CA certificate (PEM): the config's, else the store's (made on first use)."""

    async def read() -> bytes:
        try:
            return (await ca_certificate_pem(runtime.config, store)).encode()
        except CAError as exc:
            raise WrapError(f"forwardProxy.ca: {exc}") from None

    return read
