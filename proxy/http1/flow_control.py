"""Flow control of one connection, both ways: the one object the client side (`server.py`), the
upstream side (`connection.py`) and a blind tunnel's destination (`pipe.py`) each keep.

- Reading: the bytes read and not yet taken by their consumer are counted (`buffer`,
  `consumed`); once they exceed `HIGH_WATER` the transport stops reading, and the owner resumes
  it when its consumer has caught up (`below_low_water`: at most `LOW_WATER` left; or nothing
  left at all). Bytes held for a tunnel that is still being set up pause reading the same way
  (`hold`). So a slow consumer slows its producer down, and memory stays flat.
- Writing: the transport says when its buffer is over its limit (`pause_writing`) and when it
  has drained (`resume_writing`); `drained()` is the future a writer awaits meanwhile, and it
  fails once the connection is lost (`lost`), so no writer waits forever on a dead socket.
- A tunnel (`tunnel.py`): once a connection is handed over, its write buffer's state goes to
  the tunnel's `TunnelHalf` (which stops reading the other end meanwhile), beginning with the
  present one, and the reading paused for held bytes resumes.

Pausing and resuming happen only on a change (the owner never has to ask first), and nothing here
knows about HTTP: what a pause means for a timeout is the owner's business (it sees the True
that `pause_reading` and `resume_reading` return when they did something).
"""

from __future__ import annotations

import asyncio

from .tunnel import TunnelHalf

HIGH_WATER = 256 * 1024  # bytes waiting for their consumer that pause reading
LOW_WATER = 64 * 1024  # ... and (where the consumer takes them piecewise) resume it


class FlowControl:
    """Read-side valve and write-side drain waiter of one connection.

    Attributes:
        transport: what is paused and resumed; None until the connection is made (and, for an
            owner that says so, once it is closed): every pause and resume is then a no-op.
        buffered: bytes read and not yet consumed (`buffer`, `consumed`).
        reading_paused: the transport is not being read.
        writing_paused: the transport's write buffer is over its limit.
    """

    __slots__ = ("transport", "buffered", "reading_paused", "writing_paused", "_waiter", "_half")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffered = 0
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._half: TunnelHalf | None = None

    # -- reading --------------------------------------------------------------------------------

    def buffer(self, size: int) -> bool:
        """`size` more bytes wait for the consumer: past `HIGH_WATER`, reading pauses (True
        when it did now)."""
        self.buffered += size
        return self.buffered > HIGH_WATER and self.pause_reading()

    def consumed(self, size: int) -> None:
        """The consumer took `size` bytes (resuming is the owner's call: `below_low_water`)."""
        self.buffered -= size

    def clear(self) -> None:
        """Nothing waits any more (all of it taken, or dropped)."""
        self.buffered = 0

    @property
    def below_low_water(self) -> bool:
        return self.buffered <= LOW_WATER

    def hold(self, held: int) -> bool:
        """`held` bytes in all wait for a tunnel being set up: past `HIGH_WATER`, reading
        pauses (True when it did now) until `hand_over`, or until the owner drops them."""
        return held > HIGH_WATER and self.pause_reading()

    def pause_reading(self) -> bool:
        """Stop reading; True when it was read until now."""
        transport = self.transport
        if transport is None or self.reading_paused:
            return False
        self.reading_paused = True
        transport.pause_reading()
        return True

    def resume_reading(self) -> bool:
        """Read again; True when it was paused until now."""
        transport = self.transport
        if transport is None or not self.reading_paused:
            return False
        self.reading_paused = False
        transport.resume_reading()
        return True

    # -- writing (the protocol's `pause_writing` / `resume_writing` / `connection_lost`) ----------

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self._half is not None:
            self._half.writing_paused()

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._half is not None:
            self._half.writing_resumed()

    def drained(self) -> asyncio.Future[None]:
        """What a writer awaits while `writing_paused`: done once the buffer has drained, failed
        with `lost`'s error if the connection goes first. One future for every writer."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def lost(self, error: Exception) -> None:
        """The connection is gone: a writer waiting for the buffer to drain gets `error`."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    # -- a tunnel -------------------------------------------------------------------------------

    def hand_over(self, half: TunnelHalf) -> None:
        """The connection is a tunnel's end from now on: reading goes on (the held bytes go to
        the tunnel), and the write buffer's state goes to `half`, the present one first."""
        self._half = half
        self.resume_reading()
        if self.writing_paused:
            half.writing_paused()
