"""Serving: bind the listeners, run until SIGTERM/SIGINT, then drain in-flight requests.

The data plane is served by the project's own HTTP/1.1 server (`http1/server.py`); the management
API and the demo echo upstream are aiohttp applications. On a signal every listener stops accepting
at once; requests already in flight get up to `timeouts.shutdownGrace` seconds to finish (idle
keep-alive client connections are closed at once, busy ones after their response); then what the
listeners share (the store, the token manager) is closed, once, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from ..admin.listener import AdminRunner
from ..config.address import split_host_port
from ..dataplane.plane import DataPlane
from ..http1.server import HttpServer

log = logging.getLogger("signing_proxy")

Listener = tuple[DataPlane | web.Application, str | socket.socket]


async def start_data_plane(
    plane: DataPlane, address: tuple[str, int] | socket.socket
) -> tuple[HttpServer, tuple[str, int]]:
    """Start `plane` and serve it on `address`; returns the server (for `drain`) and the bound
    address. The caller drains the server, then closes the plane."""
    await plane.start()
    server = HttpServer(plane, plane.limits)
    try:
        bound = await server.listen(address)
    except BaseException:
        await plane.close()
        raise
    return server, bound


async def serve(
    listeners: Sequence[Listener],
    *,
    shutdown_grace: float,
    close_after: Sequence[Callable[[], Awaitable[None]]] = (),
    reload: Callable[[], Awaitable[object]] | None = None,
    watch: Callable[[], Awaitable[None]] | None = None,
    until: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Serve each `(plane or app, "host:port")` until a signal arrives, then drain and return.

    An already listening socket may stand in for the address (a `--workers` worker's).
    `close_after` runs in order once *every* listener has drained: resources shared by the
    listeners belong here, not to one listener's cleanup, which may run while another serves.
    SIGHUP runs `reload` (reload.py) and never stops the process; `watch` runs alongside
    (`run --watch`) until the drain starts. With `until` (`run -- CMD`, wrap.py) the drain
    starts once it returns instead, and SIGTERM/SIGINT are its to handle."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGTERM, signal.SIGINT) if until is None else ()
    for signum in stop_signals:
        loop.add_signal_handler(signum, stop.set)
    background: set[asyncio.Task[object]] = set()

    def on_hangup() -> None:
        if reload is None:
            log.info("SIGHUP: nothing to reload", extra={"event": "reload_skipped"})
            return
        task: asyncio.Task[object] = asyncio.ensure_future(reload())
        background.add(task)
        task.add_done_callback(background.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    # A `--workers` worker starts with SIGHUP blocked (workers.py): one that came meanwhile is
    # delivered now, to `on_hangup`.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    watcher = asyncio.ensure_future(watch()) if watch is not None else None
    runners: list[web.AppRunner] = []
    planes: list[tuple[DataPlane, HttpServer]] = []
    try:
        for target, address in listeners:
            where = address if isinstance(address, socket.socket) else split_host_port(address)
            if isinstance(target, DataPlane):
                server, (host, port) = await start_data_plane(target, where)
                planes.append((target, server))
            else:
                # Malformed requests are refused in the proxy's voice, never echoed or logged.
                runner = AdminRunner(target, access_log=None, shutdown_timeout=shutdown_grace)
                await runner.setup()
                runners.append(runner)
                if isinstance(where, socket.socket):
                    await web.SockSite(runner, where).start()
                    host, port = where.getsockname()[:2]
                else:
                    host, port = where
                    await web.TCPSite(runner, host, port, backlog=1024).start()
            log.info(
                "listening on http://%s:%d",
                host,
                port,
                extra={"event": "listening", "address": f"{host}:{port}"},
            )
        await (stop.wait() if until is None else until())
        log.info(
            "%s: draining in-flight requests (up to %.0fs)",
            "signal received" if until is None else "command exited",
            shutdown_grace,
            extra={"event": "draining"},
        )
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in (watcher, *background):
            if task is not None:
                task.cancel()
        # cleanup() stops accepting, waits for handlers up to shutdown_timeout, then closes.
        try:
            await asyncio.gather(
                *(r.cleanup() for r in runners),
                *(_drain(plane, server, shutdown_grace) for plane, server in planes),
            )
        finally:
            for signum in stop_signals:
                loop.remove_signal_handler(signum)
            for close in close_after:
                await close()


async def _drain(plane: DataPlane, server: HttpServer, grace: float) -> None:
    try:
        await server.drain(grace)
    finally:
        await plane.close()
