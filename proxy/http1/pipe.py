"""The upstream end of a blind CONNECT tunnel: a plain TCP connection as a `tunnel.TunnelEnd`.

`open_pipe` connects; `ServerConnection.splice` joins it to the client's connection in a
`tunnel.Tunnel`, which relays bytes both ways with flow control and an idle timeout. Nothing is
parsed or logged: the bytes are the client's business (forward-proxy mode's
`unmatched: tunnel`, docs/forward-proxy.md).
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from .flow_control import FlowControl
from .tunnel import TunnelHalf


class Pipe(asyncio.Protocol):
    """A connection to a tunnel's destination; bytes before `hand_over` are held for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._half: TunnelHalf | None = None
        self._held = bytearray()
        self._ended = False
        # Bytes held before `hand_over` pause reading past their high water; the write buffer's
        # state goes to the tunnel (`flow_control.py`).
        self._flow = FlowControl()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self._flow.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def hand_over(self, half: TunnelHalf) -> tuple[asyncio.Transport, bytes]:
        assert self.transport is not None
        self._half = half
        held = bytes(self._held)
        self._held.clear()
        self._flow.hand_over(half)
        if self._ended:
            self.transport.close()  # (the tunnel sees it closing and ends)
        return self.transport, held

    def data_received(self, data: bytes) -> None:
        if self._half is not None:
            self._half.received(data)
        else:
            self._held += data  # the destination spoke first, before the 200 went out
            self._flow.hold(len(self._held))

    def eof_received(self) -> bool | None:
        return None  # the tunnel ends with either side (tunnel.py)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._half is not None:
            self._half.ended()
        else:
            self._ended = True

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_pipe(address: tuple[str, int], timeout: float) -> Pipe:
    """A connected `Pipe` to `address` (an IP and port: the caller resolved and checked it)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, pipe = await loop.create_connection(Pipe, address[0], address[1])
    return pipe
