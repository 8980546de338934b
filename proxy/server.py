"""Serving: bind the listeners, run until SIGTERM/SIGINT, then drain in-flight requests.

On a signal the listeners stop accepting at once; requests already in flight get up to
`timeouts.shutdownGrace` seconds to finish; then what the listeners share (the store, the token
manager) is closed, once, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from .config.address import split_host_port

log = logging.getLogger("signing_proxy")


async def serve(
    apps: Sequence[tuple[web.Application, str | socket.socket]],
    *,
    shutdown_grace: float,
    close_after: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Serve each `(app, "host:port")` until a signal arrives, then drain and return.

    An already listening socket may stand in for the address (a `--workers` worker's).
    `close_after` runs in order once *every* listener has drained: resources shared by the
    apps belong here, not to one app's cleanup, which may run while another app still serves."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runners: list[web.AppRunner] = []
    try:
        for app, address in apps:
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace)
            await runner.setup()
            runners.append(runner)
            if isinstance(address, socket.socket):
                await web.SockSite(runner, address).start()
                host, port = address.getsockname()[:2]
            else:
                host, port = split_host_port(address)
                await web.TCPSite(runner, host, port, backlog=1024).start()
            log.info("listening on http://%s:%d", host, port)
        await stop.wait()
        log.info("signal received: draining in-flight requests (up to %.0fs)", shutdown_grace)
    finally:
        # cleanup() stops accepting, waits for handlers up to shutdown_timeout, then closes.
        try:
            await asyncio.gather(*(r.cleanup() for r in runners))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            for close in close_after:
                await close()
