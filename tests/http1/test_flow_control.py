"""`proxy/http1/flow_control.py` on its own, over real loopback transports: the read-side valve
pauses and resumes the transport at its water marks, the write-side waiter follows the transport's
`pause_writing` / `resume_writing` and fails once the connection is lost, and a tunnel's half
hears the write buffer's state from `hand_over` on. (How the whole hop behaves with it:
`test_flow.py`.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest

from proxy.http1.flow_control import HIGH_WATER, LOW_WATER, FlowControl
from proxy.http1.tunnel import Tunnel, TunnelHalf


class FlowProtocol(asyncio.Protocol):
    """A connection with a `FlowControl`, wired as the data plane's protocols wire theirs."""

    def __init__(self) -> None:
        self.flow = FlowControl()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.flow.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.lost(ConnectionResetError("connection lost (canary-flow)"))


class Link:
    """One end over a `FlowProtocol`, the other a plain socket the test reads or closes."""

    def __init__(self, protocol: FlowProtocol, peer: socket.socket) -> None:
        self.protocol = protocol
        self.flow = protocol.flow
        self.peer = peer
        assert protocol.transport is not None
        self.transport = protocol.transport


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(FlowProtocol, sock=ours)
    yield Link(protocol, peer)
    if protocol.transport is not None:
        protocol.transport.abort()
    peer.close()
    await asyncio.sleep(0)


class RecordingHalf(TunnelHalf):
    """A tunnel's half that notes what it is told of the write buffer."""

    __slots__ = ("told",)

    def __init__(self) -> None:
        super().__init__(Tunnel(asyncio.get_running_loop(), 60.0), upstream=False)
        self.told: list[str] = []

    def writing_paused(self) -> None:
        self.told.append("paused")

    def writing_resumed(self) -> None:
        self.told.append("resumed")


async def fill_until_paused(link: Link) -> int:
    """Write to the peer, which reads nothing, until the transport pauses writing."""
    piece = b"x" * (256 * 1024)
    written = 0
    for _ in range(4096):  # bounded: loopback buffers a few MiB at most
        if link.flow.writing_paused:
            return written
        link.transport.write(piece)
        written += len(piece)
        await asyncio.sleep(0)
    raise AssertionError(f"writing never paused after {written} bytes")


async def read_until_resumed(link: Link) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(100_000):
        if not link.flow.writing_paused:
            return
        try:
            await asyncio.wait_for(loop.sock_recv(link.peer, 1024 * 1024), 2.0)
        except TimeoutError:
            break
    raise AssertionError("writing never resumed while the peer read")


async def test_reading_pauses_past_high_water_and_resumes_at_low_water(link: Link) -> None:
    flow = link.flow
    assert not flow.buffer(HIGH_WATER)  # at the mark: still read
    assert link.transport.is_reading() and not flow.reading_paused
    assert flow.buffer(1)  # past it: paused now ...
    assert not link.transport.is_reading() and flow.reading_paused
    assert not flow.buffer(4096)  # ... once
    flow.consumed(HIGH_WATER + 4097 - LOW_WATER - 1)
    assert not flow.below_low_water
    flow.consumed(1)
    assert flow.buffered == LOW_WATER and flow.below_low_water
    assert flow.resume_reading()
    assert link.transport.is_reading() and not flow.reading_paused
    assert not flow.resume_reading()  # nothing to resume


async def test_clear_leaves_resuming_to_the_owner(link: Link) -> None:
    flow = link.flow
    flow.buffer(HIGH_WATER + 1)
    flow.clear()
    assert flow.buffered == 0 and flow.below_low_water
    assert flow.reading_paused and not link.transport.is_reading()
    assert flow.resume_reading() and link.transport.is_reading()


async def test_held_bytes_pause_reading_past_high_water(link: Link) -> None:
    flow = link.flow
    assert not flow.hold(HIGH_WATER)
    assert link.transport.is_reading()
    assert flow.hold(HIGH_WATER + 1)
    assert not link.transport.is_reading()
    assert not flow.hold(2 * HIGH_WATER)  # paused already
    assert flow.buffered == 0  # held bytes are not the consumer's


async def test_without_a_transport_nothing_pauses() -> None:
    flow = FlowControl()  # not connected yet, or detached once closed
    assert not flow.buffer(HIGH_WATER * 2)
    assert not flow.reading_paused
    assert not flow.pause_reading() and not flow.resume_reading()
    assert flow.buffered == HIGH_WATER * 2  # still counted


async def test_writers_wait_for_the_buffer_to_drain(link: Link) -> None:
    flow = link.flow
    await fill_until_paused(link)
    first, second = flow.drained(), flow.drained()
    assert first is second  # one future for every writer
    await asyncio.sleep(0.05)
    assert not first.done()
    await read_until_resumed(link)
    assert first.done() and first.result() is None
    # The next pause gets a fresh future.
    await fill_until_paused(link)
    third = flow.drained()
    assert third is not first and not third.done()
    await read_until_resumed(link)
    assert third.done()


async def test_a_waiting_writer_fails_when_the_connection_is_lost(link: Link) -> None:
    flow = link.flow
    await fill_until_paused(link)
    waiting = asyncio.ensure_future(flow.drained())
    await asyncio.sleep(0)
    link.transport.abort()
    with pytest.raises(ConnectionResetError, match="canary-flow"):
        await asyncio.wait_for(waiting, 5.0)


async def test_lost_without_a_waiter_fails_nothing(link: Link) -> None:
    flow = link.flow
    flow.lost(ConnectionResetError("nobody waits"))
    await fill_until_paused(link)
    waiting = flow.drained()  # a fresh one: the loss was before it
    assert not waiting.done()
    await read_until_resumed(link)
    assert waiting.done() and waiting.exception() is None


async def test_hand_over_resumes_reading_and_tells_the_half_the_write_state(link: Link) -> None:
    flow = link.flow
    flow.hold(HIGH_WATER + 1)
    flow.pause_writing()  # as the transport says it (see the tests above for the real thing)
    half = RecordingHalf()
    flow.hand_over(half)
    assert link.transport.is_reading() and not flow.reading_paused
    assert half.told == ["paused"]  # the present state first
    flow.resume_writing()
    flow.pause_writing()
    assert half.told == ["paused", "resumed", "paused"]


async def test_hand_over_with_room_to_write_tells_nothing_yet(link: Link) -> None:
    half = RecordingHalf()
    link.flow.hand_over(half)
    assert half.told == []
    await fill_until_paused(link)
    assert half.told == ["paused"]
    await read_until_resumed(link)
    assert half.told == ["paused", "resumed"]
