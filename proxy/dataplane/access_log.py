"""The access-log writer: lines queued by the event loop, written in batches by one thread.

nginx writes its access log with `buffer=` and `flush=`; so does this: the event loop only
appends a formatted line (`access_line.py`) to an in-memory queue, and a writer thread writes
what is queued once `BUFFER_BYTES` have gathered or `FLUSH_SECONDS` have passed, on `flush()`
(a reload) and on `close()` (shutdown, after the last request has drained, so a line written
just before SIGTERM is in the destination when the process exits).

The event loop never calls `write(2)` for the access log, so a slow or stalled destination (a
pipe nobody reads, a full disk, a paused terminal) holds up the writer thread only. The queue is
bounded: once `LIMIT_BYTES` wait unwritten, new lines are dropped, counted in
`signing_proxy_access_log_dropped_lines_total`, and reported by one warning once lines get
through again. Each write(2) carries whole lines: up to 256 KiB into a file, up to 64 KiB (a
pipe's default capacity) into a pipe, socket or terminal. Linux writes into a pipe that has room
all at once, so a line of `logging`'s on the same stderr falls between two access lines; only
while the pipe is full (its reader behind) can one land inside a batch. (POSIX promises a whole
write only up to `PIPE_BUF`, 4 KiB; writes that small cost the writer a GIL hand-off each, too
many to keep up with a busy proxy.)
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from collections import deque

from .. import metrics
from ..http1.inbound import InboundRequest
from .access_line import ACCESS_LOGGER, AccessLine, JsonLine, TextLine

log = logging.getLogger("signing_proxy")

BUFFER_BYTES = 256 * 1024  # written once this much is queued (nginx's `buffer=`)
FLUSH_SECONDS = 1.0  # ...or once a line has waited this long
LIMIT_BYTES = 4 * 1024 * 1024  # queued beyond this, a line is dropped (~30,000 lines)
CLOSE_SECONDS = 5.0  # how long `close()` waits for a slow destination
# One write(2) to a regular file: the batch; to anything else: what a pipe holds by default.
FILE_WRITE_BYTES = 256 * 1024
STREAM_WRITE_BYTES = 64 * 1024


class AccessLog:
    """Lines formatted by `line` to the file descriptor `fd` (not closed here: stderr, or the
    caller's file).

    `request` and `write` are called from the event loop's thread only; the writer thread does
    the rest.
    Sizes are counted in characters (the lines are ASCII but for a client name or path)."""

    def __init__(
        self,
        fd: int,
        line: AccessLine,
        *,
        buffer_bytes: int = BUFFER_BYTES,
        flush_seconds: float = FLUSH_SECONDS,
        limit_bytes: int = LIMIT_BYTES,
    ) -> None:
        self._fd = fd
        self.line = line
        self._buffer_bytes = buffer_bytes
        self._flush_seconds = flush_seconds
        self._limit_bytes = limit_bytes
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        self._write_bytes = FILE_WRITE_BYTES if regular else STREAM_WRITE_BYTES
        self._queue: deque[str] = deque()  # append and popleft are atomic: no lock per line
        # Each counter has one writer thread, so neither needs a lock: queued - done is what
        # waits (a line being written still counts until its write returns).
        self._queued = 0  # characters queued, ever (the event loop's)
        self._taken = 0  # characters taken off the queue to be written, ever (the writer's)
        self._done = 0  # characters written or given up, ever (the writer thread's)
        self._refused = 0  # lines dropped on a full queue, ever (the event loop's)
        self._lost = 0  # lines whose write failed, ever (the writer thread's)
        self._reported = 0  # of the dropped lines, those reported in a warning
        # Held while no wake is pending: releasing it wakes the writer (one C call, where an
        # Event's set() is a Condition's Python code).
        self._wake = threading.Lock()
        self._wake.acquire()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    # -- the event loop's side --------------------------------------------------------------

    def request(self, request: InboundRequest, status: int, duration_ms: float) -> None:
        """Queue the line of one finished request."""
        self.write(self.line(request, status, duration_ms, time.time()))

    def write(self, line: str) -> None:
        """Queue one line (with its newline); never blocks."""
        size = len(line)
        waiting = self._queued - self._done
        if waiting + size > self._limit_bytes or self._closing:
            self._refused += 1
            metrics.access_log_dropped(1)
            return
        self._queue.append(line)
        self._queued += size
        # Woken once per buffer's worth in the queue: not again for the lines it is writing.
        if self._queued - self._taken >= self._buffer_bytes:
            self._signal()

    @property
    def dropped(self) -> int:
        """Lines dropped so far: refused on a full queue, or lost to a failed write."""
        return self._refused + self._lost

    def flush(self) -> None:
        """Have the writer write what is queued now (a reload); returns at once."""
        self._signal()

    def wait_written(self, timeout: float = CLOSE_SECONDS) -> bool:
        """Block until every line queued so far is written (or given up); False on timeout.
        For `close()` and for tests: it blocks the caller."""
        target = self._queued
        self._signal()
        deadline = time.monotonic() + timeout
        while self._done < target:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.001)
        return True

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Write what is queued, then stop the writer (at shutdown, after the last request).
        A destination still stalled after `timeout` seconds loses what waits: the process
        must be able to exit."""
        self._closing = True
        self._signal()
        self._thread.join(timeout)

    # -- the writer thread ------------------------------------------------------------------

    def _signal(self) -> None:
        if self._wake.locked():
            try:
                self._wake.release()
            except RuntimeError:  # released meanwhile (a flush from another thread)
                pass

    def _run(self) -> None:
        while True:
            self._wake.acquire(timeout=self._flush_seconds)
            closing = self._closing
            self._drain()
            if self.dropped > self._reported:
                self._report_dropped()
            if closing:
                return

    def _drain(self) -> None:
        queue, limit = self._queue, self._write_bytes
        while queue:
            batch: list[str] = []
            size = 0
            while queue and (not batch or size + len(queue[0]) <= limit):
                line = queue.popleft()
                batch.append(line)
                size += len(line)
            self._taken += size
            try:
                self._write_all("".join(batch).encode("utf-8", "backslashreplace"))
            except OSError:
                # Gone for good (a closed pipe, EBADF) or failing (EIO, ENOSPC): the lines are
                # lost either way, and counted, and the loop is never told.
                self._lost += len(batch)
                metrics.access_log_dropped(len(batch))
            self._done += size

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _report_dropped(self) -> None:
        dropped = self.dropped
        lost, self._reported = dropped - self._reported, dropped
        log.warning(
            "access log: %d line(s) dropped: the log destination was full or slow",
            lost,
            extra={"event": "access_log_dropped", "dropped": lost},
        )


def open_access_log(fmt: str, *, with_pid: bool) -> AccessLog | None:
    """The access log on stderr in `fmt` (`text` or `json`), or None when the log level hides
    it (`warning` and `error`: the access lines are `info`, as they were through `logging`).
    Opened in each worker: the writer thread does not survive a fork."""
    if not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO):
        return None
    pid = os.getpid()
    line = JsonLine(pid=pid) if fmt == "json" else TextLine(pid=pid if with_pid else None)
    try:
        sys.stderr.flush()
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by an object without a descriptor
        fd = 2
    return AccessLog(fd, line)
