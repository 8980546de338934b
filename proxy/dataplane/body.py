"""Request bodies that must be read before sending: held in memory up to a threshold, spilled to a
temporary file beyond it, refused past a maximum (docs/configuration.md `limits`,
docs/request-path.md Bodies).

Only schemes that sign the body, and OAuth 2.0's retry-after-refresh, need this. Everything else
streams the client's body straight through and never comes here.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO, Protocol

from ..errors import PayloadTooLarge

CHUNK = 256 * 1024


class ByteStream(Protocol):
    """What the driver reads a client body from (the inbound request's `BodyReader`)."""

    async def readany(self) -> bytes: ...


class BufferedBody:
    """A body read in full: `bytes` in memory, or a temporary file once past `memory_limit`.

    The file is unlinked on `close()`; the driver closes it whatever the outcome.
    """

    def __init__(self, memory: bytes = b"", file: BinaryIO | None = None, size: int = 0) -> None:
        self._memory = memory
        self._file = file
        self.size = size if file is not None else len(memory)

    @property
    def in_memory(self) -> bytes | None:
        return None if self._file is not None else self._memory

    def iter_bytes(self) -> Iterator[bytes]:
        if self._file is None:
            if self._memory:
                yield self._memory
            return
        self._file.seek(0)
        while chunk := self._file.read(CHUNK):
            yield chunk

    def read_all(self) -> bytes:
        return b"".join(self.iter_bytes())

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Stream the body for sending; file reads run off the event loop."""
        if self._file is None:
            if self._memory:
                yield self._memory
            return
        file = self._file
        await asyncio.to_thread(file.seek, 0)
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # NamedTemporaryFile(delete=True) removes it here
            self._file = None
            self._memory = b""


async def read_body(
    stream: ByteStream, *, memory_limit: int, max_bytes: int, stop_after: int | None = None
) -> tuple[BufferedBody, bytes | None]:
    """Read `stream` into a `BufferedBody`.

    Args:
        memory_limit: bytes kept in memory before spilling to a temporary file.
        max_bytes: more than this raises `PayloadTooLarge` (and removes the temporary file).
        stop_after: read at most this many bytes; if the body is longer, return what was read
            so far as `(body, overflow)` where `overflow` is the first unread-into-body chunk,
            so the caller can stream the rest instead (used to buffer only replayable bodies).

    Returns:
        `(body, None)` when the whole body was read.
    """
    parts: list[bytes] = []
    size = 0
    file: BinaryIO | None = None
    try:
        while chunk := await stream.readany():
            if stop_after is not None and size + len(chunk) > stop_after:
                return BufferedBody(b"".join(parts)), chunk
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(max_bytes)
            if file is None and size > memory_limit:
                # Created here, not in the worker thread: once `file` is bound, the handler
                # below removes it even if the task is cancelled during the thread's write.
                file = _temp_file()
                await asyncio.to_thread(file.writelines, parts)
                parts = []
            if file is not None:
                await asyncio.to_thread(file.write, chunk)
            else:
                parts.append(chunk)
    except BaseException:
        if file is not None:
            file.close()
        raise
    if file is not None:
        await asyncio.to_thread(file.flush)
        return BufferedBody(file=file, size=size), None
    return BufferedBody(b"".join(parts)), None


def _temp_file() -> BinaryIO:
    # delete=True: the file goes on close() (and at exit); it is never reopened by name.
    # mkstemp already creates it 0600; fchmod states it rather than relying on the umask.
    file = tempfile.NamedTemporaryFile(prefix="signing-proxy-body-", delete=True)  # noqa: SIM115
    os.fchmod(file.fileno(), 0o600)
    return file  # type: ignore[return-value]
