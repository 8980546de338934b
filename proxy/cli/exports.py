"""`signing-proxy env`: what `run -- CMD` gives CMD, printed as shell exports for a proxy that
runs on its own (docs/https-proxy.md).

`eval "$(signing-proxy env)"` in a shell, then every command started there uses the proxy as its
HTTPS proxy and trusts its CA. Unlike `run -- CMD`'s, these trust files outlive the command, so
they are written to a fixed place (0600, in a 0700 directory; `--dir`, by default `trust/`
beside the store's file) and rewritten whole each time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

from ..config.address import split_host_port
from .childenv import ProxySettings, no_proxy, proxy_url, shell_exports
from .trust import NoSystemCertificates, system_ca_pems, write_trust_files
from .wrap import WrapError, client_key

EXIT_INVALID = 2
EXIT_FAILED = 1


def cmd_env(args: argparse.Namespace) -> int:
    from .command import _env_listen, config_path, load_or_report, open_store_or_report
    from .forwarding import bound_hosts, forward_proxy_refusal, proxy_ca_source

    runtime = load_or_report(config_path(args.config))
    if runtime is None:
        return EXIT_INVALID
    refusal = forward_proxy_refusal(runtime)
    if refusal is not None:
        print(f"env: {refusal}", file=sys.stderr)
        return EXIT_INVALID
    config = runtime.config
    try:
        key = client_key(config.clients, args.client)
    except WrapError as exc:
        print(f"env: {exc}", file=sys.stderr)
        return EXIT_INVALID
    listen = args.listen or _env_listen() or config.listen
    try:
        system = system_ca_pems(os.environ)
    except NoSystemCertificates as exc:
        print(f"env: {exc}", file=sys.stderr)
        return EXIT_FAILED
    store = open_store_or_report(config.store)
    if store is None:
        return EXIT_FAILED

    async def read_ca() -> bytes:
        try:
            return await proxy_ca_source(runtime, store)()
        finally:
            await store.close()

    try:
        proxy_ca = asyncio.run(read_ca())
    except WrapError as exc:
        print(f"env: {exc}", file=sys.stderr)
        return EXIT_INVALID
    directory = Path(args.dir) if args.dir else Path(config.store.path).parent / "trust"
    files = write_trust_files(directory.resolve(), system, proxy_ca)
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
