"""`signing-proxy ca`: print the forward proxy's CA certificate (PEM) for clients to trust
(docs/forward-proxy.md). The config's `forwardProxy.ca`, else the one sealed in the store,
made there on first use, so the proxy presents leaves under the printed root from its start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..config.models import ProxyConfig
from ..intercept.authority import CAError
from ..intercept.ca import ca_certificate_pem
from ..store import Store, StoreError


def print_ca(config: ProxyConfig, store: Store) -> int:
    """Print the root CA certificate; 0, or 1 with the reason on stderr."""
    pem = read_ca_or_report(config, store)
    if pem is None:
        return 1
    sys.stdout.write(pem)
    return 0


def read_ca_or_report(config: ProxyConfig, store: Store, *, prefix: str = "") -> str | None:
    """The root CA certificate (PEM), or None with the reason on stderr; closes `store`.
    (`ca` and `env` outside an event loop.)"""

    async def read() -> str:
        try:
            return await ca_certificate_pem(config, store)
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except CAError as exc:
        print(f"{prefix}forwardProxy.ca: {exc}", file=sys.stderr)
    except StoreError as exc:
        print(f"{prefix}store: {exc}", file=sys.stderr)
    return None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    ca = sub.add_parser(
        "ca",
        help="print the forward proxy's CA certificate (PEM) for clients to trust",
        description="Print the CA certificate the forward-proxy mode's leaves chain to "
        "(docs/forward-proxy.md): forwardProxy.ca, else the one kept sealed in the store "
        "(generated there on first use, shared by every replica on the store).",
    )
    ca.add_argument("--config", help="path to proxy.yaml")
    return ca
