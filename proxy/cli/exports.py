"""`signing-proxy env`: what `run -- CMD` gives CMD, printed as shell exports for a proxy that
runs on its own (docs/https-proxy.md).

`eval "$(signing-proxy env)"` in a shell, then every command started there uses the proxy as its
HTTPS proxy and trusts its CA. Unlike `run -- CMD`'s, these trust files outlive the command, so
they are written to a fixed place (0600, in a 0700 directory; `--dir`, by default `trust/`
beside the store's file) and rewritten whole each time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from ..config.address import split_host_port
from ..connections.runtime import Runtime
from ..store import Store
from .ca import read_ca_or_report
from .childenv import ProxySettings, no_proxy, proxy_url, shell_exports
from .forwarding import bound_hosts
from .trust import NoSystemCertificates, system_ca_pems, write_trust_files
from .wrap import WrapError, client_key

EXIT_INVALID = 2
EXIT_FAILED = 1


def print_exports(
    runtime: Runtime,
    store: Store,
    *,
    listen: str,
    client: str | None,
    directory: str | None,
) -> int:
    """Write the trust files, print the exports; the exit status (problems printed). Closes
    `store`."""
    config = runtime.config
    try:
        key = client_key(config.clients, client)
        system = system_ca_pems(os.environ)
    except (WrapError, NoSystemCertificates) as exc:
        asyncio.run(store.close())
        print(f"env: {exc}", file=sys.stderr)
        return EXIT_INVALID if isinstance(exc, WrapError) else EXIT_FAILED

    proxy_ca = read_ca_or_report(config, store, prefix="env: ")
    if proxy_ca is None:
        return EXIT_FAILED
    place = Path(directory) if directory else Path(config.store.path).parent / "trust"
    files = write_trust_files(place.resolve(), system, proxy_ca.encode())
    host, port = split_host_port(listen)
    settings = ProxySettings(
        proxy_url=proxy_url(host, port, key),
        no_proxy=no_proxy(host, bound_hosts(runtime)),
        bundle=str(files.bundle),
        proxy_ca=str(files.proxy_ca),
    )
    sys.stdout.write(shell_exports(settings, os.environ))
    if not _listening(host, port):
        print(
            f"warning: nothing answers on {listen} yet: start the proxy with `signing-proxy run`",
            file=sys.stderr,
        )
    return 0


def _listening(host: str, port: int) -> bool:
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return False
    return True
