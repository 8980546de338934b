"""Where the forward proxy's root CA comes from: `forwardProxy.ca` in the config, else the store.

A generated root is made once and kept sealed in the store (`Store.sealed_setting`), so every
process and replica sharing the store presents leaves under the same root, and a restart does
not make clients trust a new one. `ca_certificate_pem` is what `signing-proxy ca`, `run` and
`env` hand to clients.
"""

from __future__ import annotations

from pathlib import Path

from ..config.models import ForwardProxyCA, ProxyConfig
from ..store import SettingStore
from .authority import Authority, CAError, from_pem, generate_root

STORE_SETTING = "forward_proxy_ca"


def _pem_or_file(text: str, field: str) -> str:
    """PEM text as given, or the content of the file it names."""
    if "-----BEGIN" in text:
        return text
    try:
        return Path(text).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable"
        raise CAError(f"{field}: neither PEM text nor a readable PEM file ({reason})") from None


def config_authority(ca: ForwardProxyCA) -> Authority:
    """The CA `forwardProxy.ca` gives; `CAError` naming `cert` or `key` when it cannot sign."""
    cert = _pem_or_file(ca.cert, "cert")
    key = _pem_or_file(ca.key.get_secret_value(), "key")
    return from_pem(cert, key)


async def load_authority(config: ProxyConfig, store: SettingStore) -> Authority:
    """The root CA: the config's, else the store's (generated and stored on first use)."""
    if config.forward_proxy.ca is not None:
        return config_authority(config.forward_proxy.ca)
    data = await store.sealed_setting(STORE_SETTING, lambda: generate_root().to_bytes())
    return Authority.from_bytes(data)


async def ca_certificate_pem(config: ProxyConfig, store: SettingStore) -> str:
    """The root CA certificate clients trust (PEM), made and stored when there is none yet."""
    return (await load_authority(config, store)).cert_pem
