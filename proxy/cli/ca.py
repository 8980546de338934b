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

    async def read() -> str:
        try:
            return await ca_certificate_pem(config, store)
        finally:
            await store.close()

    try:
        pem = asyncio.run(read())
    except CAError as exc:
        print(f"forwardProxy.ca: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"store: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(pem)
    return 0


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
